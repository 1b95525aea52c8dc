/*
 * smtp_tls.c - STARTTLS for callouts: OpenSSL contexts, a libevent TLS
 * bufferevent taking over an SMTP connection after "220" to STARTTLS, and
 * the texts of TLS failures.
 *
 * No call here blocks: the CA file is read when the route is opened, and
 * the handshake runs inside the TLS bufferevent on the event loop, with
 * the session's timer as its deadline (smtp_session.c).
 */
#include "smtp_tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct ssl_ctx_st *smtp_tls_ctx_new(const struct smtp_options *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context: %s",
                 ERR_reason_error_string(ERR_get_error()));
        return NULL;
    }
    /* SSL_MODE_AUTO_RETRY would make SSL_read loop on a non-blocking socket */
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    if (o->tls_verify != SMTP_TLS_VERIFY_NONE) {
        int ok = o->tls_ca_file[0] != '\0'
                     ? SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            unsigned long e = ERR_get_error();
            snprintf(err, errlen, "tls_ca_file=%s: cannot load: %s",
                     o->tls_ca_file[0] != '\0' ? o->tls_ca_file : "(system default)",
                     e != 0 ? ERR_reason_error_string(e) : "unknown error");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

void smtp_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    if (ctx != NULL)
        SSL_CTX_free(ctx);
}

/* peer_is_address - the peer is an IPv4 or IPv6 literal (no SNI, an IP check) */
static int peer_is_address(const char *peer)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, peer, buf) == 1 || inet_pton(AF_INET6, peer, buf) == 1;
}

struct bufferevent *smtp_tls_start(struct event_base *base, struct bufferevent *under,
                                   struct ssl_ctx_st *ctx, const struct smtp_options *o,
                                   const char *peer, char *err, size_t errlen)
{
    SSL *ssl = SSL_new(ctx);
    struct bufferevent *bev;
    int is_addr = peer_is_address(peer);
    int fd;

    if (ssl == NULL) {
        snprintf(err, errlen, "cannot create a TLS session");
        return NULL;
    }
    if (!is_addr && SSL_set_tlsext_host_name(ssl, peer) != 1) {
        snprintf(err, errlen, "cannot set the TLS server name %s", peer);
        SSL_free(ssl);
        return NULL;
    }
    if (o->tls_verify == SMTP_TLS_VERIFY_NAME) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = is_addr ? X509_VERIFY_PARAM_set1_ip_asc(vp, peer) : SSL_set1_host(ssl, peer);
        if (ok != 1) {
            snprintf(err, errlen, "cannot set the TLS name check for %s", peer);
            SSL_free(ssl);
            return NULL;
        }
        if (!is_addr)
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    /*
     * A TLS bufferevent on the socket itself, not a filter over the plain
     * one: with TLS 1.3 the next hop sends session tickets after the
     * handshake, and a filter that gets a ticket and the next reply in one
     * read decodes the ticket, is told "want read", and leaves the reply in
     * its buffer until more bytes arrive, which they never do. On the socket,
     * OpenSSL reads one record at a time and the rest keeps the descriptor
     * readable. The plain bufferevent has nothing buffered either way (the
     * STARTTLS reply was the last thing read, and the caller checked that
     * nothing followed it), so it can go; the duplicate keeps the connection.
     */
    fd = fcntl(bufferevent_getfd(under), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot start TLS on the connection: %s", strerror(errno));
        SSL_free(ssl);
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        snprintf(err, errlen, "cannot start TLS on the connection");
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    bufferevent_free(under);
    /* a next hop that closes without close_notify after QUIT is normal: EOF, not an error */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void smtp_tls_error(struct bufferevent *bev, char *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    unsigned long e = bufferevent_get_openssl_error(bev);
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

    if (vr != X509_V_OK) {
        snprintf(buf, len, "certificate check failed: %s", X509_verify_cert_error_string(vr));
    } else if (e != 0) {
        char text[256];
        ERR_error_string_n(e, text, sizeof(text));
        snprintf(buf, len, "%s", text);
    } else {
        snprintf(buf, len, "connection closed");
    }
    /* nothing of this failure may show up as another session's error */
    while (bufferevent_get_openssl_error(bev) != 0)
        ;
}

void smtp_tls_describe(struct bufferevent *bev, char *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl == NULL) {
        snprintf(buf, len, "no TLS");
        return;
    }
    snprintf(buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

const char *smtp_tls_mode_name(enum smtp_tls_mode m)
{
    switch (m) {
    case SMTP_TLS_NONE:
        return "none";
    case SMTP_TLS_MAY:
        return "may";
    case SMTP_TLS_ENCRYPT:
        return "encrypt";
    }
    return "invalid";
}

const char *smtp_tls_verify_name(enum smtp_tls_verify v)
{
    switch (v) {
    case SMTP_TLS_VERIFY_NONE:
        return "none";
    case SMTP_TLS_VERIFY_CA:
        return "ca";
    case SMTP_TLS_VERIFY_NAME:
        return "name";
    }
    return "invalid";
}
