/*
 * cache_mem.h - the bounded in-process verdict cache (L1).
 *
 * A hash table with LRU eviction and a per-entry expiry. In front of Redis it
 * keeps hot addresses from costing a round trip; without Redis it is the
 * whole cache (the embedded default). Memory is bounded by max_entries.
 */
#ifndef CALLAHEAD_CACHE_MEM_H
#define CALLAHEAD_CACHE_MEM_H

#include <stddef.h>
#include <time.h>

#include "verdict.h"

struct cache_mem; /* opaque */

/* cache_mem_new - empty cache holding at most max_entries (>= 1); NULL on ENOMEM */
struct cache_mem *cache_mem_new(size_t max_entries);
void cache_mem_free(struct cache_mem *c);

/*
 * cache_mem_get - look key up at time now. On a live hit copies the verdict
 * to out, sets *stored (when it was put) if stored is not NULL, moves the
 * entry to the front of the LRU and returns 1. Expired entries are dropped
 * and count as a miss (0).
 */
int cache_mem_get(struct cache_mem *c, const char *key, time_t now, struct verdict *out,
                  time_t *stored);

/* cache_mem_put - insert or replace key, live until expires; evicts the LRU entry when full */
void cache_mem_put(struct cache_mem *c, const char *key, const struct verdict *v, time_t now,
                   time_t expires);

/* cache_mem_del - drop key if present; returns 1 if it was there */
int cache_mem_del(struct cache_mem *c, const char *key);

/*
 * cache_mem_peek - like cache_mem_get, for looking only: the entry is not
 * moved in the LRU list and an expired one is left to be collected. Sets
 * *out, *stored and *expires and returns 1 on a live entry, else 0.
 */
int cache_mem_peek(const struct cache_mem *c, const char *key, time_t now, struct verdict *out,
                   time_t *stored, time_t *expires);

/*
 * cache_mem_del_matching - drop every entry for which match(key, verdict,
 * arg) returns non-zero (match must not touch the cache); returns how many.
 * O(entries): for operator flushes, not for lookups.
 */
typedef int (*cache_mem_match_fn)(const char *key, const struct verdict *v, void *arg);
size_t cache_mem_del_matching(struct cache_mem *c, cache_mem_match_fn match, void *arg);

/*
 * cache_mem_set_max - a reload's new bound: a smaller one evicts the least
 * recently used entries down to it at once, a larger one grows the table so
 * that there are still as many buckets as entries (O(entries), at reload
 * only). Returns 0, or -1 when the larger table cannot be allocated (then
 * nothing changes).
 */
int cache_mem_set_max(struct cache_mem *c, size_t max_entries);

/* cache_mem_clear - drop everything */
void cache_mem_clear(struct cache_mem *c);

/* cache_mem_count - live + not yet collected entries */
size_t cache_mem_count(const struct cache_mem *c);

#endif
