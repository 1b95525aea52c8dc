/*
 * backend_smtp.c - SMTP callouts: smtp:[host]:port, smtp:host:port and smtp:mx.
 *
 * Three kinds of object, each with one free path:
 *   struct smtp_route    per route (the backend state): options, the
 *                        destinations it has talked to, every lookup.
 *   struct smtp_host     one destination, keyed by (host name, port): the
 *                        connection limit, a FIFO of lookups waiting for a
 *                        slot, and a pool of idle sessions. A static route has
 *                        one; smtp:mx makes one per MX host it meets, so
 *                        limits and pools belong to the next hop, not to the
 *                        recipient's domain.
 *   struct smtp_session  one SMTP client connection, an explicit state
 *                        machine (enum session_state, session_enter_state)
 *                        with one deadline timer per step. After a RCPT reply
 *                        it does not QUIT but waits idle in its host's pool;
 *                        the next lookup for that host sends RSET, MAIL, RCPT
 *                        on it, until max_rcpts_per_session or idle_timeout.
 *   struct backend_req   one lookup: DNS (for names and MX), then a walk over
 *                        the next hops to try (RFC 5321 5.1: the next address
 *                        or MX on connect failure or a refused greeting), one
 *                        session at a time, then the verdict, delivered from a
 *                        deferred event so the callback never runs inside
 *                        lookup() or cancel().
 * A session is never freed under a caller's feet: closing drops the
 * connection at once and the struct is reaped from its timer on the next loop
 * pass. A session that saw a 421, a timeout, garbage or a disconnect is never
 * reused.
 *
 * Sharing one callout between lookups of one address, caching and answer
 * budgets are the verifier's job, above this backend.
 */
#include "backend_smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "dns.h"
#include "log.h"
#include "smtp_reply.h"

#define SMTP_DEFAULT_PORT 25
#define SMTP_READ_HIGHWATER 8192 /* read at most this much before the parser consumes it */
#define SMTP_HELO_MAX 255
#define SMTP_HOST_MAX (DNS_NAME_MAX + 3)
#define SMTP_MAX_CONNECTIONS_LIMIT 10000
#define SMTP_MAX_RCPTS_LIMIT 10000
#define SMTP_MAX_ADDRESSES_LIMIT (DNS_MAX_TARGETS * DNS_MAX_ADDRS)
#define SMTP_TIMEOUT_LIMIT_MS (3600 * 1000)
#define SMTP_DNS_TIMEOUT_MS 5000 /* a route's own resolver, when the verifier gives none */

enum session_state {
    SESSION_CONNECT = 0, /* TCP connect in progress */
    SESSION_GREETING,    /* waiting for 220 */
    SESSION_EHLO,        /* EHLO sent */
    SESSION_HELO,        /* HELO sent after EHLO was refused */
    SESSION_MAIL,        /* MAIL FROM sent */
    SESSION_RCPT,        /* RCPT TO sent */
    SESSION_RSET,        /* RSET sent on a pooled session, before the next MAIL FROM */
    SESSION_IDLE,        /* in the host's pool, no lookup */
    SESSION_QUIT,        /* QUIT sent, waiting for 221 or close */
    SESSION_CLOSED,      /* connection gone; the struct is reaped from the timer */
};
#define SESSION_STATE_COUNT 10

static const char *const session_state_names[SESSION_STATE_COUNT] = {
    "connect", "greeting", "ehlo", "helo", "mail", "rcpt", "rset", "idle", "quit", "closed",
};

/* what the step is called in a reason text */
static const char *const session_step_names[SESSION_STATE_COUNT] = {
    "connect", "greeting", "EHLO", "HELO", "MAIL FROM",
    "RCPT TO", "RSET",     "idle", "QUIT", "nothing",
};

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
};

enum route_mode {
    MODE_LITERAL, /* smtp:[192.0.2.1]:25: no DNS */
    MODE_NAME,    /* smtp:[mail.example.org]:25: A/AAAA per lookup */
    MODE_MX,      /* smtp:mx: MX of the recipient's domain per lookup */
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
    int reused;              /* req got this session from the pool */
    int connect_errno;       /* connect failed before it started: reported from the timer */
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
    struct dns_target *targets;     /* next hops in order; route->literal or owned */
    int ntargets;
    int ti, ai;        /* current target, address within it */
    int attempts;      /* new connections opened */
    int fresh_retried; /* an RSET failure already got its fresh connection */
    int want_fresh;    /* the next acquire must not take a pooled session */
    char last_error[VERDICT_TEXT_MAX];
    char rcpt[ADDRESS_MAX + 1];
    char domain[ADDRESS_DOMAIN_MAX + 1];
    backend_cb cb; /* NULL once delivered or cancelled */
    void *arg;
    struct verdict verdict;
    struct timeval started;
};

struct smtp_route {
    struct event_base *base;
    struct dns *dns;     /* the verifier's resolver, or own_dns */
    struct dns *own_dns; /* opened by us when the verifier gave none */
    enum route_mode mode;
    struct dns_target literal;       /* MODE_LITERAL: the address (port set) */
    struct smtp_host *static_host;   /* MODE_LITERAL, MODE_NAME */
    unsigned port;                   /* port to connect to */
    char source[VERDICT_SOURCE_MAX]; /* before a host is known: "smtp:mx" */
    char sender[ADDRESS_MAX + 1];    /* "" for the null sender */
    char helo[SMTP_HELO_MAX + 1];
    struct timeval timeout[SESSION_STATE_COUNT]; /* per session state */
    struct timeval queue_timeout;
    unsigned char invalid[100]; /* invalid[code - 500]: RCPT code means invalid */
    int max_connections;        /* per host */
    int reuse;
    int max_rcpts;
    int max_addresses; /* new connections per lookup, over all addresses and MX hosts */
    struct host_list hosts;
    struct req_list reqs;
    int in_callback; /* delivering a verdict: close is deferred */
    int closing;
};

static void session_close(struct smtp_session *s);
static void session_take(struct smtp_session *s, struct backend_req *req);
static void host_dispatch(struct smtp_host *h);
static void host_maybe_free(struct smtp_host *h);
static void req_try(struct backend_req *req);
static void route_free(struct smtp_route *rt);

static const struct timeval zero_tv = {0, 0};

static long tv_ms(const struct timeval *t)
{
    return (long)(t->tv_sec * 1000 + t->tv_usec / 1000);
}

/* --- lookups ------------------------------------------------------------ */

/* req_state_name - for logs */
static const char *req_state_name(enum req_state s)
{
    static const char *const names[] = {"resolve", "queued", "active", "done"};

    return (int)s >= 0 && s <= REQ_DONE ? names[s] : "invalid";
}

/* req_set_host - point req at h (taking a reference), releasing the old one */
static void req_set_host(struct backend_req *req, struct smtp_host *h)
{
    struct smtp_host *old = req->host;

    if (old == h)
        return;
    if (h != NULL)
        h->refs++;
    req->host = h;
    if (old != NULL) {
        old->refs--;
        host_maybe_free(old);
    }
}

/* req_unqueue - off the host's queue, queue deadline off */
static void req_unqueue(struct backend_req *req)
{
    if (req->state == REQ_QUEUED) {
        TAILQ_REMOVE(&req->host->queue, req, qlink);
        evtimer_del(req->timer);
        req->state = REQ_ACTIVE;
    }
}

/*
 * req_conclude - the verdict is known: schedule its delivery. The caller has
 * already detached any session; source names who decided.
 */
static void req_conclude(struct backend_req *req, enum verdict_kind kind, int code,
                         const char *source, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void req_conclude(struct backend_req *req, enum verdict_kind kind, int code,
                         const char *source, const char *fmt, ...)
{
    char text[VERDICT_TEXT_MAX];
    va_list ap;
    struct timeval now, el;

    if (req->state == REQ_DONE)
        return;
    req_unqueue(req);
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    verdict_set(&req->verdict, kind, code, source, text);
    req->state = REQ_DONE;
    evutil_gettimeofday(&now, NULL);
    evutil_timersub(&now, &req->started, &el);
    log_debug("callout %p rcpt=<%s> %s: verdict=%s code=%d ms=%ld text=%s", (void *)req, req->rcpt,
              req->verdict.source, verdict_kind_name(kind), code, tv_ms(&el), req->verdict.text);
    event_active(req->deliver, EV_TIMEOUT, 1);
}

/* req_source - who speaks for req now: its host, else the route ("smtp:mx") */
static const char *req_source(const struct backend_req *req)
{
    return req->host != NULL ? req->host->source : req->route->source;
}

/* req_free - free a lookup without its callback; an active session is dropped */
static void req_free(struct backend_req *req)
{
    struct smtp_route *rt = req->route;

    if (req->dnsq != NULL)
        dns_cancel(req->dnsq);
    req->dnsq = NULL;
    req_unqueue(req);
    if (req->session != NULL) {
        struct smtp_session *s = req->session;
        s->req = NULL;
        req->session = NULL;
        session_close(s); /* mid-transaction: it cannot be reused */
    }
    TAILQ_REMOVE(&rt->reqs, req, link);
    req_set_host(req, NULL);
    if (req->timer != NULL)
        event_free(req->timer);
    if (req->deliver != NULL)
        event_free(req->deliver);
    if (req->targets != &rt->literal)
        free(req->targets);
    free(req);
}

/*
 * req_deliver_cb - run the caller's callback, from the event loop, exactly
 * once; then free the lookup (its session, if any, has moved on).
 */
static void req_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct backend_req *req = arg;
    struct smtp_route *rt = req->route;
    backend_cb cb = req->cb;

    (void)fd;
    (void)what;
    req->cb = NULL;
    if (cb != NULL) {
        rt->in_callback++;
        cb(&req->verdict, req->arg);
        rt->in_callback--;
        if (rt->closing) {
            /* close() was called from the callback: it frees req too */
            if (rt->in_callback == 0)
                route_free(rt);
            return;
        }
    }
    req_free(req);
}

/* req_queue_timer_cb - no connection slot came free in time */
static void req_queue_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct backend_req *req = arg;

    (void)fd;
    (void)what;
    if (req->state != REQ_QUEUED)
        return;
    req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req),
                 "no free connection to next hop within %ldms (max_connections=%d)",
                 tv_ms(&req->route->queue_timeout), req->route->max_connections);
}

/* req_addr - the address req connects to next, with the port set */
static socklen_t req_addr(const struct backend_req *req, struct sockaddr_storage *ss)
{
    const struct dns_target *t = &req->targets[req->ti];

    *ss = t->addrs[req->ai];
    if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)req->host->port);
        return sizeof(struct sockaddr_in6);
    }
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)req->host->port);
    return sizeof(struct sockaddr_in);
}

/* --- sessions ----------------------------------------------------------- */

/* session_state_name - name of a state for logs */
static const char *session_state_name(enum session_state s)
{
    if ((int)s < 0 || s >= SESSION_STATE_COUNT)
        return "invalid";
    return session_state_names[s];
}

/*
 * session_enter_state - the one place the state changes: log it and re-arm
 * the step's deadline (for CLOSED: the reaper, on the next loop pass).
 */
static void session_enter_state(struct smtp_session *s, enum session_state st)
{
    struct smtp_route *rt = s->host->route;

    if ((int)st < 0 || st >= SESSION_STATE_COUNT) {
        log_err("smtp callout: bad session state %d", (int)st);
        st = SESSION_CLOSED;
    }
    log_debug("session %p %s rcpt=<%s>: %s -> %s", (void *)s, s->host->source,
              s->req != NULL ? s->req->rcpt : "", session_state_name(s->state),
              session_state_name(st));
    s->state = st;
    evtimer_add(s->timer, st == SESSION_CLOSED ? &zero_tv : &rt->timeout[st]);
}

/* session_send - queue one command line (CRLF added) on the connection */
static void session_send(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void session_send(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    struct evbuffer *out = bufferevent_get_output(s->bev);

    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

/* session_unpool - out of the idle pool */
static void session_unpool(struct smtp_session *s)
{
    if (s->in_pool) {
        TAILQ_REMOVE(&s->host->idle, s, ilink);
        s->in_pool = 0;
    }
}

/*
 * session_shut - drop the connection and its slot now and reap the struct on
 * the next loop pass (callers up the stack may still hold s). The caller has
 * detached s->req.
 */
static void session_shut(struct smtp_session *s)
{
    struct smtp_host *h = s->host;

    if (s->state == SESSION_CLOSED)
        return;
    session_unpool(s);
    if (s->bev != NULL) {
        bufferevent_free(s->bev);
        s->bev = NULL;
        h->nconn--;
    }
    session_enter_state(s, SESSION_CLOSED);
}

/* session_close - session_shut, then let a queued lookup have the slot */
static void session_close(struct smtp_session *s)
{
    session_shut(s);
    host_dispatch(s->host);
}

/* session_free - the reaper: unlink and free a closed session */
static void session_free(struct smtp_session *s)
{
    struct smtp_host *h = s->host;

    session_unpool(s);
    if (s->bev != NULL) {
        bufferevent_free(s->bev);
        h->nconn--;
    }
    TAILQ_REMOVE(&h->sessions, s, link);
    event_free(s->timer);
    smtp_reply_parser_free(s->parser);
    free(s);
}

/* session_quit - say QUIT and wait (briefly) for the reply or the close */
static void session_quit(struct smtp_session *s)
{
    session_unpool(s);
    session_send(s, "QUIT");
    session_enter_state(s, SESSION_QUIT);
}

/*
 * session_available - s is in sync with no lookup: a queued lookup gets it at
 * once (idle sessions count against max_connections, so a waiting lookup is
 * served by one rather than wait for a slot), else it waits in the pool.
 */
static void session_available(struct smtp_session *s)
{
    struct smtp_host *h = s->host;
    struct backend_req *req = TAILQ_FIRST(&h->queue);

    if (req != NULL && !req->want_fresh) {
        req_unqueue(req);
        session_take(s, req);
        return;
    }
    if (req != NULL) {
        /* the first in line wants a new connection: give it this one's slot */
        session_close(s);
        return;
    }
    TAILQ_INSERT_HEAD(&h->idle, s, ilink);
    s->in_pool = 1;
    session_enter_state(s, SESSION_IDLE);
}

/* session_release - s has no lookup any more: pool it, QUIT it or drop it */
static void session_release(struct smtp_session *s, enum session_end how)
{
    struct smtp_route *rt = s->host->route;

    if (s->bev == NULL || how == END_DROP) {
        session_close(s);
    } else if (how == END_KEEP && rt->reuse && s->nrcpt < rt->max_rcpts && !rt->closing) {
        session_available(s);
    } else {
        session_quit(s);
    }
}

/* session_detach - take the lookup off the session; returns it (or NULL) */
static struct backend_req *session_detach(struct smtp_session *s)
{
    struct backend_req *req = s->req;

    s->req = NULL;
    if (req != NULL)
        req->session = NULL;
    return req;
}

/* session_verdict - the RCPT reply decided: answer the lookup, then release s */
static void session_verdict(struct smtp_session *s, enum verdict_kind kind, int code,
                            enum session_end how, const char *text)
{
    struct backend_req *req = session_detach(s);

    if (req != NULL)
        req_conclude(req, kind, code, s->host->source, "%s", text);
    session_release(s, how);
}

/*
 * session_fail - s cannot go on for its lookup, for a reason that says
 * nothing about the address. Release s as told, then let the lookup try the
 * next address or MX host, or a fresh connection, or answer tempfail.
 */
static void session_fail(struct smtp_session *s, enum session_retry retry, enum session_end how,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void session_fail(struct smtp_session *s, enum session_retry retry, enum session_end how,
                         const char *fmt, ...)
{
    struct backend_req *req = session_detach(s);
    char text[VERDICT_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (req == NULL) {
        session_release(s, how == END_KEEP ? END_QUIT : how);
        return;
    }
    if (retry == RETRY_FRESH && s->reused && !req->fresh_retried) {
        log_debug("callout %p rcpt=<%s> %s: pooled session failed (%s): new connection",
                  (void *)req, req->rcpt, s->host->source, text);
        req->fresh_retried = 1;
        req->want_fresh = 1;
        session_release(s, how == END_KEEP ? END_QUIT : how);
        req_try(req);
        return;
    }
    if (retry == RETRY_NEXT) {
        log_debug("callout %p rcpt=<%s> %s: %s: trying the next address", (void *)req, req->rcpt,
                  s->host->source, text);
        snprintf(req->last_error, sizeof(req->last_error), "%s", text);
        session_release(s, how == END_KEEP ? END_QUIT : how);
        if (++req->ai >= req->targets[req->ti].naddrs) {
            req->ti++;
            req->ai = 0;
        }
        req_try(req);
        return;
    }
    req_conclude(req, VERDICT_TEMPFAIL, 0, s->host->source, "%s", text);
    session_release(s, how == END_KEEP ? END_QUIT : how);
}

/* session_reply - act on one complete reply */
static void session_reply(struct smtp_session *s, const struct smtp_reply *r)
{
    struct smtp_route *rt = s->host->route;
    const char *step = session_step_names[s->state];

    switch (s->state) {
    case SESSION_QUIT:
        session_close(s);
        return;
    case SESSION_IDLE:
        /* e.g. "421 timeout" before the next hop hangs up: never reuse it */
        log_debug("session %p %s: reply while idle: %d %s", (void *)s, s->host->source, r->code,
                  r->text);
        session_close(s);
        return;
    case SESSION_CONNECT:
    case SESSION_CLOSED:
        session_close(s);
        return;
    default:
        break;
    }
    if (s->req == NULL) { /* cannot happen: busy states have a lookup */
        session_close(s);
        return;
    }
    if (r->code == 421) {
        session_fail(s,
                     s->state == SESSION_GREETING ? RETRY_NEXT
                     : s->state == SESSION_RSET   ? RETRY_FRESH
                                                  : RETRY_NONE,
                     END_DROP, "next hop closing the session at %s: 421 %s", step, r->text);
        return;
    }
    switch (s->state) {
    case SESSION_GREETING:
        if (r->code != 220) {
            /* RFC 5321 3.1/5.1: a 4xx or 5xx greeting refuses the session, not the address */
            session_fail(s, RETRY_NEXT, END_QUIT, "next hop refused the session: %d %s", r->code,
                         r->text);
            return;
        }
        session_send(s, "EHLO %s", rt->helo);
        session_enter_state(s, SESSION_EHLO);
        return;
    case SESSION_EHLO:
        if (r->code / 100 == 5) {
            /* an old or minimal server: RFC 5321 4.1.4 says try HELO */
            session_send(s, "HELO %s", rt->helo);
            session_enter_state(s, SESSION_HELO);
            return;
        }
        /* fall through */
    case SESSION_HELO:
        if (r->code != 250) {
            session_fail(s, RETRY_NONE, END_QUIT, "next hop refused %s: %d %s", step, r->code,
                         r->text);
            return;
        }
        session_send(s, "MAIL FROM:<%s>", rt->sender);
        session_enter_state(s, SESSION_MAIL);
        return;
    case SESSION_RSET:
        if (r->code != 250) {
            session_fail(s, RETRY_FRESH, END_QUIT, "next hop refused RSET: %d %s", r->code,
                         r->text);
            return;
        }
        session_send(s, "MAIL FROM:<%s>", rt->sender);
        session_enter_state(s, SESSION_MAIL);
        return;
    case SESSION_MAIL:
        if (r->code != 250) {
            session_fail(s, RETRY_NONE, END_QUIT, "next hop refused MAIL FROM:<%s>: %d %s",
                         rt->sender, r->code, r->text);
            return;
        }
        session_send(s, "RCPT TO:<%s>", s->req->rcpt);
        s->nrcpt++;
        session_enter_state(s, SESSION_RCPT);
        return;
    case SESSION_RCPT: {
        /*
         * bytes after the RCPT reply were never asked for: pooled, they would
         * be read as the next lookup's replies. Such a session is not kept.
         */
        enum session_end keep =
            evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 ? END_DROP : END_KEEP;
        if (r->code == 250 || r->code == 251)
            session_verdict(s, VERDICT_VALID, r->code, keep, r->text);
        else if (r->code / 100 == 5 && rt->invalid[r->code - 500])
            session_verdict(s, VERDICT_INVALID, r->code, keep, r->text);
        else if (r->code / 100 == 5 || r->code / 100 == 4)
            session_verdict(s, VERDICT_TEMPFAIL, r->code, keep, r->text);
        else
            session_fail(s, RETRY_NONE, END_QUIT, "unexpected reply to RCPT TO: %d %s", r->code,
                         r->text);
        return;
    }
    default:
        session_fail(s, RETRY_NONE, END_DROP, "unexpected reply from next hop in state %s",
                     session_state_name(s->state));
        return;
    }
}

/* session_read_cb - parse what arrived; one reply at a time */
static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;

    /* s stays allocated until the loop runs again; s->bev says if it is still open */
    while (s->bev == bev && (n = evbuffer_get_length(in)) > 0) {
        struct smtp_reply reply;
        char err[128];
        size_t used = 0;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        enum smtp_reply_status st;

        if (data == NULL) {
            session_fail(s, RETRY_NONE, END_DROP, "out of memory reading from next hop");
            return;
        }
        st = smtp_reply_parse(s->parser, data, n, &used, &reply, err, sizeof(err));
        evbuffer_drain(in, used);
        if (st == SMTP_REPLY_NEED_MORE)
            return;
        if (st == SMTP_REPLY_ERROR) {
            session_fail(s,
                         s->state == SESSION_GREETING ? RETRY_NEXT
                         : s->state == SESSION_RSET   ? RETRY_FRESH
                                                      : RETRY_NONE,
                         END_DROP, "garbage reply from next hop at %s: %s",
                         session_step_names[s->state], err);
            return;
        }
        session_reply(s, &reply);
    }
}

/* session_event_cb - connected, or the connection ended */
static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    const char *step = session_step_names[s->state];

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        session_enter_state(s, SESSION_GREETING);
        return;
    }
    switch (s->state) {
    case SESSION_QUIT:
    case SESSION_CLOSED:
        session_close(s);
        return;
    case SESSION_IDLE:
        log_debug("session %p %s: next hop closed the idle session", (void *)s, s->host->source);
        session_close(s);
        return;
    case SESSION_CONNECT:
        session_fail(s, RETRY_NEXT, END_DROP, "cannot connect to next hop: %s",
                     evutil_socket_error_to_string(err));
        return;
    default:
        break;
    }
    if (what & BEV_EVENT_EOF)
        session_fail(s,
                     s->state == SESSION_GREETING ? RETRY_NEXT
                     : s->state == SESSION_RSET   ? RETRY_FRESH
                                                  : RETRY_NONE,
                     END_DROP, "next hop closed the connection before the %s reply", step);
    else
        session_fail(s,
                     s->state == SESSION_GREETING ? RETRY_NEXT
                     : s->state == SESSION_RSET   ? RETRY_FRESH
                                                  : RETRY_NONE,
                     END_DROP, "error talking to next hop at %s: %s", step,
                     evutil_socket_error_to_string(err));
}

/* session_timer_cb - the current step's deadline passed (or: reap, report a failed connect) */
static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    long ms = tv_ms(&s->host->route->timeout[s->state]);

    (void)fd;
    (void)what;
    switch (s->state) {
    case SESSION_CLOSED: {
        struct smtp_host *h = s->host;
        session_free(s);
        host_maybe_free(h);
        return;
    }
    case SESSION_QUIT:
        session_close(s);
        return;
    case SESSION_IDLE:
        log_debug("session %p %s: idle for %ldms: QUIT", (void *)s, s->host->source, ms);
        session_quit(s);
        return;
    case SESSION_CONNECT:
        if (s->connect_errno != 0)
            session_fail(s, RETRY_NEXT, END_DROP, "cannot connect to next hop: %s",
                         evutil_socket_error_to_string(s->connect_errno));
        else
            session_fail(s, RETRY_NEXT, END_DROP, "timeout after %ldms connecting to next hop", ms);
        return;
    default:
        session_fail(s,
                     s->state == SESSION_GREETING ? RETRY_NEXT
                     : s->state == SESSION_RSET   ? RETRY_FRESH
                                                  : RETRY_NONE,
                     END_DROP, "timeout after %ldms waiting for the %s reply from next hop", ms,
                     session_step_names[s->state]);
        return;
    }
}

/* session_take - a pooled session starts work for req: RSET, then MAIL, RCPT */
static void session_take(struct smtp_session *s, struct backend_req *req)
{
    session_unpool(s);
    s->req = req;
    s->reused = 1;
    req->session = s;
    req->state = REQ_ACTIVE;
    log_debug("callout %p rcpt=<%s> %s: reusing session %p (%d RCPTs so far)", (void *)req,
              req->rcpt, s->host->source, (void *)s, s->nrcpt);
    session_send(s, "RSET");
    session_enter_state(s, SESSION_RSET);
}

/*
 * session_open - a new connection for req to its current address, taking a
 * slot at req->host. A connect that fails at once is reported from the timer,
 * like any other failure, so nothing recurses here.
 */
static void session_open(struct backend_req *req)
{
    struct smtp_host *h = req->host;
    struct smtp_route *rt = h->route;
    struct smtp_session *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sslen;

    req->want_fresh = 0;
    req->attempts++;
    if (s == NULL || (s->timer = evtimer_new(rt->base, session_timer_cb, s)) == NULL ||
        (s->parser = smtp_reply_parser_new()) == NULL ||
        (s->bev = bufferevent_socket_new(rt->base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        if (s != NULL) {
            if (s->timer != NULL)
                event_free(s->timer);
            smtp_reply_parser_free(s->parser);
            free(s);
        }
        req_conclude(req, VERDICT_TEMPFAIL, 0, h->source, "cannot create a connection to next hop");
        return;
    }
    s->host = h;
    s->state = SESSION_CONNECT;
    TAILQ_INSERT_TAIL(&h->sessions, s, link);
    h->nconn++;
    s->req = req;
    req->session = s;
    req->state = REQ_ACTIVE;
    bufferevent_setcb(s->bev, session_read_cb, NULL, session_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_READ_HIGHWATER);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    sslen = req_addr(req, &ss);
    if (log_debug_enabled) {
        char text[INET6_ADDRSTRLEN];
        const void *a = ss.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        inet_ntop(ss.ss_family, a, text, sizeof(text));
        log_debug("callout %p rcpt=<%s> %s: connecting to %s (session %p)", (void *)req, req->rcpt,
                  h->source, text, (void *)s);
    }
    session_enter_state(s, SESSION_CONNECT);
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        s->connect_errno = EVUTIL_SOCKET_ERROR();
        if (s->connect_errno == 0)
            s->connect_errno = ECONNREFUSED;
        evtimer_add(s->timer, &zero_tv);
    }
}

/* --- destinations ------------------------------------------------------- */

/* host_new - a destination on rt; NULL on out of memory */
static struct smtp_host *host_new(struct smtp_route *rt, const char *name, unsigned port)
{
    struct smtp_host *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->route = rt;
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->port = port;
    snprintf(h->source, sizeof(h->source), "smtp:[%s]:%u", name, port);
    TAILQ_INIT(&h->sessions);
    TAILQ_INIT(&h->idle);
    TAILQ_INIT(&h->queue);
    TAILQ_INSERT_TAIL(&rt->hosts, h, link);
    return h;
}

/* host_get - the destination (name, rt->port), made on first use; NULL on out of memory */
static struct smtp_host *host_get(struct smtp_route *rt, const char *name)
{
    struct smtp_host *h;

    TAILQ_FOREACH(h, &rt->hosts, link)
    {
        if (strcasecmp(h->name, name) == 0 && h->port == rt->port)
            return h;
    }
    return host_new(rt, name, rt->port);
}

/* host_free - free a destination and its sessions, without callbacks; QUIT idle ones */
static void host_free(struct smtp_host *h)
{
    struct smtp_session *s;

    while ((s = TAILQ_FIRST(&h->sessions)) != NULL) {
        if (s->state == SESSION_IDLE && s->bev != NULL) {
            /*
             * a polite goodbye, best effort, never waited for: the output
             * evbuffer of a bufferevent cannot be drained by hand, and an idle
             * session has nothing queued, so write to the socket directly
             */
            ssize_t n = send(bufferevent_getfd(s->bev), "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;
        }
        session_free(s);
    }
    TAILQ_REMOVE(&h->route->hosts, h, link);
    free(h);
}

/* host_maybe_free - forget an MX host nobody uses: no lookups, sessions or queue */
static void host_maybe_free(struct smtp_host *h)
{
    if (h->permanent || h->refs > 0 || h->route->closing || !TAILQ_EMPTY(&h->sessions) ||
        !TAILQ_EMPTY(&h->queue))
        return;
    host_free(h);
}

/*
 * host_acquire - get req a session at its host: a pooled one (RSET), a new
 * connection while under max_connections, else a place in the FIFO.
 */
static void host_acquire(struct backend_req *req)
{
    struct smtp_host *h = req->host;
    struct smtp_route *rt = h->route;
    struct smtp_session *s = TAILQ_FIRST(&h->idle);

    if (s != NULL && !req->want_fresh) {
        session_take(s, req);
        return;
    }
    if (s != NULL && h->nconn >= rt->max_connections) {
        /* a fresh connection is wanted and only pooled ones hold the slots: drop one */
        session_shut(s);
    }
    if (h->nconn < rt->max_connections && TAILQ_EMPTY(&h->queue)) {
        session_open(req);
        return;
    }
    TAILQ_INSERT_TAIL(&h->queue, req, qlink);
    req->state = REQ_QUEUED;
    evtimer_add(req->timer, &rt->queue_timeout);
    log_debug("callout %p rcpt=<%s> %s: queued, %d connections open", (void *)req, req->rcpt,
              h->source, h->nconn);
}

/* host_dispatch - serve queued lookups: pooled sessions first, then free slots */
static void host_dispatch(struct smtp_host *h)
{
    struct smtp_route *rt = h->route;
    struct backend_req *req;

    while (!rt->closing && (req = TAILQ_FIRST(&h->queue)) != NULL) {
        struct smtp_session *s = TAILQ_FIRST(&h->idle);

        if (s != NULL && !req->want_fresh) {
            req_unqueue(req);
            session_take(s, req);
        } else if (h->nconn < rt->max_connections) {
            req_unqueue(req);
            session_open(req);
        } else if (s != NULL) {
            session_shut(s); /* wants a fresh connection: a pooled one yields its slot */
        } else {
            break;
        }
    }
}

/*
 * req_try - go to the current target (MX host or static host) and get a
 * session there; when every address has been tried (or max_addresses), answer
 * tempfail with the last failure.
 */
static void req_try(struct backend_req *req)
{
    struct smtp_route *rt = req->route;
    struct smtp_host *h;

    if (req->state == REQ_DONE)
        return;
    /* skip hosts without addresses (dns.h promises none, but be safe) */
    while (req->ti < req->ntargets && req->targets[req->ti].naddrs <= 0)
        req->ti++;
    if (req->ti >= req->ntargets || (req->attempts >= rt->max_addresses && !req->want_fresh)) {
        req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req), "%s",
                     req->last_error[0] != '\0' ? req->last_error : "no next hop to try");
        return;
    }
    if (rt->static_host != NULL)
        h = rt->static_host;
    else
        h = host_get(rt, req->targets[req->ti].host);
    if (h == NULL) {
        req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req), "out of memory");
        return;
    }
    req_set_host(req, h);
    host_acquire(req);
}

/*
 * req_dns_cb - the next hops of req are known (or not). For smtp:mx a domain
 * that does not exist or publishes a null MX cannot receive mail at all, so
 * every address in it is invalid (550 5.1.2, what Postfix says for a
 * recipient domain that is not found). A static next hop whose name does not
 * resolve is our configuration problem, not the recipient's: tempfail.
 */
static void req_dns_cb(int status, const struct dns_target *targets, int ntargets,
                       const char *errmsg, void *arg)
{
    struct backend_req *req = arg;
    struct smtp_route *rt = req->route;
    int mx = rt->mode == MODE_MX;
    const char *what = mx ? req->domain : rt->static_host->name;

    req->dnsq = NULL;
    if (status == DNS_OK && ntargets > 0 && targets != NULL) {
        if (ntargets > DNS_MAX_TARGETS)
            ntargets = DNS_MAX_TARGETS;
        req->targets = calloc((size_t)ntargets, sizeof(*targets));
        if (req->targets == NULL) {
            req_conclude(req, VERDICT_TEMPFAIL, 0, rt->source, "out of memory");
            return;
        }
        memcpy(req->targets, targets, (size_t)ntargets * sizeof(*targets));
        req->ntargets = ntargets;
        for (int i = 0; i < ntargets; i++) {
            struct dns_target *t = &req->targets[i];
            int n = 0;

            /* keep only addresses we can connect to; a bad count leaves none */
            t->host[sizeof(t->host) - 1] = '\0';
            if (t->naddrs < 0 || t->naddrs > DNS_MAX_ADDRS)
                t->naddrs = 0;
            for (int j = 0; j < t->naddrs; j++)
                if (t->addrs[j].ss_family == AF_INET || t->addrs[j].ss_family == AF_INET6)
                    t->addrs[n++] = t->addrs[j];
            t->naddrs = n;
        }
        req_try(req);
        return;
    }
    if (mx && (status == DNS_NXDOMAIN || status == DNS_NOMAIL)) {
        req_conclude(req, VERDICT_INVALID, 550, rt->source, "5.1.2 domain has no mail server");
        return;
    }
    req_conclude(req, VERDICT_TEMPFAIL, 0, rt->source, "DNS lookup of %s failed: %s: %s", what,
                 dns_status_name(status), errmsg != NULL ? errmsg : "");
}

/* --- options and route arguments ---------------------------------------- */

/* parse_duration - a route option's duration (value_parse_duration, at most an hour) into tv */
static int parse_duration(const char *s, struct timeval *tv)
{
    long long ms;

    if (value_parse_duration(s, VALUE_SECONDS, 1, SMTP_TIMEOUT_LIMIT_MS, &ms) != VALUE_OK)
        return -1;
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return 0;
}

/* parse_invalid_codes - "550,551,553", "55x", "5xx" into the invalid[] table */
static int parse_invalid_codes(const char *s, unsigned char invalid[100])
{
    const char *p = s;

    memset(invalid, 0, 100);
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        const char *q = p;
        size_t len;

        while (*q != '\0' && *q != ',')
            q++;
        len = (size_t)(q - p);
        /* only 5xx can mean invalid: a 4xx must never become a permanent reject */
        if (len != 3 || p[0] != '5' || !((p[1] >= '0' && p[1] <= '9') || p[1] == 'x') ||
            !((p[2] >= '0' && p[2] <= '9') || p[2] == 'x'))
            return -1;
        for (int code = 0; code < 100; code++) {
            if ((p[1] == 'x' || code / 10 == p[1] - '0') &&
                (p[2] == 'x' || code % 10 == p[2] - '0'))
                invalid[code] = 1;
        }
        p = *q == ',' ? q + 1 : q;
        if (*q == ',' && *p == '\0')
            return -1;
    }
    return 0;
}

/* parse_sender - sender= value: "", "<>", "user@dom", "<user@dom>"; no spaces or controls */
static int parse_sender(const char *s, char *out, size_t size)
{
    size_t len = strlen(s);

    if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
        s++;
        len -= 2;
    }
    if (len > ADDRESS_MAX || len >= size)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '>')
            return -1;
    }
    if (len > 0 && memchr(s, '@', len) == NULL)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* valid_helo - a host name or an address literal, nothing that could break the command line */
static int valid_helo(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > SMTP_HELO_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == '[' || ch == ']' || ch == ':'))
            return 0;
    }
    return 1;
}

/* valid_hostname - dot-separated labels of 1..63 letters, digits, '-', '_'; no '-' at an end */
static int valid_hostname(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || (ch == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return s[len - 1] != '-';
}

/*
 * parse_next_hop - route argument into rt->mode, rt->port and the static
 * host's name (an address literal is normalised: "[IPv6:0:0::1]" -> "::1").
 * "mx", "[1.2.3.4]:25", "1.2.3.4:25", "[::1]:25", "[ipv6:::1]", "1.2.3.4",
 * "[mail.example.org]:2525", "mail.example.org".
 */
static int parse_next_hop(const char *arg, struct smtp_route *rt, char *name, size_t namelen,
                          char *err, size_t errlen)
{
    char host[SMTP_HOST_MAX];
    const char *port_s = NULL;
    unsigned long port = SMTP_DEFAULT_PORT;
    size_t hlen;
    struct sockaddr_in *sin = (struct sockaddr_in *)&rt->literal.addrs[0];
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&rt->literal.addrs[0];
    const char *h;

    if (arg == NULL || *arg == '\0') {
        snprintf(err, errlen, "smtp: needs a next hop, e.g. smtp:[192.0.2.1]:25 or smtp:mx");
        return -1;
    }
    if (strcmp(arg, "mx") == 0) {
        rt->mode = MODE_MX;
        return 0;
    }
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL) {
            snprintf(err, errlen, "smtp:%s: missing ']'", arg);
            return -1;
        }
        hlen = (size_t)(close - arg - 1);
        if (hlen >= sizeof(host))
            goto bad_host;
        memcpy(host, arg + 1, hlen);
        host[hlen] = '\0';
        if (close[1] == ':')
            port_s = close + 2;
        else if (close[1] != '\0')
            goto bad_syntax;
    } else {
        const char *colon = strchr(arg, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            snprintf(err, errlen, "smtp:%s: write an IPv6 address in brackets: [addr]:port", arg);
            return -1;
        }
        hlen = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
        if (hlen >= sizeof(host))
            goto bad_host;
        memcpy(host, arg, hlen);
        host[hlen] = '\0';
        if (colon != NULL)
            port_s = colon + 1;
    }
    if (port_s != NULL) {
        char *end;
        if (*port_s < '0' || *port_s > '9')
            goto bad_syntax;
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (errno != 0 || *end != '\0' || port == 0 || port > 65535) {
            snprintf(err, errlen, "smtp:%s: bad port", arg);
            return -1;
        }
    }
    rt->port = (unsigned)port;
    h = host;
    if (strncasecmp(h, "ipv6:", 5) == 0)
        h += 5;
    memset(&rt->literal, 0, sizeof(rt->literal));
    if (h == host && inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        inet_ntop(AF_INET, &sin->sin_addr, name, (socklen_t)namelen);
        rt->mode = MODE_LITERAL;
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        inet_ntop(AF_INET6, &sin6->sin6_addr, name, (socklen_t)namelen);
        rt->mode = MODE_LITERAL;
    } else if (h == host && valid_hostname(h)) {
        snprintf(name, namelen, "%s", h);
        rt->mode = MODE_NAME;
        return 0;
    } else {
        goto bad_host;
    }
    rt->literal.naddrs = 1;
    snprintf(rt->literal.host, sizeof(rt->literal.host), "%s", name);
    return 0;

bad_host:
    snprintf(err, errlen, "smtp:%s: bad host: expected an IPv4 address, [IPv6 address] or name",
             arg);
    return -1;
bad_syntax:
    snprintf(err, errlen, "smtp:%s: expected [host]:port or host:port", arg);
    return -1;
}

/* parse_options - every route option into rt; -1 + err on the first bad one */
static int parse_options(const struct route *r, struct smtp_route *rt, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum session_state state;
        const char *def; /* NULL: command_timeout */
    } timeouts[] = {
        {"connect_timeout", SESSION_CONNECT, "5s"}, {"greeting_timeout", SESSION_GREETING, "10s"},
        {"ehlo_timeout", SESSION_EHLO, NULL},       {"ehlo_timeout", SESSION_HELO, NULL},
        {"mail_timeout", SESSION_MAIL, NULL},       {"rcpt_timeout", SESSION_RCPT, NULL},
        {"rset_timeout", SESSION_RSET, NULL},       {"idle_timeout", SESSION_IDLE, "5s"},
        {"quit_timeout", SESSION_QUIT, "2s"},
    };
    static const struct {
        const char *name;
        const char *def;
        int max;
        size_t off;
    } counts[] = {
        {"max_connections", "20", SMTP_MAX_CONNECTIONS_LIMIT,
         offsetof(struct smtp_route, max_connections)},
        /* 8: below Postfix's smtpd_soft_error_limit (10), past which a next hop that is
         * Postfix delays every reply by a second once our probes were rejected */
        {"max_rcpts_per_session", "8", SMTP_MAX_RCPTS_LIMIT,
         offsetof(struct smtp_route, max_rcpts)},
        {"max_addresses", "5", SMTP_MAX_ADDRESSES_LIMIT,
         offsetof(struct smtp_route, max_addresses)},
    };
    struct timeval tv;
    const char *v;
    const char *command_timeout = route_option(r, "command_timeout", "10s");

    if (parse_duration(command_timeout, &tv) < 0) {
        snprintf(err, errlen, "command_timeout=%s: expected seconds, e.g. 10s or 500ms",
                 command_timeout);
        return -1;
    }
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        v = route_option(r, timeouts[i].name, timeouts[i].def ? timeouts[i].def : command_timeout);
        if (parse_duration(v, &rt->timeout[timeouts[i].state]) < 0) {
            snprintf(err, errlen, "%s=%s: expected seconds, e.g. 10s or 500ms", timeouts[i].name,
                     v);
            return -1;
        }
    }
    rt->timeout[SESSION_CLOSED] = zero_tv; /* the reaper runs on the next loop pass */
    v = route_option(r, "queue_timeout", "10s");
    if (parse_duration(v, &rt->queue_timeout) < 0) {
        snprintf(err, errlen, "queue_timeout=%s: expected seconds, e.g. 10s or 500ms", v);
        return -1;
    }
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        v = route_option(r, counts[i].name, counts[i].def);
        long long n;
        if (value_parse_count(v, 1, counts[i].max, &n) != VALUE_OK) {
            snprintf(err, errlen, "%s=%s: expected 1..%d", counts[i].name, v, counts[i].max);
            return -1;
        }
        *(int *)((char *)rt + counts[i].off) = (int)n;
    }
    v = route_option(r, "reuse", "yes");
    if (value_parse_bool(v, &rt->reuse) != VALUE_OK) {
        snprintf(err, errlen, "reuse=%s: expected yes or no", v);
        return -1;
    }
    v = route_option(r, "port", NULL);
    if (v != NULL) {
        long long port;
        if (rt->mode != MODE_MX) {
            snprintf(err, errlen, "port=%s: only for smtp:mx; write smtp:[host]:port", v);
            return -1;
        }
        if (value_parse_count(v, 1, 65535, &port) != VALUE_OK) {
            snprintf(err, errlen, "port=%s: expected 1..65535", v);
            return -1;
        }
        rt->port = (unsigned)port;
    }
    v = route_option(r, "sender", "");
    if (parse_sender(v, rt->sender, sizeof(rt->sender)) < 0) {
        snprintf(err, errlen,
                 "sender=%s: expected an address like postmaster@example.org, or empty", v);
        return -1;
    }
    v = route_option(r, "helo_name", NULL);
    if (v == NULL) {
        if (gethostname(rt->helo, sizeof(rt->helo)) < 0 ||
            (rt->helo[sizeof(rt->helo) - 1] = '\0', !valid_helo(rt->helo)))
            snprintf(rt->helo, sizeof(rt->helo), "localhost");
    } else if (!valid_helo(v)) {
        snprintf(err, errlen, "helo_name=%s: expected a host name", v);
        return -1;
    } else {
        snprintf(rt->helo, sizeof(rt->helo), "%s", v);
    }
    v = route_option(r, "invalid_codes", "5xx");
    if (parse_invalid_codes(v, rt->invalid) < 0) {
        snprintf(err, errlen, "invalid_codes=%s: expected 5xx codes like 550,551,553 or 55x", v);
        return -1;
    }
    return 0;
}

/* --- the backend interface ---------------------------------------------- */

/* smtp_open - per-route state: next hop, options, resolver */
static void *smtp_open(const struct backend_env *env, const struct route *r, char *err,
                       size_t errlen)
{
    struct smtp_route *rt = calloc(1, sizeof(*rt));
    char name[SMTP_HOST_MAX] = "";

    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->base = env->base;
    rt->port = SMTP_DEFAULT_PORT;
    TAILQ_INIT(&rt->hosts);
    TAILQ_INIT(&rt->reqs);
    if (parse_next_hop(r->arg, rt, name, sizeof(name), err, errlen) < 0 ||
        parse_options(r, rt, err, errlen) < 0)
        goto fail;
    if (rt->mode == MODE_MX) {
        snprintf(rt->source, sizeof(rt->source), "smtp:mx");
    } else {
        rt->static_host = host_new(rt, name, rt->port);
        if (rt->static_host == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        rt->static_host->permanent = 1;
        snprintf(rt->source, sizeof(rt->source), "%s", rt->static_host->source);
    }
    if (rt->mode != MODE_LITERAL) {
        rt->dns = env->dns;
        if (rt->dns == NULL) {
            /* no shared resolver: our own, from /etc/resolv.conf */
            char derr[200];
            rt->own_dns = dns_new(env->base, NULL, SMTP_DNS_TIMEOUT_MS, derr, sizeof(derr));
            if (rt->own_dns == NULL) {
                snprintf(err, errlen, "smtp:%s: no DNS resolver: %s", r->arg, derr);
                goto fail;
            }
            rt->dns = rt->own_dns;
        }
    }
    return rt;

fail:
    rt->closing = 1;
    route_free(rt);
    return NULL;
}

/* valid_rcpt - nothing in the address may end or split the RCPT command line */
static int valid_rcpt(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return 1;
}

/* smtp_lookup - start a callout for addr: resolve if needed, then a session or the queue */
static enum backend_status smtp_lookup(void *state, const struct address *addr, struct verdict *out,
                                       backend_cb cb, void *arg, struct backend_req **req_out)
{
    struct smtp_route *rt = state;
    struct backend_req *req;

    *req_out = NULL;
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        verdict_set(out, VERDICT_TEMPFAIL, 0, rt->source, "out of memory");
        return BACKEND_ERROR;
    }
    if (addr->is_null || address_format(addr, req->rcpt, sizeof(req->rcpt)) < 0 ||
        !valid_rcpt(req->rcpt)) {
        free(req);
        verdict_set(out, VERDICT_TEMPFAIL, 0, rt->source, "address cannot be verified by callout");
        return BACKEND_ERROR;
    }
    snprintf(req->domain, sizeof(req->domain), "%s", addr->domain);
    req->route = rt;
    req->cb = cb;
    req->arg = arg;
    req->state = REQ_RESOLVE;
    evutil_gettimeofday(&req->started, NULL);
    req->timer = evtimer_new(rt->base, req_queue_timer_cb, req);
    req->deliver = event_new(rt->base, -1, 0, req_deliver_cb, req);
    if (req->timer == NULL || req->deliver == NULL) {
        if (req->timer != NULL)
            event_free(req->timer);
        if (req->deliver != NULL)
            event_free(req->deliver);
        free(req);
        verdict_set(out, VERDICT_TEMPFAIL, 0, rt->source, "out of memory");
        return BACKEND_ERROR;
    }
    TAILQ_INSERT_TAIL(&rt->reqs, req, link);
    *req_out = req;
    switch (rt->mode) {
    case MODE_LITERAL:
        req->targets = &rt->literal;
        req->ntargets = 1;
        req_try(req);
        break;
    case MODE_NAME:
        req_set_host(req, rt->static_host);
        req->dnsq = dns_host_lookup(rt->dns, rt->static_host->name, req_dns_cb, req);
        break;
    case MODE_MX:
        req->dnsq = dns_mx_lookup(rt->dns, req->domain, req_dns_cb, req);
        break;
    }
    if (rt->mode != MODE_LITERAL && req->dnsq == NULL) {
        req->cb = NULL;
        req_free(req);
        *req_out = NULL;
        verdict_set(out, VERDICT_TEMPFAIL, 0, rt->source, "out of memory");
        return BACKEND_ERROR;
    }
    log_debug("callout %p rcpt=<%s> %s: started (%s)", (void *)req, req->rcpt, rt->source,
              req_state_name(req->state));
    return BACKEND_PENDING;
}

/* smtp_cancel - the callback will not run; a session in mid-transaction is dropped at once */
static void smtp_cancel(struct backend_req *req)
{
    if (req == NULL)
        return;
    req->cb = NULL;
    req_free(req);
}

/* route_free - free the route state, every lookup (no callbacks) and every session */
static void route_free(struct smtp_route *rt)
{
    struct backend_req *req;
    struct smtp_host *h;

    rt->closing = 1; /* no dispatch, pooling or host freeing while tearing down */
    while ((req = TAILQ_FIRST(&rt->reqs)) != NULL) {
        req->cb = NULL;
        req_free(req);
    }
    while ((h = TAILQ_FIRST(&rt->hosts)) != NULL)
        host_free(h);
    if (rt->own_dns != NULL)
        dns_free(rt->own_dns);
    free(rt);
}

/* smtp_close - free the route state; deferred when called from inside a callback */
static void smtp_close(void *state)
{
    struct smtp_route *rt = state;

    if (rt == NULL)
        return;
    if (rt->in_callback > 0) {
        rt->closing = 1;
        return;
    }
    route_free(rt);
}

/* smtp_options - the route options parse_options reads (docs/ROUTES.md); durations in ms */
static const struct value_decl smtp_options[] = {
    {"connect_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"greeting_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"command_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"ehlo_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"mail_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"rcpt_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"rset_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"idle_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"quit_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"queue_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"max_connections", VALUE_COUNT, 1, SMTP_MAX_CONNECTIONS_LIMIT},
    {"max_rcpts_per_session", VALUE_COUNT, 1, SMTP_MAX_RCPTS_LIMIT},
    {"max_addresses", VALUE_COUNT, 1, SMTP_MAX_ADDRESSES_LIMIT},
    {"reuse", VALUE_BOOL, 0, 1},
    {"port", VALUE_COUNT, 1, 65535},
    {"sender", VALUE_TEXT, 0, 0},
    {"helo_name", VALUE_TEXT, 0, 0},
    {"invalid_codes", VALUE_TEXT, 0, 0},
    {NULL, 0, 0, 0},
};

const struct backend_ops backend_smtp_ops = {
    .name = "smtp",
    .open = smtp_open,
    .lookup = smtp_lookup,
    .cancel = smtp_cancel,
    .close = smtp_close,
    .options = smtp_options,
};
