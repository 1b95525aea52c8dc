/*
 * cache_swap.c - the Redis settings a reload changes (cache_swap.h).
 *
 * The in-process cache (L1) is kept: a verdict stays a verdict wherever it
 * is shared. When the flush channel moves (another server, sentinel set or
 * key prefix), the new subscription drops it once it is confirmed, as every
 * (re)subscription does (flush_listen.h), because flushes published there
 * before we listened cannot be known. When the channel stays (only the
 * database, password or timeouts changed) the old subscription listens on
 * until the new one is up, so nothing is missed and the L1 stays; a switch
 * to no Redis at all keeps it too. Host names are never resolved here: the
 * reload resolved them first, on the loop without blocking it
 * (redis_names.h), and prepare connects to the addresses found.
 */
#include "cache_swap.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "flush_listen.h"
#include "log.h"
#include "redis_names.h"
#include "verifier.h"

/* the parameters that make up the shared side of the cache */
static const char *const redis_params[] = {
    "redis_server", "redis_sentinels",  "redis_master_name", "redis_password",
    "redis_db",     "redis_key_prefix", "redis_timeout",     "redis_reconnect_max",
};
#define NREDIS_PARAMS (sizeof(redis_params) / sizeof(redis_params[0]))

/* where the flush channel is: unchanged, the old subscription hands over without a gap */
static const char *const same_channel[] = {"redis_server", "redis_sentinels", "redis_master_name",
                                           "redis_key_prefix"};
#define NSAME_CHANNEL (sizeof(same_channel) / sizeof(same_channel[0]))

int cache_swap_changes(const struct config *running, const struct config *next, char *buf,
                       size_t size)
{
    size_t used = 0;
    int n = 0;

    if (size > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < NREDIS_PARAMS; i++) {
        if (config_changed(running, next, redis_params[i]) != 1)
            continue;
        if (used < size) {
            int w = snprintf(buf + used, size - used, "%s%s", n ? ", " : "", redis_params[i]);
            used += w > 0 ? (size_t)w : 0;
        }
        n++;
    }
    return n;
}

int cache_swap_prepare(const struct config *running, const struct config *next,
                       struct event_base *base, struct verifier *v, struct harvest *harvest,
                       const struct redis_names *resolved, struct cache_swap *sw, char *err,
                       size_t errlen)
{
    struct verifier_config vc;
    char names[300];

    memset(sw, 0, sizeof(*sw));
    if (cache_swap_changes(running, next, names, sizeof(names)) == 0)
        return 0;
    config_verifier(next, &vc);
    redis_names_apply(resolved, &vc);
    if ((sw->store = cache_store_new(base, &vc.cache, err, errlen)) == NULL)
        return -1;
    sw->flush = flush_listen_new(base, v, harvest, &vc, err, errlen);
    if (sw->flush == NULL && err[0] != '\0') {
        cache_store_free(sw->store);
        sw->store = NULL;
        return -1;
    }
    sw->changed = 1;
    sw->same_channel = next->redis_server[0] != '\0' || next->redis_sentinels[0] != '\0';
    for (size_t i = 0; i < NSAME_CHANNEL; i++)
        if (config_changed(running, next, same_channel[i]) != 0)
            sw->same_channel = 0;
    snprintf(sw->what, sizeof(sw->what), "%s changed: the cache moves to %s%s", names,
             next->redis_sentinels[0] ? "the master of sentinels "
             : next->redis_server[0]  ? next->redis_server
                                      : "the in-process cache only",
             next->redis_sentinels);
    return 0;
}

void cache_swap_abort(struct cache_swap *sw)
{
    flush_listen_free(sw->flush);
    cache_store_free(sw->store);
    memset(sw, 0, sizeof(*sw));
}

void cache_swap_commit(struct cache_swap *sw, struct verifier *v, struct flush_listen **flush)
{
    if (!sw->changed)
        return;
    log_info("reload: %s", sw->what);
    cache_swap_store(verifier_cache(v), sw->store);
    if (sw->same_channel)
        flush_listen_take_over(sw->flush, *flush);
    else
        flush_listen_free(*flush);
    *flush = sw->flush;
    memset(sw, 0, sizeof(*sw));
}
