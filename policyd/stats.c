/*
 * stats.c - gather the counters of the policy server, the verifier, the
 * cache and its Redis connection into one snapshot (see stats.h).
 */
#include "stats.h"

#include <string.h>

#include "cache.h"
#include "flush_listen.h"
#include "harvest.h"
#include "policy_conn.h"

void stats_collect(const struct stats_env *env, struct stats_snapshot *out)
{
    const struct policy_server *s = env->server;

    memset(out, 0, sizeof(*out));
    out->now = time(NULL);
    out->started = env->started;
    out->connections = s->nconns;
    out->requests = s->requests;
    out->protocol_errors = s->protocol_errors;
    out->refused = s->refused;
    out->evicted = s->evicted;
    verifier_get_stats(s->verifier, &out->v);
    out->ndests =
        verifier_top_destinations(s->verifier, out->dests, VERIFIER_DEST_TOP, &out->dests_total);
    out->npools = verifier_pools(s->verifier, out->pools, VERIFIER_POOL_TOP, &out->pools_total);
    struct cache_redis *r = cache_redis_handle(verifier_cache(s->verifier));
    if (r != NULL) {
        out->redis_configured = 1;
        out->redis_connected = cache_redis_connected(r);
        cache_redis_get_stats(r, &out->redis);
        out->flush_subscribed = flush_listen_subscribed(env->flush);
    }
    out->control_requests = env->control_requests;
    out->control_errors = env->control_errors;
    out->control_refused = env->control_refused;
    out->metrics = env->metrics;
    if (env->harvest != NULL) {
        struct harvest_stats hs;
        harvest_get_stats(env->harvest, &hs);
        out->harvest_penalties = hs.penalties;
        out->harvest_refused = hs.refused;
        out->harvest_blocked = hs.blocked;
    }
}
