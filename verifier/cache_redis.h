/*
 * cache_redis.h - a Redis connection on the event loop (hiredis async with
 * its libevent adapter), with our own deadlines and reconnect backoff.
 *
 * hiredis 0.14 has no async timeouts, so every command carries a libevent
 * timer: a command that has no reply by its deadline completes with an error
 * (its late reply is then ignored) and the connection is dropped and re-made,
 * so a stalled Redis never stalls a lookup. While disconnected, commands fail
 * at once (status -1) and a reconnect is tried with exponential backoff;
 * failures are logged at most once per backoff interval.
 * All arguments are sent binary-safe (argv/argvlen): an address can never
 * inject a Redis command.
 *
 * With sentinels set (Redis Sentinel, redis_sentinel.h) host and port are
 * not given but asked for before every connect, a +switch-master announced
 * by a sentinel moves the connection to the new master at once, and a
 * READONLY reply (we reached a demoted master) makes it ask again. With a
 * password every connection starts with AUTH, with db != 0 with SELECT; the
 * connection counts as up only once both are answered.
 */
#ifndef CALLAHEAD_CACHE_REDIS_H
#define CALLAHEAD_CACHE_REDIS_H

#include <stddef.h>

struct event_base;
struct cache_redis;     /* opaque */
struct cache_redis_req; /* opaque */

struct cache_redis_config {
    const char *host;        /* "127.0.0.1"; ignored when unix_path is set */
    int port;                /* 6379 */
    const char *unix_path;   /* NULL or a UNIX socket path */
    int timeout_ms;          /* connect and per-command deadline */
    int reconnect_min_ms;    /* first backoff */
    int reconnect_max_ms;    /* backoff cap */
    const char *sentinels;   /* NULL/"": none; else "HOST:PORT, ..." and host/unix_path unused */
    const char *master_name; /* the master's name at the sentinels */
    const char *password;    /* NULL/"": no AUTH (also sent to the sentinels) */
    int db;                  /* SELECT this database after connecting; 0 = the default */
};

/*
 * cache_redis_cb - a command's outcome. status: 1 = string/status reply
 * (val/len set), 0 = nil reply, -1 = error, timeout or disconnect (val is
 * an error message). val is valid only during the call.
 */
typedef void (*cache_redis_cb)(int status, const char *val, size_t len, void *arg);

/* cache_redis_new - start connecting (asynchronously); NULL + err only on bad config/ENOMEM */
struct cache_redis *cache_redis_new(struct event_base *base, const struct cache_redis_config *cfg,
                                    char *err, size_t errlen);

/*
 * cache_redis_resolve - host as a numeric address, resolved now with a
 * blocking getaddrinfo() (never per connect, which hiredis would do on the
 * loop). A numeric host is only copied: a caller on a serving loop
 * resolves names asynchronously first (dns.h) and passes addresses, so
 * the lookup is left to callers that serve nothing yet.
 * malloc'ed, or NULL + err.
 */
char *cache_redis_resolve(const char *host, char *err, size_t errlen);

/* cache_redis_free - disconnect; pending callbacks do not run */
void cache_redis_free(struct cache_redis *r);

/*
 * cache_redis_retire - r is no longer wanted (a reload moved the cache to
 * another Redis), but commands already sent should still reach the server
 * and be answered: fire-and-forget SETs and lock releases are not lost, and
 * callbacks still run. From now on r takes no new command
 * (cache_redis_connected is 0) and never reconnects; once nothing is in
 * flight (at the latest after timeout_ms, since every command has its
 * deadline) the connection is closed and r freed, and then gone(arg) runs,
 * from the loop. Returns 1 when r was freed at once (nothing in flight:
 * gone does not run), 0 when it drains first. The owner may
 * still cache_redis_free(r) meanwhile (at exit); gone does not run then.
 */
int cache_redis_retire(struct cache_redis *r, void (*gone)(void *arg), void *arg);

/* cache_redis_connected - 1 when commands can be sent now */
int cache_redis_connected(const struct cache_redis *r);

/*
 * cache_redis_command - send argv (argc strings of argvlen bytes). cb may be
 * NULL (fire and forget). Returns a handle for cancel, or NULL when the
 * command was not sent (not connected): cb then does NOT run and the caller
 * treats it as an error at once. cb never runs from inside this call.
 */
struct cache_redis_req *cache_redis_command(struct cache_redis *r, int argc, const char **argv,
                                            const size_t *argvlen, cache_redis_cb cb, void *arg);

/*
 * cache_redis_command_array - cache_redis_command for commands that answer
 * an array (SCAN, MGET). acb gets status 1 with the reply's string leaves
 * flattened (SCAN: cursor, then the keys; nil leaves are NULL), or -1 with
 * one element, the error message. At most CACHE_REDIS_ARRAY_MAX leaves:
 * more is an error. elems and lens are valid only during the call.
 */
#define CACHE_REDIS_ARRAY_MAX 4096
typedef void (*cache_redis_array_cb)(int status, size_t n, const char **elems, const size_t *lens,
                                     void *arg);
struct cache_redis_req *cache_redis_command_array(struct cache_redis *r, int argc,
                                                  const char **argv, const size_t *argvlen,
                                                  cache_redis_array_cb acb, void *arg);

/* cache_redis_cancel - cb will not run for req (the reply, if any, is discarded) */
void cache_redis_cancel(struct cache_redis_req *req);

/* statistics for stats output and tests */
struct cache_redis_stats {
    unsigned long commands, replies, errors, timeouts, reconnects;
    unsigned long master_switches; /* Sentinel mode: moves to another master address */
    double reply_seconds;          /* summed time from sending a command to its reply (replies) */
};
void cache_redis_get_stats(const struct cache_redis *r, struct cache_redis_stats *out);

#endif
