/*
 * dns.c - asynchronous MX and A/AAAA lookups for SMTP callouts: c-ares
 * driven by the caller's libevent loop (see dns.h for what is answered).
 *
 * Wiring: c-ares tells us through sock_state_cb which sockets it wants
 * watched for reading or writing; each gets one libevent event whose callback
 * hands the fd to ares_process_fd(). One timer, re-armed from ares_timeout()
 * after every call into c-ares, lets c-ares retry and time out queries.
 *
 * Requests: one struct dns_req per lookup, walking two phases: the MX query,
 * then A and AAAA queries for each target. It has its own deadline (the
 * lookup's whole budget), and hands its result to the caller from a deferred
 * event, so the callback never runs inside dns_*_lookup() nor inside c-ares.
 * c-ares cannot cancel a single query, so a request is reference counted:
 * one reference for the caller's handle (dropped when the callback has run or
 * on dns_cancel) and one per c-ares query in flight (dropped when c-ares calls
 * back, also with ARES_EDESTRUCTION from ares_destroy()). A request that was
 * cancelled or answered ignores late answers and is freed with its last
 * reference.
 *
 * Channels: the c-ares channel, its sockets and its timer form one struct
 * dns_chan. dns_reconfigure() (a reload's new dns_servers or dns_timeout)
 * opens a new channel for the lookups started from then on; each request
 * keeps the channel it started on for all its queries, so lookups in
 * progress finish where they began. The old channel is retired and
 * destroyed once its last query has been answered, from a deferred event:
 * never inside a c-ares callback of its own, and with nothing left for
 * ares_destroy() to call back with ARES_EDESTRUCTION.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ares.h>
#include <event2/event.h>

#include "dns.h"
#include "log.h"

#define DNS_MAX_MX 64        /* MX records looked at (the answer decides, not us) */
#define DNS_SERVERS_MAX 1024 /* longest servers= list accepted */
#define DNS_MIN_TIMEOUT_MS 10

/* RFC 1035 / 3596 numbers (arpa/nameser.h is not C11-clean) */
enum { DNS_C_IN = 1, DNS_T_A = 1, DNS_T_MX = 15, DNS_T_AAAA = 28 };

/* One socket c-ares asked us to watch. */
struct dns_sock {
    struct dns_sock *next;
    struct dns_chan *chan;
    ares_socket_t fd;
    struct event *ev;
};

/* One c-ares channel: the current one, or a retired one still answering. */
struct dns_chan {
    struct dns *dns;
    struct dns_chan *next; /* in dns->retired */
    ares_channel channel;
    int channel_ok;
    struct event *timer;    /* ares_timeout() driven */
    struct dns_sock *socks; /* sockets c-ares has open */
    int queries;            /* c-ares queries in flight on it */
};

struct dns {
    struct event_base *base;
    struct dns_chan *chan;    /* new lookups start here */
    struct dns_chan *retired; /* replaced by a reconfigure, freed when idle */
    struct event *reap;       /* deferred: free the retired channels that are idle */
    struct dns_req *reqs;     /* live requests (not yet answered nor cancelled) */
    int timeout_ms;
    unsigned long long rng; /* xorshift state for shuffling equal preferences */
};

enum req_kind { REQ_MX, REQ_HOST };

enum req_state {
    REQ_MX_QUERY,   /* MX query in flight */
    REQ_ADDR_QUERY, /* A/AAAA queries for the targets in flight */
    REQ_DELIVERING, /* result stored, deferred callback pending */
    REQ_DEAD,       /* callback ran or cancelled: waiting for c-ares to let go */
};

static const char *const req_state_names[] = {"mx-query", "addr-query", "delivering", "dead"};

/* One c-ares query's context: which target and family it answers for. */
struct dns_query {
    struct dns_req *req;
    int target; /* index in req->work, -1 for the MX query */
    int type;   /* DNS_T_MX, DNS_T_A, DNS_T_AAAA */
};

/* Addresses of one target as they arrive, merged IPv4 first at the end. */
struct dns_work {
    char host[DNS_NAME_MAX + 3];
    int preference;
    int n4, n6;
    struct in_addr a4[DNS_MAX_ADDRS];
    struct in6_addr a6[DNS_MAX_ADDRS];
};

struct dns_req {
    struct dns *dns;
    struct dns_chan *chan;       /* every query of the request goes to this channel */
    int timeout_ms;              /* its deadline, as configured when it started */
    struct dns_req *prev, *next; /* in dns->reqs while live */
    enum req_kind kind;
    enum req_state state;
    int refs;
    dns_cb cb;
    void *arg;
    char name[DNS_NAME_MAX + 3];
    int implicit_mx;   /* targets are the domain itself (no MX records) */
    int pending;       /* address queries still in flight */
    int addr_tmpfail;  /* an address query failed temporarily */
    int addr_nxdomain; /* an address query said NXDOMAIN */
    char addr_err[512];
    struct event *deadline;
    struct event *deliver;
    struct dns_query mxq;
    struct dns_query addrq[2 * DNS_MAX_TARGETS];
    int nwork;
    struct dns_work work[DNS_MAX_TARGETS];
    int status;
    char errmsg[1024];
    int ntargets;
    struct dns_target targets[DNS_MAX_TARGETS];
};

static void dns_rearm(struct dns_chan *chan);

/* dns_status_name - short name of a dns_status for logs */
const char *dns_status_name(int status)
{
    switch (status) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NOMAIL:
        return "nomail";
    case DNS_TEMPFAIL:
        return "tempfail";
    case DNS_BADNAME:
        return "badname";
    }
    return "unknown";
}

/*
 * dns_name_normalize - copy a host/domain name into out (size >= DNS_NAME_MAX
 * + 1) without its trailing dot, checking it is a plain DNS name: labels of
 * 1..63 letters, digits, '-' or '_', at most DNS_NAME_MAX in all. Anything
 * else (spaces, backslashes that c-ares would read as escapes, 8-bit bytes,
 * empty labels) is refused. Returns 0 or -1.
 */
static int dns_name_normalize(const char *in, size_t inlen, char *out)
{
    size_t len = inlen, i, label = 0;

    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return -1;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
        if (++label > 63)
            return -1;
    }
    memcpy(out, in, len);
    out[len] = '\0';
    return 0;
}

/* dns_rand - next xorshift64* number (shuffling needs no cryptographic strength) */
static unsigned long long dns_rand(struct dns *dns)
{
    unsigned long long x = dns->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    dns->rng = x;
    return x * 2685821657736338717ULL;
}

/* --- libevent <-> c-ares plumbing */

/* dns_sock_cb - a watched socket is ready: let c-ares read or write it */
static void dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_sock *s = arg;
    struct dns_chan *chan = s->chan; /* s may be freed inside ares_process_fd() */

    log_debug("dns: socket %d ready:%s%s", (int)fd, (what & EV_READ) ? " read" : "",
              (what & EV_WRITE) ? " write" : "");

    ares_process_fd(chan->channel, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
    dns_rearm(chan);
}

/* dns_timer_cb - c-ares' next timeout passed: let it retry or fail queries */
static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_chan *chan = arg;

    ares_process_fd(chan->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_rearm(chan);
}

/* dns_rearm - set the timer to c-ares' next timeout, or stop it when idle */
static void dns_rearm(struct dns_chan *chan)
{
    struct timeval tv, *tvp;

    if (!chan->channel_ok)
        return;
    tvp = ares_timeout(chan->channel, NULL, &tv);
    if (tvp)
        evtimer_add(chan->timer, tvp);
    else
        evtimer_del(chan->timer);
}

/*
 * dns_sock_state_cb - c-ares opened, changed or closed a socket: keep one
 * event per socket with the interest c-ares asked for. May run inside
 * dns_sock_cb for the same socket; freeing an event in its own callback is
 * allowed by libevent.
 */
static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_chan *chan = data;
    struct dns_sock **pp, *s;
    short what;

    log_debug("dns: socket %d read=%d write=%d", (int)fd, readable, writable);
    for (pp = &chan->socks; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
        ;
    s = *pp;
    if (s) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (!readable && !writable) {
        if (s) {
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            /* XXX c-ares keeps the socket; its queries end by timeout instead */
            log_err("dns: out of memory watching a resolver socket");
            return;
        }
        s->chan = chan;
        s->fd = fd;
        s->next = chan->socks;
        chan->socks = s;
    }
    what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    s->ev = event_new(chan->dns->base, fd, what, dns_sock_cb, s);
    if (!s->ev || event_add(s->ev, NULL) < 0)
        log_err("dns: cannot watch resolver socket %d", (int)fd);
}

/* --- requests */

/* dns_req_unref - drop one reference; the last one frees the request */
static void dns_req_unref(struct dns_req *req)
{
    if (--req->refs > 0)
        return;
    if (req->deadline)
        event_free(req->deadline);
    if (req->deliver)
        event_free(req->deliver);
    free(req);
}

/* dns_req_unlink - take a live request off its resolver's list */
static void dns_req_unlink(struct dns_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (req->dns->reqs == req)
        req->dns->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

/* dns_req_enter_state - the one place a request changes state */
static void dns_req_enter_state(struct dns_req *req, enum req_state state)
{
    if ((unsigned)state >= sizeof(req_state_names) / sizeof(req_state_names[0]))
        return;
    log_debug("dns: %s: %s -> %s", req->name, req_state_names[req->state], req_state_names[state]);
    req->state = state;
}

/* dns_deliver_cb - deferred: hand the stored result to the caller */
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_req *req = arg;

    if (req->state != REQ_DELIVERING)
        return;
    dns_req_enter_state(req, REQ_DEAD);
    dns_req_unlink(req);
    /* the caller may dns_free() in its callback: touch only req afterwards */
    req->cb(req->status, req->status == DNS_OK ? req->targets : NULL,
            req->status == DNS_OK ? req->ntargets : 0, req->errmsg, req->arg);
    dns_req_unref(req);
}

/* dns_finish - store the result and schedule the callback (never call it here) */
static void dns_finish(struct dns_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dns_finish(struct dns_req *req, int status, const char *fmt, ...)
{
    va_list ap;

    if (req->state == REQ_DELIVERING || req->state == REQ_DEAD)
        return;
    req->status = status;
    va_start(ap, fmt);
    vsnprintf(req->errmsg, sizeof(req->errmsg), fmt, ap);
    va_end(ap);
    if (req->deadline)
        evtimer_del(req->deadline);
    dns_req_enter_state(req, REQ_DELIVERING);
    log_debug("dns: %s %s: %s (%d targets) %s", req->kind == REQ_MX ? "mx" : "host", req->name,
              dns_status_name(status), req->ntargets, req->errmsg);
    event_active(req->deliver, EV_TIMEOUT, 0);
}

/* dns_deadline_cb - the lookup's whole budget passed */
static void dns_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_req *req = arg;

    dns_finish(req, DNS_TEMPFAIL, "DNS lookup of %s timed out after %d ms (%s)", req->name,
               req->timeout_ms, req->state == REQ_MX_QUERY ? "MX query" : "address queries");
}

/* dns_ares_status - a c-ares failure as a status: absent name, or try later */
static int dns_ares_status(int status)
{
    return status == ARES_ENOTFOUND ? DNS_NXDOMAIN : DNS_TEMPFAIL;
}

static void dns_query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

/* dns_send - start one c-ares query for q; takes a reference on the request */
static void dns_send(struct dns_req *req, struct dns_query *q, const char *name)
{
    req->refs++;
    req->chan->queries++;
    /* may call dns_query_cb synchronously (e.g. ENOMEM): that path only stores a result */
    ares_query(req->chan->channel, name, DNS_C_IN, q->type, dns_query_cb, q);
}

/* dns_start_addr - ask A and AAAA for every target */
static void dns_start_addr(struct dns_req *req)
{
    int i;

    dns_req_enter_state(req, REQ_ADDR_QUERY);
    req->pending = 2 * req->nwork;
    for (i = 0; i < req->nwork; i++) {
        struct dns_query *q4 = &req->addrq[2 * i], *q6 = &req->addrq[2 * i + 1];
        q4->req = q6->req = req;
        q4->target = q6->target = i;
        q4->type = DNS_T_A;
        q6->type = DNS_T_AAAA;
        dns_send(req, q4, req->work[i].host);
        if (req->state != REQ_ADDR_QUERY)
            return;
        dns_send(req, q6, req->work[i].host);
        if (req->state != REQ_ADDR_QUERY)
            return;
    }
}

/* One MX record while sorting; key shuffles equal preferences. */
struct dns_mx {
    char host[DNS_NAME_MAX + 3];
    int preference;
    unsigned long long key;
};

/* dns_mx_cmp - order MX records by preference, then by the random key */
static int dns_mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;

    if (x->preference != y->preference)
        return x->preference < y->preference ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return 0;
}

/*
 * dns_mx_answer - parse the MX answer into req->work: sorted, equal
 * preferences shuffled, duplicates dropped (keeping the most preferred),
 * capped at DNS_MAX_TARGETS. Finishes the request itself on null MX or a
 * useless answer; returns 0 when there are targets to resolve.
 */
static int dns_mx_answer(struct dns_req *req, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *mx = NULL, *m;
    struct dns_mx *list;
    int n = 0, nrec = 0, nnull = 0, nbad = 0, i, j, rc;

    rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (rc == ARES_ENODATA) /* e.g. only a CNAME whose target has no MX */
        return 1;
    if (rc != ARES_SUCCESS) {
        dns_finish(req, DNS_TEMPFAIL, "malformed MX answer for %s: %s", req->name,
                   ares_strerror(rc));
        return -1;
    }
    list = calloc(DNS_MAX_MX, sizeof(*list));
    if (!list) {
        ares_free_data(mx);
        dns_finish(req, DNS_TEMPFAIL, "out of memory");
        return -1;
    }
    for (m = mx; m; m = m->next) {
        nrec++;
        if (!m->host || m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
            nnull++;
            continue;
        }
        if (n >= DNS_MAX_MX)
            continue;
        if (dns_name_normalize(m->host, strlen(m->host), list[n].host) < 0) {
            nbad++;
            continue;
        }
        list[n].preference = m->priority;
        list[n].key = dns_rand(req->dns);
        n++;
    }
    ares_free_data(mx);
    if (nrec == 1 && nnull == 1) {
        free(list);
        dns_finish(req, DNS_NOMAIL, "%s accepts no mail (null MX)", req->name);
        return -1;
    }
    if (n == 0) {
        free(list);
        if (nrec == 0)
            return 1; /* no MX at all */
        dns_finish(req, DNS_TEMPFAIL, "no usable MX host for %s (%d records, %d invalid names)",
                   req->name, nrec, nbad);
        return -1;
    }
    qsort(list, (size_t)n, sizeof(*list), dns_mx_cmp);
    req->nwork = 0;
    for (i = 0; i < n && req->nwork < DNS_MAX_TARGETS; i++) {
        for (j = 0; j < req->nwork; j++)
            if (strcasecmp(req->work[j].host, list[i].host) == 0)
                break;
        if (j < req->nwork)
            continue; /* listed again with a higher (or equal) preference */
        memcpy(req->work[req->nwork].host, list[i].host, sizeof(list[i].host));
        req->work[req->nwork].preference = list[i].preference;
        req->nwork++;
    }
    free(list);
    return 0;
}

/* dns_addr_done - every address query answered: build the targets, finish */
static void dns_addr_done(struct dns_req *req)
{
    int i, k;

    req->ntargets = 0;
    for (i = 0; i < req->nwork; i++) {
        struct dns_work *w = &req->work[i];
        struct dns_target *t = &req->targets[req->ntargets];
        if (w->n4 + w->n6 == 0)
            continue;
        memset(t, 0, sizeof(*t));
        memcpy(t->host, w->host, sizeof(t->host));
        t->preference = w->preference;
        for (k = 0; k < w->n4 && t->naddrs < DNS_MAX_ADDRS; k++) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&t->addrs[t->naddrs++];
            sin->sin_family = AF_INET;
            sin->sin_addr = w->a4[k];
        }
        for (k = 0; k < w->n6 && t->naddrs < DNS_MAX_ADDRS; k++) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addrs[t->naddrs++];
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = w->a6[k];
        }
        req->ntargets++;
    }
    if (req->ntargets > 0) {
        dns_finish(req, DNS_OK, "%s", "");
        return;
    }
    if (req->addr_tmpfail) {
        dns_finish(req, DNS_TEMPFAIL, "address lookup failed for %s: %s", req->name, req->addr_err);
    } else if (req->kind == REQ_HOST) {
        dns_finish(req, DNS_NXDOMAIN, "%s: %s", req->name,
                   req->addr_nxdomain ? "host not found" : "host has no address");
    } else if (req->implicit_mx) {
        dns_finish(req, DNS_NOMAIL, "%s has no MX and no address record", req->name);
    } else {
        dns_finish(req, DNS_TEMPFAIL, "none of the %d MX hosts of %s has an address", req->nwork,
                   req->name);
    }
}

/* dns_addr_answer - one A or AAAA answer for target q->target */
static void dns_addr_answer(struct dns_req *req, struct dns_query *q, int status,
                            const unsigned char *abuf, int alen)
{
    struct dns_work *w = &req->work[q->target];
    int n = DNS_MAX_ADDRS, rc, k;

    if (status == ARES_SUCCESS) {
        if (q->type == DNS_T_A) {
            struct ares_addrttl ttls[DNS_MAX_ADDRS];
            rc = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
            for (k = 0; rc == ARES_SUCCESS && k < n && w->n4 < DNS_MAX_ADDRS; k++)
                w->a4[w->n4++] = ttls[k].ipaddr;
        } else {
            struct ares_addr6ttl ttls[DNS_MAX_ADDRS];
            rc = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
            for (k = 0; rc == ARES_SUCCESS && k < n && w->n6 < DNS_MAX_ADDRS; k++)
                memcpy(&w->a6[w->n6++], &ttls[k].ip6addr, sizeof(w->a6[0]));
        }
        if (rc != ARES_SUCCESS && rc != ARES_ENODATA) {
            req->addr_tmpfail = 1;
            snprintf(req->addr_err, sizeof(req->addr_err), "%s %s: malformed answer (%s)", w->host,
                     q->type == DNS_T_A ? "A" : "AAAA", ares_strerror(rc));
        }
    } else if (status == ARES_ENOTFOUND) {
        req->addr_nxdomain = 1;
    } else if (status != ARES_ENODATA) {
        req->addr_tmpfail = 1;
        snprintf(req->addr_err, sizeof(req->addr_err), "%s %s: %s", w->host,
                 q->type == DNS_T_A ? "A" : "AAAA", ares_strerror(status));
    }
    if (--req->pending == 0)
        dns_addr_done(req);
}

/*
 * dns_query_cb - c-ares answered (or gave up on, or is destroying) one
 * query. Drops the query's reference last; a request no longer waiting for
 * queries (answered, timed out, cancelled) only lets go.
 */
static void dns_query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;
    struct dns_req *req = q->req;
    struct dns_chan *chan = req->chan;

    /* a retired channel with nothing left in flight is freed later, not inside its own c-ares */
    if (--chan->queries == 0 && chan != chan->dns->chan && status != ARES_EDESTRUCTION)
        event_active(chan->dns->reap, EV_TIMEOUT, 0);
    log_debug("dns: %s: answer type %d target %d: %s (%d bytes)", req->name, q->type, q->target,
              ares_strerror(status), alen);

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
        goto out;
    if (req->state == REQ_MX_QUERY && q->type == DNS_T_MX) {
        int rc = 1;
        if (status == ARES_SUCCESS)
            rc = dns_mx_answer(req, abuf, alen);
        else if (status != ARES_ENODATA) {
            dns_finish(req, dns_ares_status(status), "MX lookup of %s: %s", req->name,
                       status == ARES_ENOTFOUND ? "domain not found (NXDOMAIN)"
                                                : ares_strerror(status));
            goto out;
        }
        if (rc < 0)
            goto out;
        if (rc > 0) { /* no MX: RFC 5321 5.1 implicit MX, the domain itself */
            req->implicit_mx = 1;
            req->nwork = 1;
            memcpy(req->work[0].host, req->name, sizeof(req->name));
            req->work[0].preference = 0;
        }
        dns_start_addr(req);
    } else if (req->state == REQ_ADDR_QUERY && q->type != DNS_T_MX) {
        dns_addr_answer(req, q, status, abuf, alen);
    }
out:
    dns_req_unref(req);
}

/* dns_req_new - a live request with its events, on the resolver's list */
static struct dns_req *dns_req_new(struct dns *dns, enum req_kind kind, dns_cb cb, void *arg)
{
    struct dns_req *req = calloc(1, sizeof(*req));
    struct timeval tv;

    if (!req)
        return NULL;
    req->dns = dns;
    req->chan = dns->chan;
    req->timeout_ms = dns->timeout_ms;
    req->kind = kind;
    req->state = kind == REQ_MX ? REQ_MX_QUERY : REQ_ADDR_QUERY;
    req->refs = 1;
    req->cb = cb;
    req->arg = arg;
    req->deadline = evtimer_new(dns->base, dns_deadline_cb, req);
    req->deliver = event_new(dns->base, -1, 0, dns_deliver_cb, req);
    if (!req->deadline || !req->deliver) {
        dns_req_unref(req);
        return NULL;
    }
    tv.tv_sec = req->timeout_ms / 1000;
    tv.tv_usec = (req->timeout_ms % 1000) * 1000;
    evtimer_add(req->deadline, &tv);
    req->next = dns->reqs;
    if (dns->reqs)
        dns->reqs->prev = req;
    dns->reqs = req;
    return req;
}

/* dns_mx_lookup - start the MX lookup of domain (see dns.h) */
struct dns_req *dns_mx_lookup(struct dns *dns, const char *domain, dns_cb cb, void *arg)
{
    struct dns_req *req;

    if (!dns || !cb)
        return NULL;
    req = dns_req_new(dns, REQ_MX, cb, arg);
    if (!req)
        return NULL;
    if (!domain || dns_name_normalize(domain, strnlen(domain, DNS_NAME_MAX + 2), req->name) < 0) {
        snprintf(req->name, sizeof(req->name), "(invalid)");
        dns_finish(req, DNS_BADNAME, "invalid domain name");
        return req;
    }
    req->mxq.req = req;
    req->mxq.target = -1;
    req->mxq.type = DNS_T_MX;
    dns_send(req, &req->mxq, req->name);
    dns_rearm(req->chan);
    return req;
}

/* dns_literal - parse an IPv4/IPv6 literal into a sockaddr; 0 or -1 */
static int dns_literal(const char *host, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

/* dns_host_lookup - start the A/AAAA lookup of host (see dns.h) */
struct dns_req *dns_host_lookup(struct dns *dns, const char *host, dns_cb cb, void *arg)
{
    struct dns_req *req;
    size_t len;

    if (!dns || !cb)
        return NULL;
    req = dns_req_new(dns, REQ_HOST, cb, arg);
    if (!req)
        return NULL;
    len = host ? strnlen(host, DNS_NAME_MAX + 2) : 0;
    if (host && len <= DNS_NAME_MAX && dns_literal(host, &req->targets[0].addrs[0]) == 0) {
        memcpy(req->name, host, len + 1);
        memcpy(req->targets[0].host, host, len + 1);
        req->targets[0].naddrs = 1;
        req->ntargets = 1;
        dns_finish(req, DNS_OK, "%s", "");
        return req;
    }
    if (!host || dns_name_normalize(host, len, req->name) < 0) {
        snprintf(req->name, sizeof(req->name), "(invalid)");
        dns_finish(req, DNS_BADNAME, "invalid host name");
        return req;
    }
    req->nwork = 1;
    memcpy(req->work[0].host, req->name, sizeof(req->name));
    dns_start_addr(req);
    dns_rearm(req->chan);
    return req;
}

/* dns_hosts_file - host's address from the hosts file (see dns.h) */
int dns_hosts_file(struct dns *dns, const char *host, struct sockaddr_storage *ss)
{
    static const int families[] = {AF_INET, AF_INET6};
    struct hostent *he = NULL;

    if (!dns || !host || strnlen(host, DNS_NAME_MAX + 1) > DNS_NAME_MAX)
        return -1;
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        if (ares_gethostbyname_file(dns->chan->channel, host, families[i], &he) != ARES_SUCCESS ||
            he == NULL)
            continue;
        memset(ss, 0, sizeof(*ss));
        if (he->h_addrtype == AF_INET && he->h_length == 4 && he->h_addr_list[0] != NULL) {
            struct sockaddr_in *sin = (struct sockaddr_in *)ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, he->h_addr_list[0], 4);
        } else if (he->h_addrtype == AF_INET6 && he->h_length == 16 && he->h_addr_list[0] != NULL) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, he->h_addr_list[0], 16);
        }
        ares_free_hostent(he);
        he = NULL;
        if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
            return 0;
    }
    return -1;
}

/* dns_cancel - the callback of req will not run (see dns.h) */
void dns_cancel(struct dns_req *req)
{
    if (!req || req->state == REQ_DEAD)
        return;
    dns_req_enter_state(req, REQ_DEAD);
    dns_req_unlink(req);
    evtimer_del(req->deadline);
    event_del(req->deliver);
    dns_req_unref(req); /* the caller's handle; c-ares' references go as it answers */
}

/* dns_port_ok - "1".."65535" in digits only */
static int dns_port_ok(const char *p, size_t len)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0 || len > 5)
        return 0;
    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/*
 * dns_servers_check - each comma item is IPv4[:port], [IPv6][:port] or a bare
 * IPv6 address. c-ares is lenient (it takes "[::1" and port 99999), and a
 * typo here would silently send queries nowhere. 0 or -1.
 */
static int dns_servers_check(const char *list)
{
    const char *p = list;

    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char addr[INET6_ADDRSTRLEN + 8];
        unsigned char buf[sizeof(struct in6_addr)];
        const char *port = NULL, *close;
        size_t alen = len, plen = 0;

        if (p[0] == '[') {
            close = memchr(p, ']', len);
            if (!close)
                return -1;
            alen = (size_t)(close - p) - 1;
            if (close + 1 < p + len) {
                if (close[1] != ':')
                    return -1;
                port = close + 2;
                plen = len - (size_t)(port - p);
            }
            p++;
        } else if ((port = memchr(p, ':', len)) != NULL &&
                   !memchr(port + 1, ':', len - (size_t)(port + 1 - p))) {
            alen = (size_t)(port - p); /* one colon: IPv4:port */
            port++;
            plen = len - alen - 1;
        } else {
            port = NULL; /* bare IPv6 (or plain IPv4) */
        }
        if (alen == 0 || alen >= sizeof(addr))
            return -1;
        memcpy(addr, p, alen);
        addr[alen] = '\0';
        if (inet_pton(strchr(addr, ':') ? AF_INET6 : AF_INET, addr, buf) != 1)
            return -1;
        if (port && !dns_port_ok(port, plen))
            return -1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* dns_servers_valid - the list's length and syntax, or -1 + err */
static int dns_servers_valid(const char *servers, char *err, size_t errlen)
{
    if (servers && strnlen(servers, DNS_SERVERS_MAX + 1) > DNS_SERVERS_MAX) {
        snprintf(err, errlen, "dns: server list longer than %d characters", DNS_SERVERS_MAX);
        return -1;
    }
    if (servers && servers[0] && dns_servers_check(servers) < 0) {
        snprintf(
            err, errlen,
            "dns: bad server list \"%s\" (want ADDR, ADDR:PORT or [IPV6]:PORT, comma separated)",
            servers);
        return -1;
    }
    return 0;
}

/*
 * dns_chan_free - destroy a channel. Queries still in flight are called back
 * with ARES_EDESTRUCTION (their requests only let go), so the caller must not
 * be inside a callback of this channel.
 */
static void dns_chan_free(struct dns_chan *chan)
{
    struct dns_sock *s;

    if (!chan)
        return;
    if (chan->channel_ok) {
        ares_destroy(chan->channel);
        chan->channel_ok = 0;
    }
    while ((s = chan->socks) != NULL) {
        chan->socks = s->next;
        if (s->ev)
            event_free(s->ev);
        free(s);
    }
    if (chan->timer)
        event_free(chan->timer);
    free(chan);
}

/*
 * dns_chan_new - a c-ares channel asking servers ("" = resolv.conf, read
 * now) with c-ares' own retries fitted into timeout_ms: three tries of a
 * quarter of it (c-ares doubles the wait each round); the request deadline
 * is the real limit. NULL + err.
 */
static struct dns_chan *dns_chan_new(struct dns *dns, const char *servers, int timeout_ms,
                                     char *err, size_t errlen)
{
    struct dns_chan *chan = calloc(1, sizeof(*chan));
    struct ares_options opts;
    int rc, optmask;

    if (!chan) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    chan->dns = dns;
    chan->timer = evtimer_new(dns->base, dns_timer_cb, chan);
    if (!chan->timer) {
        snprintf(err, errlen, "dns: cannot create timer");
        goto fail;
    }
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = dns_sock_state_cb;
    opts.sock_state_cb_data = chan;
    opts.timeout = timeout_ms / 4 > 0 ? timeout_ms / 4 : 1;
    opts.tries = 3;
    optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    rc = ares_init_options(&chan->channel, &opts, optmask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares channel: %s", ares_strerror(rc));
        goto fail;
    }
    chan->channel_ok = 1;
    if (servers && servers[0]) {
        rc = ares_set_servers_ports_csv(chan->channel, servers);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "dns: bad server list \"%s\": %s", servers, ares_strerror(rc));
            goto fail;
        }
    }
    log_debug("dns: resolver channel ready, servers=%s timeout=%dms",
              servers && servers[0] ? servers : "(resolv.conf)", timeout_ms);
    return chan;

fail:
    dns_chan_free(chan);
    return NULL;
}

/* dns_reap_cb - deferred: free the retired channels with no query left in flight */
static void dns_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns *dns = arg;
    struct dns_chan **pp = &dns->retired, *c;

    while ((c = *pp) != NULL) {
        if (c->queries > 0) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        log_debug("dns: retired resolver channel freed");
        dns_chan_free(c);
    }
}

/* dns_timeout_of - timeout_ms as the resolver uses it */
static int dns_timeout_of(int timeout_ms)
{
    return timeout_ms < DNS_MIN_TIMEOUT_MS ? DNS_MIN_TIMEOUT_MS : timeout_ms;
}

/* dns_new - a resolver on base (see dns.h) */
struct dns *dns_new(struct event_base *base, const char *servers, int timeout_ms, char *err,
                    size_t errlen)
{
    struct dns *dns;
    struct timeval now;
    int rc;

    if (!base) {
        snprintf(err, errlen, "dns: no event base");
        return NULL;
    }
    if (dns_servers_valid(servers, err, errlen) < 0)
        return NULL;
    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares init: %s", ares_strerror(rc));
        return NULL;
    }
    dns = calloc(1, sizeof(*dns));
    if (!dns) {
        ares_library_cleanup();
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    dns->base = base;
    dns->timeout_ms = dns_timeout_of(timeout_ms);
    gettimeofday(&now, NULL);
    dns->rng = ((unsigned long long)now.tv_sec << 20) ^ (unsigned long long)now.tv_usec ^
               ((unsigned long long)getpid() << 40) ^ (unsigned long long)(uintptr_t)dns;
    if (dns->rng == 0)
        dns->rng = 0x9e3779b97f4a7c15ULL;
    dns->reap = event_new(base, -1, 0, dns_reap_cb, dns);
    if (!dns->reap) {
        snprintf(err, errlen, "dns: cannot create timer");
        goto fail;
    }
    dns->chan = dns_chan_new(dns, servers, dns->timeout_ms, err, errlen);
    if (!dns->chan)
        goto fail;
    return dns;

fail:
    dns_free(dns);
    return NULL;
}

/* dns_reconfigure - new lookups on a new channel; the old one retires (see dns.h) */
int dns_reconfigure(struct dns *dns, const char *servers, int timeout_ms, char *err, size_t errlen)
{
    struct dns_chan *chan, *old = dns->chan;

    if (dns_servers_valid(servers, err, errlen) < 0)
        return -1;
    chan = dns_chan_new(dns, servers, dns_timeout_of(timeout_ms), err, errlen);
    if (!chan)
        return -1;
    dns->chan = chan;
    dns->timeout_ms = dns_timeout_of(timeout_ms);
    if (old->queries == 0) {
        dns_chan_free(old); /* not called from a c-ares callback: see dns.h */
    } else {
        log_debug("dns: %d queries finish on the old resolver channel", old->queries);
        old->next = dns->retired;
        dns->retired = old;
    }
    return 0;
}

/* dns_free - cancel all requests and free the resolver (see dns.h) */
void dns_free(struct dns *dns)
{
    struct dns_chan *c;

    if (!dns)
        return;
    while (dns->reqs)
        dns_cancel(dns->reqs);
    /* calls every pending query back with ARES_EDESTRUCTION: requests go with it */
    dns_chan_free(dns->chan);
    while ((c = dns->retired) != NULL) {
        dns->retired = c->next;
        dns_chan_free(c);
    }
    if (dns->reap)
        event_free(dns->reap);
    free(dns);
    ares_library_cleanup();
}
