/*
 * stats.h - one snapshot of everything policyd counts, taken in one place so
 * that "callahead stats" (control_cmd.c) and the Prometheus exposition
 * (stats_http.c) can never disagree about what a number means. Which
 * fields they show, and under which names, is the table in stats_table.c.
 */
#ifndef CALLAHEAD_STATS_H
#define CALLAHEAD_STATS_H

#include <time.h>

#include "cache_redis.h"
#include "metrics.h"
#include "verifier.h"

struct policy_server;
struct flush_listen;
struct harvest;

/* stats_env - where the numbers live; owned by main.c */
struct stats_env {
    struct policy_server *server;
    struct metrics *metrics;
    const struct flush_listen *flush; /* NULL without Redis */
    struct harvest *harvest;
    time_t started;                 /* wall clock at start-up */
    unsigned long control_requests; /* control socket commands (control.c counts) */
    unsigned long control_errors;   /* control requests answered with an error */
    unsigned long control_refused;  /* control clients refused: wrong user, too many */
};

struct stats_snapshot {
    time_t now, started;
    int connections; /* policy connections open now */
    unsigned long requests, protocol_errors, refused, evicted;
    struct verifier_stats v;
    int redis_configured, redis_connected;
    int flush_subscribed; /* listening on the Redis flush channel */
    struct cache_redis_stats redis;
    unsigned long control_requests, control_errors, control_refused;
    unsigned long harvest_penalties, harvest_refused, harvest_blocked;
    const struct metrics *metrics; /* NULL when not measured */
    /* the busiest destinations (verifier_top_destinations), at most VERIFIER_DEST_TOP */
    struct verifier_dest dests[VERIFIER_DEST_TOP];
    size_t ndests;      /* in dests */
    size_t dests_total; /* destinations with flights or a tracked breaker, shown or not */
    /* backend pools (the ldap: routes' connections), verifier_pools, at most VERIFIER_POOL_TOP */
    struct verifier_pool pools[VERIFIER_POOL_TOP];
    size_t npools;      /* in pools */
    size_t pools_total; /* routes with a pool, shown or not */
};

/* stats_collect - fill out from env at this moment */
void stats_collect(const struct stats_env *env, struct stats_snapshot *out);

#endif
