/*
 * backend_smtp.c - SMTP callouts to a static next hop (smtp:[host]:port).
 *
 * One struct backend_req per lookup, an SMTP client session driven by a
 * bufferevent: an explicit state (enum callout_state, names in
 * callout_state_name), one deadline timer re-armed by callout_enter_state
 * for every step, one function per event (read, connection event, timer,
 * deferred delivery). The verdict is delivered from a deferred event, so the
 * callback never runs inside lookup() or cancel(); after the verdict the
 * session QUITs in the background and the struct frees itself when the
 * connection has closed. Per route (struct smtp_dest): the address, the
 * options, a count of open connections and a FIFO of lookups waiting for a
 * connection slot.
 *
 * Sharing one callout between lookups of one address, caching and answer
 * budgets are the verifier's job, above this backend.
 */
#include "backend_smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
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

#include "log.h"
#include "smtp_reply.h"

#define SMTP_DEFAULT_PORT 25
#define SMTP_READ_HIGHWATER 8192 /* read at most this much before the parser consumes it */
#define SMTP_HELO_MAX 255
#define SMTP_MAX_CONNECTIONS_LIMIT 10000
#define SMTP_TIMEOUT_LIMIT_MS (3600 * 1000)

enum callout_state {
    CALLOUT_QUEUED = 0, /* waiting for a connection slot */
    CALLOUT_CONNECT,    /* TCP connect in progress */
    CALLOUT_GREETING,   /* waiting for 220 */
    CALLOUT_EHLO,       /* EHLO sent */
    CALLOUT_HELO,       /* HELO sent after EHLO was refused */
    CALLOUT_MAIL,       /* MAIL FROM sent */
    CALLOUT_RCPT,       /* RCPT TO sent */
    CALLOUT_QUIT,       /* verdict known; QUIT sent, waiting for 221 or close */
    CALLOUT_CLOSED,     /* no connection; verdict waiting for delivery */
};
#define CALLOUT_STATE_COUNT 9

static const char *const callout_state_names[CALLOUT_STATE_COUNT] = {
    "queued", "connect", "greeting", "ehlo", "helo", "mail", "rcpt", "quit", "closed",
};

/* what the step is called in a reason text */
static const char *const callout_step_names[CALLOUT_STATE_COUNT] = {
    "a connection slot", "connect", "greeting", "EHLO",    "HELO",
    "MAIL FROM",         "RCPT TO", "QUIT",     "nothing",
};

struct smtp_dest;

struct backend_req {
    struct smtp_dest *dest;
    enum callout_state state;
    TAILQ_ENTRY(backend_req) link;
    int queued;              /* on dest->queue, else on dest->callouts */
    struct bufferevent *bev; /* NULL when not connected */
    struct event *timer;     /* deadline of the current step */
    struct event *deliver;   /* deferred delivery of the verdict */
    struct smtp_reply_parser *parser;
    char rcpt[ADDRESS_MAX + 1];
    backend_cb cb; /* NULL once delivered or cancelled */
    void *arg;
    struct verdict verdict;
    int have_verdict;
    int delivered;
    struct timeval started;
};

TAILQ_HEAD(callout_list, backend_req);

struct smtp_dest {
    struct event_base *base;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char source[VERDICT_SOURCE_MAX]; /* "smtp:[127.0.0.1]:25" */
    char sender[ADDRESS_MAX + 1];    /* "" for the null sender */
    char helo[SMTP_HELO_MAX + 1];
    struct timeval timeout[CALLOUT_STATE_COUNT]; /* per state; quit and queue included */
    unsigned char invalid[100];                  /* invalid[code - 500]: RCPT code means invalid */
    int max_connections;
    int nconn;                    /* open connections (connect .. quit) */
    struct callout_list queue;    /* waiting for a slot, FIFO */
    struct callout_list callouts; /* all others */
    int in_callback;              /* delivering a verdict: close is deferred */
    int closing;
};

static void callout_release(struct backend_req *c);
static void callout_free(struct backend_req *c);

/* callout_state_name - name of a state for logs */
static const char *callout_state_name(enum callout_state s)
{
    if ((int)s < 0 || s >= CALLOUT_STATE_COUNT)
        return "invalid";
    return callout_state_names[s];
}

/* callout_enter_state - the one place the state changes: log it, re-arm the step deadline */
static void callout_enter_state(struct backend_req *c, enum callout_state s)
{
    if ((int)s < 0 || s >= CALLOUT_STATE_COUNT) {
        log_err("smtp callout: bad state %d", (int)s);
        s = CALLOUT_CLOSED;
    }
    log_debug("callout %p rcpt=<%s> %s: %s -> %s", (void *)c, c->rcpt, c->dest->source,
              callout_state_name(c->state), callout_state_name(s));
    c->state = s;
    if (s == CALLOUT_CLOSED)
        evtimer_del(c->timer);
    else
        evtimer_add(c->timer, &c->dest->timeout[s]);
}

/* callout_send - queue one command line (CRLF added) on the connection */
static void callout_send(struct backend_req *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void callout_send(struct backend_req *c, const char *fmt, ...)
{
    va_list ap;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

/* dest_dispatch - start queued lookups while connection slots are free */
static void dest_dispatch(struct smtp_dest *d);

/*
 * callout_close_conn - drop the connection (if any) and its slot, then let a
 * queued lookup have the slot. The struct lives on until the verdict has been
 * delivered.
 */
static void callout_close_conn(struct backend_req *c)
{
    struct smtp_dest *d = c->dest;

    callout_enter_state(c, CALLOUT_CLOSED);
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        d->nconn--;
        dest_dispatch(d);
    }
    /* never free here: callers up the stack still hold c; the deliver event frees it */
    if (c->delivered)
        event_active(c->deliver, EV_TIMEOUT, 1);
}

/*
 * callout_conclude - the verdict is known (the first one counts): schedule
 * its delivery, then either QUIT politely (the session is still in sync) or
 * drop the connection at once (timeout, garbage, 421, disconnect).
 */
static void callout_conclude(struct backend_req *c, enum verdict_kind kind, int code, int polite,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void callout_conclude(struct backend_req *c, enum verdict_kind kind, int code, int polite,
                             const char *fmt, ...)
{
    if (!c->have_verdict) {
        char text[VERDICT_TEXT_MAX];
        va_list ap;
        struct timeval now, el;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        verdict_set(&c->verdict, kind, code, c->dest->source, text);
        c->have_verdict = 1;
        evutil_gettimeofday(&now, NULL);
        evutil_timersub(&now, &c->started, &el);
        log_debug("callout %p rcpt=<%s> %s: verdict=%s code=%d ms=%ld text=%s", (void *)c, c->rcpt,
                  c->dest->source, verdict_kind_name(kind), code,
                  (long)(el.tv_sec * 1000 + el.tv_usec / 1000), c->verdict.text);
        event_active(c->deliver, EV_TIMEOUT, 1);
    }
    if (polite && c->bev != NULL && c->state != CALLOUT_QUIT) {
        callout_send(c, "QUIT");
        callout_enter_state(c, CALLOUT_QUIT);
    } else {
        callout_close_conn(c);
    }
}

/* callout_reply - act on one complete reply; the session may end here */
static void callout_reply(struct backend_req *c, const struct smtp_reply *r)
{
    struct smtp_dest *d = c->dest;
    const char *step = callout_step_names[c->state];

    if (c->state == CALLOUT_QUIT) {
        callout_close_conn(c);
        return;
    }
    if (r->code == 421) {
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "next hop closing the session at %s: 421 %s",
                         step, r->text);
        return;
    }
    switch (c->state) {
    case CALLOUT_GREETING:
        if (r->code != 220) {
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 1, "next hop refused the session: %d %s",
                             r->code, r->text);
            return;
        }
        callout_send(c, "EHLO %s", d->helo);
        callout_enter_state(c, CALLOUT_EHLO);
        return;
    case CALLOUT_EHLO:
        if (r->code / 100 == 5) {
            /* an old or minimal server: RFC 5321 4.1.4 says try HELO */
            callout_send(c, "HELO %s", d->helo);
            callout_enter_state(c, CALLOUT_HELO);
            return;
        }
        /* fall through */
    case CALLOUT_HELO:
        if (r->code != 250) {
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 1, "next hop refused %s: %d %s", step, r->code,
                             r->text);
            return;
        }
        callout_send(c, "MAIL FROM:<%s>", d->sender);
        callout_enter_state(c, CALLOUT_MAIL);
        return;
    case CALLOUT_MAIL:
        if (r->code != 250) {
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 1, "next hop refused MAIL FROM:<%s>: %d %s",
                             d->sender, r->code, r->text);
            return;
        }
        callout_send(c, "RCPT TO:<%s>", c->rcpt);
        callout_enter_state(c, CALLOUT_RCPT);
        return;
    case CALLOUT_RCPT:
        if (r->code == 250 || r->code == 251)
            callout_conclude(c, VERDICT_VALID, r->code, 1, "%s", r->text);
        else if (r->code / 100 == 5 && d->invalid[r->code - 500])
            callout_conclude(c, VERDICT_INVALID, r->code, 1, "%s", r->text);
        else if (r->code / 100 == 5 || r->code / 100 == 4)
            callout_conclude(c, VERDICT_TEMPFAIL, r->code, 1, "%s", r->text);
        else
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 1, "unexpected reply to RCPT TO: %d %s",
                             r->code, r->text);
        return;
    default:
        /* data while connecting or closed cannot happen; be safe anyway */
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "unexpected reply from next hop in state %s",
                         callout_state_name(c->state));
        return;
    }
}

/* callout_read_cb - parse what arrived; one reply at a time */
static void callout_read_cb(struct bufferevent *bev, void *arg)
{
    struct backend_req *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;

    while (c->bev == bev && (n = evbuffer_get_length(in)) > 0) {
        struct smtp_reply reply;
        char err[128];
        size_t used = 0;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        enum smtp_reply_status st;

        if (data == NULL) {
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "out of memory reading from next hop");
            return;
        }
        st = smtp_reply_parse(c->parser, data, n, &used, &reply, err, sizeof(err));
        evbuffer_drain(in, used);
        if (st == SMTP_REPLY_NEED_MORE)
            return;
        if (st == SMTP_REPLY_ERROR) {
            if (c->state == CALLOUT_QUIT) {
                callout_close_conn(c);
                return;
            }
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "garbage reply from next hop at %s: %s",
                             callout_step_names[c->state], err);
            return;
        }
        /* c stays allocated until the loop runs again; c->bev says if it is still open */
        callout_reply(c, &reply);
    }
}

/* callout_event_cb - connected, or the connection ended */
static void callout_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct backend_req *c = arg;
    int err = EVUTIL_SOCKET_ERROR();

    if (what & BEV_EVENT_CONNECTED) {
        callout_enter_state(c, CALLOUT_GREETING);
        return;
    }
    if (c->state == CALLOUT_QUIT) {
        callout_close_conn(c);
        return;
    }
    if (c->state == CALLOUT_CONNECT)
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "cannot connect to next hop: %s",
                         evutil_socket_error_to_string(err));
    else if (what & BEV_EVENT_EOF)
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0,
                         "next hop closed the connection before the %s reply",
                         callout_step_names[c->state]);
    else
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "error talking to next hop at %s: %s",
                         callout_step_names[c->state], evutil_socket_error_to_string(err));
}

/* callout_timer_cb - the current step's deadline passed */
static void callout_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct backend_req *c = arg;
    const struct timeval *t = &c->dest->timeout[c->state];
    long ms = (long)(t->tv_sec * 1000 + t->tv_usec / 1000);

    switch (c->state) {
    case CALLOUT_QUIT:
        callout_close_conn(c);
        return;
    case CALLOUT_QUEUED:
        TAILQ_REMOVE(&c->dest->queue, c, link);
        TAILQ_INSERT_TAIL(&c->dest->callouts, c, link);
        c->queued = 0;
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0,
                         "no free connection to next hop within %ldms (max_connections=%d)", ms,
                         c->dest->max_connections);
        return;
    case CALLOUT_CONNECT:
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "timeout after %ldms connecting to next hop",
                         ms);
        return;
    default:
        callout_conclude(c, VERDICT_TEMPFAIL, 0, 0,
                         "timeout after %ldms waiting for the %s reply from next hop", ms,
                         callout_step_names[c->state]);
        return;
    }
}

static void dest_free(struct smtp_dest *d);

/*
 * callout_deliver_cb - run the caller's callback, from the event loop, exactly
 * once; also frees the struct once the verdict is out and the connection gone.
 */
static void callout_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct backend_req *c = arg;
    struct smtp_dest *d = c->dest;
    backend_cb cb = c->cb;

    c->cb = NULL;
    c->delivered = 1;
    if (cb != NULL) {
        d->in_callback++;
        cb(&c->verdict, c->arg);
        d->in_callback--;
        if (d->closing) {
            /* close() was called from the callback: it frees c too */
            if (d->in_callback == 0)
                dest_free(d);
            return;
        }
    }
    if (c->state == CALLOUT_CLOSED)
        callout_free(c);
}

/*
 * callout_connect - open the connection and take a slot (c is on
 * dest->callouts). Returns -1 with a reason in err when it cannot even start.
 */
static int callout_connect(struct backend_req *c, char *err, size_t errlen)
{
    struct smtp_dest *d = c->dest;

    c->bev = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        snprintf(err, errlen, "cannot create a connection to next hop");
        return -1;
    }
    bufferevent_setcb(c->bev, callout_read_cb, NULL, callout_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SMTP_READ_HIGHWATER);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    d->nconn++;
    callout_enter_state(c, CALLOUT_CONNECT);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&d->addr, (int)d->addrlen) < 0) {
        snprintf(err, errlen, "cannot connect to next hop: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        bufferevent_free(c->bev);
        c->bev = NULL;
        d->nconn--;
        return -1;
    }
    return 0;
}

static void dest_dispatch(struct smtp_dest *d)
{
    struct backend_req *c;

    while (!d->closing && d->nconn < d->max_connections && (c = TAILQ_FIRST(&d->queue)) != NULL) {
        char err[VERDICT_TEXT_MAX];

        TAILQ_REMOVE(&d->queue, c, link);
        TAILQ_INSERT_TAIL(&d->callouts, c, link);
        c->queued = 0;
        if (callout_connect(c, err, sizeof(err)) < 0)
            callout_conclude(c, VERDICT_TEMPFAIL, 0, 0, "%s", err);
    }
}

/* callout_release - free everything a callout holds except the struct; no callbacks */
static void callout_release(struct backend_req *c)
{
    struct smtp_dest *d = c->dest;

    if (c->queued)
        TAILQ_REMOVE(&d->queue, c, link);
    else
        TAILQ_REMOVE(&d->callouts, c, link);
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        d->nconn--;
    }
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->deliver != NULL)
        event_free(c->deliver);
    smtp_reply_parser_free(c->parser);
}

/* callout_free - release and free; a queued lookup may take the slot */
static void callout_free(struct backend_req *c)
{
    struct smtp_dest *d = c->dest;

    callout_release(c);
    free(c);
    dest_dispatch(d);
}

/* parse_duration - "10", "10s", "500ms" into tv; -1 if malformed or out of range */
static int parse_duration(const char *s, struct timeval *tv)
{
    char *end;
    unsigned long v;
    unsigned long ms;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || v > SMTP_TIMEOUT_LIMIT_MS)
        return -1;
    if (strcmp(end, "ms") == 0)
        ms = v;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        ms = v * 1000;
    else
        return -1;
    if (ms == 0 || ms > SMTP_TIMEOUT_LIMIT_MS)
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

/*
 * parse_next_hop - route argument into d->addr and d->source.
 * "[1.2.3.4]:25", "1.2.3.4:25", "[::1]:25", "[ipv6:::1]", "1.2.3.4".
 */
static int parse_next_hop(const char *arg, struct smtp_dest *d, char *err, size_t errlen)
{
    char host[128];
    const char *port_s = NULL;
    unsigned long port = SMTP_DEFAULT_PORT;
    size_t hlen;
    struct sockaddr_in *sin = (struct sockaddr_in *)&d->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&d->addr;
    char text[INET6_ADDRSTRLEN];

    if (arg == NULL || *arg == '\0') {
        snprintf(err, errlen, "smtp: needs a next hop, e.g. smtp:[192.0.2.1]:25");
        return -1;
    }
    if (strcmp(arg, "mx") == 0) {
        snprintf(err, errlen, "smtp:mx (MX lookup) is not supported yet: use smtp:[address]:port");
        return -1;
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
    memset(&d->addr, 0, sizeof(d->addr));
    {
        const char *h = host;
        if (strncasecmp(h, "ipv6:", 5) == 0)
            h += 5;
        if (h == host && inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            d->addrlen = sizeof(*sin);
            inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)port);
            d->addrlen = sizeof(*sin6);
            inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        } else if (*h != '\0') {
            /* XXX names need an asynchronous resolver (evdns); never block the loop */
            snprintf(err, errlen,
                     "smtp:%s: host names are not resolved yet: give an IPv4 or [IPv6] address",
                     arg);
            return -1;
        } else {
            goto bad_host;
        }
    }
    snprintf(d->source, sizeof(d->source), "smtp:[%s]:%lu", text, port);
    return 0;

bad_host:
    snprintf(err, errlen, "smtp:%s: bad host", arg);
    return -1;
bad_syntax:
    snprintf(err, errlen, "smtp:%s: expected [host]:port or host:port", arg);
    return -1;
}

/* smtp_open - per-route state: next hop address and options */
static void *smtp_open(const struct backend_env *env, const struct route *r, char *err,
                       size_t errlen)
{
    static const struct {
        const char *name;
        enum callout_state state;
        const char *def;
    } timeouts[] = {
        {"connect_timeout", CALLOUT_CONNECT, "5s"}, {"greeting_timeout", CALLOUT_GREETING, "10s"},
        {"ehlo_timeout", CALLOUT_EHLO, NULL},       {"ehlo_timeout", CALLOUT_HELO, NULL},
        {"mail_timeout", CALLOUT_MAIL, NULL},       {"rcpt_timeout", CALLOUT_RCPT, NULL},
        {"quit_timeout", CALLOUT_QUIT, "2s"},       {"queue_timeout", CALLOUT_QUEUED, "10s"},
    };
    struct smtp_dest *d;
    const char *v;
    const char *command_timeout;
    char *end;
    unsigned long n;

    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = env->base;
    TAILQ_INIT(&d->queue);
    TAILQ_INIT(&d->callouts);
    if (parse_next_hop(r->arg, d, err, errlen) < 0)
        goto fail;

    command_timeout = route_option(r, "command_timeout", "10s");
    if (parse_duration(command_timeout, &d->timeout[CALLOUT_EHLO]) < 0) {
        snprintf(err, errlen, "command_timeout=%s: expected seconds, e.g. 10s or 500ms",
                 command_timeout);
        goto fail;
    }
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        v = route_option(r, timeouts[i].name, timeouts[i].def ? timeouts[i].def : command_timeout);
        if (parse_duration(v, &d->timeout[timeouts[i].state]) < 0) {
            snprintf(err, errlen, "%s=%s: expected seconds, e.g. 10s or 500ms", timeouts[i].name,
                     v);
            goto fail;
        }
    }
    d->timeout[CALLOUT_CLOSED] = d->timeout[CALLOUT_QUIT]; /* unused: the timer is off */

    v = route_option(r, "max_connections", "20");
    errno = 0;
    n = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || errno != 0 || *end != '\0' || n == 0 ||
        n > SMTP_MAX_CONNECTIONS_LIMIT) {
        snprintf(err, errlen, "max_connections=%s: expected 1..%d", v, SMTP_MAX_CONNECTIONS_LIMIT);
        goto fail;
    }
    d->max_connections = (int)n;

    v = route_option(r, "sender", "");
    if (parse_sender(v, d->sender, sizeof(d->sender)) < 0) {
        snprintf(err, errlen,
                 "sender=%s: expected an address like postmaster@example.org, or empty", v);
        goto fail;
    }

    v = route_option(r, "helo_name", NULL);
    if (v == NULL) {
        if (gethostname(d->helo, sizeof(d->helo)) < 0 ||
            (d->helo[sizeof(d->helo) - 1] = '\0', !valid_helo(d->helo)))
            snprintf(d->helo, sizeof(d->helo), "localhost");
    } else if (!valid_helo(v)) {
        snprintf(err, errlen, "helo_name=%s: expected a host name", v);
        goto fail;
    } else {
        snprintf(d->helo, sizeof(d->helo), "%s", v);
    }

    v = route_option(r, "invalid_codes", "5xx");
    if (parse_invalid_codes(v, d->invalid) < 0) {
        snprintf(err, errlen, "invalid_codes=%s: expected 5xx codes like 550,551,553 or 55x", v);
        goto fail;
    }
    return d;

fail:
    free(d);
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

/* smtp_lookup - start a callout for addr, or queue it when the next hop has no free slot */
static enum backend_status smtp_lookup(void *state, const struct address *addr, struct verdict *out,
                                       backend_cb cb, void *arg, struct backend_req **req)
{
    struct smtp_dest *d = state;
    struct backend_req *c;
    char err[VERDICT_TEXT_MAX];

    *req = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        verdict_set(out, VERDICT_TEMPFAIL, 0, d->source, "out of memory");
        return BACKEND_ERROR;
    }
    if (addr->is_null || address_format(addr, c->rcpt, sizeof(c->rcpt)) < 0 ||
        !valid_rcpt(c->rcpt)) {
        free(c);
        verdict_set(out, VERDICT_TEMPFAIL, 0, d->source, "address cannot be verified by callout");
        return BACKEND_ERROR;
    }
    c->dest = d;
    c->cb = cb;
    c->arg = arg;
    c->state = CALLOUT_QUEUED;
    evutil_gettimeofday(&c->started, NULL);
    c->timer = evtimer_new(d->base, callout_timer_cb, c);
    c->deliver = event_new(d->base, -1, 0, callout_deliver_cb, c);
    c->parser = smtp_reply_parser_new();
    if (c->timer == NULL || c->deliver == NULL || c->parser == NULL) {
        if (c->timer != NULL)
            event_free(c->timer);
        if (c->deliver != NULL)
            event_free(c->deliver);
        smtp_reply_parser_free(c->parser);
        free(c);
        verdict_set(out, VERDICT_TEMPFAIL, 0, d->source, "out of memory");
        return BACKEND_ERROR;
    }
    if (d->nconn < d->max_connections && TAILQ_EMPTY(&d->queue)) {
        TAILQ_INSERT_TAIL(&d->callouts, c, link);
        if (callout_connect(c, err, sizeof(err)) < 0) {
            c->cb = NULL;
            callout_release(c);
            free(c);
            verdict_set(out, VERDICT_TEMPFAIL, 0, d->source, err);
            return BACKEND_ERROR;
        }
    } else {
        TAILQ_INSERT_TAIL(&d->queue, c, link);
        c->queued = 1;
        log_debug("callout %p rcpt=<%s> %s: queued, %d connections open", (void *)c, c->rcpt,
                  d->source, d->nconn);
        callout_enter_state(c, CALLOUT_QUEUED);
    }
    *req = c;
    return BACKEND_PENDING;
}

/* smtp_cancel - the callback will not run; the connection is dropped at once */
static void smtp_cancel(struct backend_req *c)
{
    if (c == NULL)
        return;
    c->cb = NULL;
    callout_free(c);
}

/* dest_free - free the route state and every callout still on it, without callbacks */
static void dest_free(struct smtp_dest *d)
{
    struct backend_req *c;

    d->closing = 1; /* no dispatch while tearing down */
    while ((c = TAILQ_FIRST(&d->queue)) != NULL) {
        callout_release(c);
        free(c);
    }
    while ((c = TAILQ_FIRST(&d->callouts)) != NULL) {
        callout_release(c);
        free(c);
    }
    free(d);
}

/* smtp_close - free the route state; deferred when called from inside a callback */
static void smtp_close(void *state)
{
    struct smtp_dest *d = state;

    if (d == NULL)
        return;
    if (d->in_callback > 0) {
        d->closing = 1;
        return;
    }
    dest_free(d);
}

const struct backend_ops backend_smtp_ops = {
    .name = "smtp",
    .open = smtp_open,
    .lookup = smtp_lookup,
    .cancel = smtp_cancel,
    .close = smtp_close,
};
