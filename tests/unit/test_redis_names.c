/*
 * test_redis_names.c - the Redis host names of a reload, resolved on the
 * loop (policyd/redis_names.c): which configurations need a lookup, that
 * the answer comes from the loop and never from inside the start, that
 * numeric addresses and the hosts file need no name server, that a
 * resolver that never answers fails within dns_timeout naming the host,
 * and that freeing a lookup in flight leaves nothing behind.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "redis_names.h"
#include "verifier.h"

struct outcome {
    int calls;
    int ok;
    char err[512];
    struct event_base *base;
};

/* on_done - record the outcome and stop the loop */
static void on_done(int ok, const char *err, void *arg)
{
    struct outcome *o = arg;

    o->calls++;
    o->ok = ok;
    snprintf(o->err, sizeof(o->err), "%s", err);
    event_base_loopbreak(o->base);
}

/* parse - text over the defaults into c */
static void parse(struct config *c, const char *text)
{
    char err[512];

    memset(c, 0, sizeof(*c));
    cr_assert_eq(config_parse(text, strlen(text), "test.conf", c, err, sizeof(err)), 0, "%s", err);
}

/* blackhole - a bound UDP socket on 127.0.0.1 that nobody reads; its port in *port */
static int blackhole(int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    cr_assert_geq(fd, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* run - start the lookups of text's configuration, run the loop (10 s at most) */
static void run(const char *text, struct outcome *o, struct verifier_config *vc)
{
    struct config c;
    char err[512];
    struct timeval limit = {10, 0};

    parse(&c, text);
    memset(o, 0, sizeof(*o));
    o->base = event_base_new();
    struct redis_names *rn = redis_names_start(o->base, &c, on_done, o, err, sizeof(err));
    cr_assert_not_null(rn, "%s", err);
    cr_assert_eq(o->calls, 0, "the answer never comes from inside redis_names_start");
    event_base_loopexit(o->base, &limit);
    event_base_dispatch(o->base);
    cr_assert_eq(o->calls, 1, "one answer");
    if (vc != NULL) {
        config_verifier(&c, vc);
        redis_names_apply(rn, vc);
        /* copy out what the test looks at: the strings belong to rn */
        static char host[64], list[256];
        snprintf(host, sizeof(host), "%s", vc->cache.redis.host ? vc->cache.redis.host : "");
        snprintf(list, sizeof(list), "%s",
                 vc->cache.redis.sentinels ? vc->cache.redis.sentinels : "");
        vc->cache.redis.host = host;
        vc->cache.redis.sentinels = list;
    }
    redis_names_free(rn);
    event_base_free(o->base);
    config_free(&c);
}

Test(redis_names, needed)
{
    static const struct {
        const char *text;
        int needed;
    } cases[] = {
        {"", 0},
        {"redis_server = 127.0.0.1:6379\n", 0},
        {"redis_server = [::1]:6379\n", 0},
        {"redis_server = unix:/run/redis.sock\n", 0},
        {"redis_server = redis.example.test:6379\n", 1},
        {"redis_server = localhost:6379\n", 1},
        {"redis_sentinels = 127.0.0.1:26379, [::1]:26380\nredis_master_name = m\n", 0},
        {"redis_sentinels = 127.0.0.1:26379, s2.example.test:26380\nredis_master_name = m\n", 1},
    };
    struct config c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse(&c, cases[i].text);
        cr_expect_eq(redis_names_needed(&c), cases[i].needed, "[%s]", cases[i].text);
        config_free(&c);
    }
}

Test(redis_names, numeric_sentinels_need_no_server)
{
    struct outcome o;
    struct verifier_config vc;
    int port, fd = blackhole(&port);
    char text[256];

    snprintf(text, sizeof(text),
             "redis_sentinels = 127.0.0.1:26379 [::1]:26380\nredis_master_name = m\n"
             "dns_servers = 127.0.0.1:%d\n",
             port);
    run(text, &o, &vc);
    cr_assert_eq(o.ok, 1, "%s", o.err);
    cr_assert_str_eq(vc.cache.redis.sentinels, "127.0.0.1:26379, [::1]:26380");
    close(fd);
}

Test(redis_names, hosts_file)
{
    struct outcome o;
    struct verifier_config vc;
    int port, fd = blackhole(&port);
    char text[256];

    /* the name server never answers: only the hosts file can */
    snprintf(text, sizeof(text),
             "redis_server = localhost:6380\ndns_servers = 127.0.0.1:%d\ndns_timeout = 5s\n", port);
    run(text, &o, &vc);
    cr_assert_eq(o.ok, 1, "%s", o.err);
    cr_assert(strcmp(vc.cache.redis.host, "127.0.0.1") == 0 ||
                  strcmp(vc.cache.redis.host, "::1") == 0,
              "localhost is %s", vc.cache.redis.host);
    cr_assert_eq(vc.cache.redis.port, 6380);
    close(fd);
}

Test(redis_names, silent_resolver_fails_naming_the_host)
{
    struct outcome o;
    int port, fd = blackhole(&port);
    char text[512];

    snprintf(text, sizeof(text),
             "redis_sentinels = 127.0.0.1:26379, s2.example.test:26380\n"
             "redis_master_name = m\ndns_servers = 127.0.0.1:%d\ndns_timeout = 200ms\n",
             port);
    run(text, &o, NULL);
    cr_assert_eq(o.ok, 0);
    cr_assert(strstr(o.err, "sentinel s2.example.test") != NULL, "%s", o.err);
    cr_assert(strstr(o.err, "timed out") != NULL, "%s", o.err);
    close(fd);
}

Test(redis_names, free_in_flight)
{
    struct config c;
    struct outcome o;
    char err[512], text[256];
    int port, fd = blackhole(&port);
    struct timeval limit = {0, 300000};

    snprintf(text, sizeof(text),
             "redis_server = redis.example.test:6379\ndns_servers = 127.0.0.1:%d\n", port);
    parse(&c, text);
    memset(&o, 0, sizeof(o));
    o.base = event_base_new();
    struct redis_names *rn = redis_names_start(o.base, &c, on_done, &o, err, sizeof(err));
    cr_assert_not_null(rn, "%s", err);
    event_base_loopexit(o.base, &limit);
    event_base_dispatch(o.base); /* the query is sent, never answered */
    redis_names_free(rn);
    event_base_loopexit(o.base, &limit);
    event_base_dispatch(o.base);
    cr_assert_eq(o.calls, 0, "a freed lookup never answers");
    event_base_free(o.base);
    config_free(&c);
    close(fd);
}
