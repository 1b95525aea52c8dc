/*
 * smtp_int.h - the objects the SMTP backend's files share; nothing outside
 * backend_smtp.c, smtp_host.c and smtp_session.c includes this.
 *
 * Four kinds of object, each with one free path:
 *   struct smtp_route    per route (the backend state): next hop, options,
 *                        the destinations it has talked to, every lookup.
 *                        backend_smtp.c.
 *   struct backend_req   one lookup: DNS (for names and MX), then a walk over
 *                        the next hops to try (RFC 5321 5.1: the next address
 *                        or MX on connect failure or a refused greeting), one
 *                        session at a time, then the verdict, delivered from a
 *                        deferred event so the callback never runs inside
 *                        lookup() or cancel(). backend_smtp.c.
 *   struct smtp_host     one destination, keyed by (host name, port): the
 *                        connection limit, a FIFO of lookups waiting for a
 *                        slot, and a pool of idle sessions. A static route has
 *                        one; smtp:mx makes one per MX host it meets, so
 *                        limits and pools belong to the next hop, not to the
 *                        recipient's domain. smtp_host.c.
 *   struct smtp_session  one SMTP client connection, an explicit state
 *                        machine with one deadline timer per step. After a
 *                        RCPT reply it waits idle in its host's pool with its
 *                        mail transaction open; the next lookup for that host
 *                        sends only RCPT on it, until max_rcpts_per_session,
 *                        max_rejects_per_session or idle_timeout.
 *                        smtp_session.c.
 * The three files call each other (a session that closes frees a slot that
 * a queued lookup takes; a failed session makes its lookup try the next
 * host): the functions below are that whole surface.
 */
#ifndef CALLAHEAD_SMTP_INT_H
#define CALLAHEAD_SMTP_INT_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "backend.h"
#include "dns.h"
#include "smtp_nexthop.h"
#include "smtp_options.h"
#include "smtp_reply.h"

struct event;
struct event_base;
struct bufferevent;
struct ssl_ctx_st;

#define SMTP_READ_HIGHWATER 8192 /* read at most this much before the parser consumes it */
#define SMTP_DNS_TIMEOUT_MS 5000 /* a route's own resolver, when the verifier gives none */

enum session_state {
    SESSION_CONNECT = 0, /* TCP connect in progress */
    SESSION_GREETING,    /* waiting for 220 */
    SESSION_EHLO,        /* EHLO sent */
    SESSION_HELO,        /* HELO sent after EHLO was refused */
    SESSION_STARTTLS,    /* STARTTLS sent, waiting for 220 */
    SESSION_TLS,         /* TLS handshake in progress (then EHLO again) */
    SESSION_MAIL,        /* MAIL FROM sent */
    SESSION_RCPT,        /* RCPT TO sent */
    SESSION_RSET,        /* RSET sent on a pooled session, before the next MAIL FROM */
    SESSION_IDLE,        /* in the host's pool, no lookup */
    SESSION_QUIT,        /* QUIT sent, waiting for 221 or close */
    SESSION_CLOSED,      /* connection gone; the struct is reaped from the timer */
};
#define SESSION_STATE_COUNT 12

enum req_state {
    REQ_RESOLVE = 0, /* DNS lookup in progress */
    REQ_QUEUED,      /* waiting for a connection slot at req->host */
    REQ_ACTIVE,      /* on req->session */
    REQ_DONE,        /* verdict waiting for delivery */
};

/* how a session ends its part in a lookup */
enum session_end {
    END_KEEP, /* in sync after a RCPT reply: back to the pool if allowed, else QUIT */
    END_QUIT, /* in sync but not reusable: QUIT politely */
    END_DROP, /* out of sync (timeout, garbage, 421, disconnect): close at once */
};

/* what a failure that says nothing about the address lets the lookup try next */
enum session_retry {
    RETRY_NONE,  /* answer tempfail */
    RETRY_NEXT,  /* the next address / MX host (connect failure, refused greeting) */
    RETRY_FRESH, /* RSET failed on a pooled session: once more on a new connection */
    RETRY_PLAIN, /* tls=may and the handshake failed: same address, new plaintext connection */
};

struct smtp_route;
struct smtp_host;

struct smtp_session {
    struct smtp_host *host;
    enum session_state state;
    TAILQ_ENTRY(smtp_session) link;  /* host->sessions, all states */
    TAILQ_ENTRY(smtp_session) ilink; /* host->idle, when in_pool */
    int in_pool;
    struct bufferevent *bev; /* NULL once closed */
    struct event *timer;     /* deadline of the step; once closed, the reaper */
    struct smtp_reply_parser *parser;
    struct backend_req *req; /* the lookup this session works for, or NULL */
    int nrcpt;               /* RCPTs sent on this connection */
    int nreject;             /* 4xx/5xx replies on it: what Postfix's smtpd counts as errors */
    int reused;              /* req got this session from the pool */
    int in_txn;              /* MAIL FROM accepted: a pooled session takes the next RCPT as is */
    int txn_utf8;            /* that MAIL FROM carried SMTPUTF8 */
    int txn_rcpts;           /* RCPTs sent in the open transaction */
    int pipelined;           /* RSET/MAIL/RCPT of this lookup went out in one write (RFC 2920) */
    int resumed;             /* this lookup's RCPT is the first command after the pool */
    int connect_errno;       /* connect failed before it started: reported from the timer */
    int tls;                 /* the connection is TLS (handshake done) */
    int plain;               /* tls=may fallback: this connection does not try STARTTLS */
    unsigned ehlo;           /* SMTP_EHLO_* keywords of the EHLO reply; 0 after HELO */
};

TAILQ_HEAD(session_list, smtp_session);
TAILQ_HEAD(req_list, backend_req);

struct smtp_host {
    struct smtp_route *route;
    TAILQ_ENTRY(smtp_host) link;
    char name[SMTP_HOST_MAX]; /* host name, or the address text of a literal */
    unsigned port;
    char source[VERDICT_SOURCE_MAX]; /* "smtp:[mx1.example.org]:25" */
    int nconn;                       /* open connections: connecting, busy, idle, quitting */
    int refs;                        /* lookups pointing here */
    int permanent;                   /* a static route's one host: freed with the route */
    struct session_list sessions;
    struct session_list idle; /* most recently used first */
    struct req_list queue;    /* waiting for a slot, FIFO */
};

TAILQ_HEAD(host_list, smtp_host);

struct backend_req {
    struct smtp_route *route;
    enum req_state state;
    TAILQ_ENTRY(backend_req) link;  /* route->reqs */
    TAILQ_ENTRY(backend_req) qlink; /* host->queue, when REQ_QUEUED */
    struct smtp_host *host;         /* current destination (holds a ref), or NULL */
    struct smtp_session *session;   /* when REQ_ACTIVE */
    struct dns_req *dnsq;           /* when REQ_RESOLVE */
    struct event *timer;            /* queue deadline */
    struct event *deliver;          /* deferred delivery of the verdict */
    struct dns_target *targets;     /* next hops in order; route->nh.literal or owned */
    int ntargets;
    int ti, ai;        /* current target, address within it */
    int attempts;      /* new connections opened */
    int fresh_retried; /* an RSET failure already got its fresh connection */
    int txn_retried;   /* a refusal in a shared transaction already got one of its own */
    int want_fresh;    /* the next acquire must not take a pooled session */
    int tls_plain;     /* tls=may and a handshake failed: new connections stay plaintext */
    int smtputf8;      /* UTF-8 local part: MAIL FROM needs SMTPUTF8 (RFC 6531) */
    char last_error[VERDICT_TEXT_MAX];
    char rcpt[ADDRESS_MAX + 1];
    char domain[ADDRESS_DOMAIN_MAX + 1];
    backend_cb cb; /* NULL once delivered or cancelled */
    void *arg;
    struct verdict verdict;
    struct timeval started;
};

#define SMTP_ACCEPTS_MAX 64 /* destinations whose last accepted RCPT a route remembers */

/*
 * smtp_accept - when a destination last accepted a RCPT of ours. Kept per
 * route, apart from struct smtp_host, because an MX host's struct goes away
 * as soon as nobody uses it, and the evidence must outlive it (bare_5xx).
 */
struct smtp_accept {
    char name[SMTP_HOST_MAX];
    unsigned port;
    long long when_ms; /* CLOCK_MONOTONIC; 0: unused */
};

struct smtp_route {
    struct event_base *base;
    struct dns *dns;                 /* the verifier's resolver, or own_dns */
    struct dns *own_dns;             /* opened by us when the verifier gave none */
    struct smtp_nexthop nh;          /* the route argument */
    struct smtp_options opts;        /* the route options */
    struct ssl_ctx_st *tls_ctx;      /* tls=may or encrypt: the client context (smtp_tls.h) */
    struct smtp_host *static_host;   /* a literal or named next hop */
    unsigned port;                   /* port to connect to */
    char source[VERDICT_SOURCE_MAX]; /* before a host is known: "smtp:mx" */
    struct host_list hosts;
    struct req_list reqs;
    struct smtp_accept accepts[SMTP_ACCEPTS_MAX]; /* the oldest is replaced */
    int in_callback;                              /* delivering a verdict: close is deferred */
    int closing;
};

/* --- lookups (backend_smtp.c) ---------------------------------------- */

/* smtp_req_set_host - point req at h (taking a reference), releasing the old one */
void smtp_req_set_host(struct backend_req *req, struct smtp_host *h);

/* smtp_req_unqueue - off its host's queue, queue deadline off (REQ_QUEUED -> REQ_ACTIVE) */
void smtp_req_unqueue(struct backend_req *req);

/*
 * smtp_req_conclude - the verdict is known: schedule its delivery. The caller
 * has already detached any session; source names who decided.
 */
void smtp_req_conclude(struct backend_req *req, enum verdict_kind kind, int code,
                       const char *source, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * smtp_req_try - go to the current target (MX host or static host) and get a
 * session there; when every address has been tried (or max_addresses),
 * answer tempfail with the last failure.
 */
void smtp_req_try(struct backend_req *req);

/* --- destinations (smtp_host.c) ---------------------------------------- */

/* smtp_host_new - a destination on rt; NULL on out of memory */
struct smtp_host *smtp_host_new(struct smtp_route *rt, const char *name, unsigned port);

/* smtp_host_get - the destination (name, rt->port), made on first use; NULL on out of memory */
struct smtp_host *smtp_host_get(struct smtp_route *rt, const char *name);

/* smtp_host_free - free a destination and its sessions, without callbacks; QUIT idle ones */
void smtp_host_free(struct smtp_host *h);

/* smtp_host_maybe_free - forget an MX host nobody uses: no lookups, sessions or queue */
void smtp_host_maybe_free(struct smtp_host *h);

/*
 * smtp_host_acquire - get req a session at its host: a pooled one (RSET), a
 * new connection while under max_connections, else a place in the FIFO.
 */
void smtp_host_acquire(struct backend_req *req);

/* smtp_host_dispatch - serve queued lookups: pooled sessions first, then free slots */
void smtp_host_dispatch(struct smtp_host *h);

/* smtp_host_note_accept - h accepted a RCPT of ours just now */
void smtp_host_note_accept(struct smtp_host *h);

/* smtp_host_accepted_within - h accepted a RCPT of ours within the last ms milliseconds */
int smtp_host_accepted_within(const struct smtp_host *h, long long ms);

/* --- sessions (smtp_session.c) ----------------------------------------- */

/*
 * smtp_session_open - a new connection for req to its current address, taking
 * a slot at req->host. A connect that fails at once is reported from the
 * session's timer, like any other failure, so nothing recurses here.
 */
void smtp_session_open(struct backend_req *req);

/* smtp_session_take - a pooled session starts work for req: RSET, then MAIL, RCPT */
void smtp_session_take(struct smtp_session *s, struct backend_req *req);

/*
 * smtp_session_shut - drop the connection and its slot now and reap the
 * struct on the next loop pass (callers up the stack may still hold s). The
 * caller has detached s->req.
 */
void smtp_session_shut(struct smtp_session *s);

/* smtp_session_close - smtp_session_shut, then let a queued lookup have the slot */
void smtp_session_close(struct smtp_session *s);

/* smtp_session_free - unlink and free a session now (the reaper, and host teardown) */
void smtp_session_free(struct smtp_session *s);

/* smtp_tv_ms - a timeval in milliseconds, for logs and reason texts */
long smtp_tv_ms(const struct timeval *t);

#endif
