/*
 * test_cache_redis.c - the Redis side of the cache against a real
 * redis-server: every test starts its own on a free loopback port in a
 * private temp dir and stops it by pid in the fixture's teardown (and, should
 * the test process die outright, PR_SET_PDEATHSIG takes the server with it;
 * the plumbing is test_servers.c, shared with the other server tests).
 *
 * Covered: round trip through cache.c and what redis-cli sees, SET EX, nil
 * and corrupt values as misses, binary-safe keys (no command injection),
 * a stopped (tarpit) Redis answered by the deadline, a killed Redis failing
 * fast, reconnect after a restart, cancel, and freeing with work pending or
 * from inside a callback.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <event2/event.h>

#include "cache.h"
#include "cache_redis.h"
#include "test_servers.h"

#define TIMEOUT_MS 300
#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 400
/* cap of a wait for something that must happen: generous, only a failing test waits it out */
#define WAIT_MS 10000

static struct {
    pid_t pid;
    int port;
    char dir[64];
    char unixsock[128]; /* also listen here when set */
} srv;

static struct event_base *base;

/* now_ms - monotonic milliseconds */
static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* free_port - a loopback port nobody listens on right now */
static int free_port(void)
{
    int port = ts_free_port();

    cr_assert_gt(port, 0, "no free loopback port");
    return port;
}

/* cli - run redis-cli against our server, output (trailing newline cut) into out */
static void cli(char *out, size_t size, const char *args)
{
    char cmd[512];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof(cmd), "redis-cli -p %d %s 2>&1", srv.port, args);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    n = fread(out, 1, size - 1, p);
    out[n] = 0;
    pclose(p);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
}

/* cli_set_raw - SET key to len arbitrary bytes (fed through redis-cli -x) */
static void cli_set_raw(const char *key, const char *val, size_t len)
{
    char cmd[512];
    FILE *p;

    snprintf(cmd, sizeof(cmd), "redis-cli -p %d -x SET %s >/dev/null 2>&1", srv.port, key);
    p = popen(cmd, "w");
    cr_assert_not_null(p);
    cr_assert_eq(fwrite(val, 1, len, p), len);
    cr_assert_eq(pclose(p), 0);
}

/* pong_probe - ts_probe_fn: 0 once redis-cli PING answers PONG */
static int pong_probe(void *arg)
{
    char out[64];

    (void)arg;
    cli(out, sizeof(out), "PING");
    return strcmp(out, "PONG") == 0 ? 0 : -1;
}

/* srv_start - fork/exec redis-server on srv.port and wait until it answers PING */
static void srv_start(void)
{
    char port[16], log[128];
    /* without a unix socket the list ends at --unixsocket's place */
    char *argv[] = {"redis-server",
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    srv.dir,
                    srv.unixsock[0] ? "--unixsocket" : NULL,
                    srv.unixsock,
                    NULL};
    int ready;

    snprintf(port, sizeof(port), "%d", srv.port);
    snprintf(log, sizeof(log), "%s/redis.log", srv.dir);
    srv.pid = ts_spawn(argv, log, log); /* never outlives the test */
    cr_assert_geq(srv.pid, 0);
    ready = ts_wait(&srv.pid, pong_probe, NULL, 5000, 50);
    cr_assert_neq(srv.pid, -1, "redis-server exited at start");
    cr_assert_eq(ready, 0, "redis-server on port %d did not answer PING", srv.port);
}

/* srv_kill - stop the server by pid (SIGKILL works on a SIGSTOPped one too) */
static void srv_kill(void)
{
    ts_stop_sig(&srv.pid, SIGKILL, TS_STOP_MS);
}

static void setup(void)
{
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/test-cache-redis-XXXXXX");
    cr_assert_not_null(mkdtemp(srv.dir));
    srv.port = free_port();
    srv_start();
    base = event_base_new();
    cr_assert_not_null(base);
}

static void teardown(void)
{
    char cmd[160];

    srv_kill();
    if (srv.dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", srv.dir);
    }
    if (base)
        event_base_free(base);
    base = NULL;
}

TestSuite(cache_redis, .init = setup, .fini = teardown, .timeout = 60);

/* --- driving the loop */

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/*
 * run_until - event_base_loop(EVLOOP_ONCE) until pred(arg) or ms passed; a
 * 10 ms tick makes every iteration return so the deadline is checked.
 */
static int run_until(int (*pred)(void *), void *arg, int ms)
{
    struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 10000};
    long end = now_ms() + ms;
    int ok;

    event_add(t, &tv);
    while (!(ok = pred(arg)) && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return ok;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

/* pump - just run the loop for ms */
static void pump(int ms)
{
    run_until(never, NULL, ms);
}

static int flag_set(void *arg)
{
    return *(int *)arg != 0;
}

static int is_connected(void *arg)
{
    return cache_redis_connected(arg);
}

static int is_disconnected(void *arg)
{
    return !cache_redis_connected(arg);
}

struct replies_at_least {
    struct cache_redis *r;
    unsigned long n;
};

static int replies_reached(void *arg)
{
    struct replies_at_least *w = arg;
    struct cache_redis_stats st;

    cache_redis_get_stats(w->r, &st);
    return st.replies >= w->n;
}

/* wait_replies - until r has seen n replies in total */
static void wait_replies(struct cache_redis *r, unsigned long n)
{
    struct replies_at_least w = {r, n};

    cr_assert(run_until(replies_reached, &w, WAIT_MS), "no reply from redis");
}

/* replies_of - r's reply count so far, to wait for the next one with wait_replies */
static unsigned long replies_of(struct cache_redis *r)
{
    struct cache_redis_stats st;

    cache_redis_get_stats(r, &st);
    return st.replies;
}

/* --- configs */

static struct cache_redis_config redis_cfg(int port)
{
    struct cache_redis_config rc = {
        .host = "127.0.0.1",
        .port = port,
        .unix_path = NULL,
        .timeout_ms = TIMEOUT_MS,
        .reconnect_min_ms = RECONNECT_MIN_MS,
        .reconnect_max_ms = RECONNECT_MAX_MS,
    };
    return rc;
}

static struct cache_config cache_cfg(void)
{
    struct cache_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.key_prefix = "callahead:";
    cfg.l1_max_entries = 100;
    cfg.l1_ttl = 30;
    cfg.ttl[VERDICT_VALID] = 86400;
    cfg.ttl[VERDICT_INVALID] = 3600;
    cfg.ttl[VERDICT_TEMPFAIL] = 0;
    cfg.refresh[VERDICT_INVALID] = 600;
    cfg.use_redis = 1;
    cfg.redis = redis_cfg(srv.port);
    return cfg;
}

/* new_cache - a Redis-backed cache, connected */
static struct cache *new_cache(void)
{
    struct cache_config cfg = cache_cfg();
    char err[256] = "";
    struct cache *c = cache_new(base, &cfg, err, sizeof(err));

    cr_assert_not_null(c, "cache_new: %s", err);
    cr_assert(run_until(is_connected, cache_redis_handle(c), WAIT_MS), "cache never connected");
    return c;
}

static struct cache_redis *new_redis(void)
{
    struct cache_redis_config rc = redis_cfg(srv.port);
    char err[256] = "";
    struct cache_redis *r = cache_redis_new(base, &rc, err, sizeof(err));

    cr_assert_not_null(r, "cache_redis_new: %s", err);
    cr_assert(run_until(is_connected, r, WAIT_MS), "redis never connected");
    return r;
}

/* --- callbacks that record what they got */

struct got {
    int done;
    int found, stale;
    struct verdict v;
};

static void got_cb(int found, const struct verdict *v, int stale, void *arg)
{
    struct got *g = arg;

    g->done++;
    g->found = found;
    g->stale = stale;
    if (found)
        g->v = *v;
}

struct cmd {
    int done;
    int status;
    char val[256];
    size_t len;
    long at;
};

static void cmd_cb(int status, const char *val, size_t len, void *arg)
{
    struct cmd *c = arg;

    c->done++;
    c->status = status;
    c->len = len;
    c->at = now_ms();
    memset(c->val, 0, sizeof(c->val));
    if (val)
        memcpy(c->val, val, len < sizeof(c->val) - 1 ? len : sizeof(c->val) - 1);
}

/* command - send argv (NUL-terminated strings) */
static struct cache_redis_req *command(struct cache_redis *r, struct cmd *c, int argc,
                                       const char **argv)
{
    size_t lens[8];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return cache_redis_command(r, argc, argv, lens, c ? cmd_cb : NULL, c);
}

/* --- tests */

Test(cache_redis, put_get_round_trip_and_redis_cli_view)
{
    struct cache *c1 = new_cache(), *c2 = new_cache();
    struct cache_redis *r1 = cache_redis_handle(c1);
    struct verdict v, out;
    struct cache_req *req = NULL;
    struct got g = {0};
    char buf[512];
    int stale = -1;

    verdict_set(&v, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");
    v.when = 1732458000;
    cache_put(c1, "bob@example.org", &v);
    wait_replies(r1, 1);

    cli(buf, sizeof(buf), "GET callahead:rcpt:bob@example.org");
    cr_assert_str_eq(buf, "invalid 550 1732458000 cdb 5.1.1 User unknown");
    cli(buf, sizeof(buf), "TTL callahead:rcpt:bob@example.org");
    long ttl = strtol(buf, NULL, 10);
    cr_assert(ttl > 3500 && ttl <= 3600, "TTL %s should be the invalid TTL (3600)", buf);

    /* c1 answers from L1; c2 (another host) has an empty L1 and asks Redis */
    cr_assert_eq(cache_get(c1, "bob@example.org", &out, &stale, got_cb, &g, &req), CACHE_HIT);
    cr_assert_eq(cache_get(c2, "bob@example.org", &out, &stale, got_cb, &g, &req), CACHE_PENDING);
    cr_assert_not_null(req);
    cr_assert_eq(g.done, 0, "never called back from inside cache_get");
    cr_assert(run_until(flag_set, &g.done, WAIT_MS));
    cr_assert_eq(g.done, 1);
    cr_assert_eq(g.found, 1);
    cr_assert_eq(g.v.kind, VERDICT_INVALID);
    cr_assert_eq(g.v.code, 550);
    cr_assert_eq(g.v.when, 1732458000);
    cr_assert_str_eq(g.v.source, "cdb");
    cr_assert_str_eq(g.v.text, "5.1.1 User unknown");
    cr_assert_eq(g.stale, 1, "a 2024 verdict is older than the 600 s refresh");

    /* now in c2's L1 */
    cr_assert_eq(cache_get(c2, "bob@example.org", &out, &stale, got_cb, &g, &req), CACHE_HIT);
    cr_assert_eq(out.code, 550);
    cr_assert_eq(stale, 1);
    struct cache_stats st;
    cache_get_stats(c2, &st);
    cr_assert_eq(st.redis_hits, 1);
    cr_assert_eq(st.l1_hits, 1);
    cr_assert_eq(st.l1_entries, 1);

    /* a TTL-0 kind is not written to Redis at all */
    struct verdict t;
    verdict_set(&t, VERDICT_TEMPFAIL, 450, "smtp", "4.4.1 try later");
    cache_put(c1, "temp@example.org", &t);
    pump(100);
    cli(buf, sizeof(buf), "EXISTS callahead:rcpt:temp@example.org");
    cr_assert_str_eq(buf, "0");

    cache_free(c1);
    cache_free(c2);
}

Test(cache_redis, nil_is_a_miss)
{
    struct cache *c = new_cache();
    struct cache_req *req = NULL;
    struct got g = {0};
    struct verdict out;
    int stale;

    cr_assert_eq(cache_get(c, "nobody@example.org", &out, &stale, got_cb, &g, &req), CACHE_PENDING);
    cr_assert(run_until(flag_set, &g.done, WAIT_MS));
    cr_assert_eq(g.found, 0);
    struct cache_stats st;
    cache_get_stats(c, &st);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.l1_entries, 0);
    cache_free(c);
}

Test(cache_redis, corrupt_values_are_misses)
{
    struct cache *c = new_cache();
    static char big[100000];
    const struct {
        const char *key;
        const char *val;
        size_t len;
    } bad[] = {
        {"callahead:rcpt:a@x.org", "valid 250 notanumber cdb", 24},
        {"callahead:rcpt:b@x.org", "", 0},
        {"callahead:rcpt:c@x.org", "valid", 5},
        {"callahead:rcpt:d@x.org", "valid 250 1700000000 cdb\r\nok", 28},
        {"callahead:rcpt:e@x.org", "valid 250 1700000000 c\0db ok", 28},
        {"callahead:rcpt:f@x.org", "bogus 250 1700000000 cdb ok", 27},
        {"callahead:rcpt:g@x.org", "invalid 99999999999999999999999 1 cdb x", 39},
        {"callahead:rcpt:h@x.org", big, sizeof(big)},
    };
    const char *addrs[] = {"a@x.org", "b@x.org", "c@x.org", "d@x.org",
                           "e@x.org", "f@x.org", "g@x.org", "h@x.org"};

    memset(big, 'A', sizeof(big));
    memcpy(big, "valid 250 1700000000 cdb ", 25);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cli_set_raw(bad[i].key, bad[i].val, bad[i].len);
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct got g = {0};
        struct cache_req *req;
        struct verdict out;
        int stale;

        cr_assert_eq(cache_get(c, addrs[i], &out, &stale, got_cb, &g, &req), CACHE_PENDING);
        cr_assert(run_until(flag_set, &g.done, WAIT_MS), "%s: no answer", addrs[i]);
        cr_assert_eq(g.found, 0, "%s: corrupt value must be a miss", addrs[i]);
        /* and it did not land in L1 */
        cr_assert_eq(cache_get(c, addrs[i], &out, &stale, got_cb, &g, &req), CACHE_PENDING);
        cache_cancel(req);
    }
    /* the connection survived all of it */
    cr_assert(cache_redis_connected(cache_redis_handle(c)));
    cache_free(c);
}

Test(cache_redis, keys_are_binary_safe)
{
    struct cache *c1 = new_cache(), *c2 = new_cache();
    const char *evil = "x \r\n*3\r\n$3\r\nSET\r\n$4\r\npwnd\r\n$1\r\n1\r\n@example.org";
    struct verdict v;
    struct got g = {0};
    struct cache_req *req;
    struct verdict out;
    int stale;
    char buf[256];

    cr_assert_str_eq((cli(buf, sizeof(buf), "DBSIZE"), buf), "0");
    verdict_set(&v, VERDICT_VALID, 250, "smtp", "2.1.5 ok");
    cache_put(c1, evil, &v);
    wait_replies(cache_redis_handle(c1), 1);
    cli(buf, sizeof(buf), "DBSIZE");
    cr_assert_str_eq(buf, "1", "exactly one key, nothing injected");
    cli(buf, sizeof(buf), "EXISTS pwnd");
    cr_assert_str_eq(buf, "0");
    cli(buf, sizeof(buf), "--raw KEYS 'callahead:rcpt:x *'");
    cr_assert(strstr(buf, "SET") != NULL, "the whole address is the key: %s", buf);

    cr_assert_eq(cache_get(c2, evil, &out, &stale, got_cb, &g, &req), CACHE_PENDING);
    cr_assert(run_until(flag_set, &g.done, WAIT_MS));
    cr_assert_eq(g.found, 1);
    cr_assert_eq(g.v.kind, VERDICT_VALID);

    /* raw commands: NUL bytes inside key and value go through intact */
    struct cache_redis *r = cache_redis_handle(c1);
    const char *argv[3] = {"SET", "a\0b", "v\0w\r\n"};
    size_t lens[3] = {3, 3, 5};
    struct cmd set = {0}, get = {0}, len = {0};
    cr_assert_not_null(cache_redis_command(r, 3, argv, lens, cmd_cb, &set));
    const char *gargv[2] = {"GET", "a\0b"};
    size_t glens[2] = {3, 3};
    cr_assert_not_null(cache_redis_command(r, 2, gargv, glens, cmd_cb, &get));
    const char *largv[2] = {"STRLEN", "a\0b"};
    size_t llens[2] = {6, 3};
    cr_assert_not_null(cache_redis_command(r, 2, largv, llens, cmd_cb, &len));
    cr_assert(run_until(flag_set, &len.done, WAIT_MS));
    cr_assert_eq(set.status, 1);
    cr_assert_str_eq(set.val, "OK");
    cr_assert_eq(get.status, 1);
    cr_assert_eq(get.len, 5);
    cr_assert_eq(memcmp(get.val, "v\0w\r\n", 5), 0);
    cr_assert_eq(len.status, 1, "integer replies map to status 1");
    cr_assert_str_eq(len.val, "5");
    cli(buf, sizeof(buf), "DBSIZE");
    cr_assert_str_eq(buf, "2");
    cache_free(c1);
    cache_free(c2);
}

Test(cache_redis, replies_errors_and_no_callback_from_inside)
{
    struct cache_redis *r = new_redis();
    struct cmd incr = {0}, bad = {0}, ping = {0};
    const char *a1[] = {"INCR", "counter"};
    const char *a2[] = {"NOSUCHCOMMAND", "x"};
    const char *a3[] = {"PING"};

    cr_assert_not_null(command(r, &incr, 2, a1));
    cr_assert_eq(incr.done, 0, "cb must not run inside cache_redis_command");
    cr_assert_not_null(command(r, &bad, 2, a2));
    cr_assert_not_null(command(r, &ping, 1, a3));
    cr_assert(run_until(flag_set, &ping.done, WAIT_MS));
    cr_assert_eq(incr.status, 1);
    cr_assert_str_eq(incr.val, "1");
    cr_assert_eq(bad.status, -1);
    cr_assert(strstr(bad.val, "ERR") != NULL, "error text passed on: %s", bad.val);
    cr_assert_eq(ping.status, 1);
    cr_assert_str_eq(ping.val, "PONG");
    cr_assert(cache_redis_connected(r), "an error reply does not drop the connection");
    /* fire and forget and bad arguments */
    cr_assert_not_null(command(r, NULL, 1, a3));
    cr_assert_null(cache_redis_command(r, 0, a3, (size_t[]){4}, cmd_cb, &ping));

    struct cache_redis_stats st;
    wait_replies(r, 4);
    cache_redis_get_stats(r, &st);
    cr_assert_eq(st.commands, 4);
    cr_assert_eq(st.replies, 4);
    cr_assert_eq(st.errors, 1);
    cr_assert_eq(st.timeouts, 0);
    cache_redis_free(r);
}

Test(cache_redis, cancel_means_no_callback)
{
    struct cache_redis *r = new_redis();
    struct cache *c = new_cache();
    struct cmd c1 = {0}, ping = {0};
    struct got g = {0};
    const char *get[] = {"GET", "k"};
    const char *p[] = {"PING"};
    struct cache_req *creq;
    struct verdict out;
    int stale;

    struct cache_redis_req *req = command(r, &c1, 2, get);
    cr_assert_not_null(req);
    cache_redis_cancel(req);
    cr_assert_eq(cache_get(c, "who@x.org", &out, &stale, got_cb, &g, &creq), CACHE_PENDING);
    cache_cancel(creq);
    /* replies come in order: once PING is answered, the GETs' replies are in */
    cr_assert_not_null(command(r, &ping, 1, p));
    cr_assert(run_until(flag_set, &ping.done, WAIT_MS));
    pump(100);
    cr_assert_eq(c1.done, 0);
    cr_assert_eq(g.done, 0);
    cr_assert(cache_redis_connected(r));
    cache_free(c);
    cache_redis_free(r);
}

Test(cache_redis, free_with_commands_pending)
{
    struct cache_redis *r = new_redis();
    struct cache *c = new_cache();
    struct cmd cmds[5] = {{0}};
    struct got g = {0};
    const char *get[] = {"GET", "k"};
    struct cache_req *creq;
    struct verdict out;
    int stale;

    for (int i = 0; i < 5; i++)
        cr_assert_not_null(command(r, &cmds[i], 2, get));
    cr_assert_eq(cache_get(c, "who@x.org", &out, &stale, got_cb, &g, &creq), CACHE_PENDING);
    cache_redis_free(r);
    cache_free(c);
    pump(200);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(cmds[i].done, 0, "command %d called back after free", i);
    cr_assert_eq(g.done, 0);
}

/* free_on_first - the first callback frees the connection; counts every call */
static struct cache_redis *to_free;
static int calls;
static void free_on_first(int status, const char *val, size_t len, void *arg)
{
    (void)status;
    (void)val;
    (void)len;
    (void)arg;
    if (++calls == 1)
        cache_redis_free(to_free);
}

Test(cache_redis, free_from_inside_callback)
{
    const char *get[] = {"GET", "k"};
    size_t lens[] = {3, 1};

    /* on a normal reply, with more replies queued behind it */
    to_free = new_redis();
    calls = 0;
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cache_redis_command(to_free, 2, get, lens, free_on_first, NULL));
    cr_assert(run_until(flag_set, &calls, WAIT_MS));
    pump(200);
    cr_assert_eq(calls, 1, "no callback after the free");

    /* on the timeout path: the stalled connection is dropped under the callback */
    to_free = new_redis();
    calls = 0;
    kill(srv.pid, SIGSTOP);
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cache_redis_command(to_free, 2, get, lens, free_on_first, NULL));
    cr_assert(run_until(flag_set, &calls, TIMEOUT_MS + WAIT_MS));
    pump(200);
    cr_assert_eq(calls, 1, "no callback after the free");
    kill(srv.pid, SIGCONT);
}

Test(cache_redis, stopped_redis_times_out_then_recovers)
{
    struct cache_redis *r = new_redis();
    struct cache *c = new_cache();
    struct cmd a = {0}, b = {0}, after = {0};
    struct got g = {0};
    const char *get[] = {"GET", "k"};
    struct cache_req *creq;
    struct verdict out;
    int stale;

    kill(srv.pid, SIGSTOP); /* a tarpit: the socket stays open, nothing answers */
    long t0 = now_ms();
    cr_assert_not_null(command(r, &a, 2, get));
    cr_assert_not_null(command(r, &b, 2, get));
    cr_assert_eq(cache_get(c, "who@x.org", &out, &stale, got_cb, &g, &creq), CACHE_PENDING);
    /* caps are generous: a loaded machine may be slow, the bounds below say how slow is wrong */
    cr_assert(run_until(flag_set, &a.done, TIMEOUT_MS + WAIT_MS));
    cr_assert(run_until(flag_set, &b.done, WAIT_MS));
    cr_assert(run_until(flag_set, &g.done, WAIT_MS));
    cr_assert_eq(a.status, -1);
    cr_assert_eq(b.status, -1);
    cr_assert_eq(g.found, 0, "a Redis timeout is a cache miss");
    long took = a.at - t0;
    /* never early; late only by scheduling (seconds of slack), not by another timeout round */
    cr_assert(took >= TIMEOUT_MS - 20 && took < TIMEOUT_MS + 3000, "took %ld ms", took);
    cr_assert(b.at - t0 < TIMEOUT_MS + 3000, "b took %ld ms", b.at - t0);
    struct cache_redis_stats st;
    cache_redis_get_stats(r, &st);
    cr_assert_geq(st.timeouts, 1);
    cr_assert_eq(a.done + b.done, 2, "each callback exactly once");

    kill(srv.pid, SIGCONT);
    /* after the backoff it reconnects and works again */
    cr_assert(run_until(is_connected, r, WAIT_MS));
    const char *set[] = {"SET", "k", "v"};
    struct cmd s = {0};
    cr_assert_not_null(command(r, &s, 3, set));
    cr_assert_not_null(command(r, &after, 2, get));
    cr_assert(run_until(flag_set, &after.done, WAIT_MS));
    cr_assert_eq(after.status, 1);
    cr_assert_str_eq(after.val, "v");
    cache_free(c);
    cache_redis_free(r);
}

Test(cache_redis, killed_redis_fails_fast_and_reconnects_after_restart)
{
    struct cache_redis *r = new_redis();
    struct cache *c = new_cache();
    struct cmd pending = {0}, after = {0};
    struct got g = {0};
    const char *get[] = {"GET", "k"};
    struct cache_req *creq = NULL;
    struct verdict v, out;
    int stale;

    /* a command in flight when Redis dies comes back as an error */
    kill(srv.pid, SIGSTOP);
    cr_assert_not_null(command(r, &pending, 2, get));
    pump(20);
    srv_kill();
    cr_assert(run_until(flag_set, &pending.done, WAIT_MS));
    cr_assert_eq(pending.status, -1);
    cr_assert(run_until(is_disconnected, r, WAIT_MS));
    cr_assert(run_until(is_disconnected, cache_redis_handle(c), WAIT_MS));

    /* while down: not sent (NULL), no callback, and the cache just misses */
    long t0 = now_ms();
    cr_assert_null(command(r, &after, 2, get));
    cr_assert_eq(cache_get(c, "who@x.org", &out, &stale, got_cb, &g, &creq), CACHE_MISS);
    cr_assert_null(creq);
    /*
     * both calls answered at once (NULL, CACHE_MISS), so nothing waited on the
     * network; the bound only catches a blocking connect, with room for a
     * loaded machine's scheduling stalls
     */
    cr_assert_lt(now_ms() - t0, 1000, "fails fast");
    /* L1 still works, with the short L1 TTL */
    verdict_set(&v, VERDICT_VALID, 250, "cdb", "ok");
    cache_put(c, "who@x.org", &v);
    cr_assert_eq(cache_get(c, "who@x.org", &out, &stale, got_cb, &g, &creq), CACHE_HIT);
    pump(2 * RECONNECT_MAX_MS); /* a few failed reconnects: no crash, no spin */
    cr_assert_eq(after.done, 0);
    cr_assert_eq(g.done, 0);

    srv_start(); /* same port */
    /* within the capped backoff plus a connect, with seconds of slack for a loaded machine */
    long t1 = now_ms();
    cr_assert(run_until(is_connected, r, RECONNECT_MAX_MS + TIMEOUT_MS + 3000),
              "no reconnect within the backoff");
    cr_assert_lt(now_ms() - t1, RECONNECT_MAX_MS + TIMEOUT_MS + 3000);
    cr_assert(run_until(is_connected, cache_redis_handle(c), WAIT_MS));
    struct cache_redis_stats st;
    cache_redis_get_stats(r, &st);
    cr_assert_geq(st.reconnects, 1);
    cr_assert_not_null(command(r, &after, 2, get));
    cr_assert(run_until(flag_set, &after.done, WAIT_MS));
    cr_assert_eq(after.status, 0, "nil from the fresh server");
    cache_free(c);
    cache_redis_free(r);
}

Test(cache_redis, nothing_listening)
{
    struct cache_redis_config rc = redis_cfg(free_port());
    char err[256] = "";
    struct cache_redis *r = cache_redis_new(base, &rc, err, sizeof(err));
    const char *p[] = {"PING"};
    struct cmd c = {0};

    cr_assert_not_null(r, "a down Redis is not a config error: %s", err);
    pump(300);
    cr_assert_not(cache_redis_connected(r));
    cr_assert_null(command(r, &c, 1, p));
    cache_redis_free(r);

    /* bad configs are */
    rc.port = 0;
    cr_assert_null(cache_redis_new(base, &rc, err, sizeof(err)));
    rc = redis_cfg(srv.port);
    rc.timeout_ms = 0;
    cr_assert_null(cache_redis_new(base, &rc, err, sizeof(err)));
    rc = redis_cfg(srv.port);
    rc.reconnect_max_ms = 1;
    cr_assert_null(cache_redis_new(base, &rc, err, sizeof(err)));
    cr_assert_neq(err[0], 0);
}

/* capture_stderr - send fd 2 to a file (for counting log lines); returns the saved fd */
static int capture_stderr(const char *path)
{
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    cr_assert_geq(fd, 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
    return saved;
}

static void restore_stderr(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

/* count_lines - lines of path containing needle */
static int count_lines(const char *path, const char *needle)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(path, "r");

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

Test(cache_redis, failures_logged_at_most_once_per_interval)
{
    struct cache_redis_config rc = redis_cfg(free_port());
    char err[256] = "", path[128];
    struct cache_redis *r;
    int saved;

    snprintf(path, sizeof(path), "%s/stderr.log", srv.dir);
    saved = capture_stderr(path);
    r = cache_redis_new(base, &rc, err, sizeof(err));
    /* 1.2 s with backoff 50..400 ms: about 6 attempts, at most 1 + 1200/400 lines */
    pump(1200);
    struct cache_redis_stats st;
    cache_redis_get_stats(r, &st);
    cache_redis_free(r);
    restore_stderr(saved);
    int lines = count_lines(path, "redis: cannot connect");
    cr_assert(lines >= 1 && lines <= 4, "%d failure lines logged", lines);
    cr_assert_eq(st.reconnects, 0);
}

/* timed_out_logged - whether the stderr log at arg has the connect deadline's line */
static int timed_out_logged(void *arg)
{
    fflush(stderr);
    return count_lines(arg, "redis: connect timed out") >= 1;
}

Test(cache_redis, connect_deadline_on_a_full_backlog)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int fill[8];
    char path[128], err[256];

    /* a listener that never accepts, its queue filled: further SYNs go unanswered */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    for (int i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    pump(100);

    struct cache_redis_config rc = redis_cfg(ntohs(sa.sin_port));
    snprintf(path, sizeof(path), "%s/stderr.log", srv.dir);
    int saved = capture_stderr(path);
    struct cache_redis *r = cache_redis_new(base, &rc, err, sizeof(err));
    cr_assert_not_null(r);
    /* wait for the deadline's line, not a fixed time: a loaded machine may fire it late */
    int fired = run_until(timed_out_logged, path, TIMEOUT_MS + WAIT_MS);
    int connected = cache_redis_connected(r);
    cache_redis_free(r);
    restore_stderr(saved);
    for (int i = 0; i < 8; i++)
        close(fill[i]);
    close(lfd);
    cr_assert_not(connected);
    cr_assert(fired, "the connect deadline must fire");
    cr_assert_geq(count_lines(path, "redis: connect timed out"), 1,
                  "the connect deadline must fire");
}

Test(cache_redis, unix_socket)
{
    struct cache_redis_config rc = redis_cfg(srv.port);
    char err[256] = "";
    struct cmd ping = {0};
    const char *p[] = {"PING"};

    srv_kill();
    snprintf(srv.unixsock, sizeof(srv.unixsock), "%s/redis.sock", srv.dir);
    srv_start();
    rc.host = NULL;
    rc.port = 0;
    rc.unix_path = srv.unixsock;
    struct cache_redis *r = cache_redis_new(base, &rc, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    cr_assert(run_until(is_connected, r, WAIT_MS));
    cr_assert_not_null(command(r, &ping, 1, p));
    cr_assert(run_until(flag_set, &ping.done, WAIT_MS));
    cr_assert_str_eq(ping.val, "PONG");
    cache_redis_free(r);
}

Test(cache_redis, address_too_long_for_a_key_is_a_miss)
{
    struct cache *c = new_cache();
    static char big[3000];
    struct got g = {0};
    struct cache_req *req = NULL;
    struct verdict out;
    int stale;

    memset(big, 'a', sizeof(big) - 1);
    cr_assert_eq(cache_get(c, big, &out, &stale, got_cb, &g, &req), CACHE_MISS);
    cr_assert_null(req);
    pump(50);
    cr_assert_eq(g.done, 0);
    cache_free(c);
}

Test(cache_redis, host_name_resolved_once)
{
    struct cache_redis_config rc = redis_cfg(srv.port);
    char err[256] = "";
    struct cmd ping = {0};
    const char *p[] = {"PING"};

    rc.host = "localhost"; /* from /etc/hosts; IPv4 preferred, where redis listens */
    struct cache_redis *r = cache_redis_new(base, &rc, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    cr_assert(run_until(is_connected, r, WAIT_MS));
    cr_assert_not_null(command(r, &ping, 1, p));
    cr_assert(run_until(flag_set, &ping.done, WAIT_MS));
    cr_assert_str_eq(ping.val, "PONG");
    cache_redis_free(r);
}

/* ping_until_timeout - one PING on a stalled Redis; returns when it failed (ms) */
static long ping_until_timeout(struct cache_redis *r)
{
    struct cmd c = {0};
    const char *p[] = {"PING"};

    cr_assert(run_until(is_connected, r, WAIT_MS));
    cr_assert_not_null(command(r, &c, 1, p));
    cr_assert(run_until(flag_set, &c.done, TIMEOUT_MS + WAIT_MS));
    cr_assert_eq(c.status, -1);
    return c.at;
}

Test(cache_redis, stalled_redis_backoff_grows_until_a_reply)
{
    struct cache_redis *r = new_redis();
    const char *p[] = {"PING"};
    struct cmd c = {0};

    kill(srv.pid, SIGSTOP);
    long t1 = ping_until_timeout(r);
    /* right after a timeout: not connected, so lookups fail fast */
    cr_assert_not(cache_redis_connected(r));
    cr_assert_null(command(r, &c, 1, p));
    cr_assert(run_until(is_connected, r, WAIT_MS));
    long gap1 = now_ms() - t1; /* about reconnect_min_ms */
    long t2 = ping_until_timeout(r);
    cr_assert(run_until(is_connected, r, WAIT_MS));
    long gap2 = now_ms() - t2; /* the connect succeeded, but no reply: doubled */
    cr_assert_geq(gap2, 2 * RECONNECT_MIN_MS - 10, "gap1 %ld gap2 %ld", gap1, gap2);
    cr_assert_gt(gap2, gap1);
    kill(srv.pid, SIGCONT);
    cr_assert_not_null(command(r, &c, 1, p));
    cr_assert(run_until(flag_set, &c.done, WAIT_MS));
    cr_assert_eq(c.status, 1);
    cache_redis_free(r);
}

struct lock_got {
    int done, acquired;
};

static void lock_cb(int acquired, void *arg)
{
    struct lock_got *g = arg;

    g->done++;
    g->acquired = acquired;
}

/* take_lock - cache_lock through Redis; whether it was acquired */
static int take_lock(struct cache *c, const char *name, int px, struct cache_lock_token *tok)
{
    struct lock_got g = {0, -1};
    struct cache_req *req = NULL;

    cr_assert_eq(cache_lock(c, name, px, tok, lock_cb, &g, &req), 0, "lock not sent to Redis");
    cr_assert_not_null(req);
    cr_assert(run_until(flag_set, &g.done, WAIT_MS), "no lock reply");
    cr_assert_eq(g.done, 1);
    return g.acquired;
}

/*
 * Our lock expired while our probe still ran and another host took it: our
 * release must leave the other host's lock alone. Our own is released.
 */
Test(cache_redis, lock_release_deletes_only_our_own_token)
{
    struct cache *c1 = new_cache(), *c2 = new_cache();
    struct cache_lock_token t1 = {0}, t2 = {0}, t3 = {0};
    char buf[512];

    cr_assert_eq(take_lock(c1, "bob@example.org", 60000, &t1), 1);
    cli(buf, sizeof(buf), "GET callahead:lock:bob@example.org");
    cr_assert_eq(strlen(buf), t1.len);
    cr_assert_eq(memcmp(buf, t1.s, t1.len), 0, "lock value %s", buf);
    cr_assert(strstr(buf, " pid ") != NULL, "the token names host and pid: %s", buf);
    cli(buf, sizeof(buf), "PTTL callahead:lock:bob@example.org");
    cr_assert(strtol(buf, NULL, 10) > 59000, "PX is the flight deadline: PTTL %s", buf);

    /* another host (same pid space as ours does not matter: tokens are random) */
    cr_assert_eq(take_lock(c2, "bob@example.org", 60000, &t2), 0, "held by c1");

    /* c1's lock expires, another host takes it, then c1's late release comes */
    cli(buf, sizeof(buf), "SET callahead:lock:bob@example.org other-host-token PX 60000");
    cr_assert_str_eq(buf, "OK");
    cache_unlock(c1, "bob@example.org", &t1);
    pump(150);
    cli(buf, sizeof(buf), "GET callahead:lock:bob@example.org");
    cr_assert_str_eq(buf, "other-host-token", "another host's lock was deleted");

    /* a lock of our own is released; a second lock gets a different token */
    cr_assert_eq(take_lock(c2, "carol@example.org", 60000, &t3), 1);
    cr_assert(t3.len != t1.len || memcmp(t3.s, t1.s, t1.len) != 0, "tokens must differ");
    /* wait for the release's reply, not a fixed time, before looking */
    unsigned long seen = replies_of(cache_redis_handle(c2));
    cache_unlock(c2, "carol@example.org", &t3);
    wait_replies(cache_redis_handle(c2), seen + 1);
    cli(buf, sizeof(buf), "EXISTS callahead:lock:carol@example.org");
    cr_assert_str_eq(buf, "0", "our own lock was not released");

    cache_free(c1);
    cache_free(c2);
}

/* --- a reload moves the cache to another Redis (cache_swap_store) */

/* clients_on_db - connections to srv on database db, not counting redis-cli's own */
static int clients_on_db(int db)
{
    char buf[8192], want[16];
    int n = 0;

    cli(buf, sizeof(buf), "CLIENT LIST");
    snprintf(want, sizeof(want), " db=%d ", db);
    for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, want) != NULL && strstr(line, "cmd=client") == NULL)
            n++;
    return n;
}

static int no_client_on_db0(void *arg)
{
    (void)arg;
    return clients_on_db(0) == 0;
}

/* store_on_db1 - the settings of a reload: database 1, prefix "b:" */
static struct cache_store *store_on_db1(void)
{
    struct cache_config cfg = cache_cfg();
    char err[256] = "";

    cfg.key_prefix = "b:";
    cfg.redis.db = 1;
    struct cache_store *s = cache_store_new(base, &cfg, err, sizeof(err));
    cr_assert_not_null(s, "cache_store_new: %s", err);
    return s;
}

/*
 * What was sent before the swap finishes on the old connection (a write and
 * a read), what comes after goes to the new Redis under the new prefix, the
 * L1 stays, and the old connection is closed once it has nothing in flight.
 */
Test(cache_redis, swap_store_moves_the_cache_and_closes_the_old_connection)
{
    struct cache *c = new_cache();
    struct cache_redis *old = cache_redis_handle(c);
    struct verdict v, out;
    struct cache_req *req = NULL;
    struct got g = {0};
    char buf[512];
    int stale;

    verdict_set(&v, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");
    v.when = time(NULL);
    cli(buf, sizeof(buf), "SET callahead:rcpt:a-only@example.org 'valid 250 1732458000 cdb ok'");
    cr_assert_eq(clients_on_db(0), 1, "our one connection");

    struct cache_store *s = store_on_db1();
    cr_assert(run_until(is_connected, cache_store_redis(s), WAIT_MS), "new store never connected");
    /* in flight on the old connection at the swap: a write and a read */
    cache_put(c, "late@example.org", &v);
    cr_assert_eq(cache_get(c, "a-only@example.org", &out, &stale, got_cb, &g, &req), CACHE_PENDING);
    cache_swap_store(c, s);
    cr_assert(cache_redis_handle(c) != old);
    cr_assert_eq(g.done, 0);

    cr_assert(run_until(flag_set, &g.done, WAIT_MS), "the read in flight was never answered");
    cr_assert_eq(g.found, 1, "the read in flight is answered by the old Redis");
    cr_assert(run_until(no_client_on_db0, NULL, WAIT_MS), "the old connection is still open");
    cli(buf, sizeof(buf), "GET callahead:rcpt:late@example.org");
    cr_assert(strncmp(buf, "invalid 550 ", 12) == 0, "the write in flight was lost: '%s'", buf);

    /* from now on: database 1, prefix b: */
    cache_put(c, "new@example.org", &v);
    wait_replies(cache_redis_handle(c), 1);
    cli(buf, sizeof(buf), "-n 1 GET b:rcpt:new@example.org");
    cr_assert(strncmp(buf, "invalid 550 ", 12) == 0, "not on the new Redis: '%s'", buf);
    cli(buf, sizeof(buf), "EXISTS callahead:rcpt:new@example.org");
    cr_assert_str_eq(buf, "0", "written to the old Redis after the swap");
    cr_assert_eq(clients_on_db(1), 1);

    /* the L1 stays: what the old Redis answered is still known here */
    cr_assert_eq(cache_get(c, "a-only@example.org", &out, &stale, got_cb, &g, &req), CACHE_HIT);
    cr_assert_eq(out.kind, VERDICT_VALID);
    cache_free(c);
}

/*
 * A probe lock taken before the swap is released on the Redis and under the
 * prefix it was taken with; the old connection stays until then.
 */
Test(cache_redis, lock_taken_before_a_swap_is_released_where_it_was_taken)
{
    struct cache *c = new_cache();
    struct cache_lock_token t = {0}, t2 = {0};
    char buf[512];

    cr_assert_eq(take_lock(c, "bob@example.org", 60000, &t), 1);
    struct cache_store *s = store_on_db1();
    cr_assert(run_until(is_connected, cache_store_redis(s), WAIT_MS), "new store never connected");
    cache_swap_store(c, s);
    pump(200);
    cr_assert_eq(clients_on_db(0), 1, "the old connection went away with a lock held on it");

    /* a new lock goes to the new Redis */
    cr_assert_eq(take_lock(c, "carol@example.org", 60000, &t2), 1);
    cli(buf, sizeof(buf), "-n 1 EXISTS b:lock:carol@example.org");
    cr_assert_str_eq(buf, "1");

    cache_unlock(c, "bob@example.org", &t);
    cr_assert_eq(t.len, 0);
    cr_assert(run_until(no_client_on_db0, NULL, WAIT_MS), "the old connection is still open");
    cli(buf, sizeof(buf), "EXISTS callahead:lock:bob@example.org");
    cr_assert_str_eq(buf, "0", "the lock taken before the swap was not released");
    unsigned long seen = replies_of(cache_store_redis(s));
    cache_unlock(c, "carol@example.org", &t2);
    wait_replies(cache_store_redis(s), seen + 1); /* the release answered, not a fixed wait */
    cli(buf, sizeof(buf), "-n 1 EXISTS b:lock:carol@example.org");
    cr_assert_str_eq(buf, "0");
    cache_free(c);
}

/* a lock request cancelled across a swap still releases its store, and the cache frees cleanly */
Test(cache_redis, lock_cancelled_across_a_swap)
{
    struct cache *c = new_cache();
    struct cache_lock_token t = {0};
    struct cache_req *req = NULL;
    struct lock_got g = {0, -1};

    cr_assert_eq(cache_lock(c, "dave@example.org", 60000, &t, lock_cb, &g, &req), 0);
    cache_swap_store(c, store_on_db1());
    cache_cancel(req);
    cache_unlock(c, "dave@example.org", &t);
    cr_assert(run_until(no_client_on_db0, NULL, WAIT_MS), "the old connection is still open");
    cr_assert_eq(g.done, 0, "cancelled, yet called back");
    cache_free(c);
}

/* new settings that cannot work are refused before anything changes */
Test(cache_redis, store_with_an_unresolvable_name_is_refused)
{
    struct cache_config cfg = cache_cfg();
    char err[256] = "";

    cfg.redis.host = "no-such-host.invalid";
    cr_assert_null(cache_store_new(base, &cfg, err, sizeof(err)));
    cr_assert(strstr(err, "cannot resolve no-such-host.invalid") != NULL, "%s", err);
    cfg.redis.host = "127.0.0.1";
    cfg.redis.sentinels = "127.0.0.1:1, no-such-host.invalid:26379";
    cfg.redis.master_name = "m";
    err[0] = '\0';
    cr_assert_null(cache_store_new(base, &cfg, err, sizeof(err)));
    cr_assert(err[0] != '\0');
}

/* --- cache_redis_retire on its own */

struct retire_ctx {
    struct cache_redis *r;
    int first_done, gone, freed_at_once;
};

static void retire_gone(void *arg)
{
    ((struct retire_ctx *)arg)->gone++;
}

/* the first reply retires the connection from inside its callback */
static void retire_in_cb(int status, const char *val, size_t len, void *arg)
{
    struct retire_ctx *x = arg;

    (void)status;
    (void)val;
    (void)len;
    x->first_done++;
    x->freed_at_once = cache_redis_retire(x->r, retire_gone, x);
}

static int retire_gone_set(void *arg)
{
    return ((struct retire_ctx *)arg)->gone > 0;
}

/*
 * Retired from inside a reply's callback with more commands in flight: they
 * are still answered (with their replies, not errors), nothing new is
 * accepted, then the connection closes and gone runs once. With nothing in
 * flight, retiring frees at once and gone does not run.
 */
Test(cache_redis, retire_lets_commands_in_flight_finish_then_closes)
{
    struct retire_ctx x = {0};
    struct cmd second = {0};
    const char *ping[1] = {"PING"};
    size_t pinglen[1] = {4};
    const char *echo[2] = {"ECHO", "still answered"};

    x.r = new_redis();
    cr_assert_eq(clients_on_db(0), 1);
    cr_assert_not_null(cache_redis_command(x.r, 1, ping, pinglen, retire_in_cb, &x));
    cr_assert_not_null(command(x.r, &second, 2, echo));
    cr_assert(run_until(retire_gone_set, &x, WAIT_MS), "the retired connection was never freed");
    cr_assert_eq(x.first_done, 1);
    cr_assert_eq(x.freed_at_once, 0, "a command was still in flight");
    cr_assert_eq(second.done, 1);
    cr_assert_eq(second.status, 1, "the command in flight failed: %s", second.val);
    cr_assert_str_eq(second.val, "still answered");
    pump(100);
    cr_assert_eq(x.gone, 1);
    cr_assert(run_until(no_client_on_db0, NULL, WAIT_MS), "the connection is still open");

    struct retire_ctx idle = {0};
    idle.r = new_redis();
    cr_assert_eq(cache_redis_retire(idle.r, retire_gone, &idle), 1);
    pump(100);
    cr_assert_eq(idle.gone, 0);
    cr_assert(run_until(no_client_on_db0, NULL, WAIT_MS), "the idle connection is still open");
}
