/*
 * verifier.c - address in, verdict out: normalise, route, cache, backend.
 *
 * One lookup is a small state machine (struct verifier_req):
 *   parse the address -> follow the route table -> static answer, or
 *   synchronous backend (a local table: faster than any cache, so it is
 *   asked directly and its verdict written through to the cache), or
 *   cache -> on a miss, an asynchronous backend "flight".
 * A flight (flight.c) is one backend request shared by every lookup of the
 * same address on the same route that arrives while it runs, so a hammered
 * address costs the next hop one probe; flights wait for probe slots in
 * per-destination queues and have a deadline. A lookup that waits longer
 * than the answer budget gets tempfail now; its flight goes on and fills
 * the cache, so the client's retry gets the definitive answer.
 * Callbacks always run from the event loop (deferred with event_active),
 * never from inside verifier_lookup. Flights report back through callbacks
 * (flight.h), so flight.c never calls into this file; route tables whose
 * last reference goes are closed on a later loop turn, never inside a
 * backend's own callback.
 */
#include "verifier.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "backend_cdb.h"
#include "backend_ldap.h"
#include "backend_smtp.h"
#include "dns.h"
#include "log.h"
#include "verifier_int.h"

/* overrides set with verifier_set_backend, by route method */
static const struct backend_ops *backend_override[ROUTE_REWRITE + 1];

void verifier_set_backend(int method, const struct backend_ops *ops)
{
    if (method >= 0 && method <= ROUTE_REWRITE)
        backend_override[method] = ops;
}

/* backend_for - the backend implementing a route method in this build, or NULL */
static const struct backend_ops *backend_for(enum route_method m)
{
    if ((int)m >= 0 && m <= ROUTE_REWRITE && backend_override[m] != NULL)
        return backend_override[m];
    switch (m) {
    case ROUTE_CDB:
        return &backend_cdb_ops;
    case ROUTE_SMTP:
        return &backend_smtp_ops;
    case ROUTE_LDAP:
        return &backend_ldap_ops; /* without libldap its open says so and fails */
    default:
        return NULL;
    }
}

/* tables_close - close t's backends and free it */
static void tables_close(struct verifier_tables *t)
{
    for (int i = 0; i < t->nroutes; i++) {
        struct route_backend *rb = &t->backends[i];
        if (rb->ops != NULL && rb->state != NULL)
            rb->ops->close(rb->state);
    }
    free(t->backends);
    route_table_free(t->routes);
    free(t->path);
    free(t->delimiter);
    free(t);
}

/*
 * tables_unref - drop a reference to a route table. The last one closes its
 * backends, on a later turn of the loop: the last reference is often
 * dropped from inside a backend's own callback (a flight finishing after a
 * reload), and a backend must never be closed under its own feet.
 */
static void tables_unref(struct verifier_tables *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    struct verifier *v = t->v;
    if (v == NULL || v->ev_close == NULL) {
        tables_close(t);
        return;
    }
    t->next_closing = v->closing;
    v->closing = t;
    event_active(v->ev_close, EV_TIMEOUT, 0);
}

/* tables_close_cb - close the tables whose last reference went (ev_close) */
static void tables_close_cb(evutil_socket_t fd, short what, void *arg)
{
    struct verifier *v = arg;
    struct verifier_tables *t;

    (void)fd, (void)what;
    while ((t = v->closing) != NULL) {
        v->closing = t->next_closing;
        tables_close(t);
    }
}

/* tables_release - a flight gives back its reference on the tables (flight_release_fn) */
static void tables_release(void *holder)
{
    tables_unref(holder);
}

/* flight_config_of - the flight limits from the verifier's configuration */
static struct flight_config flight_config_of(const struct verifier_config *cfg)
{
    struct flight_config fc = {cfg->max_probes, cfg->max_probes_per_destination,
                               cfg->probe_queue_limit, cfg->probe_queue_per_destination,
                               cfg->flight_timeout_ms};
    return fc;
}

/*
 * verifier_route_options - the per-route options the verifier itself
 * handles for every backend route, whatever its method (docs/ROUTES.md).
 * Durations are in milliseconds here; a bare number is seconds.
 */
static const struct value_decl verifier_route_options[] = {
    {"fold_local", VALUE_BOOL, 0, 1},
    {"fold_subaddress", VALUE_BOOL, 0, 1},
    {"accept_all_check", VALUE_BOOL, 0, 1},
    {"accept_all_ttl", VALUE_DURATION, 1, 365LL * 86400000},
    {"breaker_failures", VALUE_COUNT, 1, 1000},
    {"breaker_time", VALUE_DURATION, 1, 86400000},
    {"lock_time", VALUE_DURATION, 1, 600000},
    {NULL, 0, 0, 0},
};

/* opt_decl - the declaration of one of the verifier's own options */
static const struct value_decl *opt_decl(const char *name)
{
    for (const struct value_decl *d = verifier_route_options; d->name != NULL; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* opt_bool - a yes/no route option (declared and checked already), def when absent */
static int opt_bool(const struct route *r, const char *name, int def)
{
    int b;
    const char *v = route_option(r, name, NULL);

    return v != NULL && value_parse_bool(v, &b) == VALUE_OK ? b : def;
}

/* opt_num - a duration (in ms) or count route option (declared and checked already) */
static long long opt_num(const struct route *r, const char *name, long long def)
{
    const struct value_decl *d = opt_decl(name);
    const char *v = route_option(r, name, NULL);
    long long n;

    if (v == NULL || d == NULL)
        return def;
    if (d->type == VALUE_DURATION)
        return value_parse_duration(v, VALUE_SECONDS, d->min, d->max, &n) == VALUE_OK ? n : def;
    return value_parse_count(v, d->min, d->max, &n) == VALUE_OK ? n : def;
}

/*
 * route_backend_options - check every option of rb's route against the
 * verifier's table and the backend's (ops may be NULL: a method not in this
 * build claims nothing), then take the verifier's own values.
 */
static int route_backend_options(struct route_backend *rb, const struct backend_ops *ops, char *err,
                                 size_t errlen)
{
    const struct route *r = rb->route;
    int is_smtp = r->method == ROUTE_SMTP;
    const struct value_decl *tables[2] = {verifier_route_options, ops ? ops->options : NULL};

    if (route_options_check(r, tables, 2, err, errlen) < 0)
        return -1;
    /* a callout passes the local part as given; tables compare case-insensitively */
    rb->fold_local = opt_bool(r, "fold_local", !is_smtp);
    /* the CDB backend tries user+ext then user itself, so it needs the whole address */
    rb->fold_subaddress = opt_bool(r, "fold_subaddress", r->method != ROUTE_CDB);
    rb->accept_all_check = opt_bool(r, "accept_all_check", 0);
    long long ms = opt_num(r, "accept_all_ttl", 86400000LL);
    rb->accept_all_ttl = (int)(ms / 1000 > 0 ? ms / 1000 : 1);
    ms = opt_num(r, "breaker_time", 60000);
    rb->breaker_secs = (int)(ms / 1000 > 0 ? ms / 1000 : 1);
    rb->lock_ms = (int)opt_num(r, "lock_time", 15000);
    rb->breaker_failures = (int)opt_num(r, "breaker_failures", 5);
    return 0;
}

/*
 * tables_open - parse the route table and open a backend for every route
 * that needs one. The recipient delimiter is the table's own copy, so that
 * a reload can change it: lookups keep the tables (and so the delimiter)
 * they started with, and the backends of these tables see only this one.
 */
static struct verifier_tables *tables_open(struct verifier *v, const char *path,
                                           const char *delimiter, char *err, size_t errlen)
{
    struct backend_env tenv = v->env;
    const struct backend_env *env = &tenv;
    struct verifier_tables *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->refs = 1;
    t->path = strdup(path);
    t->delimiter = strdup(delimiter != NULL ? delimiter : "");
    if (t->path == NULL || t->delimiter == NULL) {
        snprintf(err, errlen, "out of memory");
        tables_unref(t);
        return NULL;
    }
    tenv.recipient_delimiter = t->delimiter;
    t->routes = route_table_load(path, err, errlen);
    if (t->routes == NULL) {
        tables_unref(t);
        return NULL;
    }
    t->nroutes = route_table_count(t->routes);
    t->backends = calloc((size_t)t->nroutes + 1, sizeof(*t->backends));
    if (t->backends == NULL) {
        snprintf(err, errlen, "out of memory");
        t->nroutes = 0;
        tables_unref(t);
        return NULL;
    }
    for (int i = 0; i < t->nroutes; i++) {
        const struct route *r = route_table_get(t->routes, i);
        struct route_backend *rb = &t->backends[i];

        rb->route = r;
        snprintf(rb->where, sizeof(rb->where), "%s:%d", path, r->lineno);
        char oerr[256];
        if (r->method != ROUTE_CDB && r->method != ROUTE_SMTP && r->method != ROUTE_LDAP) {
            /* a static answer or a rewrite: no option applies */
            const struct value_decl *none[1] = {NULL};
            if (route_options_check(r, none, 0, oerr, sizeof(oerr)) < 0) {
                snprintf(err, errlen, "%s:%d: %s", path, r->lineno, oerr);
                tables_unref(t);
                return NULL;
            }
            continue;
        }
        const struct backend_ops *ops = backend_for(r->method);
        if (route_backend_options(rb, ops, oerr, sizeof(oerr)) < 0) {
            snprintf(err, errlen, "%s:%d: %s", path, r->lineno, oerr);
            tables_unref(t);
            return NULL;
        }
        rb->ops = ops;
        if (rb->ops == NULL) {
            log_warn("%s:%d: %s verification is not available in this build: "
                     "recipients routed here get tempfail",
                     path, r->lineno, route_method_name(r->method));
            continue;
        }
        char berr[256];
        rb->state = rb->ops->open(env, r, berr, sizeof(berr));
        if (rb->state == NULL) {
            snprintf(err, errlen, "%s:%d: %s", path, r->lineno, berr);
            rb->ops = NULL;
            tables_unref(t);
            return NULL;
        }
    }
    return t;
}

/* tables_load - tables_open with the named sources in the backends' env while they open */
static struct verifier_tables *tables_load(struct verifier *v, const struct verifier_config *cfg,
                                           char *err, size_t errlen)
{
    v->env.sources = cfg->sources;
    v->env.nsources = cfg->sources != NULL ? cfg->nsources : 0;
    struct verifier_tables *t =
        tables_open(v, cfg->route_table, cfg->recipient_delimiter, err, errlen);
    v->env.sources = NULL;
    v->env.nsources = 0;
    if (t != NULL)
        t->v = v; /* from now on its last reference closes it from the loop */
    return t;
}

/* route_backend_of - the backend slot of route r in t (tables are small: a scan is fine) */
static struct route_backend *route_backend_of(struct verifier_tables *t, const struct route *r)
{
    for (int i = 0; i < t->nroutes; i++)
        if (t->backends[i].route == r)
            return &t->backends[i];
    return NULL;
}

struct verifier *verifier_new(struct event_base *base, const struct verifier_config *cfg, char *err,
                              size_t errlen)
{
    struct verifier *v = calloc(1, sizeof(*v));

    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->base = base;
    TAILQ_INIT(&v->reqs);
    v->budget_ms = cfg->answer_budget_ms > 0 ? cfg->answer_budget_ms : 5000;
    v->env.base = base;
    /* one resolver for every table: reading resolv.conf is the only blocking step, at start */
    v->dns = dns_new(base, cfg->dns_servers, cfg->dns_timeout_ms > 0 ? cfg->dns_timeout_ms : 4000,
                     err, errlen);
    if (v->dns == NULL) {
        verifier_free(v);
        return NULL;
    }
    v->env.dns = v->dns;
    v->ev_close = event_new(base, -1, 0, tables_close_cb, v);
    if (v->ev_close == NULL) {
        snprintf(err, errlen, "out of memory");
        verifier_free(v);
        return NULL;
    }
    v->breakers = breaker_table_new(10000);
    if (v->breakers == NULL) {
        snprintf(err, errlen, "out of memory");
        verifier_free(v);
        return NULL;
    }
    v->cache = cache_new(base, &cfg->cache, err, errlen);
    if (v->cache == NULL) {
        verifier_free(v);
        return NULL;
    }
    struct flight_config fc = flight_config_of(cfg);
    v->flights = flight_pool_new(base, v->cache, v->breakers, &fc, tables_release);
    if (v->flights == NULL) {
        snprintf(err, errlen, "out of memory");
        verifier_free(v);
        return NULL;
    }
    v->tables = tables_load(v, cfg, err, errlen);
    if (v->tables == NULL) {
        verifier_free(v);
        return NULL;
    }
    return v;
}

int verifier_reload(struct verifier *v, const struct verifier_config *cfg, char *err, size_t errlen)
{
    /*
     * The cache object stays (backends of tables still in use point at
     * it); its Redis side is swapped by the caller (cache_swap_store), not
     * here. The resolver object stays too, but takes the new servers and
     * deadline on a fresh channel (dns_reconfigure: lookups in progress
     * finish on the old one). The
     * cache's TTLs and L1 bound are plain numbers and apply at once; the
     * steps that can fail go before the tables are swapped (after the
     * resolver's, the L1 bound can fail only for want of memory); the
     * delimiter comes with the new tables.
     */
    struct verifier_tables *t = tables_load(v, cfg, err, errlen);

    if (t == NULL)
        return -1;
    if (dns_reconfigure(v->dns, cfg->dns_servers,
                        cfg->dns_timeout_ms > 0 ? cfg->dns_timeout_ms : 4000, err, errlen) < 0) {
        tables_unref(t);
        return -1;
    }
    if (cache_set_l1_size(v->cache, cfg->cache.l1_max_entries, err, errlen) < 0) {
        tables_unref(t);
        return -1;
    }
    tables_unref(v->tables);
    v->tables = t;
    if (cfg->answer_budget_ms > 0)
        v->budget_ms = cfg->answer_budget_ms;
    struct flight_config fc = flight_config_of(cfg);
    flight_pool_configure(v->flights, &fc);
    cache_set_ttls(v->cache, &cfg->cache);
    return 0;
}

static void req_done_cb(evutil_socket_t fd, short what, void *arg);
static void req_budget_cb(evutil_socket_t fd, short what, void *arg);

/*
 * VERIFIER_SPARE_MAX - finished requests kept for reuse. A request is
 * 2 KiB plus two events: allocating and freeing them was a fifth of the
 * instructions of a cached verdict. A few dozen cover any burst the loop
 * answers in one turn; beyond that they are freed.
 */
#define VERIFIER_SPARE_MAX 64

/*
 * req_new - a zeroed request with its two events: a spare one (its events
 * kept, not pending), or a new one. NULL when out of memory.
 */
static struct verifier_req *req_new(struct verifier *v)
{
    struct verifier_req *r = v->spare;

    if (r != NULL) {
        struct event *done = r->ev_done, *budget = r->ev_budget;
        v->spare = r->next_spare;
        v->nspare--;
        memset(r, 0, sizeof(*r));
        r->ev_done = done;
        r->ev_budget = budget;
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->ev_done = event_new(v->base, -1, 0, req_done_cb, r);
    r->ev_budget = evtimer_new(v->base, req_budget_cb, r);
    if (r->ev_done == NULL || r->ev_budget == NULL) {
        if (r->ev_done)
            event_free(r->ev_done);
        if (r->ev_budget)
            event_free(r->ev_budget);
        free(r);
        return NULL;
    }
    return r;
}

/* req_destroy - free a request that is on no list */
static void req_destroy(struct verifier_req *r)
{
    event_free(r->ev_done);
    event_free(r->ev_budget);
    free(r);
}

/*
 * req_free - the request is finished or cancelled: drop its tables and keep
 * it as a spare (its events deleted first, so nothing of it can still fire),
 * or free it.
 */
static void req_free(struct verifier_req *r)
{
    struct verifier *v = r->v;

    TAILQ_REMOVE(&v->reqs, r, all_link);
    tables_unref(r->t);
    r->t = NULL;
    event_del(r->ev_done);
    event_del(r->ev_budget);
    if (v->nspare < VERIFIER_SPARE_MAX) {
        r->next_spare = v->spare;
        v->spare = r;
        v->nspare++;
        return;
    }
    req_destroy(r);
}

void verifier_free(struct verifier *v)
{
    if (v == NULL)
        return;
    while (!TAILQ_EMPTY(&v->reqs))
        verifier_cancel(TAILQ_FIRST(&v->reqs));
    while (v->spare != NULL) {
        struct verifier_req *r = v->spare;
        v->spare = r->next_spare;
        req_destroy(r);
    }
    /* before the tables: flights hold references on them */
    flight_pool_free(v->flights);
    tables_unref(v->tables);
    if (v->ev_close != NULL) {
        tables_close_cb(-1, 0, v);
        event_free(v->ev_close);
    }
    breaker_table_free(v->breakers);
    /* after the tables: their backends cancel DNS lookups when they close */
    if (v->dns != NULL)
        dns_free(v->dns);
    cache_free(v->cache);
    free(v);
}

/* count - one decision into the statistics */
static void count(struct verifier *v, const struct verifier_req *r)
{
    if (r->key[0] == '\0') {
        v->stats.malformed++;
        return;
    }
    switch (r->result.kind) {
    case VERDICT_VALID:
        v->stats.valid++;
        break;
    case VERDICT_INVALID:
        v->stats.invalid++;
        break;
    case VERDICT_TEMPFAIL:
        v->stats.tempfail++;
        break;
    default:
        v->stats.unknown++;
        break;
    }
}

/* req_done_cb - deferred completion: run the callback once, then free the request */
static void req_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct verifier_req *r = arg;
    struct verifier_result res = {r->key, r->cached, r->where};

    count(r->v, r);
    r->cb(&r->result, &res, r->arg);
    req_free(r);
}

/* req_finish - record the verdict and schedule the callback */
static void req_finish(struct verifier_req *r, const struct verdict *v, const char *cached)
{
    if (r->ev_budget)
        event_del(r->ev_budget);
    r->result = *v;
    r->cached = cached;
    r->state = REQ_DONE;
    event_active(r->ev_done, EV_TIMEOUT, 0);
}

/*
 * req_mark - a backend that speaks for a remote party (BACKEND_REMOTE_TEXT)
 * has its words marked on every verdict of its route, fresh or cached
 * (entries cached before verdicts had flags included); our own stay ours.
 */
static void req_mark(const struct verifier_req *r, struct verdict *vd)
{
    if (r->rb->ops->flags & BACKEND_REMOTE_TEXT && !(vd->flags & VERDICT_OWN_TEXT))
        vd->flags |= VERDICT_REMOTE_TEXT;
}

/* req_flight_done - the flight's verdict (flight_done_fn) */
static void req_flight_done(const struct verdict *fv, void *arg)
{
    struct verifier_req *r = arg;
    struct verdict vd = *fv;

    req_mark(r, &vd);
    req_finish(r, &vd, "no");
}

/*
 * req_arm_budget - start the answer budget unless it runs already (a Redis
 * miss arrives with it running). An L1 hit is answered without it: the
 * budget is armed only on the paths that wait, which saves two timer-heap
 * operations on every cached verdict.
 */
static void req_arm_budget(struct verifier_req *r)
{
    if (!evtimer_pending(r->ev_budget, NULL)) {
        struct timeval tv = {r->v->budget_ms / 1000, (r->v->budget_ms % 1000) * 1000};
        evtimer_add(r->ev_budget, &tv);
    }
}

/* req_backend - wait for the route's backend through a flight (shared, queued, bounded) */
static void req_backend(struct verifier_req *r)
{
    struct verdict vd;

    req_arm_budget(r);
    r->waiter.cb = req_flight_done;
    r->waiter.arg = r;
    r->t->refs++; /* the flight's own reference: flight_join always consumes it */
    r->state = REQ_BACKEND;
    if (flight_join(r->v->flights, r->rb, r->t, &r->addr, r->key, &r->waiter, &vd) < 0)
        req_finish(r, &vd, "no");
}

/* req_refresh - re-verify in the background (refresh-ahead); nobody waits for it */
static void req_refresh(struct verifier_req *r)
{
    struct verdict vd;

    r->t->refs++;
    if (flight_join(r->v->flights, r->rb, r->t, &r->addr, r->key, NULL, &vd) < 0)
        log_debug("%s: no background refresh now: %s", r->key, vd.text);
}

/*
 * req_cached - a cache hit. A stale "valid" is answered and re-verified in
 * the background (refresh-ahead). A stale "invalid" is not answered: a
 * mailbox created since must not get a 5xx, so the lookup waits for the
 * re-verification like a miss (within its budget; tempfail after).
 */
static void req_cached(struct verifier_req *r, const struct verdict *cv, int stale,
                       const char *cached)
{
    struct verdict vdm = *cv, *vd = &vdm;

    req_mark(r, &vdm);
    if (stale && vd->kind == VERDICT_INVALID) {
        req_backend(r);
        return;
    }
    if (stale)
        req_refresh(r);
    req_finish(r, vd, cached);
}

/* req_cache_cb - Redis answered (or failed: then go to the backend) */
static void req_cache_cb(int found, const struct verdict *vd, int stale, void *arg)
{
    struct verifier_req *r = arg;

    r->creq = NULL;
    if (found)
        req_cached(r, vd, stale, "redis");
    else
        req_backend(r);
}

/* req_budget_cb - the answer budget has passed: answer tempfail, let the flight go on */
static void req_budget_cb(evutil_socket_t fd, short what, void *arg)
{
    struct verifier_req *r = arg;
    struct verdict vd;

    r->v->stats.budget_expired++;
    if (r->state == REQ_CACHE && r->creq != NULL) {
        cache_cancel(r->creq);
        r->creq = NULL;
    } else if (r->state == REQ_BACKEND) {
        flight_leave(&r->waiter);
    }
    verdict_set(&vd, VERDICT_TEMPFAIL, 450, "verifier",
                "verification in progress, try again later");
    vd.flags = VERDICT_OWN_TEXT;
    req_finish(r, &vd, "no");
}

/* req_start - route the parsed address and decide how to answer */
static void req_start(struct verifier_req *r)
{
    struct verifier *v = r->v;
    struct verdict vd;
    char err[256];
    int failed = 0;
    const struct route *route = route_resolve(r->t->routes, &r->addr, &failed, err, sizeof(err));

    if (failed) {
        verdict_set(&vd, VERDICT_TEMPFAIL, 0, "route", err);
        snprintf(r->key, sizeof(r->key), "%s", "?");
        req_finish(r, &vd, "no");
        return;
    }
    if (route == NULL) {
        address_key(&r->addr, 1, r->key, sizeof(r->key));
        verdict_set(&vd, VERDICT_UNKNOWN, 0, "route", "no route matches");
        req_finish(r, &vd, "no");
        return;
    }
    r->rb = route_backend_of(r->t, route);
    if (r->rb != NULL) /* formatted when the table was loaded: this runs for every lookup */
        memcpy(r->where, r->rb->where, sizeof(r->where));
    else
        snprintf(r->where, sizeof(r->where), "%s:%d", r->t->path, route->lineno);
    int fold_local = 1;
    if (route->method == ROUTE_CDB || route->method == ROUTE_SMTP || route->method == ROUTE_LDAP) {
        fold_local = r->rb->fold_local;
        /* user+ext and user are one mailbox: one cache entry, one probe */
        if (r->rb->fold_subaddress)
            address_strip_subaddress(&r->addr, r->t->delimiter);
    }
    if (address_key(&r->addr, fold_local, r->key, sizeof(r->key)) < 0)
        snprintf(r->key, sizeof(r->key), "%s", "?");

    switch (route->method) {
    case ROUTE_DUNNO:
        verdict_set(&vd, VERDICT_UNKNOWN, 0, "static", "route says dunno");
        vd.flags = VERDICT_OWN_TEXT;
        req_finish(r, &vd, "no");
        return;
    case ROUTE_ACCEPT:
        verdict_set(&vd, VERDICT_VALID, 0, "static", "route says accept");
        vd.flags = VERDICT_OWN_TEXT;
        req_finish(r, &vd, "no");
        return;
    case ROUTE_REJECT:
        verdict_set(&vd, VERDICT_INVALID, 550, "static", "5.1.1 User unknown");
        vd.flags = VERDICT_OWN_TEXT;
        req_finish(r, &vd, "no");
        return;
    default:
        break;
    }
    if (r->rb == NULL || r->rb->ops == NULL) {
        char text[128];
        snprintf(text, sizeof(text), "4.3.0 %s verification not available",
                 route_method_name(route->method));
        verdict_set(&vd, VERDICT_TEMPFAIL, 0, "route", text);
        req_finish(r, &vd, "no");
        return;
    }
    if (!(r->rb->ops->flags & BACKEND_ASYNC)) {
        /* a local table answers faster than any cache: ask it, write the verdict through */
        enum backend_status st = r->rb->ops->lookup(r->rb->state, &r->addr, &vd, NULL, NULL, NULL);
        if (st == BACKEND_DONE)
            cache_put_if_changed(v->cache, r->key, &vd);
        req_mark(r, &vd);
        req_finish(r, &vd, "no");
        return;
    }

    if (r->flags & VERIFIER_REFRESH) {
        req_backend(r);
        return;
    }
    int stale = 0;
    switch (cache_get(v->cache, r->key, &vd, &stale, req_cache_cb, r, &r->creq)) {
    case CACHE_HIT:
        req_cached(r, &vd, stale, "l1");
        return;
    case CACHE_PENDING:
        req_arm_budget(r);
        r->state = REQ_CACHE;
        return;
    case CACHE_MISS:
        req_backend(r);
        return;
    }
}

struct verifier_req *verifier_lookup(struct verifier *v, const char *rcpt, size_t len,
                                     verifier_cb cb, void *arg)
{
    return verifier_lookup_flags(v, rcpt, len, 0, cb, arg);
}

struct verifier_req *verifier_lookup_flags(struct verifier *v, const char *rcpt, size_t len,
                                           int flags, verifier_cb cb, void *arg)
{
    struct verifier_req *r = req_new(v);
    char err[128];

    if (r == NULL)
        return NULL;
    r->v = v;
    r->flags = flags;
    r->cb = cb;
    r->arg = arg;
    r->cached = "no";
    r->t = v->tables;
    r->t->refs++;
    TAILQ_INSERT_TAIL(&v->reqs, r, all_link);
    v->stats.lookups++;

    if (address_parse(rcpt, len, &r->addr, err, sizeof(err)) < 0 || r->addr.is_null) {
        struct verdict vd;
        char text[VERDICT_TEXT_MAX];
        snprintf(text, sizeof(text), "5.1.3 %s", r->addr.is_null ? "null recipient" : err);
        verdict_set(&vd, VERDICT_INVALID, 501, "syntax", text);
        vd.flags = VERDICT_OWN_TEXT;
        r->key[0] = '\0';
        req_finish(r, &vd, "no");
        return r;
    }
    req_start(r);
    return r;
}

void verifier_cancel(struct verifier_req *r)
{
    switch (r->state) {
    case REQ_CACHE:
        if (r->creq != NULL)
            cache_cancel(r->creq);
        break;
    case REQ_BACKEND:
        /* the flight goes on without us and fills the cache */
        flight_leave(&r->waiter);
        break;
    default:
        break;
    }
    req_free(r);
}

void verifier_get_stats(const struct verifier *v, struct verifier_stats *out)
{
    struct flight_stats fs;

    *out = v->stats;
    out->breakers_open = breaker_open_count(v->breakers, time(NULL));
    cache_get_stats(v->cache, &out->cache);
    flight_pool_stats(v->flights, &fs);
    out->probes = fs.probes;
    out->breaker_rejects = fs.breaker_rejects;
    out->accept_all_domains = fs.accept_all_domains;
    out->probes_refused = fs.refused;
    out->flights_expired = fs.expired;
    out->probes_dropped = fs.dropped;
    out->flights = fs.flights;
    out->probes_queued = fs.queued;
    out->probes_running = fs.running;
}

struct cache *verifier_cache(struct verifier *v)
{
    return v->cache;
}
