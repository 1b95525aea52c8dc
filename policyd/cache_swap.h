/*
 * cache_swap.h - apply changed Redis settings (redis_server,
 * redis_sentinels, redis_master_name, redis_password, redis_db,
 * redis_key_prefix, redis_timeout, redis_reconnect_max) on SIGHUP without
 * dropping a policy connection. In two steps like listen_swap.h, so that a
 * reload stays all or nothing: prepare builds the new shared cache side
 * (key prefix and Redis connection, cache.h's cache_store) and the new
 * flush-channel subscription, and refuses the reload when either cannot be
 * built; commit swaps
 * them in. Everything that asks the cache for its Redis connection per
 * use (the harvest limit, the control socket's cache commands, statistics)
 * follows at once; lookups, writes and lock releases already sent finish
 * on the old connection, which is closed once they are done.
 */
#ifndef CALLAHEAD_CACHE_SWAP_H
#define CALLAHEAD_CACHE_SWAP_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct verifier;
struct harvest;
struct flush_listen;
struct cache_store;
struct redis_names;

struct cache_swap {
    int changed;                /* a Redis setting differs: commit swaps */
    int same_channel;           /* same server (or sentinels) and prefix: the flush channel stays */
    struct cache_store *store;  /* the new prefix and Redis connection, until commit */
    struct flush_listen *flush; /* its flush-channel subscription (NULL without Redis) */
    char what[512];             /* for the log line at commit: what changed, where to */
};

/*
 * cache_swap_changes - how many Redis settings differ between running and
 * next; their names, comma separated, in buf (cut to size)
 */
int cache_swap_changes(const struct config *running, const struct config *next, char *buf,
                       size_t size);

/*
 * cache_swap_prepare - when a Redis setting changed, build next's cache
 * store and flush listener (they start connecting now, but nothing uses
 * them before commit). resolved holds next's Redis host names resolved
 * (redis_names.h), or is NULL when next names none: nothing is resolved
 * here, which would block the loop. 0 (sw->changed says whether anything
 * was built), or -1 + err with nothing left behind.
 */
int cache_swap_prepare(const struct config *running, const struct config *next,
                       struct event_base *base, struct verifier *v, struct harvest *harvest,
                       const struct redis_names *resolved, struct cache_swap *sw, char *err,
                       size_t errlen);

/* cache_swap_abort - free what prepare built: the reload was refused later */
void cache_swap_abort(struct cache_swap *sw);

/*
 * cache_swap_commit - v's cache uses the new store from now on; *flush (the
 * running flush listener, or NULL) is replaced by the new one. It is freed
 * at once, or, when the channel stays the same, once the new subscription is
 * up (flush_listen_take_over), so that no flush is missed and the
 * in-process cache need not be dropped. Nothing to do when nothing changed.
 */
void cache_swap_commit(struct cache_swap *sw, struct verifier *v, struct flush_listen **flush);

#endif
