/*
 * cache_redis.c - one Redis connection on the event loop, see cache_redis.h.
 *
 * hiredis 0.14 async with its libevent adapter does the protocol; this file
 * adds what 0.14 lacks: a connect deadline, a deadline per command, and
 * reconnect with exponential backoff. A command whose deadline passes is
 * answered "timeout" at once and the connection is dropped (a stalled Redis
 * would otherwise hold every later command too); hiredis then hands the
 * other pending commands back with a NULL reply, which we answer as errors.
 *
 * Ownership: a cache_redis_req is hiredis's privdata from the moment it is
 * queued until hiredis calls req_reply() for it - with a reply, or with NULL
 * when the context is freed - and req_reply() always frees it. Cancelling
 * (or freeing the connection) only clears the user callback and detaches the
 * request, so a late reply finds a harmless husk.
 *
 * Re-entrancy: user callbacks may call cache_redis_command, cancel or free.
 * Every entry from the event loop counts itself in r->depth; a free asked
 * for while depth > 0 is only recorded and done on the way out, and every
 * hiredis free goes through redisAsyncFree(), which itself defers while
 * hiredis is inside one of its callbacks (REDIS_IN_CALLBACK).
 *
 * Sentinel mode: every connect starts in CR_ASKING (the sentinels are asked
 * where the master is, redis_sentinel.c), except right after a sentinel
 * announced the new address (+switch-master), which is used directly. A
 * READONLY error means we are talking to a demoted master: the connection
 * is dropped and the sentinels asked again. While asking, commands fail at
 * once as in CR_DOWN, so lookups go on from L1 and the backends.
 */
#include "cache_redis.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "redis_sentinel.h"

struct cache_redis_req {
    struct cache_redis *r;    /* NULL once detached (connection freed) */
    cache_redis_cb cb;        /* NULL once answered or cancelled */
    cache_redis_array_cb acb; /* instead of cb, for cache_redis_command_array */
    void *arg;
    struct event *timer;                 /* per-command deadline */
    struct timespec sent;                /* for the reply latency */
    struct cache_redis_req *prev, *next; /* r->pending */
};

/*
 * The connection's states. CR_CLOSING: hiredis is tearing ac down on its
 * own (the server went away) and will call redis_on_disconnect when done.
 */
enum redis_state {
    CR_DOWN,       /* no context; the reconnect timer is (or will be) pending */
    CR_CONNECTING, /* connect (and AUTH/SELECT) in progress, connect_timer running */
    CR_UP,         /* connected: commands are sent */
    CR_CLOSING,    /* hiredis is freeing ac; no more commands */
    CR_ASKING,     /* Sentinel mode: asking the sentinels where the master is */
};
#define CR_STATE_COUNT 5

static const char *const redis_state_names[CR_STATE_COUNT] = {
    [CR_DOWN] = "down",       [CR_CONNECTING] = "connecting",   [CR_UP] = "up",
    [CR_CLOSING] = "closing", [CR_ASKING] = "asking sentinels",
};

struct cache_redis {
    struct event_base *base;
    char *host;
    int port;
    char *unix_path;
    int timeout_ms;
    int reconnect_min_ms;
    int reconnect_max_ms;
    struct redis_sentinel *sentinel; /* NULL unless Sentinel mode */
    char *password;                  /* NULL: no AUTH */
    int db;                          /* SELECT db after connecting when != 0 */
    int hello_pending;               /* AUTH/SELECT replies still awaited (CR_CONNECTING) */
    int addr_fresh;                  /* a sentinel just announced host:port: skip the ask */

    enum redis_state state;
    redisAsyncContext *ac; /* NULL in CR_DOWN */
    int ever_connected;
    int down_logged;            /* a failure was logged since "connected" was */
    struct log_limit log_limit; /* failure logs: one line per reconnect_max_ms */
    int backoff_ms;             /* next reconnect delay */
    int stalled;                /* a command timed out and no reply came since */

    struct event *connect_timer;
    struct event *reconnect_timer;
    struct cache_redis_req *pending; /* sent, no reply yet (and not detached) */

    int depth;          /* entries from the loop currently on the stack */
    int free_requested; /* cache_redis_free() called while depth > 0 */
    int retiring;       /* cache_redis_retire(): no new commands, gone once pending drains */
    void (*gone)(void *arg);
    void *gone_arg;
    struct cache_redis_stats stats;
};

static void redis_connect(struct cache_redis *r);

/* ms_to_tv - libevent wants a timeval */
static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* redis_where - "host:port" or the socket path, for log lines */
static void redis_where(const struct cache_redis *r, char *buf, size_t size)
{
    if (r->unix_path)
        snprintf(buf, size, "unix:%s", r->unix_path);
    else if (r->host == NULL)
        snprintf(buf, size, "(master not yet known)");
    else
        snprintf(buf, size, "%s:%d", r->host, r->port);
}

/* redis_enter_state - every state change goes through here (logged at debug) */
static void redis_enter_state(struct cache_redis *r, enum redis_state state)
{
    if ((int)state < 0 || (int)state >= CR_STATE_COUNT) {
        log_err("redis: internal error: bad state %d", (int)state);
        state = CR_DOWN;
    }
    if (state != r->state)
        log_debug("redis: %s -> %s", redis_state_names[r->state], redis_state_names[state]);
    r->state = state;
}

/*
 * redis_log_failure - log a connection problem, at most once per
 * reconnect_max_ms (the capped backoff interval), however the connection
 * flaps: a stalled Redis that accepts connects but never answers would
 * otherwise cost two lines per command timeout. Suppressed failures are
 * counted and reported with the next line.
 */
static void redis_log_failure(struct cache_redis *r, const char *what, const char *why)
{
    char where[300];

    redis_where(r, where, sizeof(where));
    if (log_limited(&r->log_limit, r->reconnect_max_ms, LOG_WARNING, "redis: %s %s: %s", what,
                    where, why ? why : "unknown error"))
        r->down_logged = 1;
}

/* redis_schedule_reconnect - try again after the current backoff, then double it */
static void redis_schedule_reconnect(struct cache_redis *r)
{
    struct timeval tv = ms_to_tv(r->backoff_ms);

    if (r->free_requested || r->retiring || evtimer_pending(r->reconnect_timer, NULL))
        return;
    evtimer_add(r->reconnect_timer, &tv);
    if (r->backoff_ms < r->reconnect_max_ms / 2)
        r->backoff_ms *= 2;
    else
        r->backoff_ms = r->reconnect_max_ms;
}

/* redis_detach_all - forget every pending request: their callbacks will not run */
static void redis_detach_all(struct cache_redis *r)
{
    struct cache_redis_req *req, *next;

    for (req = r->pending; req; req = next) {
        next = req->next;
        req->r = NULL;
        req->cb = NULL;
        req->prev = req->next = NULL;
        event_free(req->timer);
        req->timer = NULL;
    }
    r->pending = NULL;
}

/* redis_drop - close the connection now (pending commands come back as errors) */
static void redis_drop(struct cache_redis *r)
{
    redisAsyncContext *ac = r->ac;

    if (ac == NULL)
        return;
    r->ac = NULL;
    redis_enter_state(r, CR_DOWN);
    evtimer_del(r->connect_timer);
    /* we handle the aftermath here, so onDisconnect must not */
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* redis_really_free - the actual teardown; only when no loop entry is on the stack */
static void redis_really_free(struct cache_redis *r)
{
    redis_detach_all(r);
    redis_drop(r);
    redis_sentinel_free(r->sentinel);
    event_free(r->connect_timer);
    event_free(r->reconnect_timer);
    free(r->host);
    free(r->unix_path);
    free(r->password);
    free(r);
}

/* redis_hold - an event-loop entry into this module begins */
static void redis_hold(struct cache_redis *r)
{
    r->depth++;
}

/* redis_retired - a retired connection has drained: tell its owner, then free it */
static void redis_retired(struct cache_redis *r)
{
    void (*gone)(void *) = r->gone;
    void *arg = r->gone_arg;

    redis_really_free(r);
    if (gone != NULL)
        gone(arg);
}

/*
 * redis_release - it ends; returns 1 if r was freed (the caller must not
 * touch r): asked for inside a callback, or retired with nothing left in
 * flight
 */
static int redis_release(struct cache_redis *r)
{
    if (--r->depth > 0)
        return 0;
    if (r->free_requested) {
        redis_really_free(r);
        return 1;
    }
    if (r->retiring && r->pending == NULL) {
        redis_retired(r);
        return 1;
    }
    return 0;
}

/* req_unlink - take req out of r->pending and stop its deadline */
static void req_unlink(struct cache_redis *r, struct cache_redis_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (r->pending == req)
        r->pending = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    if (req->timer) {
        event_free(req->timer);
        req->timer = NULL;
    }
}

/*
 * array_deliver - an array reply (SCAN's [cursor, [keys]], MGET's values)
 * flattened depth first into its string leaves, at most
 * CACHE_REDIS_ARRAY_MAX of them and two levels deep; nil leaves are NULL,
 * integers are written out. Anything else, or more, is an error: the
 * reply comes from the network.
 */
static void array_deliver(const redisReply *reply, cache_redis_array_cb acb, void *arg)
{
    static const char *elems[CACHE_REDIS_ARRAY_MAX];
    static size_t lens[CACHE_REDIS_ARRAY_MAX];
    static char nums[CACHE_REDIS_ARRAY_MAX][24];
    size_t n = 0;
    const char *why = NULL;

    for (size_t i = 0; i < reply->elements && why == NULL; i++) {
        const redisReply *e = reply->element[i];
        size_t count = e->type == REDIS_REPLY_ARRAY ? e->elements : 1;
        for (size_t j = 0; j < count && why == NULL; j++) {
            const redisReply *leaf = e->type == REDIS_REPLY_ARRAY ? e->element[j] : e;
            if (n == CACHE_REDIS_ARRAY_MAX) {
                why = "array reply too long";
            } else if (leaf->type == REDIS_REPLY_STRING || leaf->type == REDIS_REPLY_STATUS) {
                elems[n] = leaf->str ? leaf->str : "";
                lens[n++] = leaf->str ? (size_t)leaf->len : 0;
            } else if (leaf->type == REDIS_REPLY_NIL) {
                elems[n] = NULL;
                lens[n++] = 0;
            } else if (leaf->type == REDIS_REPLY_INTEGER) {
                lens[n] = (size_t)snprintf(nums[n], sizeof(nums[n]), "%lld", leaf->integer);
                elems[n] = nums[n];
                n++;
            } else {
                why = "unexpected element in an array reply";
            }
        }
    }
    if (why != NULL) {
        size_t wlen = strlen(why);
        acb(-1, 1, &why, &wlen, arg);
        return;
    }
    acb(1, n, elems, lens, arg);
}

/*
 * req_reply - hiredis's callback for every command we send. reply NULL: the
 * context is being freed (disconnect, our drop, or our free). hiredis frees
 * the reply after we return; val handed to the user points into it.
 */
static void req_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct cache_redis_req *req = privdata;
    struct cache_redis *r = req->r;
    redisReply *reply = reply_;
    cache_redis_cb cb = req->cb;
    cache_redis_array_cb acb = req->acb;
    void *arg = req->arg;
    char num[32];
    const char *val = NULL;
    size_t len = 0;
    int status;

    if (r == NULL) { /* detached: nobody waits for this any more */
        free(req);
        return;
    }
    req_unlink(r, req);
    if (reply != NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        r->stats.reply_seconds += (double)(now.tv_sec - req->sent.tv_sec) +
                                  (double)(now.tv_nsec - req->sent.tv_nsec) / 1e9;
    }
    free(req);

    if (acb != NULL && reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        r->stats.replies++;
        r->stalled = 0;
        r->backoff_ms = r->reconnect_min_ms;
        redis_hold(r);
        array_deliver(reply, acb, arg);
        redis_release(r);
        return;
    }
    if (reply == NULL) {
        /* hiredis is tearing this context down: no more commands on it */
        if (r->ac == ac)
            redis_enter_state(r, CR_CLOSING);
        status = -1;
        val = "redis connection lost";
        r->stats.errors++;
    } else {
        r->stats.replies++;
        /* a reply, not just a connect, proves Redis is alive: only now forget the backoff */
        r->stalled = 0;
        r->backoff_ms = r->reconnect_min_ms;
        switch (reply->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            status = 1;
            val = reply->str ? reply->str : "";
            len = reply->str ? (size_t)reply->len : 0;
            break;
        case REDIS_REPLY_INTEGER:
            status = 1;
            len = (size_t)snprintf(num, sizeof(num), "%lld", reply->integer);
            val = num;
            break;
        case REDIS_REPLY_NIL:
            status = 0;
            break;
        case REDIS_REPLY_ERROR:
            status = -1;
            val = reply->str ? reply->str : "redis error";
            len = reply->str ? (size_t)reply->len : strlen(val);
            r->stats.errors++;
            break;
        default:
            status = -1;
            val = "unexpected redis reply type";
            r->stats.errors++;
            break;
        }
    }
    redis_hold(r);
    if (status == -1 && len == 0)
        len = strlen(val); /* one of our own messages */
    if (cb != NULL) {
        cb(status, val, len, arg);
    } else if (acb == NULL) {
        /* fire and forget */
    } else if (status == -1) {
        acb(-1, 1, &val, &len, arg);
    } else {
        const char *what = "not an array reply";
        size_t wlen = strlen(what);
        acb(-1, 1, &what, &wlen, arg);
    }
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
        strncmp(reply->str, "READONLY", 8) == 0 && r->sentinel != NULL && r->ac == ac &&
        !r->free_requested) {
        /* a demoted master: the sentinels know the new one */
        redis_log_failure(r, "read-only replica at", "asking the sentinels for the master");
        redis_drop(r);
        r->backoff_ms = r->reconnect_min_ms;
        redis_schedule_reconnect(r);
    }
    redis_release(r);
}

/* req_timeout - a command's deadline passed: answer it, drop the stalled connection */
static void req_timeout(evutil_socket_t fd, short what, void *arg_)
{
    struct cache_redis_req *req = arg_;
    struct cache_redis *r = req->r;
    cache_redis_cb cb = req->cb;
    cache_redis_array_cb acb = req->acb;
    void *arg = req->arg;

    (void)fd;
    (void)what;
    redis_hold(r);
    r->stats.timeouts++;
    r->stalled = 1;
    /* the husk stays queued in hiredis until the drop below hands it back */
    req_unlink(r, req);
    req->r = NULL;
    req->cb = NULL;
    req->acb = NULL;
    if (r->ac) {
        redis_log_failure(r, "command timed out on", "no reply within the deadline");
        redis_drop(r);
        redis_schedule_reconnect(r);
    }
    /* a callback run by the drop above may have freed us (deferred): then stay silent */
    if (!r->free_requested) {
        const char *msg = "redis timeout";
        size_t mlen = strlen(msg);
        if (cb)
            cb(-1, msg, mlen, arg);
        else if (acb)
            acb(-1, 1, &msg, &mlen, arg);
    }
    redis_release(r);
}

/* redis_on_connect - hiredis finished (or failed) the connect */
static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct cache_redis *r = ac->data;
    char where[300];

    if (r == NULL || r->ac != ac)
        return;
    redis_hold(r);
    evtimer_del(r->connect_timer);
    if (status != REDIS_OK) {
        /* hiredis frees the context itself after this callback */
        redis_log_failure(r, "cannot connect to", ac->errstr);
        r->ac = NULL;
        redis_enter_state(r, CR_DOWN);
        redis_schedule_reconnect(r);
    } else if (r->hello_pending > 0) {
        /* connected; up once AUTH/SELECT are answered (redis_hello_reply) within the deadline */
        struct timeval tv = ms_to_tv(r->timeout_ms);
        evtimer_add(r->connect_timer, &tv);
    } else {
        redis_enter_state(r, CR_UP);
        /*
         * A stopped Redis still completes TCP connects (the kernel does it):
         * after a timeout keep backing off until a reply proves it alive,
         * so lookups meanwhile fail fast instead of each waiting timeout_ms.
         */
        if (!r->stalled)
            r->backoff_ms = r->reconnect_min_ms;
        if (!r->ever_connected || r->down_logged) {
            redis_where(r, where, sizeof(where));
            log_info("redis: connected to %s", where);
        }
        if (r->ever_connected)
            r->stats.reconnects++;
        r->ever_connected = 1;
        r->down_logged = 0;
    }
    redis_release(r);
}

/* redis_on_disconnect - the connection went away under us (hiredis frees it) */
static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct cache_redis *r = ac->data;

    if (r == NULL || r->ac != ac)
        return;
    redis_hold(r);
    r->ac = NULL;
    redis_enter_state(r, CR_DOWN);
    redis_log_failure(r, "lost connection to",
                      status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
    redis_schedule_reconnect(r);
    redis_release(r);
}

/* redis_connect_timeout - the connect did not complete in time: give up on this try */
static void redis_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct cache_redis *r = arg;

    (void)fd;
    (void)what;
    if (r->state != CR_CONNECTING)
        return;
    redis_hold(r);
    redis_log_failure(r, "connect timed out to", "no answer within the deadline");
    redis_drop(r);
    redis_schedule_reconnect(r);
    redis_release(r);
}

/* redis_reconnect_cb - the backoff has passed */
static void redis_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache_redis *r = arg;

    (void)fd;
    (void)what;
    redis_hold(r);
    redis_connect(r);
    redis_release(r);
}

/* redis_hello_reply - AUTH's or SELECT's answer: the connection is up after the last one */
static void redis_hello_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct cache_redis *r = ac->data;
    redisReply *reply = reply_;

    (void)privdata;
    if (r == NULL || r->ac != ac || reply == NULL)
        return; /* not ours any more, or the disconnect callback follows */
    redis_hold(r);
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "%s refused: %.150s", privdata ? "SELECT" : "AUTH",
                 reply->str ? reply->str : "");
        redis_log_failure(r, "cannot use", why);
        redis_drop(r);
        redis_schedule_reconnect(r);
    } else if (--r->hello_pending == 0 && r->state == CR_CONNECTING) {
        redis_on_connect(ac, REDIS_OK);
    }
    redis_release(r);
}

/* redis_send_hello - queue AUTH and SELECT on a new connection (written once it is up) */
static int redis_send_hello(struct cache_redis *r, redisAsyncContext *ac)
{
    char db[16];

    r->hello_pending = 0;
    if (r->password != NULL) {
        const char *argv[2] = {"AUTH", r->password};
        size_t argvlen[2] = {4, strlen(r->password)};
        if (redisAsyncCommandArgv(ac, redis_hello_reply, NULL, 2, argv, argvlen) != REDIS_OK)
            return -1;
        r->hello_pending++;
    }
    if (r->db != 0) {
        const char *argv[2] = {"SELECT", db};
        size_t argvlen[2] = {6, (size_t)snprintf(db, sizeof(db), "%d", r->db)};
        /* privdata only tells the log line which command was refused */
        if (redisAsyncCommandArgv(ac, redis_hello_reply, "", 2, argv, argvlen) != REDIS_OK)
            return -1;
        r->hello_pending++;
    }
    return 0;
}

static void redis_connect_addr(struct cache_redis *r);

/* redis_found - the sentinels' answer to where the master is */
static void redis_found(int status, const char *host, int port, void *arg)
{
    struct cache_redis *r = arg;

    if (r->state != CR_ASKING)
        return;
    redis_hold(r);
    redis_enter_state(r, CR_DOWN);
    if (status < 0) {
        redis_log_failure(r, "no master from the sentinels; last known", host);
        redis_schedule_reconnect(r);
    } else {
        if (r->host == NULL || strcmp(r->host, host) != 0 || r->port != port) {
            char *copy = strdup(host);
            if (copy != NULL) {
                if (r->host != NULL)
                    r->stats.master_switches++;
                free(r->host);
                r->host = copy;
                r->port = port;
                log_info("redis: the sentinels name %s:%d as the master", host, port);
            }
        }
        if (r->host != NULL)
            redis_connect_addr(r);
        else
            redis_schedule_reconnect(r);
    }
    redis_release(r);
}

/*
 * redis_switched - a sentinel announced +switch-master for our master:
 * move there now (several sentinels announce each switch; the address we
 * already use is ignored). Commands in flight on the old connection fail.
 */
static void redis_switched(const char *host, int port, void *arg)
{
    struct cache_redis *r = arg;
    char *copy;

    if (r->free_requested || r->retiring ||
        (r->host != NULL && strcmp(r->host, host) == 0 && r->port == port))
        return;
    if ((copy = strdup(host)) == NULL)
        return;
    redis_hold(r);
    log_info("redis: a sentinel reports the master moved to %s:%d", host, port);
    redis_sentinel_cancel(r->sentinel);
    redis_drop(r);
    redis_enter_state(r, CR_DOWN);
    free(r->host);
    r->host = copy;
    r->port = port;
    r->stats.master_switches++;
    r->addr_fresh = 1;
    evtimer_del(r->reconnect_timer);
    r->backoff_ms = r->reconnect_min_ms;
    redis_connect(r);
    redis_release(r);
}

/*
 * redis_connect - start connecting: in Sentinel mode by asking where the
 * master is (unless a sentinel just told us), else to the configured address
 */
static void redis_connect(struct cache_redis *r)
{
    if (r->ac || r->free_requested || r->retiring || r->state == CR_ASKING)
        return;
    if (r->sentinel != NULL && !r->addr_fresh) {
        redis_enter_state(r, CR_ASKING);
        redis_sentinel_ask(r->sentinel, redis_found, r);
        return;
    }
    r->addr_fresh = 0;
    redis_connect_addr(r);
}

/* redis_connect_addr - start one non-blocking connect; on immediate failure schedule a retry */
static void redis_connect_addr(struct cache_redis *r)
{
    redisAsyncContext *ac;
    struct timeval tv = ms_to_tv(r->timeout_ms);

    if (r->ac || r->free_requested)
        return;
    if (r->unix_path)
        ac = redisAsyncConnectUnix(r->unix_path);
    else
        ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL) {
        redis_log_failure(r, "cannot connect to", "out of memory");
        redis_schedule_reconnect(r);
        return;
    }
    if (ac->err) {
        redis_log_failure(r, "cannot connect to", ac->errstr);
        redisAsyncFree(ac);
        redis_schedule_reconnect(r);
        return;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redis_log_failure(r, "cannot connect to", "event attach failed");
        redisAsyncFree(ac);
        redis_schedule_reconnect(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    if (redis_send_hello(r, ac) < 0) {
        redis_log_failure(r, "cannot connect to", "cannot queue AUTH/SELECT");
        redisAsyncFree(ac);
        redis_schedule_reconnect(r);
        return;
    }
    r->ac = ac;
    redis_enter_state(r, CR_CONNECTING);
    evtimer_add(r->connect_timer, &tv);
}

/*
 * cache_redis_resolve - the host as a numeric address. hiredis resolves names
 * with a blocking getaddrinfo() on every connect, which must not happen on
 * the loop: a name is resolved once here (IPv4 preferred, as Redis is
 * usually bound to 127.0.0.1), for callers that serve nothing yet; a
 * caller on a serving loop resolves names asynchronously first and passes
 * numeric addresses, which are only copied. Returns a malloc'ed string or NULL.
 */
char *cache_redis_resolve(const char *host, char *err, size_t errlen)
{
    struct addrinfo hints, *res, *ai, *pick = NULL;
    char buf[NI_MAXHOST];
    const char *pick_str;
    char *copy;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host, NULL, &hints, &res) == 0) {
        freeaddrinfo(res);
        pick_str = host; /* already numeric */
        goto copy;
    }
    hints.ai_flags = 0;
    if ((rc = getaddrinfo(host, NULL, &hints, &res)) != 0) {
        snprintf(err, errlen, "redis: cannot resolve %.200s: %s", host, gai_strerror(rc));
        return NULL;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
        if (pick == NULL && ai->ai_family == AF_INET6)
            pick = ai;
    }
    if (pick == NULL ||
        getnameinfo(pick->ai_addr, pick->ai_addrlen, buf, sizeof(buf), NULL, 0, NI_NUMERICHOST)) {
        freeaddrinfo(res);
        snprintf(err, errlen, "redis: cannot resolve %.200s to an IP address", host);
        return NULL;
    }
    freeaddrinfo(res);
    log_info("redis: %s resolved to %s (once, for this configuration)", host, buf);
    pick_str = buf;
copy:
    if ((copy = strdup(pick_str)) == NULL)
        snprintf(err, errlen, "redis: out of memory");
    return copy;
}

struct cache_redis *cache_redis_new(struct event_base *base, const struct cache_redis_config *cfg,
                                    char *err, size_t errlen)
{
    struct cache_redis *r;

    if (base == NULL || cfg == NULL) {
        snprintf(err, errlen, "redis: no event base or config");
        return NULL;
    }
    int sentinel_mode = cfg->sentinels != NULL && cfg->sentinels[0] != '\0';
    if (!sentinel_mode && (cfg->unix_path == NULL || cfg->unix_path[0] == 0)) {
        if (cfg->host == NULL || cfg->host[0] == 0 || cfg->port < 1 || cfg->port > 65535) {
            snprintf(err, errlen, "redis: need a host and a port in 1..65535");
            return NULL;
        }
    }
    if (cfg->timeout_ms < 1 || cfg->reconnect_min_ms < 1 ||
        cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
        snprintf(err, errlen,
                 "redis: timeout_ms and reconnect_min_ms must be > 0 and "
                 "reconnect_max_ms >= reconnect_min_ms");
        return NULL;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        goto nomem;
    r->base = base;
    r->port = cfg->port;
    r->timeout_ms = cfg->timeout_ms;
    r->reconnect_min_ms = cfg->reconnect_min_ms;
    r->reconnect_max_ms = cfg->reconnect_max_ms;
    r->backoff_ms = cfg->reconnect_min_ms;
    r->db = cfg->db;
    if (cfg->password != NULL && cfg->password[0] != '\0' &&
        (r->password = strdup(cfg->password)) == NULL)
        goto nomem;
    if (sentinel_mode) {
        r->sentinel = redis_sentinel_new(base, cfg->sentinels, cfg->master_name, cfg->password,
                                         cfg->timeout_ms, err, errlen);
        if (r->sentinel == NULL ||
            redis_sentinel_watch(r->sentinel, cfg->reconnect_min_ms, cfg->reconnect_max_ms,
                                 redis_switched, r, err, errlen) < 0) {
            redis_sentinel_free(r->sentinel);
            free(r->password);
            free(r);
            return NULL;
        }
    } else if (cfg->unix_path && cfg->unix_path[0]) {
        if ((r->unix_path = strdup(cfg->unix_path)) == NULL)
            goto nomem;
    } else if ((r->host = cache_redis_resolve(cfg->host, err, errlen)) == NULL) {
        free(r); /* err set by redis_resolve */
        return NULL;
    }
    r->connect_timer = evtimer_new(base, redis_connect_timeout, r);
    r->reconnect_timer = evtimer_new(base, redis_reconnect_cb, r);
    if (r->connect_timer == NULL || r->reconnect_timer == NULL)
        goto nomem;
    redis_connect(r);
    return r;

nomem:
    snprintf(err, errlen, "redis: out of memory");
    if (r) {
        if (r->connect_timer)
            event_free(r->connect_timer);
        if (r->reconnect_timer)
            event_free(r->reconnect_timer);
        redis_sentinel_free(r->sentinel);
        free(r->host);
        free(r->unix_path);
        free(r->password);
        free(r);
    }
    return NULL;
}

void cache_redis_free(struct cache_redis *r)
{
    if (r == NULL)
        return;
    r->gone = NULL; /* freed on purpose: the owner knows */
    if (r->depth > 0) {
        /* inside one of our callbacks: silence everything now, free on the way out */
        r->free_requested = 1;
        redis_detach_all(r);
        evtimer_del(r->reconnect_timer);
        redis_sentinel_cancel(r->sentinel);
        return;
    }
    redis_really_free(r);
}

int cache_redis_retire(struct cache_redis *r, void (*gone)(void *arg), void *arg)
{
    if (r == NULL)
        return 1;
    if (r->free_requested || r->retiring)
        return 0; /* already on its way out */
    if (r->pending == NULL) {
        cache_redis_free(r); /* nothing of ours in flight */
        return 1;
    }
    /*
     * Every command in flight has its deadline, and a connection going down
     * hands them all back: this ends within timeout_ms, with every callback
     * run (also when retired from inside one, while hiredis tears down).
     */
    r->retiring = 1;
    r->gone = gone;
    r->gone_arg = arg;
    evtimer_del(r->reconnect_timer);
    redis_sentinel_cancel(r->sentinel);
    return 0;
}

int cache_redis_connected(const struct cache_redis *r)
{
    return r && r->state == CR_UP && r->ac && !r->free_requested && !r->retiring;
}

struct cache_redis_req *cache_redis_command(struct cache_redis *r, int argc, const char **argv,
                                            const size_t *argvlen, cache_redis_cb cb, void *arg)
{
    struct cache_redis_req *req;
    struct timeval tv;

    if (!cache_redis_connected(r) || argc < 1 || argv == NULL || argvlen == NULL)
        return NULL;
    if ((req = calloc(1, sizeof(*req))) == NULL)
        return NULL;
    if ((req->timer = evtimer_new(r->base, req_timeout, req)) == NULL) {
        free(req);
        return NULL;
    }
    req->r = r;
    req->cb = cb;
    req->arg = arg;
    clock_gettime(CLOCK_MONOTONIC, &req->sent);
    /* queues the command and arms the write event: never calls back from here */
    if (redisAsyncCommandArgv(r->ac, req_reply, req, argc, argv, argvlen) != REDIS_OK) {
        event_free(req->timer);
        free(req);
        r->stats.errors++;
        return NULL;
    }
    tv = ms_to_tv(r->timeout_ms);
    evtimer_add(req->timer, &tv);
    req->next = r->pending;
    if (r->pending)
        r->pending->prev = req;
    r->pending = req;
    r->stats.commands++;
    return req;
}

struct cache_redis_req *cache_redis_command_array(struct cache_redis *r, int argc,
                                                  const char **argv, const size_t *argvlen,
                                                  cache_redis_array_cb acb, void *arg)
{
    struct cache_redis_req *req = cache_redis_command(r, argc, argv, argvlen, NULL, arg);

    if (req != NULL)
        req->acb = acb;
    return req;
}

void cache_redis_cancel(struct cache_redis_req *req)
{
    if (req == NULL)
        return;
    req->cb = NULL;
    req->acb = NULL;
    /*
     * Keep the deadline running: a cancelled command that never gets a reply
     * still means Redis is stalled, and hiredis still owns the husk.
     */
}

void cache_redis_get_stats(const struct cache_redis *r, struct cache_redis_stats *out)
{
    if (r == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = r->stats;
}
