/*
 * flight.c - one backend request shared by every lookup of one address.
 *
 * An address that arrives again while it is being verified joins the
 * flight already in progress instead of probing the next hop again, so a
 * hammered MX costs its next hop one probe per address. A flight is a
 * small state machine:
 *
 *   DOMAIN  (accept_all_check) is this domain's next hop known to accept
 *           every address? Then the answer is "unknown" without a probe.
 *   LOCK    with Redis, take callahead:lock:<address> (SET NX PX) so that
 *           of several policyd hosts only one probes;
 *   WATCH   another host holds the lock: poll the cache for its verdict
 *           until the lock would have expired, then probe ourselves;
 *   PROBE   the circuit breaker allows it: ask the backend;
 *   RANDOM  (accept_all_check) the probe said valid and the domain is not
 *           known yet: probe a random local part once; if that is accepted
 *           too, the domain accepts everything and "valid" means nothing.
 *
 * The flight outlives its waiters: when their answer budget passes they
 * leave with tempfail, and the verdict still goes into the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "verifier_int.h"

enum flight_state {
    F_START,
    F_DOMAIN,
    F_LOCK,
    F_WATCH,
    F_QUEUED,
    F_PROBE,
    F_RANDOM,
    F_STATE_COUNT
};

static const char *const flight_state_names[F_STATE_COUNT] = {"start",  "domain", "lock",  "watch",
                                                              "queued", "probe",  "random"};

#define FLIGHT_WATCH_POLL_MS 100

struct flight {
    struct verifier *v;
    struct verifier_tables *t;
    struct route_backend *rb;
    enum flight_state state;
    char key[ADDRESS_MAX + 1];
    char dest[ADDRESS_DOMAIN_MAX + 32]; /* circuit breaker key */
    struct address addr;
    struct address random_addr;
    struct backend_req *breq;
    struct cache_req *creq;
    struct event *timer;
    time_t watch_until;
    int domain_known;     /* a domain fact says the next hop verifies */
    struct verdict found; /* the probe's verdict while the random probe runs */
    int has_slot;         /* counted in v->probing */
    int has_lock;         /* we hold callahead:lock:<key> */
    struct req_list waiters;
    LIST_ENTRY(flight) link;
    TAILQ_ENTRY(flight) queue_link; /* v->probe_queue while F_QUEUED */
};

static void flight_lock(struct flight *f);
static void flight_probe(struct flight *f);

/* flight_enter_state - the one place the state changes; logs transitions at debug level */
static void flight_enter_state(struct flight *f, enum flight_state st)
{
    if ((unsigned)st >= F_STATE_COUNT) {
        log_err("flight %s: bad state %d", f->key, (int)st);
        abort();
    }
    log_debug("flight %s: %s -> %s", f->key, flight_state_names[f->state], flight_state_names[st]);
    f->state = st;
}

static void flight_free(struct flight *f)
{
    struct verifier *v = f->v;

    if (f->state == F_QUEUED)
        TAILQ_REMOVE(&v->probe_queue, f, queue_link);
    if (f->has_slot) {
        v->probing--;
        if (!TAILQ_EMPTY(&v->probe_queue))
            event_active(v->ev_probe_queue, EV_TIMEOUT, 0);
    }
    if (f->creq != NULL)
        cache_cancel(f->creq);
    if (f->breq != NULL && f->rb->ops->cancel != NULL)
        f->rb->ops->cancel(f->breq);
    if (f->timer != NULL)
        event_free(f->timer);
    LIST_REMOVE(f, link);
    tables_unref(f->t);
    free(f);
}

/* flight_finish - answer every waiter with vd (cached first when store), then free */
static void flight_finish(struct flight *f, const struct verdict *vd, int store)
{
    struct verifier_req *r;

    if (store)
        cache_put(f->v->cache, f->key, vd);
    if (f->has_lock)
        cache_unlock(f->v->cache, f->key);
    while ((r = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, r, flight_link);
        r->flight = NULL;
        req_finish(r, vd, "no");
    }
    flight_free(f);
}

/* is_session_failure - a verdict about the next hop, not the address (counts for the breaker) */
static int is_session_failure(const struct verdict *vd)
{
    return vd->kind == VERDICT_TEMPFAIL && (vd->code == 0 || vd->code == 421);
}

/* flight_random_done - the random local part's answer decides what "valid" means here */
static void flight_random_done(const struct verdict *rv, void *arg)
{
    struct flight *f = arg;
    struct verdict fact, vd = f->found;

    f->breq = NULL;
    if (rv->kind == VERDICT_VALID) {
        verdict_set(&fact, VERDICT_UNKNOWN, rv->code, rv->source,
                    "accept-all: a random local part was accepted");
        cache_put_ns(f->v->cache, "dom", f->addr.domain, &fact, f->rb->accept_all_ttl);
        log_info("domain %s: next hop %s accepts every address: its \"valid\" answers are not "
                 "trusted for %d s",
                 f->addr.domain, rv->source, f->rb->accept_all_ttl);
        f->v->stats.accept_all_domains++;
        verdict_set(&vd, VERDICT_UNKNOWN, f->found.code, f->found.source,
                    "next hop accepts all addresses");
    } else if (rv->kind == VERDICT_INVALID) {
        verdict_set(&fact, VERDICT_VALID, rv->code, rv->source,
                    "verifies: a random local part was rejected");
        cache_put_ns(f->v->cache, "dom", f->addr.domain, &fact, f->rb->accept_all_ttl);
    }
    /* tempfail: no fact either way; the address's own answer stands this time */
    flight_finish(f, &vd, 1);
}

/* flight_probe_done - the backend's verdict on the address */
static void flight_probe_done(const struct verdict *vd, void *arg)
{
    struct flight *f = arg;
    struct verifier *v = f->v;
    int ok = !is_session_failure(vd);

    f->breq = NULL;
    int change = breaker_report(v->breakers, f->dest, ok, f->rb->breaker_failures,
                                f->rb->breaker_secs, time(NULL));
    if (change > 0)
        log_warn("next hop for %s keeps failing (%s): no probes for %d s", f->dest, vd->text,
                 f->rb->breaker_secs);
    else if (change < 0)
        log_info("next hop for %s answers again: probing resumes", f->dest);

    if (vd->kind == VERDICT_VALID && f->rb->accept_all_check && !f->domain_known) {
        char local[40], buf[ADDRESS_MAX + 1];
        unsigned char rnd[8];
        arc4random_buf(rnd, sizeof(rnd));
        snprintf(local, sizeof(local), "callahead-check-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        snprintf(buf, sizeof(buf), "%s@%s", local, f->addr.domain);
        char err[128];
        if (address_parse(buf, strlen(buf), &f->random_addr, err, sizeof(err)) == 0) {
            struct verdict rv;
            f->found = *vd;
            flight_enter_state(f, F_RANDOM);
            enum backend_status st = f->rb->ops->lookup(f->rb->state, &f->random_addr, &rv,
                                                        flight_random_done, f, &f->breq);
            if (st != BACKEND_PENDING)
                flight_random_done(&rv, f);
            return;
        }
    }
    /* a tempfail is cached only for its (short) TTL: a cached 4xx never becomes a 5xx */
    flight_finish(f, vd, 1);
}

/*
 * flight_probe - ask the backend, unless the circuit breaker is open for
 * this next hop; wait in the FIFO queue while max_probes are in progress.
 */
static void flight_probe(struct flight *f)
{
    struct verdict vd;
    int retry_in = 0;

    if (!f->has_slot) {
        if (f->v->probing >= f->v->max_probes) {
            flight_enter_state(f, F_QUEUED);
            TAILQ_INSERT_TAIL(&f->v->probe_queue, f, queue_link);
            return;
        }
        f->has_slot = 1;
        f->v->probing++;
    }

    if (!breaker_allow(f->v->breakers, f->dest, time(NULL), &retry_in)) {
        char text[160];
        snprintf(text, sizeof(text),
                 "4.4.1 next hop unavailable (it kept failing), retrying it in %d s", retry_in);
        verdict_set(&vd, VERDICT_TEMPFAIL, 0, "breaker", text);
        f->v->stats.breaker_rejects++;
        flight_finish(f, &vd, 0);
        return;
    }
    flight_enter_state(f, F_PROBE);
    f->v->stats.probes++;
    enum backend_status st =
        f->rb->ops->lookup(f->rb->state, &f->addr, &vd, flight_probe_done, f, &f->breq);
    if (st != BACKEND_PENDING)
        flight_probe_done(&vd, f);
}

/* flight_watch_got - another host is probing: has its verdict reached the cache yet? */
static void flight_watch_got(int found, const struct verdict *vd, int stale, void *arg)
{
    struct flight *f = arg;

    f->creq = NULL;
    if (found) {
        flight_finish(f, vd, 0);
        return;
    }
    if (time(NULL) >= f->watch_until) {
        log_info("%s: the host holding the probe lock gave no verdict: probing here", f->key);
        flight_probe(f);
        return;
    }
    struct timeval tv = {0, FLIGHT_WATCH_POLL_MS * 1000};
    evtimer_add(f->timer, &tv);
}

static void flight_watch_tick(evutil_socket_t fd, short what, void *arg)
{
    struct flight *f = arg;
    struct verdict vd;
    int stale = 0;

    switch (cache_get(f->v->cache, f->key, &vd, &stale, flight_watch_got, f, &f->creq)) {
    case CACHE_HIT:
        flight_watch_got(1, &vd, stale, f);
        break;
    case CACHE_MISS:
        flight_watch_got(0, NULL, 0, f);
        break;
    case CACHE_PENDING:
        break;
    }
}

/* flight_locked - SET NX answered: probe, or watch the cache for the other host's verdict */
static void flight_locked(int acquired, void *arg)
{
    struct flight *f = arg;

    f->creq = NULL;
    if (acquired) {
        f->has_lock = 1;
        flight_probe(f);
        return;
    }
    flight_enter_state(f, F_WATCH);
    f->watch_until = time(NULL) + (f->rb->lock_ms + 999) / 1000;
    f->timer = evtimer_new(f->v->base, flight_watch_tick, f);
    if (f->timer == NULL) {
        flight_probe(f);
        return;
    }
    struct timeval tv = {0, FLIGHT_WATCH_POLL_MS * 1000};
    evtimer_add(f->timer, &tv);
}

static void flight_lock(struct flight *f)
{
    flight_enter_state(f, F_LOCK);
    if (cache_lock(f->v->cache, f->key, f->rb->lock_ms, flight_locked, f, &f->creq) == 1)
        flight_locked(1, f);
}

/* flight_domain_got - the domain fact: accept-all answers "unknown" without a probe */
static void flight_domain_got(int found, const struct verdict *fact, int stale, void *arg)
{
    struct flight *f = arg;
    struct verdict vd;

    f->creq = NULL;
    if (found && fact->kind == VERDICT_UNKNOWN) {
        verdict_set(&vd, VERDICT_UNKNOWN, fact->code, fact->source,
                    "next hop accepts all addresses");
        flight_finish(f, &vd, 0);
        return;
    }
    f->domain_known = found;
    flight_lock(f);
}

/* flight_start - the first step that applies to this route */
static void flight_start(struct flight *f)
{
    struct verdict fact;
    int stale = 0;

    if (!f->rb->accept_all_check) {
        flight_lock(f);
        return;
    }
    flight_enter_state(f, F_DOMAIN);
    switch (cache_get_ns(f->v->cache, "dom", f->addr.domain, f->rb->accept_all_ttl, &fact, &stale,
                         flight_domain_got, f, &f->creq)) {
    case CACHE_HIT:
        flight_domain_got(1, &fact, stale, f);
        break;
    case CACHE_MISS:
        flight_domain_got(0, NULL, 0, f);
        break;
    case CACHE_PENDING:
        break;
    }
}

void flight_join(struct verifier *v, struct verifier_tables *t, struct route_backend *rb,
                 const struct address *addr, const char *key, struct verifier_req *r)
{
    struct flight *f;

    LIST_FOREACH(f, &v->flights, link)
    {
        if (f->rb->route == rb->route && strcmp(f->key, key) == 0)
            break;
    }
    if (f != NULL) {
        if (r != NULL) {
            r->flight = f;
            r->state = REQ_BACKEND;
            TAILQ_INSERT_TAIL(&f->waiters, r, flight_link);
        }
        return;
    }
    if ((f = calloc(1, sizeof(*f))) == NULL) {
        if (r != NULL) {
            struct verdict vd;
            verdict_set(&vd, VERDICT_TEMPFAIL, 0, "verifier", "4.3.0 out of memory");
            req_finish(r, &vd, "no");
        }
        return;
    }
    f->v = v;
    f->t = t;
    t->refs++;
    f->rb = rb;
    f->addr = *addr;
    snprintf(f->key, sizeof(f->key), "%s", key);
    /* the breaker guards a destination: the next hop, or each domain's MX set */
    if (rb->breaker_per_domain)
        snprintf(f->dest, sizeof(f->dest), "smtp:mx:%s", addr->domain);
    else
        snprintf(f->dest, sizeof(f->dest), "%s:%s", route_method_name(rb->route->method),
                 rb->route->arg ? rb->route->arg : "");
    TAILQ_INIT(&f->waiters);
    LIST_INSERT_HEAD(&v->flights, f, link);
    if (r != NULL) {
        r->flight = f;
        r->state = REQ_BACKEND;
        TAILQ_INSERT_TAIL(&f->waiters, r, flight_link);
    }
    flight_start(f);
}

void flight_leave(struct verifier_req *r)
{
    if (r->flight != NULL) {
        TAILQ_REMOVE(&r->flight->waiters, r, flight_link);
        r->flight = NULL;
    }
}

void flight_queue_cb(evutil_socket_t fd, short what, void *arg)
{
    struct verifier *v = arg;
    struct flight *f;

    while (v->probing < v->max_probes && (f = TAILQ_FIRST(&v->probe_queue)) != NULL) {
        TAILQ_REMOVE(&v->probe_queue, f, queue_link);
        flight_enter_state(f, F_PROBE);
        flight_probe(f);
    }
}

void flight_free_all(struct verifier *v)
{
    while (!LIST_EMPTY(&v->flights)) {
        struct flight *f = LIST_FIRST(&v->flights);
        struct verifier_req *r;
        while ((r = TAILQ_FIRST(&f->waiters)) != NULL)
            flight_leave(r);
        flight_free(f);
    }
}
