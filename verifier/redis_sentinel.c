/*
 * redis_sentinel.c - ask Redis Sentinel where the master is (see
 * redis_sentinel.h).
 *
 * One ask is a small state machine over the list of sentinels:
 *   IDLE      nothing asked
 *   QUERYING  connected (or connecting) to sentinel s->cur with AUTH (when a
 *             password is set) and SENTINEL get-master-addr-by-name queued;
 *             the deadline covers the connect and the reply
 *   NEXT      that sentinel failed; the zero timer moves on from the loop
 * Every failure goes through ask_fail(), which closes the connection and
 * arms the timer at 0, so the next sentinel is tried (or the ask answered
 * -1) from the event loop and never from inside redis_sentinel_ask() or a
 * hiredis callback. The sentinel that answered is asked first next time.
 * Sentinel replies are untrusted: the address must be a numeric IPv4 or
 * IPv6 address (we never resolve on the loop) and the port 1..65535.
 */
#include "redis_sentinel.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache_redis.h"
#include "log.h"
#include "redis_sub.h"
#include "value_parse.h"

enum ask_state { ASK_IDLE, ASK_QUERYING, ASK_NEXT };
static const char *const ask_state_names[] = {"idle", "querying", "next"};

struct sentinel_addr {
    char *host; /* numeric */
    int port;
};

struct redis_sentinel {
    struct event_base *base;
    struct sentinel_addr addr[REDIS_SENTINEL_MAX];
    int n;
    char *name;
    char *password; /* NULL: no AUTH */
    int timeout_ms;

    enum ask_state state;
    redisAsyncContext *ac; /* QUERYING */
    struct event *timer;   /* QUERYING: deadline; NEXT: zero timer */
    int start, tried, cur; /* where this ask started, how many were tried, which one now */
    int last_good;         /* the sentinel that answered last */
    redis_sentinel_cb cb;  /* NULL when no ask is pending */
    void *arg;
    struct log_limit log_limit;

    struct redis_sub *watch[REDIS_SENTINEL_MAX];
    redis_sentinel_switch_cb switch_cb;
    void *switch_arg;
};

static void ask_try(struct redis_sentinel *s);

/* ask_enter_state - the one place an ask's state changes */
static void ask_enter_state(struct redis_sentinel *s, enum ask_state st)
{
    if ((int)st < 0 || st > ASK_NEXT)
        return;
    if (st != s->state)
        log_debug("redis sentinel %s: %s -> %s", s->name, ask_state_names[s->state],
                  ask_state_names[st]);
    s->state = st;
}

static void arm(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_del(ev);
    evtimer_add(ev, &tv);
}

/* ask_close - forget the connection to the current sentinel (ours to free unless hiredis is) */
static void ask_close(struct redis_sentinel *s, int free_ac)
{
    redisAsyncContext *ac = s->ac;

    s->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL; /* its callbacks, run while it is freed, must not find us */
        if (free_ac)
            redisAsyncFree(ac);
    }
}

/* ask_fail - the current sentinel did not help: log why, try the next one from the loop */
static void ask_fail(struct redis_sentinel *s, const char *why, int free_ac)
{
    const struct sentinel_addr *a = &s->addr[s->cur];

    ask_close(s, free_ac);
    log_limited(&s->log_limit, 10000, LOG_WARNING, "redis sentinel %s:%d (master %s): %s", a->host,
                a->port, s->name, why);
    ask_enter_state(s, ASK_NEXT);
    arm(s->timer, 0);
}

/* ask_finish - answer the ask (once) */
static void ask_finish(struct redis_sentinel *s, int status, const char *host, int port)
{
    redis_sentinel_cb cb = s->cb;
    void *arg = s->arg;

    evtimer_del(s->timer);
    ask_enter_state(s, ASK_IDLE);
    s->cb = NULL;
    s->arg = NULL;
    if (cb != NULL)
        cb(status, host, port, arg);
}

/* parse_port - 1..65535 from at most 5 digits (untrusted) */
static int parse_port(const char *p, size_t len)
{
    int port = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        port = port * 10 + (p[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

/* numeric_addr - 1 when p (len bytes) is a numeric IPv4 or IPv6 address; copied into host */
static int numeric_addr(const char *p, size_t len, char *host, size_t hostsize)
{
    unsigned char bin[16];

    if (len == 0 || len >= hostsize || memchr(p, 0, len) != NULL)
        return 0;
    memcpy(host, p, len);
    host[len] = '\0';
    return inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
}

/* ask_reply - the sentinel's answer: [ip, port], nil (unknown master) or an error */
static void ask_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct redis_sentinel *s = ac->data;
    const redisReply *reply = reply_;
    char host[REDIS_SENTINEL_ADDR_MAX];
    int port;

    (void)privdata;
    if (s == NULL || s->ac != ac)
        return;
    if (reply == NULL) {
        ask_fail(s, "connection lost", 0);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        ask_fail(s, "does not know this master", 1);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "error: %.150s", reply->str ? reply->str : "");
        ask_fail(s, why, 1);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        !numeric_addr(reply->element[0]->str, (size_t)reply->element[0]->len, host, sizeof(host)) ||
        (port = parse_port(reply->element[1]->str, (size_t)reply->element[1]->len)) < 0) {
        ask_fail(s, "unexpected reply (want a numeric address and a port)", 1);
        return;
    }
    s->last_good = s->cur;
    ask_close(s, 1); /* hiredis defers the free until this callback returns */
    log_debug("redis sentinel %s:%d: master %s is at %s:%d", s->addr[s->cur].host,
              s->addr[s->cur].port, s->name, host, port);
    ask_finish(s, 0, host, port);
}

static void ask_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_sentinel *s = ac->data;

    if (s == NULL || s->ac != ac || status == REDIS_OK)
        return;
    s->ac = NULL; /* hiredis frees it after this callback */
    ask_fail(s, ac->errstr[0] ? ac->errstr : "cannot connect", 0);
}

static void ask_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_sentinel *s = ac->data;

    (void)status;
    if (s == NULL || s->ac != ac)
        return;
    s->ac = NULL; /* hiredis frees it */
    ask_fail(s, ac->errstr[0] ? ac->errstr : "connection closed", 0);
}

/* ask_timer_cb - QUERYING: the deadline passed; NEXT: move on to the next sentinel */
static void ask_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_sentinel *s = arg;

    (void)fd;
    (void)what;
    if (s->state == ASK_QUERYING) {
        ask_fail(s, "no answer within the deadline", 1);
        return;
    }
    ask_try(s);
}

/* ask_try - query the next untried sentinel, or answer -1 when all failed */
static void ask_try(struct redis_sentinel *s)
{
    redisAsyncContext *ac;
    const struct sentinel_addr *a;

    if (s->tried >= s->n) {
        char why[REDIS_SENTINEL_NAME_MAX + 80];
        snprintf(why, sizeof(why), "no sentinel told where master %s is", s->name);
        ask_finish(s, -1, why, 0);
        return;
    }
    s->cur = (s->start + s->tried) % s->n;
    s->tried++;
    a = &s->addr[s->cur];
    ask_enter_state(s, ASK_QUERYING);
    ac = redisAsyncConnect(a->host, a->port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        ask_fail(s, "cannot create a connection", 0);
        return;
    }
    ac->data = s;
    s->ac = ac;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        ask_fail(s, "cannot attach to the event loop", 1);
        return;
    }
    redisAsyncSetConnectCallback(ac, ask_on_connect);
    redisAsyncSetDisconnectCallback(ac, ask_on_disconnect);
    /* queued now, written once connected, answered in order */
    if (s->password != NULL) {
        const char *argv[2] = {"AUTH", s->password};
        size_t argvlen[2] = {4, strlen(s->password)};
        (void)redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, argvlen);
    }
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", s->name};
    size_t argvlen[3] = {8, 23, strlen(s->name)};
    if (redisAsyncCommandArgv(ac, ask_reply, NULL, 3, argv, argvlen) != REDIS_OK) {
        ask_fail(s, "cannot queue the command", 1);
        return;
    }
    arm(s->timer, s->timeout_ms);
}

void redis_sentinel_ask(struct redis_sentinel *s, redis_sentinel_cb cb, void *arg)
{
    redis_sentinel_cancel(s);
    s->cb = cb;
    s->arg = arg;
    s->start = s->last_good;
    s->tried = 0;
    /* start from the loop: cb must not run from inside this call */
    ask_enter_state(s, ASK_NEXT);
    arm(s->timer, 0);
}

void redis_sentinel_cancel(struct redis_sentinel *s)
{
    if (s == NULL)
        return;
    ask_close(s, 1);
    evtimer_del(s->timer);
    ask_enter_state(s, ASK_IDLE);
    s->cb = NULL;
    s->arg = NULL;
}

/* list_next - the next item of a comma/blank separated list: start and length, 0 at the end */
static size_t list_next(const char **p)
{
    const char *s = *p;
    size_t n = 0;

    while (*s == ',' || *s == ' ' || *s == '\t')
        s++;
    while (s[n] != '\0' && s[n] != ',' && s[n] != ' ' && s[n] != '\t')
        n++;
    *p = s;
    return n;
}

/* list_parse - each item into host/port (host NULL: check only); count or -1 + err */
static int list_parse(const char *list, char (*hosts)[VALUE_HOST_MAX], int *ports, char *err,
                      size_t errlen)
{
    const char *p = list ? list : "";
    int n = 0;
    size_t len;

    while ((len = list_next(&p)) > 0) {
        char host[VALUE_HOST_MAX];
        int port = 0;
        if (n == REDIS_SENTINEL_MAX) {
            snprintf(err, errlen, "at most %d sentinels", REDIS_SENTINEL_MAX);
            return -1;
        }
        if (value_parse_hostport(p, len, 1, host, sizeof(host), &port) != VALUE_OK || port < 1) {
            snprintf(err, errlen, "bad sentinel \"%.*s\" (want HOST:PORT or [IPV6]:PORT)",
                     (int)(len > 100 ? 100 : len), p);
            return -1;
        }
        if (hosts != NULL) {
            memcpy(hosts[n], host, sizeof(host));
            ports[n] = port;
        }
        n++;
        p += len;
    }
    if (n == 0) {
        snprintf(err, errlen, "no sentinel given");
        return -1;
    }
    return n;
}

int redis_sentinel_parse(const char *list, char (*hosts)[VALUE_HOST_MAX], int *ports, char *err,
                         size_t errlen)
{
    return list_parse(list, hosts, ports, err, errlen);
}

int redis_sentinel_check(const char *list, char *err, size_t errlen)
{
    return list_parse(list, NULL, NULL, err, errlen) < 0 ? -1 : 0;
}

int redis_sentinel_check_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > REDIS_SENTINEL_NAME_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)name[i]))
            return -1;
    return 0;
}

struct redis_sentinel *redis_sentinel_new(struct event_base *base, const char *list,
                                          const char *name, const char *password, int timeout_ms,
                                          char *err, size_t errlen)
{
    char hosts[REDIS_SENTINEL_MAX][VALUE_HOST_MAX];
    int ports[REDIS_SENTINEL_MAX];
    struct redis_sentinel *s;
    int n;

    if ((n = list_parse(list, hosts, ports, err, errlen)) < 0)
        return NULL;
    if (redis_sentinel_check_name(name) < 0) {
        snprintf(err, errlen, "bad Redis master name (1..%d printable bytes, no blanks)",
                 REDIS_SENTINEL_NAME_MAX);
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        goto nomem;
    s->base = base;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 250;
    if ((s->name = strdup(name)) == NULL)
        goto nomem;
    if (password != NULL && password[0] != '\0' && (s->password = strdup(password)) == NULL)
        goto nomem;
    if ((s->timer = evtimer_new(base, ask_timer_cb, s)) == NULL)
        goto nomem;
    for (int i = 0; i < n; i++) {
        /* numeric already when a reload resolved the names (policyd/redis_names.c) */
        if ((s->addr[i].host = cache_redis_resolve(hosts[i], err, errlen)) == NULL) {
            redis_sentinel_free(s);
            return NULL;
        }
        s->addr[i].port = ports[i];
        s->n = i + 1;
    }
    return s;
nomem:
    snprintf(err, errlen, "redis sentinel: out of memory");
    redis_sentinel_free(s);
    return NULL;
}

void redis_sentinel_free(struct redis_sentinel *s)
{
    if (s == NULL)
        return;
    if (s->timer != NULL)
        redis_sentinel_cancel(s);
    for (int i = 0; i < REDIS_SENTINEL_MAX; i++)
        redis_sub_free(s->watch[i]);
    for (int i = 0; i < s->n; i++)
        free(s->addr[i].host);
    if (s->timer)
        event_free(s->timer);
    free(s->name);
    free(s->password);
    free(s);
}

int redis_sentinel_parse_switch(const char *msg, size_t len, const char *name, char *host,
                                size_t hostsize, int *port)
{
    const char *tok[5];
    size_t toklen[5];
    size_t i = 0;
    int n = 0;

    if (msg == NULL || len > 1024)
        return 0;
    while (i < len && n < 5) {
        size_t start = i;
        while (i < len && msg[i] != ' ')
            i++;
        tok[n] = msg + start;
        toklen[n++] = i - start;
        if (i < len && ++i == len)
            return 0; /* a blank at the end: an empty last field */
    }
    if (n != 5 || i != len || toklen[0] != strlen(name) || memcmp(tok[0], name, toklen[0]) != 0)
        return 0;
    if (!numeric_addr(tok[3], toklen[3], host, hostsize) ||
        (*port = parse_port(tok[4], toklen[4])) < 0)
        return 0;
    return 1;
}

/* watch_msg - a +switch-master message from one of the sentinels */
static void watch_msg(const char *msg, size_t len, void *arg)
{
    struct redis_sentinel *s = arg;
    char host[REDIS_SENTINEL_ADDR_MAX];
    int port;

    if (redis_sentinel_parse_switch(msg, len, s->name, host, sizeof(host), &port) == 1)
        s->switch_cb(host, port, s->switch_arg);
}

/*
 * watch_resync - (re)subscribed. A switch announced meanwhile was missed, but
 * then the master we use either still answers (it is the master, or it says
 * READONLY) or does not (connection errors): both make the owner ask again.
 */
static void watch_resync(void *arg)
{
    (void)arg;
}

int redis_sentinel_watch(struct redis_sentinel *s, int reconnect_min_ms, int reconnect_max_ms,
                         redis_sentinel_switch_cb cb, void *arg, char *err, size_t errlen)
{
    s->switch_cb = cb;
    s->switch_arg = arg;
    for (int i = 0; i < s->n; i++) {
        struct cache_redis_config cfg = {
            .host = s->addr[i].host,
            .port = s->addr[i].port,
            .timeout_ms = s->timeout_ms,
            .reconnect_min_ms = reconnect_min_ms,
            .reconnect_max_ms = reconnect_max_ms,
            .password = s->password,
        };
        s->watch[i] =
            redis_sub_new(s->base, &cfg, "+switch-master", watch_msg, watch_resync, s, err, errlen);
        if (s->watch[i] == NULL)
            return -1;
    }
    return 0;
}
