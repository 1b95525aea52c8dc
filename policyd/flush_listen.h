/*
 * flush_listen.h - this daemon's ear on the Redis flush channel: a flush
 * published by any daemon sharing the Redis (cache_flush.h) drops the
 * matching entries from this daemon's in-process cache; and since messages
 * sent while the subscription was down are lost, every (re)subscription
 * drops the whole in-process cache (Redis itself is the truth to refill
 * from). The same channel carries the harvest limit's penalties
 * ("harvest <network> <until>", harvest.h), handed to harvest_message.
 */
#ifndef CALLAHEAD_FLUSH_LISTEN_H
#define CALLAHEAD_FLUSH_LISTEN_H

#include <stddef.h>

struct event_base;
struct verifier;
struct verifier_config;
struct flush_listen;

/*
 * flush_listen_new - subscribe to the flush channel of vc's key prefix on
 * the Redis of vc (NULL + no error when vc has no Redis), for v's cache:
 * vc may be the next configuration of a reload, not yet v's (cache_swap.h).
 * NULL + err on failure.
 */
struct harvest;
struct flush_listen *flush_listen_new(struct event_base *base, struct verifier *v,
                                      struct harvest *harvest, const struct verifier_config *vc,
                                      char *err, size_t errlen);
void flush_listen_free(struct flush_listen *fl);

/*
 * flush_listen_take_over - a reload replaced prev by fl on the same channel
 * of the same Redis (only e.g. redis_timeout or redis_password changed): fl
 * owns prev and keeps it subscribed until fl's own subscription is
 * confirmed, and when prev is still subscribed then, nothing was missed, so
 * that first subscription does not drop the in-process cache. prev is
 * freed at once when fl is NULL.
 */
void flush_listen_take_over(struct flush_listen *fl, struct flush_listen *prev);

/* flush_listen_subscribed - 1 while subscribed (for stats) */
int flush_listen_subscribed(const struct flush_listen *fl);

#endif
