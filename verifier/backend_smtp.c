/*
 * backend_smtp.c - SMTP callouts: the backend interface (open, lookup,
 * cancel, close) and the lookups it runs.
 *
 * A lookup (struct backend_req, smtp_int.h) resolves its next hops (DNS for
 * names and MX), walks them in order (RFC 5321 5.1: the next address or MX
 * on connect failure or a refused greeting), gets a session at each from its
 * destination (smtp_host.c), lets the session (smtp_session.c) talk SMTP,
 * and delivers the verdict from a deferred event so the callback never runs
 * inside lookup() or cancel(). The route argument and options are parsed by
 * smtp_nexthop.c and smtp_options.c.
 *
 * Sharing one callout between lookups of one address, caching and answer
 * budgets are the verifier's job, above this backend.
 */
#include "backend_smtp.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/util.h>

#include "dns.h"
#include "log.h"
#include "smtp_int.h"
#include "smtp_tls.h"

static void route_free(struct smtp_route *rt);

long smtp_tv_ms(const struct timeval *t)
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

/* smtp_req_set_host - point req at h (taking a reference), releasing the old one */
void smtp_req_set_host(struct backend_req *req, struct smtp_host *h)
{
    struct smtp_host *old = req->host;

    if (old == h)
        return;
    if (h != NULL)
        h->refs++;
    req->host = h;
    if (old != NULL) {
        old->refs--;
        smtp_host_maybe_free(old);
    }
}

/* smtp_req_unqueue - off the host's queue, queue deadline off */
void smtp_req_unqueue(struct backend_req *req)
{
    if (req->state == REQ_QUEUED) {
        TAILQ_REMOVE(&req->host->queue, req, qlink);
        evtimer_del(req->timer);
        req->state = REQ_ACTIVE;
    }
}

/*
 * smtp_req_conclude - the verdict is known: schedule its delivery. The caller has
 * already detached any session; source names who decided.
 */
void smtp_req_conclude(struct backend_req *req, enum verdict_kind kind, int code,
                       const char *source, const char *fmt, ...)
{
    char text[VERDICT_TEXT_MAX];
    va_list ap;
    struct timeval now, el;

    if (req->state == REQ_DONE)
        return;
    smtp_req_unqueue(req);
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    verdict_set(&req->verdict, kind, code, source, text);
    /*
     * code 0 (no usable reply, or a policy refusal of us at RCPT, which is
     * concluded with code 0) or 421: the next hop failed us, not the
     * address; the verifier's breaker counts it (backend.h)
     */
    if (kind == VERDICT_TEMPFAIL && (code == 0 || code == 421))
        req->verdict.flags |= VERDICT_DEST_FAILURE;
    req->state = REQ_DONE;
    evutil_gettimeofday(&now, NULL);
    evutil_timersub(&now, &req->started, &el);
    log_debug("callout %p rcpt=<%s> %s: verdict=%s code=%d ms=%ld text=%s", (void *)req, req->rcpt,
              req->verdict.source, verdict_kind_name(kind), code, smtp_tv_ms(&el),
              req->verdict.text);
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
    smtp_req_unqueue(req);
    if (req->session != NULL) {
        struct smtp_session *s = req->session;
        s->req = NULL;
        req->session = NULL;
        smtp_session_close(s); /* mid-transaction: it cannot be reused */
    }
    TAILQ_REMOVE(&rt->reqs, req, link);
    smtp_req_set_host(req, NULL);
    if (req->timer != NULL)
        event_free(req->timer);
    if (req->deliver != NULL)
        event_free(req->deliver);
    if (req->targets != &rt->nh.literal)
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
    smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req),
                      "no free connection to next hop within %ldms (max_connections=%d)",
                      smtp_tv_ms(&req->route->opts.queue_timeout),
                      req->route->opts.max_connections);
}

/* smtp_req_try - see smtp_int.h */
void smtp_req_try(struct backend_req *req)
{
    struct smtp_route *rt = req->route;
    struct smtp_host *h;

    if (req->state == REQ_DONE)
        return;
    /* skip hosts without addresses (dns.h promises none, but be safe) */
    while (req->ti < req->ntargets && req->targets[req->ti].naddrs <= 0)
        req->ti++;
    if (req->ti >= req->ntargets || (req->attempts >= rt->opts.max_addresses && !req->want_fresh)) {
        smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req), "%s",
                          req->last_error[0] != '\0' ? req->last_error : "no next hop to try");
        return;
    }
    if (rt->static_host != NULL)
        h = rt->static_host;
    else
        h = smtp_host_get(rt, req->targets[req->ti].host);
    if (h == NULL) {
        smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, req_source(req), "out of memory");
        return;
    }
    smtp_req_set_host(req, h);
    smtp_host_acquire(req);
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
    int mx = rt->nh.kind == SMTP_NEXTHOP_MX;
    const char *what = mx ? req->domain : rt->static_host->name;

    req->dnsq = NULL;
    if (status == DNS_OK && ntargets > 0 && targets != NULL) {
        if (ntargets > DNS_MAX_TARGETS)
            ntargets = DNS_MAX_TARGETS;
        req->targets = calloc((size_t)ntargets, sizeof(*targets));
        if (req->targets == NULL) {
            smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, rt->source, "out of memory");
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
        smtp_req_try(req);
        return;
    }
    if (mx && (status == DNS_NXDOMAIN || status == DNS_NOMAIL)) {
        smtp_req_conclude(req, VERDICT_INVALID, 550, rt->source, "5.1.2 domain has no mail server");
        return;
    }
    smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, rt->source, "DNS lookup of %s failed: %s: %s", what,
                      dns_status_name(status), errmsg != NULL ? errmsg : "");
}

/* --- the backend interface ---------------------------------------------- */

/* smtp_open - per-route state: next hop, options, resolver */
static void *smtp_open(const struct backend_env *env, const struct route *r, char *err,
                       size_t errlen)
{
    struct smtp_route *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->base = env->base;
    TAILQ_INIT(&rt->hosts);
    TAILQ_INIT(&rt->reqs);
    if (smtp_nexthop_parse(r->arg, &rt->nh, err, errlen) < 0 ||
        smtp_options_parse(r, rt->nh.kind == SMTP_NEXTHOP_MX, &rt->opts, err, errlen) < 0)
        goto fail;
    if (rt->opts.tls != SMTP_TLS_NONE &&
        (rt->tls_ctx = smtp_tls_ctx_new(&rt->opts, err, errlen)) == NULL)
        goto fail;
    rt->port = rt->opts.port != 0 ? rt->opts.port : rt->nh.port;
    if (rt->nh.kind == SMTP_NEXTHOP_MX) {
        snprintf(rt->source, sizeof(rt->source), "smtp:mx");
    } else {
        rt->static_host = smtp_host_new(rt, rt->nh.name, rt->port);
        if (rt->static_host == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        rt->static_host->permanent = 1;
        snprintf(rt->source, sizeof(rt->source), "%s", rt->static_host->source);
    }
    if (rt->nh.kind != SMTP_NEXTHOP_LITERAL) {
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
    /* the domain goes out in A-labels; only a UTF-8 local part needs SMTPUTF8 */
    req->smtputf8 = addr->local_utf8;
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
    switch (rt->nh.kind) {
    case SMTP_NEXTHOP_LITERAL:
        req->targets = &rt->nh.literal;
        req->ntargets = 1;
        smtp_req_try(req);
        break;
    case SMTP_NEXTHOP_NAME:
        smtp_req_set_host(req, rt->static_host);
        req->dnsq = dns_host_lookup(rt->dns, rt->static_host->name, req_dns_cb, req);
        break;
    case SMTP_NEXTHOP_MX:
        req->dnsq = dns_mx_lookup(rt->dns, req->domain, req_dns_cb, req);
        break;
    }
    if (rt->nh.kind != SMTP_NEXTHOP_LITERAL && req->dnsq == NULL) {
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
        smtp_host_free(h);
    if (rt->own_dns != NULL)
        dns_free(rt->own_dns);
    smtp_tls_ctx_free(rt->tls_ctx);
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

/* smtp_destination - the breaker and queue key: the static next hop, or for smtp:mx each domain */
static void smtp_destination(void *state, const struct address *addr, char *buf, size_t size)
{
    const struct smtp_route *rt = state;

    if (rt->nh.kind == SMTP_NEXTHOP_MX)
        snprintf(buf, size, "smtp:mx:%s", addr->domain);
    else
        snprintf(buf, size, "%s", rt->source);
}

const struct backend_ops backend_smtp_ops = {
    .name = "smtp",
    .flags = BACKEND_ASYNC | BACKEND_REMOTE_TEXT,
    .open = smtp_open,
    .lookup = smtp_lookup,
    .cancel = smtp_cancel,
    .close = smtp_close,
    .options = smtp_option_decls,
    .destination = smtp_destination,
};
