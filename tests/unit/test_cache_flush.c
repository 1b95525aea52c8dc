/*
 * test_cache_flush.c - operator flushes: selectors normalised as cache keys
 * are, channel messages parsed as the hostile input they are, and the
 * in-process part of each kind of flush (and the L1 peek that "show" uses,
 * which must not change the LRU order).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "cache.h"
#include "cache_flush.h"
#include "cache_mem.h"

static struct verdict mkv(enum verdict_kind kind)
{
    struct verdict v;

    verdict_set(&v, kind, kind == VERDICT_INVALID ? 550 : 250, "cdb", "x");
    return v;
}

Test(cache_flush, select_normalises)
{
    struct cache_flush_sel s;
    char err[128];

    cr_assert_eq(cache_flush_select(CACHE_FLUSH_ADDRESS, "Bob@Example.ORG.", &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(s.name, "bob@example.org");
    cr_assert_str_eq(s.alt, "Bob@example.org");
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_ADDRESS, "<bob@example.org>", &s, err, sizeof(err)),
                 0);
    cr_assert_str_eq(s.name, "bob@example.org");
    cr_assert_str_eq(s.alt, "");
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "@Example.ORG.", &s, err, sizeof(err)), 0);
    cr_assert_str_eq(s.name, "example.org");
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "[192.0.2.1]", &s, err, sizeof(err)), 0);
    cr_assert_str_eq(s.name, "[192.0.2.1]");
}

Test(cache_flush, select_refuses)
{
    struct cache_flush_sel s;
    char err[128];

    cr_assert_eq(cache_flush_select(CACHE_FLUSH_ADDRESS, "<>", &s, err, sizeof(err)), -1);
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_ADDRESS, "nodomain", &s, err, sizeof(err)), -1);
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "", &s, err, sizeof(err)), -1);
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "a@b.org", &s, err, sizeof(err)), -1);
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "a b.org", &s, err, sizeof(err)), -1);
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, "[300.1.1.1]", &s, err, sizeof(err)), -1);
    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(cache_flush_select(CACHE_FLUSH_DOMAIN, big, &s, err, sizeof(err)), -1);
}

Test(cache_flush, message_round_trip)
{
    struct cache_flush_sel s, back;
    char err[128], msg[600];

    cr_assert_eq(cache_flush_select(CACHE_FLUSH_ADDRESS, "Bob@example.org", &s, err, sizeof(err)),
                 0);
    int n = cache_flush_format(&s, msg, sizeof(msg));
    cr_assert_str_eq(msg, "address Bob@example.org");
    cr_assert_eq(cache_flush_parse(msg, (size_t)n, &back), 0);
    cr_assert_str_eq(back.name, "bob@example.org");
    cr_assert_str_eq(back.alt, "Bob@example.org");

    s.kind = CACHE_FLUSH_INVALID;
    n = cache_flush_format(&s, msg, sizeof(msg));
    cr_assert_str_eq(msg, "invalid");
    cr_assert_eq(cache_flush_parse(msg, (size_t)n, &back), 0);
    cr_assert_eq(back.kind, CACHE_FLUSH_INVALID);
    cr_assert_eq(cache_flush_parse("all", 3, &back), 0);
    cr_assert_eq(back.kind, CACHE_FLUSH_ALL);
    cr_assert_eq(cache_flush_parse("domain Example.org", 18, &back), 0);
    cr_assert_str_eq(back.name, "example.org");
}

/* anyone who can write to Redis can publish: nothing odd may turn into a flush */
Test(cache_flush, message_hostile)
{
    static const char *const bad[] = {
        "",          "all ",       "all x",      "invalid now", "address",
        "address ",  "domain",     "domain a@b", "address bob", "ALL",
        "flush all", "address <>", "domain ..",  "domain a b",  "address a@b\r\nall",
    };
    struct cache_flush_sel s;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(cache_flush_parse(bad[i], strlen(bad[i]), &s), -1, "accepted \"%s\"", bad[i]);
    cr_assert_eq(cache_flush_parse("all\0x", 5, &s), -1, "accepted a NUL byte");
    char big[2000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "domain ", 7);
    cr_assert_eq(cache_flush_parse(big, sizeof(big), &s), -1, "accepted 2000 bytes");
}

/* a cache without Redis, three addresses in two domains and a domain fact */
static struct cache *filled(struct event_base *base)
{
    struct cache_config cfg;
    char err[128];

    memset(&cfg, 0, sizeof(cfg));
    cfg.key_prefix = "callahead:";
    cfg.l1_max_entries = 100;
    cfg.l1_ttl = 60;
    for (int k = 0; k < VERDICT_KIND_COUNT; k++)
        cfg.ttl[k] = 3600;
    struct cache *c = cache_new(base, &cfg, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    struct verdict inv = mkv(VERDICT_INVALID), val = mkv(VERDICT_VALID);
    cache_put(c, "bob@example.org", &inv);
    cache_put(c, "alice@example.org", &val);
    cache_put(c, "carol@other.org", &inv);
    cache_put_ns(c, "dom", "example.org", &val, 3600);
    cache_put_ns(c, "dom", "other.org", &val, 3600);
    return c;
}

static int in_l1(struct cache *c, const char *key)
{
    struct verdict v;
    time_t stored, expires;

    return cache_mem_peek(cache_l1_handle(c), key, time(NULL), &v, &stored, &expires);
}

Test(cache_flush, l1_by_kind)
{
    struct event_base *base = event_base_new();
    struct cache_flush_sel s;
    char err[128];

    struct cache *c = filled(base);
    cache_flush_select(CACHE_FLUSH_ADDRESS, "BOB@example.org", &s, err, sizeof(err));
    cr_assert_eq(cache_flush_l1(c, &s), 1);
    cr_assert_eq(in_l1(c, "bob@example.org"), 0);
    cr_assert_eq(in_l1(c, "alice@example.org"), 1);
    cache_free(c);

    c = filled(base);
    cache_flush_select(CACHE_FLUSH_DOMAIN, "example.org", &s, err, sizeof(err));
    cr_assert_eq(cache_flush_l1(c, &s), 3, "two addresses and the domain fact");
    cr_assert_eq(in_l1(c, "carol@other.org"), 1);
    cr_assert_eq(in_l1(c, "dom:other.org"), 1);
    cr_assert_eq(in_l1(c, "dom:example.org"), 0);
    cache_free(c);

    c = filled(base);
    cache_flush_select(CACHE_FLUSH_INVALID, "", &s, err, sizeof(err));
    cr_assert_eq(cache_flush_l1(c, &s), 2);
    cr_assert_eq(in_l1(c, "alice@example.org"), 1);
    cr_assert_eq(in_l1(c, "dom:example.org"), 1, "domain facts are not address verdicts");
    cache_free(c);

    c = filled(base);
    cache_flush_select(CACHE_FLUSH_ALL, "", &s, err, sizeof(err));
    cr_assert_eq(cache_flush_l1(c, &s), 5);
    cr_assert_eq(cache_mem_count(cache_l1_handle(c)), 0);
    cache_free(c);
    event_base_free(base);
}

/* looking must not make an entry recently used: show may not change what is evicted */
Test(cache_flush, peek_keeps_lru_order)
{
    struct cache_mem *m = cache_mem_new(2);
    struct verdict v = mkv(VERDICT_VALID), out;
    time_t stored, expires;

    cache_mem_put(m, "a@x", &v, 100, 200);
    cache_mem_put(m, "b@x", &v, 101, 200);
    cr_assert_eq(cache_mem_peek(m, "a@x", 150, &out, &stored, &expires), 1);
    cr_assert_eq(stored, 100);
    cr_assert_eq(expires, 200);
    cr_assert_eq(cache_mem_peek(m, "a@x", 200, &out, &stored, &expires), 0, "expired");
    cache_mem_put(m, "c@x", &v, 150, 300);
    cr_assert_eq(cache_mem_peek(m, "a@x", 150, &out, &stored, &expires), 0, "a was evicted");
    cr_assert_eq(cache_mem_peek(m, "b@x", 150, &out, &stored, &expires), 1);
    cache_mem_free(m);
}
