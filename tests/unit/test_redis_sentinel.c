/*
 * test_redis_sentinel.c - finding the Redis master through Sentinel
 * (redis_sentinel.c, and cache_redis.c in Sentinel mode) against scripted
 * RESP servers on loopback, run on the test's own event loop: each fake
 * answers every command with a scripted reply, logs what it was sent, and
 * can stall (accept, never answer). Real sentinels and a real failover are
 * in tests/e2e/test_redis_sentinel.sh; here are the cases a real sentinel
 * does not produce on demand: hostile replies, dead and stalled sentinels,
 * the order AUTH/SELECT/commands, and a READONLY reply.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "cache_redis.h"
#include "redis_sentinel.h"
#include "test_servers.h"

static struct event_base *base;

/* one scripted RESP server */
struct fake {
    struct evconnlistener *lis;
    int port;
    int stall;              /* accept, read, never answer */
    const char *get_master; /* raw RESP reply to SENTINEL get-master-addr-by-name */
    const char *set_reply;  /* raw RESP reply to SET ("+OK\r\n" when NULL) */
    char log[4096];         /* "CMD ARG ARG|" per command */
    int conns, cmds;
    struct bufferevent *subscriber; /* the last connection that sent SUBSCRIBE */
    struct bufferevent *bev[16];    /* open connections, freed by fake_stop */
};

/* fake_command - parse complete "*N\r\n$L\r\narg\r\n..." commands from in; answer each */
static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        size_t len = evbuffer_get_length(in);
        unsigned char *p = evbuffer_pullup(in, -1);
        size_t off = 0;
        int n, ok = 1;
        char cmd[512] = "";
        if (len == 0 || p[0] != '*' || sscanf((char *)p + 1, "%d", &n) != 1)
            return;
        char *eol = memchr(p, '\n', len);
        if (eol == NULL)
            return;
        off = (size_t)(eol - (char *)p) + 1;
        for (int i = 0; i < n && ok; i++) {
            int l;
            if (off >= len || p[off] != '$' || sscanf((char *)p + off + 1, "%d", &l) != 1) {
                ok = 0;
                break;
            }
            eol = memchr(p + off, '\n', len - off);
            if (eol == NULL || (size_t)(eol - (char *)p) + 1 + (size_t)l + 2 > len) {
                ok = 0;
                break;
            }
            off = (size_t)(eol - (char *)p) + 1;
            snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), "%s%.*s", i ? " " : "", l,
                     (char *)p + off);
            off += (size_t)l + 2;
        }
        if (!ok)
            return; /* incomplete: wait for more */
        evbuffer_drain(in, off);
        f->cmds++;
        snprintf(f->log + strlen(f->log), sizeof(f->log) - strlen(f->log), "%s|", cmd);
        if (f->stall)
            continue;
        const char *reply = "+OK\r\n";
        if (strncmp(cmd, "SENTINEL get-master-addr-by-name", 32) == 0)
            reply = f->get_master;
        else if (strncmp(cmd, "SET ", 4) == 0 && f->set_reply)
            reply = f->set_reply;
        else if (strncmp(cmd, "SUBSCRIBE ", 10) == 0 && (f->subscriber = bev) != NULL)
            reply = "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
        bufferevent_write(bev, reply, strlen(reply));
    }
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    struct fake *f = arg;

    (void)what;
    if (f->subscriber == bev)
        f->subscriber = NULL;
    for (int i = 0; i < 16; i++)
        if (f->bev[i] == bev)
            f->bev[i] = NULL;
    bufferevent_free(bev);
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg)
{
    struct fake *f = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

    (void)l;
    (void)sa;
    (void)salen;
    f->conns++;
    for (int i = 0; i < 16; i++)
        if (f->bev[i] == NULL) {
            f->bev[i] = bev;
            break;
        }
    bufferevent_setcb(bev, fake_read, NULL, fake_event, f);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void fake_start(struct fake *f)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lis =
        evconnlistener_new_bind(base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                (struct sockaddr *)&sin, sizeof(sin));
    cr_assert_not_null(f->lis);
    getsockname(evconnlistener_get_fd(f->lis), (struct sockaddr *)&sin, &sl);
    f->port = ntohs(sin.sin_port);
}

/* fake_stop - close the listener and every connection still open */
static void fake_stop(struct fake *f)
{
    for (int i = 0; i < 16; i++)
        if (f->bev[i] != NULL)
            bufferevent_free(f->bev[i]);
    evconnlistener_free(f->lis);
}

static void setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
}

static void teardown(void)
{
    event_base_free(base);
}

/* pump - run the loop for ms */
static void pump(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/*
 * pump_until - run the loop until *counter reaches want, at most max_ms: a
 * positive check waits for what it expects instead of a fixed time, so a
 * loaded machine (the suite runs beside others) cannot fail it
 */
static void pump_until(const int *counter, int want, int max_ms)
{
    for (int waited = 0; *(const volatile int *)counter < want && waited < max_ms; waited += 10)
        pump(10);
}

/* the answer of one ask */
static struct {
    int calls, status, port;
    char host[128];
} ans;

static void ask_cb(int status, const char *host, int port, void *arg)
{
    (void)arg;
    ans.calls++;
    ans.status = status;
    ans.port = port;
    snprintf(ans.host, sizeof(ans.host), "%s", host);
}

#define MASTER_AT_6390 "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6390\r\n"

/* master_at - a sentinel's get-master-addr-by-name answer: 127.0.0.1 and port, in RESP */
static void master_at(char *buf, size_t size, int port)
{
    char digits[8];
    int n = snprintf(digits, sizeof(digits), "%d", port);

    snprintf(buf, size, "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n", n, digits);
}

TestSuite(redis_sentinel, .init = setup, .fini = teardown, .timeout = 30);

Test(redis_sentinel, list_and_name_syntax)
{
    char err[200];

    cr_assert_eq(redis_sentinel_check("127.0.0.1:26379", err, sizeof(err)), 0);
    cr_assert_eq(redis_sentinel_check("a.test:1, [::1]:2 ,b:3", err, sizeof(err)), 0);
    cr_assert_eq(redis_sentinel_check("", err, sizeof(err)), -1);
    cr_assert_eq(redis_sentinel_check(" , ", err, sizeof(err)), -1);
    cr_assert_eq(redis_sentinel_check("127.0.0.1", err, sizeof(err)), -1, "port required");
    cr_assert_eq(redis_sentinel_check("127.0.0.1:0", err, sizeof(err)), -1);
    cr_assert_eq(redis_sentinel_check("127.0.0.1:65536", err, sizeof(err)), -1);
    cr_assert_eq(redis_sentinel_check("::1:26379", err, sizeof(err)), -1, "IPv6 needs brackets");
    cr_assert_eq(redis_sentinel_check("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,"
                                      "a:14,a:15,a:16",
                                      err, sizeof(err)),
                 0);
    cr_assert_eq(redis_sentinel_check("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,"
                                      "a:14,a:15,a:16,a:17",
                                      err, sizeof(err)),
                 -1, "at most 16");
    cr_assert_eq(redis_sentinel_check_name("mymaster"), 0);
    cr_assert_eq(redis_sentinel_check_name(""), -1);
    cr_assert_eq(redis_sentinel_check_name("my master"), -1);
    cr_assert_eq(redis_sentinel_check_name("a\nb"), -1);
}

Test(redis_sentinel, switch_messages_are_checked)
{
    char host[64];
    int port = 0;

    cr_assert_eq(redis_sentinel_parse_switch("m 10.0.0.1 6379 10.0.0.2 6380", 29, "m", host,
                                             sizeof(host), &port),
                 1);
    cr_assert_str_eq(host, "10.0.0.2");
    cr_assert_eq(port, 6380);
    const char *v6 = "m ::1 6379 ::2 7000";
    cr_assert_eq(redis_sentinel_parse_switch(v6, strlen(v6), "m", host, sizeof(host), &port), 1);
    cr_assert_str_eq(host, "::2");
    static const char *const bad[] = {
        "other 10.0.0.1 6379 10.0.0.2 6380", /* another master */
        "mm 10.0.0.1 6379 10.0.0.2 6380",    /* a name that only starts like ours */
        "m 10.0.0.1 6379 redis.test 6380",   /* a name: never resolved on the loop */
        "m 10.0.0.1 6379 10.0.0.2 0",        /* port out of range */
        "m 10.0.0.1 6379 10.0.0.2 65536",
        "m 10.0.0.1 6379 10.0.0.2 63-80",
        "m 10.0.0.1 6379 10.0.0.2",        /* too few */
        "m 10.0.0.1 6379 10.0.0.2 6380 x", /* too many */
        "m 10.0.0.1 6379 10.0.0.2  6380",  /* an empty field */
        "m 10.0.0.1 6379 10.0.0.2 6380 ",
        "m 10.0.0.1 6379 10.0.0.256 6380",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(
            redis_sentinel_parse_switch(bad[i], strlen(bad[i]), "m", host, sizeof(host), &port), 0,
            "accepted \"%s\"", bad[i]);
    /* a NUL inside the address, and an address longer than the buffer */
    const char nul[] = "m 1.1.1.1 1 1.1.1.1\0x 2";
    cr_assert_eq(redis_sentinel_parse_switch(nul, sizeof(nul) - 1, "m", host, sizeof(host), &port),
                 0);
    cr_assert_eq(redis_sentinel_parse_switch("m 1 1 1111:2222:3333:4444:5555:6666:7777:8888 1", 47,
                                             "m", host, 8, &port),
                 0);
}

Test(redis_sentinel, dead_stalled_and_lying_sentinels_are_skipped)
{
    struct fake stalled = {.stall = 1}, nil = {.get_master = "*-1\r\n"},
                named = {.get_master = "*2\r\n$10\r\nredis.test\r\n$4\r\n6390\r\n"},
                badport = {.get_master = "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n70000\r\n"},
                good = {.get_master = MASTER_AT_6390};
    char list[300], err[200];
    int dead = ts_free_port();

    fake_start(&stalled);
    fake_start(&nil);
    fake_start(&named);
    fake_start(&badport);
    fake_start(&good);
    snprintf(list, sizeof(list),
             "127.0.0.1:%d 127.0.0.1:%d, 127.0.0.1:%d,127.0.0.1:%d 127.0.0.1:%d "
             "127.0.0.1:%d",
             dead, stalled.port, nil.port, named.port, badport.port, good.port);
    struct redis_sentinel *s = redis_sentinel_new(base, list, "m", "pw", 200, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    memset(&ans, 0, sizeof(ans));
    redis_sentinel_ask(s, ask_cb, NULL);
    cr_assert_eq(ans.calls, 0, "answered from inside the call");
    pump_until(&ans.calls, 1, 10000);
    cr_assert_eq(ans.calls, 1);
    cr_assert_eq(ans.status, 0, "%s", ans.host);
    cr_assert_str_eq(ans.host, "127.0.0.1");
    cr_assert_eq(ans.port, 6390);
    cr_assert_str_eq(good.log, "AUTH pw|SENTINEL get-master-addr-by-name m|");
    cr_assert_eq(stalled.cmds, 2, "the stalled one got the question too");
    /* the next ask starts with the sentinel that answered */
    redis_sentinel_ask(s, ask_cb, NULL);
    pump_until(&ans.calls, 2, 10000);
    cr_assert_eq(ans.calls, 2);
    cr_assert_eq(good.conns, 2);
    cr_assert_eq(stalled.conns, 1);
    redis_sentinel_free(s);
    fake_stop(&stalled);
    fake_stop(&nil);
    fake_stop(&named);
    fake_stop(&badport);
    fake_stop(&good);
}

Test(redis_sentinel, no_answer_from_any_is_an_error_and_cancel_is_silent)
{
    struct fake nil = {.get_master = "-ERR no such master\r\n"};
    char list[100], err[200];

    fake_start(&nil);
    snprintf(list, sizeof(list), "127.0.0.1:%d", nil.port);
    struct redis_sentinel *s = redis_sentinel_new(base, list, "m", NULL, 200, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    memset(&ans, 0, sizeof(ans));
    redis_sentinel_ask(s, ask_cb, NULL);
    pump_until(&ans.calls, 1, 10000);
    cr_assert_eq(ans.calls, 1);
    cr_assert_eq(ans.status, -1);
    cr_assert_str_eq(nil.log, "SENTINEL get-master-addr-by-name m|", "no AUTH without a password");
    redis_sentinel_ask(s, ask_cb, NULL);
    redis_sentinel_cancel(s);
    pump(300);
    cr_assert_eq(ans.calls, 1, "cancelled ask answered");
    redis_sentinel_free(s);
    fake_stop(&nil);
}

static struct {
    int calls, status;
} setans;

static void set_cb(int status, const char *val, size_t len, void *arg)
{
    (void)val;
    (void)len;
    (void)arg;
    setans.calls++;
    setans.status = status;
}

/* wait_connected - pump until r is up (or ms pass) */
static int wait_connected(struct cache_redis *r, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (cache_redis_connected(r))
            return 1;
        pump(20);
    }
    return cache_redis_connected(r);
}

Test(redis_sentinel, cache_connects_with_auth_and_select_and_leaves_a_readonly_master)
{
    struct fake redis = {.set_reply = "-READONLY You can't write against a read only replica.\r\n"};
    struct fake sentinel = {0};
    char list[100], reply[100], err[200];

    fake_start(&redis);
    master_at(reply, sizeof(reply), redis.port);
    sentinel.get_master = reply;
    fake_start(&sentinel);
    snprintf(list, sizeof(list), "127.0.0.1:%d", sentinel.port);
    struct cache_redis_config cfg = {.timeout_ms = 300,
                                     .reconnect_min_ms = 50,
                                     .reconnect_max_ms = 400,
                                     .sentinels = list,
                                     .master_name = "m",
                                     .password = "pw",
                                     .db = 3};
    struct cache_redis *r = cache_redis_new(base, &cfg, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    cr_assert(wait_connected(r, 10000), "never connected");
    const char *argv[3] = {"SET", "k", "v"};
    size_t argvlen[3] = {3, 1, 1};
    cr_assert_not_null(cache_redis_command(r, 3, argv, argvlen, set_cb, NULL));
    pump_until(&setans.calls, 1, 10000);
    cr_assert_eq(setans.calls, 1);
    cr_assert_eq(setans.status, -1);
    cr_assert_eq(strncmp(redis.log, "AUTH pw|SELECT 3|SET k v|", 25), 0,
                 "AUTH and SELECT first: %s", redis.log);
    /* READONLY: the sentinels are asked again and a new connection made */
    cr_assert(wait_connected(r, 10000), "never reconnected");
    int asks = 0;
    for (const char *p = sentinel.log; (p = strstr(p, "get-master-addr-by-name")); p++)
        asks++;
    cr_assert_eq(asks, 2, "sentinel log: %s", sentinel.log);
    cr_assert_eq(redis.conns, 2);
    cr_assert_eq(sentinel.conns, 3, "one +switch-master watch and two asks");
    cache_redis_free(r);
    fake_stop(&redis);
    fake_stop(&sentinel);
}

Test(redis_sentinel, cache_follows_switch_master_at_once)
{
    struct fake old = {0}, new = {0}, sentinel = {0};
    char list[100], reply[100], msg[200], err[200];

    fake_start(&old);
    fake_start(&new);
    master_at(reply, sizeof(reply), old.port);
    sentinel.get_master = reply;
    fake_start(&sentinel);
    snprintf(list, sizeof(list), "127.0.0.1:%d", sentinel.port);
    struct cache_redis_config cfg = {.timeout_ms = 300,
                                     .reconnect_min_ms = 50,
                                     .reconnect_max_ms = 400,
                                     .sentinels = list,
                                     .master_name = "m"};
    struct cache_redis *r = cache_redis_new(base, &cfg, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    cr_assert(wait_connected(r, 10000), "never connected");
    cr_assert_not_null(sentinel.subscriber, "no +switch-master subscription");
    cr_assert_eq(old.conns, 1);
    /* another master's switch is ignored, ours is followed without asking again */
    const char *other = "other 127.0.0.1 1 127.0.0.1 2";
    snprintf(msg, sizeof(msg), "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
             strlen(other), other);
    bufferevent_write(sentinel.subscriber, msg, strlen(msg));
    pump(100);
    cr_assert_eq(new.conns, 0);
    char body[100];
    snprintf(body, sizeof(body), "m 127.0.0.1 %d 127.0.0.1 %d", old.port, new.port);
    snprintf(msg, sizeof(msg), "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
             strlen(body), body);
    bufferevent_write(sentinel.subscriber, msg, strlen(msg));
    pump_until(&new.conns, 1, 10000);
    cr_assert_eq(new.conns, 1, "did not move to the new master");
    /* the fake counts its accept; our side may see the connect complete a pump later */
    cr_assert(wait_connected(r, 10000), "the new master's connection never came up");
    struct cache_redis_stats st;
    cache_redis_get_stats(r, &st);
    cr_assert_eq(st.master_switches, 1);
    int asks = 0;
    for (const char *p = sentinel.log; (p = strstr(p, "get-master-addr-by-name")); p++)
        asks++;
    cr_assert_eq(asks, 1, "asked again: %s", sentinel.log);
    /* the same announcement from another sentinel changes nothing */
    bufferevent_write(sentinel.subscriber, msg, strlen(msg));
    pump(100);
    cr_assert_eq(new.conns, 1);
    cache_redis_free(r);
    fake_stop(&old);
    fake_stop(&new);
    fake_stop(&sentinel);
}
