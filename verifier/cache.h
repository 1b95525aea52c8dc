/*
 * cache.h - the verdict cache: in-process L1 in front of an optional shared
 * Redis, with a TTL and a refresh time per verdict kind.
 *
 * Keys: "<prefix>rcpt:<address>" (prefix "callahead:" by default), values in
 * the verdict_format() text form, set with "SET key value EX ttl", so
 * "redis-cli GET callahead:rcpt:bob@example.org" shows e.g.
 * "invalid 550 1732458000 cdb 5.1.1 User unknown".
 * Without Redis (redis_server empty) L1 holds verdicts for their full TTL.
 * With Redis, L1 holds them for at most l1_ttl seconds, and Redis failures
 * only mean misses: the caller goes on to the backend.
 */
#ifndef CALLAHEAD_CACHE_H
#define CALLAHEAD_CACHE_H

#include <stddef.h>

#include "cache_redis.h"
#include "verdict.h"

struct event_base;
struct cache;     /* opaque */
struct cache_req; /* opaque */

struct cache_config {
    const char *key_prefix;          /* "callahead:" */
    size_t l1_max_entries;           /* bound on the in-process cache */
    int l1_ttl;                      /* seconds, L1 lifetime when Redis is used */
    int ttl[VERDICT_KIND_COUNT];     /* seconds per verdict kind; 0 = do not cache */
    int refresh[VERDICT_KIND_COUNT]; /* seconds; a hit older than this needs refresh; 0 = never */
    int use_redis;                   /* 0: L1 only */
    struct cache_redis_config redis;
};

/*
 * cache_get_cb - outcome of a pending get. found: 1 hit (v set, from Redis),
 * 0 miss or Redis error. stale: the hit is older than its refresh time, so
 * the caller should answer with it and re-verify in the background.
 */
typedef void (*cache_get_cb)(int found, const struct verdict *v, int stale, void *arg);

enum cache_status {
    CACHE_MISS = 0,   /* answered now: not cached (or Redis down) */
    CACHE_HIT = 1,    /* answered now from L1: *out and *stale set */
    CACHE_PENDING = 2 /* asking Redis: *req set, cb runs later */
};

struct cache *cache_new(struct event_base *base, const struct cache_config *cfg, char *err,
                        size_t errlen);
void cache_free(struct cache *c);

/*
 * Reload of the Redis settings (key_prefix and redis in struct cache_config)
 * in two steps, so that a reload stays all or nothing:
 * cache_store_new builds the shared side of a cache from cfg - the key
 * prefix and, with use_redis, a new Redis connection (resolving a host name
 * or the sentinels' names now, blocking: reload only) - and fails with err
 * on a bad setting, leaving the running cache untouched; cache_store_free
 * drops one that is not used after all. cache_swap_store makes s the
 * cache's (which owns it from then on): lookups, writes, locks and
 * cache_key use it at once. The L1 stays. The replaced store's connection
 * takes no new command; commands already sent finish on it (their callbacks
 * run as usual), a probe lock taken on it is released on it and under its
 * prefix (cache_unlock), and once neither is left it is closed and freed.
 */
struct cache_store;
struct cache_store *cache_store_new(struct event_base *base, const struct cache_config *cfg,
                                    char *err, size_t errlen);
void cache_store_free(struct cache_store *s);
void cache_swap_store(struct cache *c, struct cache_store *s);

/* cache_store_redis - s's Redis connection (NULL without Redis), e.g. to see it connect */
struct cache_redis *cache_store_redis(struct cache_store *s);

/*
 * cache_set_ttls - a reload's ttl[], refresh[] and l1_ttl from cfg apply to
 * verdicts stored and read from now on; entries already cached keep the
 * expiry they were stored with (Redis and L1 alike)
 */
void cache_set_ttls(struct cache *c, const struct cache_config *cfg);

/*
 * cache_set_l1_size - a reload's l1_max_entries: a smaller bound evicts the
 * least recently used verdicts at once (they are fetched again from Redis or
 * the backend). Returns 0, or -1 with err set when the larger table cannot
 * be allocated; then nothing changes.
 */
int cache_set_l1_size(struct cache *c, size_t l1_max_entries, char *err, size_t errlen);

/* cache_get - look addrkey (a normalised address) up; see enum cache_status */
enum cache_status cache_get(struct cache *c, const char *addrkey, struct verdict *out, int *stale,
                            cache_get_cb cb, void *arg, struct cache_req **req);

/* cache_cancel - cb will not run */
void cache_cancel(struct cache_req *req);

/*
 * cache_put - store v under addrkey with the TTL of its kind (not stored if
 * that TTL is 0), in L1 and (fire and forget) in Redis.
 */
void cache_put(struct cache *c, const char *addrkey, const struct verdict *v);

/*
 * cache_put_if_changed - cache_put unless L1 already holds a verdict of the
 * same kind and code for addrkey: write-through for authoritative local
 * tables without a Redis write per request.
 */
void cache_put_if_changed(struct cache *c, const char *addrkey, const struct verdict *v);

/*
 * cache_get_ns / cache_put_ns - the same for other namespaces: facts that
 * are verdicts about something else than an address, e.g. ns "dom" for a
 * domain whose next hop accepts every address ("callahead:dom:<domain>").
 * ttl is the namespace's TTL (it bounds the L1 copy of a Redis hit).
 */
enum cache_status cache_get_ns(struct cache *c, const char *ns, const char *name, int ttl,
                               struct verdict *out, int *stale, cache_get_cb cb, void *arg,
                               struct cache_req **req);
void cache_put_ns(struct cache *c, const char *ns, const char *name, const struct verdict *v,
                  int ttl);

/* cache_lock_cb - acquired 1: the lock is ours (or Redis failed); 0: another host holds it */
typedef void (*cache_lock_cb)(int acquired, void *arg);

/*
 * cache_lock_token - the value that says whose a lock is: 16 random bytes
 * (getrandom) in hex, the host name and the pid, e.g.
 * "3f0c...9a mx1.example.org pid 4711". Unique across hosts and restarts, so
 * a release can tell our lock from another host's that took over after ours
 * expired; readable, so redis-cli shows who holds a lock.
 */
#define CACHE_LOCK_TOKEN_MAX 128
struct cache_lock_token {
    size_t len; /* 0: no lock was taken in Redis, nothing to release */
    char s[CACHE_LOCK_TOKEN_MAX];
    struct cache_store *store; /* where it was taken (held until cache_unlock); NULL if none */
};

/*
 * cache_lock - take the cross-host lock "<prefix>lock:<name>" for px_ms
 * milliseconds with SET NX PX and a fresh token (stored in *tok, which must
 * start zeroed and stay in place until cache_unlock), so that of several policyd hosts sharing
 * a Redis only one probes an address while the others wait for its verdict
 * to appear in the cache. px_ms should be the longest the holder can take
 * (its flight deadline): a lock that expires while its holder still probes
 * lets a second host probe too. Returns 1 when the lock counts as taken now
 * (no Redis, or not connected: locks only matter between hosts; tok->len is
 * then 0), 0 when the answer will come through cb (*req set; cache_cancel
 * stops it). Waiters watch the cache, not the lock; the holder releases it
 * with cache_unlock once its verdict is stored, and a lock whose holder died
 * expires after px_ms. A token with len > 0 must be given to cache_unlock
 * in the end, also when the lock request was cancelled: it holds the store
 * the lock was taken on (see cache_swap_store). When another host holds the
 * lock, tok->len is 0 again before cb runs.
 */
int cache_lock(struct cache *c, const char *name, int px_ms, struct cache_lock_token *tok,
               cache_lock_cb cb, void *arg, struct cache_req **req);

/*
 * cache_unlock - release the lock taken with cache_lock, only if it still
 * holds tok: a compare-and-delete in one Lua script (EVAL), so a lock that
 * expired and was taken by another host is never deleted by us. Fire and
 * forget, sent after the verdict's SET on the same connection, so a waiter
 * never sees the lock gone before the verdict is there. Sent on the Redis
 * and under the key prefix the lock was taken with, even when a reload has
 * moved the cache since. Clears tok (len 0); does nothing when tok->len is 0.
 */
void cache_unlock(struct cache *c, const char *name, struct cache_lock_token *tok);

/* cache_key - "<prefix><kind>:<name>" into buf; returns length or -1 if too small */
int cache_key(const struct cache *c, const char *kind, const char *name, char *buf, size_t size);

/* cache_redis_handle - the Redis connection (NULL without Redis), for locks and stats */
struct cache_redis *cache_redis_handle(struct cache *c);

/*
 * cache_l1_handle - the in-process cache itself, for operator inspection and
 * flushes (cache_flush.c). Its keys are the address for "rcpt" entries and
 * "<ns>:<name>" for the other namespaces.
 */
struct cache_mem;
struct cache_mem *cache_l1_handle(struct cache *c);

struct cache_stats {
    unsigned long l1_hits, redis_hits, misses, puts;
    size_t l1_entries;
};
void cache_get_stats(const struct cache *c, struct cache_stats *out);

#endif
