/*
 * verifier_dest.c - the destinations report (see verifier.h): what the
 * probe pool (flight.h) and the circuit breakers (breaker.h) know about
 * each next hop, merged and bounded, for "callahead show" and "stats".
 *
 * Read-only, and cheap enough for every scrape: one pass over the
 * destinations with flights and one over the tracked breakers, keeping
 * the top N in a small sorted array (O(n * N), N about 20), and breaker
 * lookups only for the N kept. Nothing of the pool or the breakers leaks
 * out: the caller gets copies.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "backend.h"
#include "breaker.h"
#include "flight.h"
#include "route.h"
#include "verifier_int.h"

/* the top-N selection in progress */
struct dest_top {
    const struct verifier *v;
    struct verifier_dest *out;
    size_t max, n, total;
    time_t now;
};

static int breaker_rank(const char *state)
{
    return strcmp(state, "open") == 0 ? 2 : strcmp(state, "half-open") == 0 ? 1 : 0;
}

/* dest_before - does a come before b in the report? */
static int dest_before(const struct verifier_dest *a, const struct verifier_dest *b)
{
    if (a->flights != b->flights)
        return a->flights > b->flights;
    if (breaker_rank(a->breaker) != breaker_rank(b->breaker))
        return breaker_rank(a->breaker) > breaker_rank(b->breaker);
    if (a->breaker_failures != b->breaker_failures)
        return a->breaker_failures > b->breaker_failures;
    return strcmp(a->name, b->name) < 0;
}

/* dest_top_insert - keep d if it is among the top max seen so far (sorted insertion) */
static void dest_top_insert(struct dest_top *t, const struct verifier_dest *d)
{
    size_t i;

    t->total++;
    if (t->max == 0)
        return;
    if (t->n == t->max && !dest_before(d, &t->out[t->n - 1]))
        return;
    i = t->n < t->max ? t->n++ : t->max - 1;
    while (i > 0 && dest_before(d, &t->out[i - 1])) {
        t->out[i] = t->out[i - 1];
        i--;
    }
    t->out[i] = *d;
}

/* dest_fill_breaker - the breaker columns of d */
static void dest_fill_breaker(struct verifier_dest *d, const struct breaker_info *b)
{
    d->breaker = breaker_state_name(b->state);
    d->breaker_failures = b->failures;
    d->breaker_retry_in = b->retry_in;
}

/* top_flight_cb - first pass: destinations with flights (breaker looked up for the kept ones) */
static int top_flight_cb(const struct flight_dest_info *fd, void *arg)
{
    struct dest_top *t = arg;
    struct verifier_dest d;

    memset(&d, 0, sizeof(d));
    snprintf(d.name, sizeof(d.name), "%s", fd->name);
    d.flights = fd->flights;
    d.running = fd->running;
    d.queued = fd->queued;
    d.breaker = "closed";
    dest_top_insert(t, &d);
    return 0;
}

/* top_breaker_cb - second pass: breakers of destinations without flights */
static int top_breaker_cb(const struct breaker_info *b, void *arg)
{
    struct dest_top *t = arg;
    struct flight_dest_info fd;
    struct verifier_dest d;

    if (flight_pool_dest(t->v->flights, b->dest, &fd))
        return 0; /* counted in the first pass */
    memset(&d, 0, sizeof(d));
    snprintf(d.name, sizeof(d.name), "%s", b->dest);
    dest_fill_breaker(&d, b);
    dest_top_insert(t, &d);
    return 0;
}

size_t verifier_top_destinations(const struct verifier *v, struct verifier_dest *out, size_t max,
                                 size_t *total)
{
    struct dest_top t;
    struct breaker_info b;

    memset(&t, 0, sizeof(t));
    t.v = v;
    t.out = out;
    t.max = max;
    t.now = time(NULL);
    /*
     * the first pass ranks by flights alone (breakers unknown): fill in the
     * breakers of those kept and re-sort them, so that ties on flights order
     * by breaker state; the second pass then competes on the full order
     */
    flight_pool_foreach_dest(v->flights, top_flight_cb, &t);
    for (size_t i = 0; i < t.n; i++) {
        breaker_peek(v->breakers, out[i].name, t.now, &b);
        dest_fill_breaker(&out[i], &b);
    }
    for (size_t i = 1; i < t.n; i++) {
        struct verifier_dest d = out[i];
        size_t j = i;
        for (; j > 0 && dest_before(&d, &out[j - 1]); j--)
            out[j] = out[j - 1];
        out[j] = d;
    }
    breaker_foreach(v->breakers, t.now, top_breaker_cb, &t);
    if (total != NULL)
        *total = t.total;
    return t.n;
}

int verifier_domain_destination(const struct verifier *v, const char *domain,
                                struct verifier_dest *out, char *err, size_t errlen)
{
    char buf[ADDRESS_MAX + 1];
    struct address addr;
    struct flight_dest_info fd;
    struct breaker_info b;
    int failed = 0;

    memset(out, 0, sizeof(*out));
    out->breaker = "closed";
    if ((size_t)snprintf(buf, sizeof(buf), "postmaster@%s", domain) >= sizeof(buf)) {
        snprintf(err, errlen, "domain too long");
        return -1;
    }
    if (address_parse(buf, strlen(buf), &addr, err, errlen) < 0)
        return -1;
    const struct verifier_tables *tb = v->tables;
    const struct route *r = route_resolve(tb->routes, &addr, &failed, err, errlen);
    if (failed)
        return -1;
    if (r == NULL)
        return 0;
    const struct route_backend *rb = NULL;
    for (int i = 0; i < tb->nroutes; i++)
        if (tb->backends[i].route == r)
            rb = &tb->backends[i];
    if (rb == NULL || rb->ops == NULL || !(rb->ops->flags & BACKEND_ASYNC))
        return 0; /* dunno, accept, reject, a local table: nothing is probed */
    flight_dest_name(rb, &addr, out->name, sizeof(out->name));
    flight_pool_dest(v->flights, out->name, &fd);
    out->flights = fd.flights;
    out->running = fd.running;
    out->queued = fd.queued;
    breaker_peek(v->breakers, out->name, time(NULL), &b);
    dest_fill_breaker(out, &b);
    return 1;
}
