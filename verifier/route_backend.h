/*
 * route_backend.h - a route's backend instance and the route's verification
 * options: what verifier.c loads for each route of a table and what a
 * flight (flight.c) needs to probe for it. Data only, so that both can use
 * it without calling each other.
 */
#ifndef CALLAHEAD_ROUTE_BACKEND_H
#define CALLAHEAD_ROUTE_BACKEND_H

#include "backend.h"
#include "route.h"

struct route_backend {
    const struct route *route;
    char where[64];                /* "table:line" for the decision log, formatted once */
    const struct backend_ops *ops; /* NULL when the method has no backend in this build */
    void *state;
    int fold_local;       /* fold_local=: lower-case the local part in the cache key */
    int fold_subaddress;  /* fold_subaddress=: strip user+ext before key and probe */
    int accept_all_check; /* accept_all_check=: probe a random local part per domain */
    int accept_all_ttl;   /* accept_all_ttl=: seconds a domain fact is kept */
    int breaker_failures; /* breaker_failures=: consecutive failures that open it */
    int breaker_secs;     /* breaker_time=: seconds it stays open */
    int lock_ms;          /* lock_time=: how long another host's probe lock is waited for */
};

#endif
