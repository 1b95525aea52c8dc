/*
 * verifier_int.h - the verifier's internal structures (verifier.c): loaded
 * route tables, lookups and the verifier itself. Not for callers of the
 * library (they use verifier.h) and not for flight.c, which sees only
 * struct route_backend and reports back through callbacks (flight.h).
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
#include "flight.h"
#include "route.h"
#include "route_backend.h"
#include "verifier.h"

/* one loaded route table with its backends; shared by the lookups that use it */
struct verifier_tables {
    struct verifier *v;                   /* whose loop closes it (NULL: close at once) */
    struct verifier_tables *next_closing; /* v->closing */
    int refs;
    char *path;
    char *delimiter; /* recipient_delimiter as of this table's load: a reload swaps it */
    struct route_table *routes;
    struct route_backend *backends; /* one per route, by index */
    int nroutes;
};

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
    struct flight_waiter waiter; /* while REQ_BACKEND */
    struct event *ev_done;
    struct event *ev_budget;
    struct verdict result;
    TAILQ_ENTRY(verifier_req) all_link;
    struct verifier_req *next_spare; /* while on verifier.spare */
};
TAILQ_HEAD(req_list, verifier_req);

struct verifier {
    struct event_base *base;
    struct dns *dns;             /* shared resolver for smtp:mx and named next hops */
    struct flight_pool *flights; /* shared backend requests and the probe queues */
    struct cache *cache;
    struct verifier_tables *tables;
    struct breaker_table *breakers;
    int budget_ms;
    struct backend_env env;
    struct req_list reqs;
    struct verifier_tables *closing; /* unreferenced tables, closed from ev_close */
    struct event *ev_close;
    struct verifier_stats stats;
    /* finished requests kept with their two events for the next lookups (req_new) */
    struct verifier_req *spare;
    int nspare;
};

#endif
