/*
 * test_cache.c - the verdict cache without Redis (the embedded default):
 * TTL per verdict kind, "do not cache" kinds, the stale flag for
 * refresh-ahead, put_if_changed, key encoding and its bounds. The Redis side
 * is in test_cache_redis.c, against a real redis-server.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

/* l1_config - L1 only; ttl and refresh per kind as given */
static struct cache_config l1_config(void)
{
    struct cache_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.key_prefix = "callahead:";
    cfg.l1_max_entries = 100;
    cfg.l1_ttl = 60;
    cfg.ttl[VERDICT_VALID] = 3600;
    cfg.ttl[VERDICT_INVALID] = 1; /* short, so expiry can be watched */
    cfg.ttl[VERDICT_TEMPFAIL] = 0;
    cfg.ttl[VERDICT_UNKNOWN] = 0;
    cfg.refresh[VERDICT_VALID] = 100;
    cfg.use_redis = 0;
    return cfg;
}

static struct cache *new_cache(const struct cache_config *cfg)
{
    char err[256] = "";
    struct cache *c = cache_new(NULL, cfg, err, sizeof(err));

    cr_assert_not_null(c, "cache_new: %s", err);
    return c;
}

static void never_called(int found, const struct verdict *v, int stale, void *arg)
{
    (void)found;
    (void)v;
    (void)stale;
    (void)arg;
    cr_assert_fail("callback must not run without Redis");
}

static struct verdict mkv(enum verdict_kind kind, int code, time_t when)
{
    struct verdict v;

    verdict_set(&v, kind, code, "cdb", kind == VERDICT_INVALID ? "5.1.1 User unknown" : "ok");
    v.when = when;
    return v;
}

Test(cache, miss_then_hit)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    struct verdict v = mkv(VERDICT_VALID, 250, time(NULL)), out;
    struct cache_req *req = (struct cache_req *)&v; /* must be reset */
    int stale = -1;

    cr_assert_eq(cache_get(c, "bob@example.org", &out, &stale, never_called, NULL, &req),
                 CACHE_MISS);
    cr_assert_null(req);
    cache_put(c, "bob@example.org", &v);
    cr_assert_eq(cache_get(c, "bob@example.org", &out, &stale, never_called, NULL, &req),
                 CACHE_HIT);
    cr_assert_eq(out.kind, VERDICT_VALID);
    cr_assert_eq(out.code, 250);
    cr_assert_str_eq(out.source, "cdb");
    cr_assert_eq(stale, 0);
    cr_assert_null(cache_redis_handle(c));

    struct cache_stats st;
    cache_get_stats(c, &st);
    cr_assert_eq(st.l1_hits, 1);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.puts, 1);
    cr_assert_eq(st.redis_hits, 0);
    cr_assert_eq(st.l1_entries, 1);
    cache_free(c);
}

Test(cache, ttl_per_kind)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    struct verdict valid = mkv(VERDICT_VALID, 250, time(NULL));
    struct verdict invalid = mkv(VERDICT_INVALID, 550, time(NULL));
    struct verdict out;
    int stale;

    cache_put(c, "good@x.org", &valid);
    cache_put(c, "bad@x.org", &invalid);
    cr_assert_eq(cache_get(c, "bad@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(out.kind, VERDICT_INVALID);
    /* invalid has a 1 s TTL; valid an hour (not cut to l1_ttl: there is no Redis) */
    sleep(2);
    cr_assert_eq(cache_get(c, "bad@x.org", &out, &stale, NULL, NULL, NULL), CACHE_MISS);
    cr_assert_eq(cache_get(c, "good@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cache_free(c);
}

Test(cache, ttl_zero_not_stored)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    struct verdict temp = mkv(VERDICT_TEMPFAIL, 450, time(NULL));
    struct verdict unk = mkv(VERDICT_UNKNOWN, 0, time(NULL));
    struct verdict out;
    struct cache_stats st;
    int stale;

    cache_put(c, "t@x.org", &temp);
    cache_put(c, "u@x.org", &unk);
    cr_assert_eq(cache_get(c, "t@x.org", &out, &stale, NULL, NULL, NULL), CACHE_MISS);
    cr_assert_eq(cache_get(c, "u@x.org", &out, &stale, NULL, NULL, NULL), CACHE_MISS);
    cache_get_stats(c, &st);
    cr_assert_eq(st.puts, 0);
    cr_assert_eq(st.l1_entries, 0);
    /* a tempfail does not knock out a good verdict that is still cached */
    struct verdict valid = mkv(VERDICT_VALID, 250, time(NULL));
    cache_put(c, "t@x.org", &valid);
    cache_put(c, "t@x.org", &temp);
    cr_assert_eq(cache_get(c, "t@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(out.kind, VERDICT_VALID);
    cache_free(c);
}

Test(cache, stale_flag_from_verdict_age)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    time_t now = time(NULL);
    struct verdict young = mkv(VERDICT_VALID, 250, now - 10);
    struct verdict old = mkv(VERDICT_VALID, 250, now - 500); /* refresh is 100 s */
    struct verdict out;
    int stale = -1;

    cache_put(c, "young@x.org", &young);
    cache_put(c, "old@x.org", &old);
    cr_assert_eq(cache_get(c, "young@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(stale, 0);
    cr_assert_eq(cache_get(c, "old@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(stale, 1, "older than refresh[valid] must be flagged");
    cr_assert_eq(out.when, now - 500, "the verdict's own time is kept");

    /* refresh 0 = never stale, however old */
    cfg.refresh[VERDICT_VALID] = 0;
    struct cache *c2 = new_cache(&cfg);
    cache_put(c2, "old@x.org", &old);
    cr_assert_eq(cache_get(c2, "old@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(stale, 0);
    cache_free(c);
    cache_free(c2);
}

Test(cache, put_if_changed)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    time_t now = time(NULL);
    struct verdict v1 = mkv(VERDICT_VALID, 250, now - 50);
    struct verdict v2 = mkv(VERDICT_VALID, 250, now);
    struct verdict v3 = mkv(VERDICT_INVALID, 550, now);
    struct verdict out;
    struct cache_stats st;
    int stale;

    cache_put_if_changed(c, "a@x.org", &v1);
    cache_put_if_changed(c, "a@x.org", &v2); /* same kind and code: no write */
    cache_get_stats(c, &st);
    cr_assert_eq(st.puts, 1);
    cr_assert_eq(cache_get(c, "a@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(out.when, now - 50, "the first verdict is kept");
    cache_put_if_changed(c, "a@x.org", &v3); /* kind changed: written */
    cache_get_stats(c, &st);
    cr_assert_eq(st.puts, 2);
    cr_assert_eq(cache_get(c, "a@x.org", &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cr_assert_eq(out.kind, VERDICT_INVALID);
    cache_free(c);
}

Test(cache, key_encoding)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    char buf[128];

    cr_assert_eq(cache_key(c, "rcpt", "bob@example.org", buf, sizeof(buf)),
                 (int)strlen("callahead:rcpt:bob@example.org"));
    cr_assert_str_eq(buf, "callahead:rcpt:bob@example.org");
    cr_assert_geq(cache_key(c, "dom", "example.org", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "callahead:dom:example.org");
    cache_free(c);

    cfg.key_prefix = "mx1/";
    c = new_cache(&cfg);
    cr_assert_eq(cache_key(c, "lock", "a@b", buf, sizeof(buf)), 12);
    cr_assert_str_eq(buf, "mx1/lock:a@b");
    cache_free(c);

    cfg.key_prefix = NULL; /* default */
    c = new_cache(&cfg);
    cr_assert_geq(cache_key(c, "rcpt", "x@y", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "callahead:rcpt:x@y");
    cache_free(c);
}

Test(cache, key_too_long)
{
    struct cache_config cfg = l1_config();
    struct cache *c = new_cache(&cfg);
    char buf[30], big[2000];

    /* "callahead:rcpt:" is 15 bytes: 14 more fit in 30 with the NUL, 15 do not */
    cr_assert_eq(cache_key(c, "rcpt", "abcdefghijklmn", buf, sizeof(buf)), 29);
    cr_assert_eq(cache_key(c, "rcpt", "abcdefghijklmno", buf, sizeof(buf)), -1);
    cr_assert_eq(cache_key(c, "rcpt", "x", buf, 0), -1);
    cr_assert_eq(cache_key(c, "rcpt", "x", NULL, 10), -1);

    /* an address longer than any Redis key we build still works in L1 */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    struct verdict v = mkv(VERDICT_VALID, 250, time(NULL)), out;
    int stale;
    cache_put(c, big, &v);
    cr_assert_eq(cache_get(c, big, &out, &stale, NULL, NULL, NULL), CACHE_HIT);
    cache_free(c);
}

Test(cache, bad_config_rejected)
{
    struct cache_config cfg = l1_config();
    char err[256] = "";
    char prefix[300];

    cfg.l1_max_entries = 0;
    cr_assert_null(cache_new(NULL, &cfg, err, sizeof(err)));
    cr_assert_neq(err[0], 0);

    cfg = l1_config();
    memset(prefix, 'p', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = 0;
    cfg.key_prefix = prefix;
    err[0] = 0;
    cr_assert_null(cache_new(NULL, &cfg, err, sizeof(err)));
    cr_assert_neq(err[0], 0);

    cfg = l1_config();
    cfg.use_redis = 1; /* Redis without an event base */
    err[0] = 0;
    cr_assert_null(cache_new(NULL, &cfg, err, sizeof(err)));
    cr_assert_neq(err[0], 0);
}

Test(cache, l1_bound)
{
    struct cache_config cfg = l1_config();
    struct cache_stats st;
    char key[64];

    cfg.l1_max_entries = 50;
    struct cache *c = new_cache(&cfg);
    struct verdict v = mkv(VERDICT_VALID, 250, time(NULL));
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "u%d@x.org", i);
        cache_put(c, key, &v);
    }
    cache_get_stats(c, &st);
    cr_assert_eq(st.l1_entries, 50);
    cr_assert_eq(st.puts, 500);
    cache_free(c);
}
