/*
 * verifier_int.h - the verifier's internals, shared by verifier.c (lookups,
 * route tables) and flight.c (shared backend requests). Not for callers of
 * the library: they use verifier.h.
 */
#ifndef CALLAHEAD_VERIFIER_INT_H
#define CALLAHEAD_VERIFIER_INT_H

#include <sys/queue.h>
#include <time.h>

#include <event2/util.h>

#include "address.h"
#include "backend.h"
#include "breaker.h"
#include "cache.h"
#include "route.h"
#include "verifier.h"

/* a route's backend instance and the route's verification options */
struct route_backend {
    const struct route *route;
    const struct backend_ops *ops; /* NULL when the method has no backend in this build */
    void *state;
    int fold_local;         /* fold_local=: lower-case the local part in the cache key */
    int fold_subaddress;    /* fold_subaddress=: strip user+ext before key and probe */
    int accept_all_check;   /* accept_all_check=: probe a random local part per domain */
    int accept_all_ttl;     /* accept_all_ttl=: seconds a domain fact is kept */
    int breaker_failures;   /* breaker_failures=: consecutive failures that open it */
    int breaker_secs;       /* breaker_time=: seconds it stays open */
    int lock_ms;            /* lock_time=: cross-host probe lock */
    int breaker_per_domain; /* smtp:mx: each domain is its own destination */
};

/* one loaded route table with its backends; shared by the lookups that use it */
struct verifier_tables {
    int refs;
    char *path;
    struct route_table *routes;
    struct route_backend *backends; /* one per route, by index */
    int nroutes;
};

struct flight;

enum req_state { REQ_NEW, REQ_CACHE, REQ_BACKEND, REQ_DONE };

struct verifier_req {
    struct verifier *v;
    struct verifier_tables *t;
    verifier_cb cb;
    void *arg;
    enum req_state state;
    int flags; /* VERIFIER_* */
    struct address addr;
    char key[ADDRESS_MAX + 1];
    char where[64];
    const char *cached;
    struct route_backend *rb;
    struct cache_req *creq;
    struct flight *flight;
    struct event *ev_done;
    struct event *ev_budget;
    struct verdict result;
    TAILQ_ENTRY(verifier_req) all_link;
    TAILQ_ENTRY(verifier_req) flight_link;
};
TAILQ_HEAD(req_list, verifier_req);

TAILQ_HEAD(flight_list, flight);

struct verifier {
    struct event_base *base;
    struct dns *dns;                /* shared resolver for smtp:mx and named next hops */
    int max_probes;                 /* global limit on probes in progress */
    int probing;                    /* probes in progress */
    struct flight_list probe_queue; /* flights waiting for a probe slot, FIFO */
    struct event *ev_probe_queue;   /* starts queued flights from the loop */
    struct cache *cache;
    struct verifier_tables *tables;
    struct breaker_table *breakers;
    char *delimiter;
    int budget_ms;
    struct backend_env env;
    struct req_list reqs;
    LIST_HEAD(, flight) flights;
    struct verifier_stats stats;
};

/* req_finish - record r's verdict and schedule its callback (verifier.c) */
void req_finish(struct verifier_req *r, const struct verdict *v, const char *cached);

/* tables_unref - drop a reference to a route table and its backends (verifier.c) */
void tables_unref(struct verifier_tables *t);

/*
 * flight_join - have r (or, with r NULL, nobody: a background refresh)
 * wait for the verdict on key from route backend rb, starting the shared
 * request if none is in progress. r is answered through req_finish.
 */
void flight_join(struct verifier *v, struct verifier_tables *t, struct route_backend *rb,
                 const struct address *addr, const char *key, struct verifier_req *r);

/* flight_leave - r stops waiting (budget passed, or cancelled); the flight goes on */
void flight_leave(struct verifier_req *r);

/* flight_free_all - cancel every flight (verifier_free) */
void flight_free_all(struct verifier *v);

/* flight_queue_cb - start queued flights while probe slots are free (ev_probe_queue) */
void flight_queue_cb(evutil_socket_t fd, short what, void *arg);

#endif
