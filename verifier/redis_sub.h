/*
 * redis_sub.h - one Redis pub/sub subscription kept alive on the event loop.
 *
 * A connection in subscribe mode can send no other command, so this is a
 * second connection beside the cache's (cache_redis.h), with the same
 * address, deadline and backoff settings: connect (within timeout_ms),
 * SUBSCRIBE (confirmed within timeout_ms), then deliver each message.
 * When the connection is lost it reconnects with exponential backoff.
 * Messages published while it was down are lost for good, so every time
 * the subscription is (re)established the owner is told (resync_cb) and
 * must assume it missed something: the cache flush listener drops its
 * whole in-process cache then.
 * With cfg->sentinels set the master is asked for before every connect and
 * a +switch-master from a sentinel moves the subscription at once
 * (redis_sentinel.h); with cfg->password every connection starts with AUTH.
 */
#ifndef CALLAHEAD_REDIS_SUB_H
#define CALLAHEAD_REDIS_SUB_H

#include <stddef.h>

#include "cache_redis.h"

struct event_base;
struct redis_sub;

/* redis_sub_msg_cb - one message (len bytes, untrusted; valid during the call) */
typedef void (*redis_sub_msg_cb)(const char *msg, size_t len, void *arg);

/* redis_sub_resync_cb - subscribed (again): messages sent before may have been missed */
typedef void (*redis_sub_resync_cb)(void *arg);

/*
 * redis_sub_new - start connecting to cfg's Redis and subscribe to channel
 * (copied). Callbacks run from the loop only. NULL + err on bad config or
 * ENOMEM (a name is resolved here, once, like cache_redis_new).
 */
struct redis_sub *redis_sub_new(struct event_base *base, const struct cache_redis_config *cfg,
                                const char *channel, redis_sub_msg_cb msg_cb,
                                redis_sub_resync_cb resync_cb, void *arg, char *err, size_t errlen);

/* redis_sub_subscribed - 1 while the subscription is confirmed and up */
int redis_sub_subscribed(const struct redis_sub *s);

/* redis_sub_free - disconnect; no callback runs after this */
void redis_sub_free(struct redis_sub *s);

#endif
