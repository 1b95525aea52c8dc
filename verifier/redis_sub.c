/*
 * redis_sub.c - a Redis subscription that survives disconnects (see
 * redis_sub.h). States:
 *   DOWN         no connection; the reconnect timer is pending
 *   ASKING       Sentinel mode: asking the sentinels where the master is
 *                (before every connect; pub/sub messages reach every node of
 *                the replication set, but the master is the one that is up)
 *   CONNECTING   TCP/UNIX connect in progress (deadline timer)
 *   SUBSCRIBING  SUBSCRIBE sent, confirmation awaited (deadline timer)
 *   UP           subscribed; messages are delivered
 * Any failure drops the connection and goes to DOWN with the backoff
 * doubled up to reconnect_max_ms; a confirmed subscription resets it.
 */
#include "redis_sub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_sentinel.h"

enum sub_state { SUB_DOWN, SUB_CONNECTING, SUB_SUBSCRIBING, SUB_UP, SUB_ASKING };
static const char *const sub_state_names[] = {"down", "connecting", "subscribing", "up",
                                              "asking sentinels"};

struct redis_sub {
    struct event_base *base;
    char *host; /* numeric */
    int port;
    char *unix_path;
    char *channel;
    char *password;                  /* NULL: no AUTH */
    struct redis_sentinel *sentinel; /* NULL unless Sentinel mode */
    int timeout_ms, backoff_min_ms, backoff_max_ms, backoff_ms;
    enum sub_state state;
    redisAsyncContext *ac;
    struct event *deadline;  /* CONNECTING, SUBSCRIBING */
    struct event *reconnect; /* DOWN */
    redis_sub_msg_cb msg_cb;
    redis_sub_resync_cb resync_cb;
    void *arg;
    struct log_limit log_limit;
};

static void sub_connect(struct redis_sub *s);
static void sub_connect_addr(struct redis_sub *s);

/* sub_enter_state - the one place the subscription's state changes */
static void sub_enter_state(struct redis_sub *s, enum sub_state st)
{
    if ((int)st < 0 || st > SUB_ASKING)
        return;
    log_debug("redis subscription %s: %s -> %s", s->channel, sub_state_names[s->state],
              sub_state_names[st]);
    s->state = st;
}

static void arm(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/*
 * sub_down - forget the connection (hiredis frees it: ac->data is cleared
 * first so its callbacks, run while it is freed, see it is not ours) and
 * try again after the backoff. why is logged at most once per backoff cap.
 */
static void sub_down(struct redis_sub *s, const char *why, int free_ac)
{
    redisAsyncContext *ac = s->ac;

    s->ac = NULL;
    evtimer_del(s->deadline);
    if (ac != NULL) {
        ac->data = NULL;
        if (free_ac)
            redisAsyncFree(ac);
    }
    if (s->state != SUB_DOWN)
        log_limited(&s->log_limit, s->backoff_max_ms, LOG_WARNING,
                    "redis subscription %s: %s; retrying in %d ms (flushes from other hosts are "
                    "missed meanwhile; the in-process cache is dropped once it is back)",
                    s->channel, why, s->backoff_ms);
    sub_enter_state(s, SUB_DOWN);
    arm(s->reconnect, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > s->backoff_max_ms ? s->backoff_max_ms : s->backoff_ms * 2;
}

/* sub_reply - the SUBSCRIBE confirmation and every message; NULL while hiredis frees ac */
static void sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct redis_sub *s = ac->data;
    redisReply *reply = reply_;

    (void)privdata;
    if (s == NULL || s->ac != ac)
        return;
    if (reply == NULL)
        return; /* the disconnect callback follows */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        sub_down(s, "unexpected reply", 1);
        return;
    }
    const redisReply *kind = reply->element[0], *payload = reply->element[2];
    if (strcmp(kind->str, "subscribe") == 0) {
        evtimer_del(s->deadline);
        sub_enter_state(s, SUB_UP);
        s->backoff_ms = s->backoff_min_ms;
        log_info("redis subscription %s: subscribed", s->channel);
        s->resync_cb(s->arg);
    } else if (strcmp(kind->str, "message") == 0 && payload->type == REDIS_REPLY_STRING) {
        s->msg_cb(payload->str, (size_t)payload->len, s->arg);
    }
}

static void sub_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_sub *s = ac->data;

    if (s == NULL || s->ac != ac)
        return;
    if (status != REDIS_OK) {
        s->ac = NULL; /* hiredis frees it after this callback */
        sub_down(s, ac->errstr[0] ? ac->errstr : "cannot connect", 0);
        return;
    }
    const char *argv[2] = {"SUBSCRIBE", s->channel};
    size_t argvlen[2] = {9, strlen(s->channel)};
    if (redisAsyncCommandArgv(s->ac, sub_reply, NULL, 2, argv, argvlen) != REDIS_OK) {
        /* hiredis is inside its connect handler: drop the connection from the loop instead */
        evtimer_del(s->deadline);
        arm(s->deadline, 0);
        return;
    }
    sub_enter_state(s, SUB_SUBSCRIBING);
    evtimer_del(s->deadline);
    arm(s->deadline, s->timeout_ms);
}

static void sub_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_sub *s = ac->data;

    if (s == NULL || s->ac != ac)
        return;
    s->ac = NULL; /* hiredis frees it */
    sub_down(s,
             status == REDIS_OK ? "connection closed"
                                : (ac->errstr[0] ? ac->errstr : "connection lost"),
             0);
}

/* sub_deadline_cb - no connect or no confirmation in time */
static void sub_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_sub *s = arg;

    sub_down(s, s->state == SUB_CONNECTING ? "connect timed out" : "SUBSCRIBE timed out", 1);
}

static void sub_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    sub_connect(arg);
}

/* sub_auth_reply - AUTH refused: no use subscribing on this connection */
static void sub_auth_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct redis_sub *s = ac->data;
    redisReply *reply = reply_;

    (void)privdata;
    if (s == NULL || s->ac != ac || reply == NULL || reply->type != REDIS_REPLY_ERROR)
        return;
    sub_down(s, "AUTH refused", 1);
}

/* sub_found - the sentinels' answer: connect to the master they name */
static void sub_found(int status, const char *host, int port, void *arg)
{
    struct redis_sub *s = arg;
    char *copy;

    if (s->state != SUB_ASKING)
        return;
    if (status < 0) {
        sub_down(s, host, 0);
        return;
    }
    if ((copy = strdup(host)) == NULL) {
        sub_down(s, "out of memory", 0);
        return;
    }
    free(s->host);
    s->host = copy;
    s->port = port;
    sub_connect_addr(s);
}

/*
 * sub_switched - a sentinel announced a new master: move there now rather
 * than after the backoff (messages published meanwhile would be missed)
 */
static void sub_switched(const char *host, int port, void *arg)
{
    struct redis_sub *s = arg;
    char *copy;

    if (s->state != SUB_DOWN && s->host != NULL && strcmp(s->host, host) == 0 && s->port == port)
        return;
    if ((copy = strdup(host)) == NULL)
        return;
    log_info("redis subscription %s: a sentinel reports the master moved to %s:%d", s->channel,
             host, port);
    redis_sentinel_cancel(s->sentinel);
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    evtimer_del(s->deadline);
    evtimer_del(s->reconnect);
    free(s->host);
    s->host = copy;
    s->port = port;
    s->backoff_ms = s->backoff_min_ms;
    sub_enter_state(s, SUB_DOWN);
    sub_connect_addr(s);
}

/* sub_connect - (re)connect; in Sentinel mode ask where the master is first */
static void sub_connect(struct redis_sub *s)
{
    if (s->sentinel != NULL) {
        sub_enter_state(s, SUB_ASKING);
        redis_sentinel_ask(s->sentinel, sub_found, s);
        return;
    }
    sub_connect_addr(s);
}

static void sub_connect_addr(struct redis_sub *s)
{
    redisAsyncContext *ac =
        s->unix_path ? redisAsyncConnectUnix(s->unix_path) : redisAsyncConnect(s->host, s->port);

    sub_enter_state(s, SUB_CONNECTING);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        sub_down(s, "cannot create a connection", 0);
        return;
    }
    ac->data = s;
    s->ac = ac;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        sub_down(s, "cannot attach to the event loop", 1);
        return;
    }
    redisAsyncSetConnectCallback(ac, sub_on_connect);
    redisAsyncSetDisconnectCallback(ac, sub_on_disconnect);
    if (s->password != NULL) {
        /* queued now, sent first once connected */
        const char *argv[2] = {"AUTH", s->password};
        size_t argvlen[2] = {4, strlen(s->password)};
        (void)redisAsyncCommandArgv(ac, sub_auth_reply, NULL, 2, argv, argvlen);
    }
    arm(s->deadline, s->timeout_ms);
}

struct redis_sub *redis_sub_new(struct event_base *base, const struct cache_redis_config *cfg,
                                const char *channel, redis_sub_msg_cb msg_cb,
                                redis_sub_resync_cb resync_cb, void *arg, char *err, size_t errlen)
{
    struct redis_sub *s = calloc(1, sizeof(*s));

    if (s == NULL)
        goto nomem;
    s->base = base;
    s->port = cfg->port;
    s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 250;
    s->backoff_min_ms = cfg->reconnect_min_ms > 0 ? cfg->reconnect_min_ms : 100;
    s->backoff_max_ms =
        cfg->reconnect_max_ms >= s->backoff_min_ms ? cfg->reconnect_max_ms : s->backoff_min_ms;
    s->backoff_ms = s->backoff_min_ms;
    s->msg_cb = msg_cb;
    s->resync_cb = resync_cb;
    s->arg = arg;
    if ((s->channel = strdup(channel)) == NULL)
        goto nomem;
    if (cfg->password != NULL && cfg->password[0] != '\0' &&
        (s->password = strdup(cfg->password)) == NULL)
        goto nomem;
    if (cfg->sentinels != NULL && cfg->sentinels[0] != '\0') {
        s->sentinel = redis_sentinel_new(base, cfg->sentinels, cfg->master_name, cfg->password,
                                         s->timeout_ms, err, errlen);
        if (s->sentinel == NULL ||
            redis_sentinel_watch(s->sentinel, s->backoff_min_ms, s->backoff_max_ms, sub_switched, s,
                                 err, errlen) < 0) {
            redis_sub_free(s);
            return NULL;
        }
    } else if (cfg->unix_path && cfg->unix_path[0]) {
        if ((s->unix_path = strdup(cfg->unix_path)) == NULL)
            goto nomem;
    } else if (cfg->host == NULL ||
               (s->host = cache_redis_resolve(cfg->host, err, errlen)) == NULL) {
        if (cfg->host == NULL)
            snprintf(err, errlen, "redis: no host");
        redis_sub_free(s);
        return NULL;
    }
    s->deadline = evtimer_new(base, sub_deadline_cb, s);
    s->reconnect = evtimer_new(base, sub_reconnect_cb, s);
    if (s->deadline == NULL || s->reconnect == NULL)
        goto nomem;
    sub_connect(s);
    return s;
nomem:
    snprintf(err, errlen, "redis subscription: out of memory");
    redis_sub_free(s);
    return NULL;
}

int redis_sub_subscribed(const struct redis_sub *s)
{
    return s != NULL && s->state == SUB_UP;
}

void redis_sub_free(struct redis_sub *s)
{
    if (s == NULL)
        return;
    if (s->ac != NULL) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (s->deadline)
        event_free(s->deadline);
    if (s->reconnect)
        event_free(s->reconnect);
    redis_sentinel_free(s->sentinel);
    free(s->host);
    free(s->unix_path);
    free(s->channel);
    free(s->password);
    free(s);
}
