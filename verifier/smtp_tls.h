/*
 * smtp_tls.h - STARTTLS for callouts: the OpenSSL glue the session uses.
 *
 * A route with tls=may or tls=encrypt gets one client SSL_CTX when it is
 * opened (the CA file is read then, never on the event loop). A session
 * that got "220" to STARTTLS moves its connection to a libevent OpenSSL
 * bufferevent, which does the handshake without blocking; the
 * session's deadline timer bounds it. Everything after the handshake (EHLO
 * again, MAIL, RCPT, RSET on a pooled session, QUIT) goes through that
 * bufferevent, so a reused session keeps its TLS.
 */
#ifndef CALLAHEAD_SMTP_TLS_H
#define CALLAHEAD_SMTP_TLS_H

#include <stddef.h>

#include "smtp_options.h"

struct bufferevent;
struct event_base;
struct ssl_ctx_st;

/*
 * smtp_tls_ctx_new - the client context for a route's options: peer
 * verification per tls_verify, trust from tls_ca_file or the system store.
 * NULL with err (errlen bytes) when the CA file cannot be loaded.
 */
struct ssl_ctx_st *smtp_tls_ctx_new(const struct smtp_options *o, char *err, size_t errlen);

/* smtp_tls_ctx_free - NULL is fine */
void smtp_tls_ctx_free(struct ssl_ctx_st *ctx);

/*
 * smtp_tls_start - move the connection of the plain bufferevent under to a
 * TLS client bufferevent and start the handshake (BEV_EVENT_CONNECTED on the
 * returned bufferevent when it is done). under must have nothing buffered;
 * it is freed on success (the returned one owns the connection), and is
 * still the caller's on failure (NULL, err says why). peer is the next hop's
 * name (SNI, and the name checked with tls_verify=name) or its address text
 * for a literal.
 */
struct bufferevent *smtp_tls_start(struct event_base *base, struct bufferevent *under,
                                   struct ssl_ctx_st *ctx, const struct smtp_options *o,
                                   const char *peer, char *err, size_t errlen);

/*
 * smtp_tls_error - why a TLS bufferevent failed, for the log and the
 * tempfail text: the OpenSSL error, the certificate check that failed, or
 * "connection closed" when the next hop just hung up.
 */
void smtp_tls_error(struct bufferevent *bev, char *buf, size_t len);

/* smtp_tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384" of an established session */
void smtp_tls_describe(struct bufferevent *bev, char *buf, size_t len);

/* smtp_tls_mode_name, smtp_tls_verify_name - option values for logs */
const char *smtp_tls_mode_name(enum smtp_tls_mode m);
const char *smtp_tls_verify_name(enum smtp_tls_verify v);

#endif
