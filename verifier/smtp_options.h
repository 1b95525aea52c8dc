/*
 * smtp_options.h - the options of an smtp: route, parsed once into a struct.
 *
 * Every option has a default and a limit here, so the session code reads
 * plain fields and never a string. Route options (times are seconds, or
 * "500ms", "5s"; see docs/ROUTES.md):
 *   connect_timeout=5s      TCP connect (per address tried)
 *   greeting_timeout=10s    220 greeting
 *   command_timeout=10s     default for the four below
 *   ehlo_timeout, mail_timeout, rcpt_timeout, rset_timeout   each command's reply
 *   quit_timeout=2s         QUIT reply (after the verdict; never changes it)
 *   idle_timeout=5s         an idle pooled session QUITs after this long
 *   queue_timeout=10s       wait for a connection slot when max_connections are open
 *   max_connections=20      open sessions (busy and idle) per destination
 *   reuse=yes               keep sessions for later lookups (one mail
 *                           transaction: the next lookup sends only RCPT)
 *   max_rcpts_per_session=100 RCPTs one session carries before it QUITs
 *   max_rejects_per_session=8 4xx/5xx replies one session takes before it
 *                           QUITs (below Postfix's smtpd_soft_error_limit)
 *   pipelining=yes          when the next hop offers PIPELINING, send
 *                           RSET, MAIL and RCPT in one write (RFC 2920)
 *   max_addresses=5         new connections one lookup may open
 *   port=25                 smtp:mx only: the port of the MX hosts
 *   sender=                 MAIL FROM address; empty (default) means "<>"
 *   helo_name=              EHLO/HELO name; default gethostname(), else "localhost"
 *   invalid_codes=5xx       RCPT codes that may mean invalid: "550,551,553", "55x", "5xx"
 *   invalid_status=5.1.0,5.1.1,5.1.2,5.1.3,5.1.6,5.1.10
 *                           enhanced status codes that mean "no such mailbox"
 *                           (smtp_status.h); other 5xx statuses are tempfail
 *   bare_5xx=confirm        a 5xx in invalid_codes without a readable status:
 *                           confirm  invalid only when this next hop accepted
 *                                    some RCPT of ours within confirm_window
 *                           invalid  always invalid (Postfix verify, Exim)
 *                           tempfail never invalid
 *   confirm_window=10m      see bare_5xx
 *   tls=may                 STARTTLS: none (never), may (when offered; plaintext
 *                           again after a failed handshake), encrypt (never
 *                           RCPT in plaintext: no STARTTLS or a failed
 *                           handshake is a tempfail of the destination)
 *   tls_timeout             the TLS handshake (default command_timeout)
 *   tls_verify=none         encrypt only: none, ca (chain), name (chain and the
 *                           next hop's name); "name" when tls_ca_file is given
 *   tls_ca_file=            encrypt only: PEM file of trusted CAs (default:
 *                           the system store, when tls_verify is ca or name)
 */
#ifndef CALLAHEAD_SMTP_OPTIONS_H
#define CALLAHEAD_SMTP_OPTIONS_H

#include <stddef.h>
#include <sys/time.h>

#include "address.h"
#include "route.h"
#include "smtp_status.h"
#include "value_parse.h"

#define SMTP_HELO_MAX 255
#define SMTP_MAX_CONNECTIONS_LIMIT 10000
#define SMTP_MAX_RCPTS_LIMIT 10000
#define SMTP_TIMEOUT_LIMIT_MS (3600 * 1000)
#define SMTP_CONFIRM_WINDOW_LIMIT_MS (86400L * 1000)
#define SMTP_TLS_CA_FILE_MAX 1023

/* tls=: whether a callout uses STARTTLS */
enum smtp_tls_mode {
    SMTP_TLS_NONE,    /* never */
    SMTP_TLS_MAY,     /* when offered; plaintext on a new connection if the handshake fails */
    SMTP_TLS_ENCRYPT, /* always: no RCPT in plaintext */
};

/* tls_verify=: what a tls=encrypt session checks of the next hop's certificate */
enum smtp_tls_verify {
    SMTP_TLS_VERIFY_NONE, /* nothing (encrypted, not authenticated) */
    SMTP_TLS_VERIFY_CA,   /* a chain to a trusted CA */
    SMTP_TLS_VERIFY_NAME, /* that, and the next hop's name (or address) in the certificate */
};

/* what a 5xx RCPT reply without a readable enhanced status code means */
enum smtp_bare_5xx {
    SMTP_BARE_CONFIRM,  /* invalid if the next hop accepted a RCPT within confirm_window */
    SMTP_BARE_INVALID,  /* invalid */
    SMTP_BARE_TEMPFAIL, /* tempfail */
};

/* smtp_options - one route's options, defaults filled in */
struct smtp_options {
    struct timeval connect_timeout;
    struct timeval greeting_timeout;
    struct timeval ehlo_timeout; /* also for HELO */
    struct timeval mail_timeout;
    struct timeval rcpt_timeout;
    struct timeval rset_timeout;
    struct timeval idle_timeout;
    struct timeval quit_timeout;
    struct timeval queue_timeout;
    int max_connections; /* per destination */
    int reuse;
    int max_rcpts;                /* per session */
    int max_rejects;              /* 4xx/5xx replies per session */
    int pipelining;               /* use PIPELINING when offered */
    int max_addresses;            /* new connections per lookup, over all addresses and MX hosts */
    unsigned port;                /* port=, 0 when not given */
    char sender[ADDRESS_MAX + 1]; /* "" for the null sender */
    char helo[SMTP_HELO_MAX + 1];
    unsigned char invalid[100]; /* invalid[code - 500]: a RCPT code that may mean invalid */
    struct smtp_status_set invalid_status; /* statuses that mean "no such mailbox" */
    enum smtp_bare_5xx bare_5xx;
    long long confirm_window_ms;
    struct timeval tls_timeout;
    enum smtp_tls_mode tls;
    enum smtp_tls_verify tls_verify;
    char tls_ca_file[SMTP_TLS_CA_FILE_MAX + 1]; /* "" : the system store */
};

/* smtp_option_decls - every option above with its type and bounds, ended by {NULL} */
extern const struct value_decl smtp_option_decls[];

/*
 * smtp_options_parse - every option of route r into *o; is_mx says whether
 * the route is smtp:mx (only that one takes port=). Returns 0, or -1 with err
 * (errlen bytes) naming the first bad option.
 */
int smtp_options_parse(const struct route *r, int is_mx, struct smtp_options *o, char *err,
                       size_t errlen);

#endif
