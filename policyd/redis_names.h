/*
 * redis_names.h - resolve the Redis host names of a new configuration
 * (redis_server, redis_sentinels) without blocking the event loop, so a
 * reload that names Redis by host name keeps serving while it waits.
 *
 * hiredis would resolve a name with a blocking getaddrinfo() on every
 * connect, so a Redis connection is only ever given numeric addresses
 * (cache_redis_resolve). At a reload the names are resolved here first,
 * with c-ares (dns.h) on the daemon's loop, the way next hops are: a
 * private resolver built from the new configuration's dns_servers and
 * dns_timeout (so a reload that changes those asks where it says), which
 * also reads the hosts file. c-ares rather than getaddrinfo() in a worker
 * thread: the daemon stays one thread, a lookup is cancelled by freeing
 * it (no thread left blocked in libc at exit), and dns_timeout bounds it.
 * Each name must resolve within dns_timeout, or the whole set fails naming
 * the first host that did not.
 */
#ifndef CALLAHEAD_REDIS_NAMES_H
#define CALLAHEAD_REDIS_NAMES_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct verifier_config;
struct redis_names; /* opaque */

/*
 * redis_names_cb - the outcome: ok 1 (redis_names_apply may be used), or 0
 * with err naming the host and why. Runs once, from the loop, never from
 * inside redis_names_start; rn stays the caller's (free it, also from
 * here).
 */
typedef void (*redis_names_cb)(int ok, const char *err, void *arg);

/*
 * redis_names_needed - 1 when cfg's redis_server or a sentinel of
 * redis_sentinels is a host name (not a numeric address, not unix:), 0 when
 * nothing needs a lookup.
 */
int redis_names_needed(const struct config *cfg);

/*
 * redis_names_start - resolve cfg's Redis names on base (cfg must outlive
 * rn). NULL + err when nothing can be started (a bad dns_servers or
 * sentinel list, out of memory): cb never runs then.
 */
struct redis_names *redis_names_start(struct event_base *base, const struct config *cfg,
                                      redis_names_cb cb, void *arg, char *err, size_t errlen);

/*
 * redis_names_apply - point vc's Redis host or sentinel list (as
 * config_verifier filled it from the same cfg) at the numeric addresses
 * found. The strings belong to rn: use vc before redis_names_free.
 */
void redis_names_apply(const struct redis_names *rn, struct verifier_config *vc);

/* redis_names_free - cancel lookups still running (cb will not run) and free; NULL is fine */
void redis_names_free(struct redis_names *rn);

#endif
