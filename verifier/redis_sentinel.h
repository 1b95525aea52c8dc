/*
 * redis_sentinel.h - find the current Redis master through Redis Sentinel,
 * asynchronously, for cache_redis.c and redis_sub.c.
 *
 * A site that runs Redis highly available gives us the sentinels
 * ("host:port, host:port, ...") and the master's name instead of one Redis
 * address. redis_sentinel_ask() asks the sentinels in turn (SENTINEL
 * get-master-addr-by-name, after AUTH when a password is set), each within
 * the deadline, and answers with the first address one of them knows.
 * redis_sentinel_watch() subscribes to +switch-master on every sentinel, so
 * that a failover is followed as soon as a sentinel announces it instead of
 * only when the old master's connection fails. Nothing here blocks: the
 * sentinels' names are resolved once, in redis_sentinel_new (start-up, or a
 * reload that changes them).
 */
#ifndef CALLAHEAD_REDIS_SENTINEL_H
#define CALLAHEAD_REDIS_SENTINEL_H

#include <stddef.h>

#include "value_parse.h"

struct event_base;
struct redis_sentinel; /* opaque */

#define REDIS_SENTINEL_MAX 16       /* sentinels in one list */
#define REDIS_SENTINEL_NAME_MAX 128 /* bytes in a master name */
#define REDIS_SENTINEL_ADDR_MAX 64  /* a numeric address as text */

/*
 * redis_sentinel_check - syntax of a sentinel list: 1..REDIS_SENTINEL_MAX
 * HOST:PORT or [IPV6]:PORT separated by commas and/or blanks. 0 or -1 +
 * err. Used by the config parser; does not resolve.
 */
int redis_sentinel_check(const char *list, char *err, size_t errlen);

/*
 * redis_sentinel_parse - a sentinel list (as redis_sentinel_check) into
 * hosts[i] (as written: names are not resolved) and ports[i], at most
 * REDIS_SENTINEL_MAX each. The count, or -1 + err.
 */
int redis_sentinel_parse(const char *list, char (*hosts)[VALUE_HOST_MAX], int *ports, char *err,
                         size_t errlen);

/* redis_sentinel_check_name - a master name: 1..REDIS_SENTINEL_NAME_MAX printable, no blank */
int redis_sentinel_check_name(const char *name);

/*
 * redis_sentinel_new - a set of sentinels for master name. password may be
 * NULL or "" (no AUTH). Names in list are resolved here, once, with a
 * blocking getaddrinfo: callers on a running loop pass numeric addresses
 * (a reload resolves them first, asynchronously). NULL + err on a bad list
 * or ENOMEM.
 */
struct redis_sentinel *redis_sentinel_new(struct event_base *base, const char *list,
                                          const char *name, const char *password, int timeout_ms,
                                          char *err, size_t errlen);

/* redis_sentinel_free - cancels a pending ask and the watches; no callback runs afterwards */
void redis_sentinel_free(struct redis_sentinel *s);

/*
 * redis_sentinel_cb - the answer to one ask: status 0 with the master's
 * numeric address and port, or -1 (host is then an error message). host is
 * valid only during the call.
 */
typedef void (*redis_sentinel_cb)(int status, const char *host, int port, void *arg);

/*
 * redis_sentinel_ask - ask the sentinels (in turn, starting with the one
 * that answered last) for the master. One ask at a time: a new ask cancels
 * the previous one. cb runs exactly once, from the loop, never from inside
 * this call, unless redis_sentinel_cancel or _free is called first.
 */
void redis_sentinel_ask(struct redis_sentinel *s, redis_sentinel_cb cb, void *arg);

/* redis_sentinel_cancel - the pending ask's cb will not run */
void redis_sentinel_cancel(struct redis_sentinel *s);

/*
 * redis_sentinel_switch_cb - a sentinel announced that our master moved to
 * host:port (numeric, checked). Several sentinels announce the same switch:
 * the receiver ignores an address it already uses.
 */
typedef void (*redis_sentinel_switch_cb)(const char *host, int port, void *arg);

/*
 * redis_sentinel_watch - subscribe to +switch-master on every sentinel (kept
 * alive with reconnects, see redis_sub.h) and call cb for our master's
 * switches. 0, or -1 + err on ENOMEM. At most one watcher.
 */
int redis_sentinel_watch(struct redis_sentinel *s, int reconnect_min_ms, int reconnect_max_ms,
                         redis_sentinel_switch_cb cb, void *arg, char *err, size_t errlen);

/*
 * redis_sentinel_parse_switch - a +switch-master message "NAME OLDIP OLDPORT
 * NEWIP NEWPORT" (msg, len bytes, untrusted). 1 when it is about name, with
 * the new address (numeric IPv4 or IPv6, checked) in host (hostsize bytes)
 * and *port; 0 when it concerns another master or does not parse.
 */
int redis_sentinel_parse_switch(const char *msg, size_t len, const char *name, char *host,
                                size_t hostsize, int *port);

#endif
