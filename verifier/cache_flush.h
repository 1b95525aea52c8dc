/*
 * cache_flush.h - operator flushes of the verdict cache, on this host and
 * on every host that shares its Redis.
 *
 * A flush names what to forget: one address, every address of a domain
 * (and the domain's facts), every "invalid" verdict, or everything. It is
 * carried out in three places:
 *   - Redis: the matching keys are deleted, found with SCAN (never KEYS,
 *     which blocks Redis for the whole keyspace) in batches, each batch one
 *     asynchronous command, so neither Redis nor our loop stalls;
 *   - then the flush is published on the channel "<prefix>flush", where
 *     every daemon sharing the Redis listens (redis_sub.h) and drops the
 *     matching entries from its in-process cache;
 *   - this daemon's in-process cache, at once.
 * The message on the channel is the selector's text form ("address A",
 * "domain D", "invalid", "all"); it is parsed as hostile input, since
 * anyone who can write to the Redis can publish.
 */
#ifndef CALLAHEAD_CACHE_FLUSH_H
#define CALLAHEAD_CACHE_FLUSH_H

#include <stddef.h>

#include "address.h"

struct cache;
struct cache_flush_op;

enum cache_flush_kind {
    CACHE_FLUSH_ADDRESS, /* one address (its cache key, folded and as given) */
    CACHE_FLUSH_DOMAIN,  /* every address of a domain, and the domain's facts */
    CACHE_FLUSH_INVALID, /* every "invalid" verdict */
    CACHE_FLUSH_ALL,     /* every verdict and domain fact (not the probe locks) */
};

struct cache_flush_sel {
    enum cache_flush_kind kind;
    char name[ADDRESS_MAX + 1]; /* address or domain, normalised; "" for the others */
    char alt[ADDRESS_MAX + 1];  /* address: the key with the local part as given, if different */
};

/*
 * cache_flush_select - a selector for kind and (for address and domain)
 * name, normalised as the cache keys are (domain lower-cased, no trailing
 * dot). 0, or -1 + err for a name that is not an address or a domain.
 */
int cache_flush_select(enum cache_flush_kind kind, const char *name, struct cache_flush_sel *out,
                       char *err, size_t errlen);

/* cache_flush_format - the channel message for sel; its length, or -1 if it does not fit */
int cache_flush_format(const struct cache_flush_sel *sel, char *buf, size_t size);

/* cache_flush_parse - a channel message (len bytes, untrusted) back into a selector; 0 or -1 */
int cache_flush_parse(const char *msg, size_t len, struct cache_flush_sel *out);

/* cache_flush_kind_name - "address", "domain", "invalid", "all" */
const char *cache_flush_kind_name(enum cache_flush_kind kind);

/* cache_flush_l1 - drop the matching entries of c's in-process cache; returns how many */
unsigned long cache_flush_l1(struct cache *c, const struct cache_flush_sel *sel);

/*
 * cache_flush_cb - a Redis flush ended: ok 1 with the number of keys
 * deleted and the number of daemons that got the message (PUBLISH's
 * answer), or ok 0 with err saying why (the keys deleted so far stay
 * deleted). Runs exactly once, from the loop.
 */
typedef void (*cache_flush_cb)(int ok, unsigned long deleted, long receivers, const char *err,
                               void *arg);

/*
 * cache_flush_redis - delete sel's keys in c's Redis, then publish sel
 * (base: c's event loop).
 * NULL on ENOMEM only; without Redis, or with Redis down, cb reports the
 * error (from the loop, never inside this call).
 */
struct event_base;
struct cache_flush_op *cache_flush_redis(struct event_base *base, struct cache *c,
                                         const struct cache_flush_sel *sel, cache_flush_cb cb,
                                         void *arg);

/* cache_flush_cancel - cb will not run; commands already sent are not taken back */
void cache_flush_cancel(struct cache_flush_op *op);

/* cache_flush_channel - "<prefix>flush" into buf; length or -1 */
int cache_flush_channel(const struct cache *c, char *buf, size_t size);

/*
 * cache_flush_channel_of - the same for a key prefix that is not (yet) the
 * cache's: a reload subscribes to the new channel before it swaps the cache
 */
int cache_flush_channel_of(const char *prefix, char *buf, size_t size);

#endif
