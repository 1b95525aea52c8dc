/*
 * flight.h - shared backend requests ("flights") and the probe queue.
 *
 * A flight is one backend request shared by every lookup of one address on
 * one route while it runs. The pool owns all flights, finds them by
 * (route, key) in a hash table, and limits them:
 *
 *   - at most max_probes probes run at once, and at most
 *     max_probes_per_dest for one destination (the breaker key: a next hop,
 *     or an MX domain), so a destination that never answers cannot take
 *     every probe slot;
 *   - flights waiting for a slot wait in their destination's own queue, and
 *     the queues are served round-robin, so a destination with 1,000
 *     waiting flights delays a new destination by one turn, not by 1,000;
 *   - at most max_probes + queue_max flights exist at once, and at most
 *     max_probes_per_dest + queue_max_per_dest for one destination: beyond
 *     that a join is refused with tempfail (memory stays bounded);
 *   - a flight that has not finished after timeout_ms is failed with
 *     tempfail and freed, whatever its backend does;
 *   - a queued flight whose waiters have all left (their answer budget
 *     passed, or they were cancelled) is dropped; background refreshes,
 *     which never had a waiter, stay (within the same limits).
 *
 * The pool knows nothing of the verifier: it reports to each waiter through
 * the waiter's callback, and gives back the caller's reference on its route
 * table (the "holder") through the release function when a flight is freed.
 */
#ifndef CALLAHEAD_FLIGHT_H
#define CALLAHEAD_FLIGHT_H

#include <sys/queue.h>

#include "address.h"
#include "breaker.h"
#include "cache.h"
#include "route_backend.h"
#include "verdict.h"

struct event_base;
struct flight;      /* opaque */
struct flight_pool; /* opaque */

struct flight_config {
    int max_probes;          /* probes in progress at once, all destinations */
    int max_probes_per_dest; /* probes in progress at once for one destination; default max/5 */
    int queue_max;           /* flights waiting for a slot, all destinations */
    int queue_max_per_dest;  /* flights waiting for a slot, one destination */
    int timeout_ms;          /* deadline of one flight; also the cross-host lock's lifetime */
};

/* defaults for fields <= 0 in struct flight_config */
#define FLIGHT_MAX_PROBES 500
#define FLIGHT_QUEUE_MAX 10000
#define FLIGHT_QUEUE_MAX_PER_DEST 1000
#define FLIGHT_TIMEOUT_MS 60000

/* the pool's own counters */
struct flight_stats {
    unsigned long probes;             /* backend requests started */
    unsigned long breaker_rejects;    /* flights answered tempfail by an open circuit breaker */
    unsigned long accept_all_domains; /* domains found to accept every address */
    unsigned long refused;            /* joins refused: the queue was full */
    unsigned long expired;            /* flights failed by their deadline */
    unsigned long dropped;            /* queued flights dropped: nobody waited any more */
    unsigned long flights;            /* flights now (gauge) */
    unsigned long queued;             /* flights waiting for a probe slot now (gauge) */
    unsigned long running;            /* probes in progress now (gauge) */
};

/* flight_release_fn - the pool no longer needs the holder reference given to flight_join */
typedef void (*flight_release_fn)(void *holder);

/*
 * flight_pool_new - an empty pool on base, using cache (domain facts,
 * locks, verdicts) and breakers (per destination), both owned by the
 * caller and outliving the pool. NULL on ENOMEM.
 */
struct flight_pool *flight_pool_new(struct event_base *base, struct cache *cache,
                                    struct breaker_table *breakers, const struct flight_config *cfg,
                                    flight_release_fn release);

/* flight_pool_configure - new limits (reload); flights above a lowered limit go on */
void flight_pool_configure(struct flight_pool *p, const struct flight_config *cfg);

/* flight_pool_free - cancel every flight (waiters are not called) and free the pool */
void flight_pool_free(struct flight_pool *p);

void flight_pool_stats(const struct flight_pool *p, struct flight_stats *out);

/* one destination with flights now, as the operator sees it */
struct flight_dest_info {
    const char *name; /* valid until the pool next changes */
    unsigned flights; /* flights of this destination, in any state */
    unsigned running; /* of which probing */
    unsigned queued;  /* of which waiting for a probe slot */
};

/* flight_dest_fn - one destination; return nonzero to stop */
typedef int (*flight_dest_fn)(const struct flight_dest_info *d, void *arg);

/* flight_pool_foreach_dest - every destination that has flights now; no changes meanwhile */
void flight_pool_foreach_dest(const struct flight_pool *p, flight_dest_fn fn, void *arg);

/* flight_pool_dest - the destination called name: 1, or 0 (all counts 0) when it has no flights */
int flight_pool_dest(const struct flight_pool *p, const char *name, struct flight_dest_info *out);

/* flight_dest_name - the destination (breaker and queue key) a lookup of addr on rb goes to */
void flight_dest_name(const struct route_backend *rb, const struct address *addr, char *buf,
                      size_t size);

/* flight_done_fn - the flight's verdict; v is valid only during the call */
typedef void (*flight_done_fn)(const struct verdict *v, void *arg);

/*
 * struct flight_waiter - embedded in the caller's request. cb runs exactly
 * once per successful join unless flight_leave comes first, always from
 * the event loop, never inside flight_join.
 */
struct flight_waiter {
    flight_done_fn cb;
    void *arg;
    struct flight *flight; /* set while waiting */
    TAILQ_ENTRY(flight_waiter) link;
};

/*
 * flight_join - have w (or, with w NULL, nobody: a background refresh)
 * wait for the verdict on key (the normalised address addr) from route
 * backend rb, starting a flight if none is in progress. holder is one
 * reference the caller took on whatever keeps rb alive (its route table);
 * the pool always consumes it: it calls release(holder) at once when it
 * does not need it, or when the flight that keeps it is freed.
 * Returns 0 (w waits), or -1 with *out set to a tempfail verdict when the
 * flight limits refuse it (w is not called).
 */
int flight_join(struct flight_pool *p, struct route_backend *rb, void *holder,
                const struct address *addr, const char *key, struct flight_waiter *w,
                struct verdict *out);

/*
 * flight_leave - w stops waiting (answer budget passed, or cancelled); its
 * callback will not run. The flight goes on and fills the cache, unless it
 * was still queued and nobody else waits: then it is dropped.
 */
void flight_leave(struct flight_waiter *w);

#endif
