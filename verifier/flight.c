/*
 * flight.c - one backend request shared by every lookup of one address,
 * and the per-destination probe queues (see flight.h for the limits).
 *
 * An address that arrives again while it is being verified joins the
 * flight already in progress (found by (route, key) in a hash table)
 * instead of probing the next hop again, so a hammered MX costs its next
 * hop one probe per address. A flight is a small state machine:
 *
 *   START   created; starts from the loop, so no waiter is ever answered
 *           from inside flight_join;
 *   DOMAIN  (accept_all_check) is this domain's next hop known to accept
 *           every address? Then the answer is "unknown" without a probe.
 *   LOCK    with Redis, take callahead:lock:<address> (SET NX PX, with a
 *           token of our own, for the flight's deadline) so that of several
 *           policyd hosts only one probes;
 *   WATCH   another host holds the lock: poll the cache for its verdict
 *           until lock_time has passed, then probe ourselves;
 *   QUEUED  waiting in its destination's queue for a probe slot;
 *   PROBE   the circuit breaker allows it: ask the backend;
 *   RANDOM  (accept_all_check) the probe said valid and the domain is not
 *           known yet: probe a random local part once; if that is accepted
 *           too, the domain accepts everything and "valid" means nothing.
 *
 * Every flight has a deadline timer from the moment it is created: when it
 * fires, the backend request is cancelled, the destination's breaker counts
 * a failure, and the waiters get tempfail. The flight outlives its waiters:
 * when their answer budget passes they leave with tempfail, and the verdict
 * still goes into the cache (unless the flight was still queued: then it
 * is dropped, since nobody is left to want it).
 */
#include "flight.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "strhash.h"

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
#define FLIGHT_LOG_INTERVAL_MS 10000 /* refused and expired flights: one line per interval */
#define FLIGHT_DEST_MAX (ADDRESS_DOMAIN_MAX + 32)

/* one destination: its flights, its running probes and its queue */
struct dest {
    struct strhash_node node; /* p->dests, by name */
    char name[FLIGHT_DEST_MAX];
    int flights; /* flights of this destination, in any state */
    int running; /* of which hold a probe slot */
    int queued;  /* of which wait in queue */
    TAILQ_HEAD(, flight) queue;
    TAILQ_ENTRY(dest) ring_link; /* p->ring while the queue is not empty */
};

struct flight_pool {
    struct event_base *base;
    struct cache *cache;
    struct breaker_table *breakers;
    struct flight_config cfg;
    flight_release_fn release;
    struct strhash flights;  /* by (route, key) */
    struct strhash dests;    /* by name */
    TAILQ_HEAD(, dest) ring; /* destinations with queued flights, served round-robin */
    size_t nring;            /* destinations in the ring */
    struct event *ev_queue;  /* starts queued flights from the loop */
    struct flight_stats stats;
    struct log_limit log_refused; /* a full queue refuses lookups by the thousand */
    struct log_limit log_expired; /* and a tarpit expires flights by the thousand */
};

TAILQ_HEAD(waiter_list, flight_waiter);

struct flight {
    struct strhash_node node; /* p->flights; first member */
    struct flight_pool *p;
    void *holder;
    struct route_backend *rb;
    struct dest *dest;
    enum flight_state state;
    int background; /* started without a waiter: a refresh-ahead */
    char key[ADDRESS_MAX + 1];
    struct address addr;
    struct address random_addr;
    struct backend_req *breq;
    struct cache_req *creq;
    struct event *ev_start; /* the first step, from the loop */
    struct event *timer;    /* WATCH polling */
    struct event *deadline;
    time_t watch_until;
    int domain_known;             /* a domain fact says the next hop verifies */
    struct verdict found;         /* the probe's verdict while the random probe runs */
    int has_slot;                 /* counted in running */
    struct cache_lock_token lock; /* ours when lock.len > 0 */
    struct waiter_list waiters;
    TAILQ_ENTRY(flight) queue_link; /* dest->queue while F_QUEUED */
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

static uint64_t flight_hash(const struct flight_pool *p, const struct route *r, const char *key)
{
    return strhash_of(&p->flights, key, strlen(key), (uintptr_t)r);
}

/* flight_find - the flight for (route, key), or NULL */
static struct flight *flight_find(struct flight_pool *p, const struct route *r, const char *key)
{
    uint64_t h = flight_hash(p, r, key);

    for (struct strhash_node *n = strhash_first(&p->flights, h); n != NULL;
         n = strhash_next(n, h)) {
        struct flight *f = (struct flight *)n;
        if (f->rb->route == r && strcmp(f->key, key) == 0)
            return f;
    }
    return NULL;
}

/* dest_get - the destination called name, created when absent; NULL on ENOMEM */
static struct dest *dest_get(struct flight_pool *p, const char *name)
{
    uint64_t h = strhash_of(&p->dests, name, strlen(name), 0);
    struct dest *d;

    for (struct strhash_node *n = strhash_first(&p->dests, h); n != NULL; n = strhash_next(n, h)) {
        d = (struct dest *)n;
        if (strcmp(d->name, name) == 0)
            return d;
    }
    if ((d = calloc(1, sizeof(*d))) == NULL)
        return NULL;
    snprintf(d->name, sizeof(d->name), "%s", name);
    TAILQ_INIT(&d->queue);
    strhash_insert(&p->dests, &d->node, h);
    return d;
}

/* dest_put - a flight of d is gone; d goes when it has none left */
static void dest_put(struct flight_pool *p, struct dest *d)
{
    if (--d->flights > 0)
        return;
    strhash_remove(&p->dests, &d->node);
    free(d);
}

/* pool_kick - try to start queued flights from the loop (a slot was freed) */
static void pool_kick(struct flight_pool *p)
{
    if (!TAILQ_EMPTY(&p->ring))
        event_active(p->ev_queue, EV_TIMEOUT, 0);
}

/* dest_unqueue - take f out of its destination's queue */
static void dest_unqueue(struct flight_pool *p, struct flight *f)
{
    struct dest *d = f->dest;

    TAILQ_REMOVE(&d->queue, f, queue_link);
    p->stats.queued--;
    d->queued--;
    if (TAILQ_EMPTY(&d->queue)) {
        TAILQ_REMOVE(&p->ring, d, ring_link);
        p->nring--;
    }
}

static void flight_free(struct flight *f)
{
    struct flight_pool *p = f->p;

    if (f->state == F_QUEUED)
        dest_unqueue(p, f);
    if (f->has_slot) {
        p->stats.running--;
        f->dest->running--;
        pool_kick(p);
    }
    if (f->creq != NULL)
        cache_cancel(f->creq);
    /* a probe given up unfinished frees its lock for the other hosts (and its store, see cache.h)
     */
    cache_unlock(p->cache, f->key, &f->lock);
    if (f->breq != NULL && f->rb->ops->cancel != NULL)
        f->rb->ops->cancel(f->breq);
    if (f->ev_start != NULL)
        event_free(f->ev_start);
    if (f->timer != NULL)
        event_free(f->timer);
    if (f->deadline != NULL)
        event_free(f->deadline);
    strhash_remove(&p->flights, &f->node);
    p->stats.flights--;
    dest_put(p, f->dest);
    p->release(f->holder);
    free(f);
}

/* flight_finish - answer every waiter with vd (cached first when store), then free */
static void flight_finish(struct flight *f, const struct verdict *vd, int store)
{
    struct flight_waiter *w;

    if (store)
        cache_put(f->p->cache, f->key, vd);
    cache_unlock(f->p->cache, f->key, &f->lock);
    while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, w, link);
        w->flight = NULL;
        w->cb(vd, w->arg);
    }
    flight_free(f);
}

/* flight_breaker - report a probe's outcome to the destination's breaker; log changes once */
static void flight_breaker(struct flight *f, int ok, const char *why)
{
    int change = breaker_report(f->p->breakers, f->dest->name, ok, f->rb->breaker_failures,
                                f->rb->breaker_secs, time(NULL));

    if (change > 0)
        log_warn("next hop for %s keeps failing (%s): no probes for %d s", f->dest->name, why,
                 f->rb->breaker_secs);
    else if (change < 0)
        log_info("next hop for %s answers again: probing resumes", f->dest->name);
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
        cache_put_ns(f->p->cache, "dom", f->addr.domain, &fact, f->rb->accept_all_ttl);
        log_info("domain %s: next hop %s accepts every address: its \"valid\" answers are not "
                 "trusted for %d s",
                 f->addr.domain, rv->source, f->rb->accept_all_ttl);
        f->p->stats.accept_all_domains++;
        verdict_set(&vd, VERDICT_UNKNOWN, f->found.code, f->found.source,
                    "next hop accepts all addresses");
    } else if (rv->kind == VERDICT_INVALID) {
        verdict_set(&fact, VERDICT_VALID, rv->code, rv->source,
                    "verifies: a random local part was rejected");
        cache_put_ns(f->p->cache, "dom", f->addr.domain, &fact, f->rb->accept_all_ttl);
    }
    /* tempfail: no fact either way; the address's own answer stands this time */
    flight_finish(f, &vd, 1);
}

/* flight_probe_done - the backend's verdict on the address */
static void flight_probe_done(const struct verdict *vd, void *arg)
{
    struct flight *f = arg;

    f->breq = NULL;
    flight_breaker(f, !(vd->flags & VERDICT_DEST_FAILURE), vd->text);

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

/* slot_free - may f's destination start one more probe now? */
static int slot_free(const struct flight_pool *p, const struct dest *d)
{
    return p->stats.running < (unsigned long)p->cfg.max_probes &&
           d->running < p->cfg.max_probes_per_dest;
}

/*
 * flight_probe - ask the backend, unless the circuit breaker is open for
 * this next hop; wait in the destination's queue while no slot is free.
 */
static void flight_probe(struct flight *f)
{
    struct flight_pool *p = f->p;
    struct dest *d = f->dest;
    struct verdict vd;
    int retry_in = 0;

    if (!f->has_slot) {
        /* behind others of its destination, or no slot: queue (FIFO within a destination) */
        if (!TAILQ_EMPTY(&d->queue) || !slot_free(p, d)) {
            flight_enter_state(f, F_QUEUED);
            if (TAILQ_EMPTY(&d->queue)) {
                TAILQ_INSERT_TAIL(&p->ring, d, ring_link);
                p->nring++;
            }
            TAILQ_INSERT_TAIL(&d->queue, f, queue_link);
            p->stats.queued++;
            d->queued++;
            return;
        }
        f->has_slot = 1;
        p->stats.running++;
        d->running++;
    }

    if (!breaker_allow(p->breakers, d->name, time(NULL), &retry_in)) {
        char text[160];
        snprintf(text, sizeof(text),
                 "4.4.1 next hop unavailable (it kept failing), retrying it in %d s", retry_in);
        verdict_set(&vd, VERDICT_TEMPFAIL, 0, "breaker", text);
        vd.flags = VERDICT_OWN_TEXT;
        p->stats.breaker_rejects++;
        flight_finish(f, &vd, 0);
        return;
    }
    flight_enter_state(f, F_PROBE);
    p->stats.probes++;
    enum backend_status st =
        f->rb->ops->lookup(f->rb->state, &f->addr, &vd, flight_probe_done, f, &f->breq);
    if (st != BACKEND_PENDING)
        flight_probe_done(&vd, f);
}

/*
 * pool_queue_cb - start queued flights while slots are free: one flight
 * per destination per turn of the ring, skipping destinations at their own
 * limit, until the global limit is reached or a whole turn started nothing.
 */
static void pool_queue_cb(evutil_socket_t fd, short what, void *arg)
{
    struct flight_pool *p = arg;
    size_t skipped = 0; /* destinations in a row at their own limit */

    (void)fd, (void)what;
    while (!TAILQ_EMPTY(&p->ring) && skipped < p->nring &&
           p->stats.running < (unsigned long)p->cfg.max_probes) {
        struct dest *d = TAILQ_FIRST(&p->ring);
        TAILQ_REMOVE(&p->ring, d, ring_link);
        if (d->running >= p->cfg.max_probes_per_dest) {
            TAILQ_INSERT_TAIL(&p->ring, d, ring_link);
            skipped++;
            continue;
        }
        skipped = 0;
        struct flight *f = TAILQ_FIRST(&d->queue);
        TAILQ_REMOVE(&d->queue, f, queue_link);
        p->stats.queued--;
        d->queued--;
        if (!TAILQ_EMPTY(&d->queue))
            TAILQ_INSERT_TAIL(&p->ring, d, ring_link);
        else
            p->nring--;
        f->has_slot = 1;
        p->stats.running++;
        d->running++;
        flight_probe(f);
    }
}

/* flight_watch_got - another host is probing: has its verdict reached the cache yet? */
static void flight_watch_got(int found, const struct verdict *vd, int stale, void *arg)
{
    struct flight *f = arg;

    (void)stale;
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

    (void)fd, (void)what;
    switch (cache_get(f->p->cache, f->key, &vd, &stale, flight_watch_got, f, &f->creq)) {
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
        flight_probe(f);
        return;
    }
    f->lock.len = 0; /* another host's: never ours to release */
    flight_enter_state(f, F_WATCH);
    int wait_ms = f->rb->lock_ms < f->p->cfg.timeout_ms ? f->rb->lock_ms : f->p->cfg.timeout_ms;
    f->watch_until = time(NULL) + (wait_ms + 999) / 1000;
    f->timer = evtimer_new(f->p->base, flight_watch_tick, f);
    if (f->timer == NULL) {
        flight_probe(f);
        return;
    }
    struct timeval tv = {0, FLIGHT_WATCH_POLL_MS * 1000};
    evtimer_add(f->timer, &tv);
}

/* flight_lock - the lock lives as long as this flight can: its whole deadline */
static void flight_lock(struct flight *f)
{
    flight_enter_state(f, F_LOCK);
    if (cache_lock(f->p->cache, f->key, f->p->cfg.timeout_ms, &f->lock, flight_locked, f,
                   &f->creq) == 1)
        flight_locked(1, f);
}

/* flight_domain_got - the domain fact: accept-all answers "unknown" without a probe */
static void flight_domain_got(int found, const struct verdict *fact, int stale, void *arg)
{
    struct flight *f = arg;
    struct verdict vd;

    (void)stale;
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

/* flight_start - the first step that applies to this route (from the loop) */
static void flight_start(evutil_socket_t fd, short what, void *arg)
{
    struct flight *f = arg;
    struct verdict fact;
    int stale = 0;

    (void)fd, (void)what;
    if (!f->rb->accept_all_check) {
        flight_lock(f);
        return;
    }
    flight_enter_state(f, F_DOMAIN);
    switch (cache_get_ns(f->p->cache, "dom", f->addr.domain, f->rb->accept_all_ttl, &fact, &stale,
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

/*
 * flight_expired - the deadline passed: whatever the backend (or Redis) is
 * doing is cancelled. A probe that did not answer in time counts as a
 * failure of the destination.
 */
static void flight_expired(evutil_socket_t fd, short what, void *arg)
{
    struct flight *f = arg;
    struct verdict vd;

    (void)fd, (void)what;
    f->p->stats.expired++;
    log_limited(&f->p->log_expired, FLIGHT_LOG_INTERVAL_MS, LOG_WARNING,
                "%s: no verdict from %s within %d ms (state %s): tempfail", f->key, f->dest->name,
                f->p->cfg.timeout_ms, flight_state_names[f->state]);
    if (f->state == F_PROBE || f->state == F_RANDOM)
        flight_breaker(f, 0, "no answer within the flight deadline");
    verdict_set(&vd, VERDICT_TEMPFAIL, 0, "verifier", "4.4.7 verification timed out");
    vd.flags = VERDICT_OWN_TEXT;
    flight_finish(f, &vd, 0);
}

void flight_dest_name(const struct route_backend *rb, const struct address *addr, char *buf,
                      size_t size)
{
    if (rb->ops->destination != NULL)
        rb->ops->destination(rb->state, addr, buf, size);
    else
        snprintf(buf, size, "%s:%s", route_method_name(rb->route->method),
                 rb->route->arg ? rb->route->arg : "");
}

/* flight_refuse - the limits say no: a tempfail verdict for the caller */
static int flight_refuse(struct flight_pool *p, void *holder, const char *dname,
                         struct verdict *out, const char *why)
{
    p->stats.refused++;
    log_limited(&p->log_refused, FLIGHT_LOG_INTERVAL_MS, LOG_WARNING,
                "probe queue full%s%s (%lu verifications in progress): lookups answered tempfail",
                dname != NULL ? " for " : "", dname != NULL ? dname : "", p->stats.flights);
    verdict_set(out, VERDICT_TEMPFAIL, 0, "verifier", why);
    out->flags = VERDICT_OWN_TEXT;
    p->release(holder);
    return -1;
}

int flight_join(struct flight_pool *p, struct route_backend *rb, void *holder,
                const struct address *addr, const char *key, struct flight_waiter *w,
                struct verdict *out)
{
    struct flight *f = flight_find(p, rb->route, key);
    char dname[FLIGHT_DEST_MAX];

    if (f != NULL) {
        p->release(holder);
        if (w != NULL) {
            w->flight = f;
            TAILQ_INSERT_TAIL(&f->waiters, w, link);
        }
        return 0;
    }
    if (p->stats.flights >= (unsigned long)p->cfg.max_probes + (unsigned long)p->cfg.queue_max)
        return flight_refuse(p, holder, NULL, out, "4.3.2 too many verifications in progress");
    flight_dest_name(rb, addr, dname, sizeof(dname));
    struct dest *d = dest_get(p, dname);
    if (d == NULL)
        return flight_refuse(p, holder, dname, out, "4.3.0 out of memory");
    if (d->flights >= p->cfg.max_probes_per_dest + p->cfg.queue_max_per_dest)
        return flight_refuse(p, holder, dname, out,
                             "4.3.2 too many verifications in progress for this destination");
    d->flights++;
    if ((f = calloc(1, sizeof(*f))) == NULL ||
        (f->ev_start = event_new(p->base, -1, 0, flight_start, f)) == NULL ||
        (f->deadline = evtimer_new(p->base, flight_expired, f)) == NULL) {
        if (f != NULL && f->ev_start != NULL)
            event_free(f->ev_start);
        free(f);
        dest_put(p, d);
        return flight_refuse(p, holder, dname, out, "4.3.0 out of memory");
    }
    f->p = p;
    f->holder = holder;
    f->rb = rb;
    f->dest = d;
    f->addr = *addr;
    f->background = w == NULL;
    snprintf(f->key, sizeof(f->key), "%s", key);
    TAILQ_INIT(&f->waiters);
    strhash_insert(&p->flights, &f->node, flight_hash(p, rb->route, key));
    p->stats.flights++;
    if (w != NULL) {
        w->flight = f;
        TAILQ_INSERT_TAIL(&f->waiters, w, link);
    }
    struct timeval tv = {p->cfg.timeout_ms / 1000, (p->cfg.timeout_ms % 1000) * 1000};
    evtimer_add(f->deadline, &tv);
    event_active(f->ev_start, EV_TIMEOUT, 0);
    return 0;
}

void flight_leave(struct flight_waiter *w)
{
    struct flight *f = w->flight;

    if (f == NULL)
        return;
    TAILQ_REMOVE(&f->waiters, w, link);
    w->flight = NULL;
    /* a queued probe nobody waits for any more only costs a slot later: drop it */
    if (TAILQ_EMPTY(&f->waiters) && f->state == F_QUEUED && !f->background) {
        f->p->stats.dropped++;
        flight_free(f);
    }
}

/* flight_config_fix - defaults for unset limits */
static void flight_config_fix(struct flight_config *c)
{
    if (c->max_probes <= 0)
        c->max_probes = FLIGHT_MAX_PROBES;
    /* by default one destination may take a fifth of the slots: four more stay free */
    if (c->max_probes_per_dest <= 0)
        c->max_probes_per_dest = c->max_probes / 5 > 0 ? c->max_probes / 5 : 1;
    if (c->queue_max <= 0)
        c->queue_max = FLIGHT_QUEUE_MAX;
    if (c->queue_max_per_dest <= 0)
        c->queue_max_per_dest = FLIGHT_QUEUE_MAX_PER_DEST;
    if (c->timeout_ms <= 0)
        c->timeout_ms = FLIGHT_TIMEOUT_MS;
}

struct flight_pool *flight_pool_new(struct event_base *base, struct cache *cache,
                                    struct breaker_table *breakers, const struct flight_config *cfg,
                                    flight_release_fn release)
{
    struct flight_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->base = base;
    p->cache = cache;
    p->breakers = breakers;
    p->release = release;
    p->cfg = *cfg;
    flight_config_fix(&p->cfg);
    TAILQ_INIT(&p->ring);
    if (strhash_init(&p->flights) < 0 || strhash_init(&p->dests) < 0 ||
        (p->ev_queue = event_new(base, -1, 0, pool_queue_cb, p)) == NULL) {
        flight_pool_free(p);
        return NULL;
    }
    return p;
}

void flight_pool_configure(struct flight_pool *p, const struct flight_config *cfg)
{
    p->cfg = *cfg;
    flight_config_fix(&p->cfg);
    pool_kick(p);
}

void flight_pool_free(struct flight_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->flights.nbuckets; i++) {
        struct strhash_node *n;
        while ((n = p->flights.buckets[i]) != NULL) {
            struct flight *f = (struct flight *)n;
            struct flight_waiter *w;
            while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
                TAILQ_REMOVE(&f->waiters, w, link);
                w->flight = NULL;
            }
            flight_free(f);
        }
    }
    if (p->ev_queue != NULL)
        event_free(p->ev_queue);
    strhash_free(&p->flights);
    strhash_free(&p->dests);
    free(p);
}

void flight_pool_stats(const struct flight_pool *p, struct flight_stats *out)
{
    *out = p->stats;
}

static void dest_describe(const struct dest *d, struct flight_dest_info *out)
{
    out->name = d->name;
    out->flights = (unsigned)d->flights;
    out->running = (unsigned)d->running;
    out->queued = (unsigned)d->queued;
}

void flight_pool_foreach_dest(const struct flight_pool *p, flight_dest_fn fn, void *arg)
{
    struct flight_dest_info info;

    for (size_t i = 0; i < p->dests.nbuckets; i++) {
        for (const struct strhash_node *n = p->dests.buckets[i]; n != NULL; n = n->next) {
            dest_describe((const struct dest *)n, &info);
            if (fn(&info, arg) != 0)
                return;
        }
    }
}

int flight_pool_dest(const struct flight_pool *p, const char *name, struct flight_dest_info *out)
{
    uint64_t h = strhash_of(&p->dests, name, strlen(name), 0);

    for (struct strhash_node *n = strhash_first(&p->dests, h); n != NULL; n = strhash_next(n, h)) {
        const struct dest *d = (const struct dest *)n;
        if (strcmp(d->name, name) == 0) {
            dest_describe(d, out);
            return 1;
        }
    }
    memset(out, 0, sizeof(*out));
    out->name = name;
    return 0;
}
