/*
 * test_cache_mem.c - the bounded L1 cache: hits, misses, expiry, LRU order,
 * the bound under load, and keys an attacker would choose (long, binary-ish,
 * colliding in the bucket index).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "cache_mem.h"

/* mkv - a verdict with a recognisable code */
static struct verdict mkv(enum verdict_kind kind, int code, const char *text)
{
    struct verdict v;

    memset(&v, 0, sizeof(v));
    v.kind = kind;
    v.code = code;
    v.when = 1000;
    snprintf(v.source, sizeof(v.source), "cdb");
    snprintf(v.text, sizeof(v.text), "%s", text);
    return v;
}

Test(cache_mem, hit_and_miss)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v = mkv(VERDICT_INVALID, 550, "5.1.1 User unknown"), out;
    time_t stored = 0;

    cr_assert_not_null(c);
    cr_assert_eq(cache_mem_get(c, "bob@example.org", 100, &out, NULL), 0);
    cache_mem_put(c, "bob@example.org", &v, 100, 200);
    memset(&out, 0, sizeof(out));
    cr_assert_eq(cache_mem_get(c, "bob@example.org", 150, &out, &stored), 1);
    cr_assert_eq(out.kind, VERDICT_INVALID);
    cr_assert_eq(out.code, 550);
    cr_assert_str_eq(out.text, "5.1.1 User unknown");
    cr_assert_eq(stored, 100);
    /* keys are exact: no case folding, no prefix matches */
    cr_assert_eq(cache_mem_get(c, "Bob@example.org", 150, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "bob@example.or", 150, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "bob@example.org ", 150, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "", 150, &out, NULL), 0);
    cr_assert_eq(cache_mem_count(c), 1);
    cache_mem_free(c);
}

Test(cache_mem, expiry_drops_entry)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;

    cache_mem_put(c, "a@x", &v, 100, 110);
    cr_assert_eq(cache_mem_get(c, "a@x", 109, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, "a@x", 110, &out, NULL), 0, "live until, not including, expires");
    cr_assert_eq(cache_mem_count(c), 0, "expired entry dropped on access");
    cr_assert_eq(cache_mem_get(c, "a@x", 105, &out, NULL), 0, "and gone for good");
    /* already expired on arrival: not stored, and an older live value goes too */
    cache_mem_put(c, "b@x", &v, 100, 200);
    cache_mem_put(c, "b@x", &v, 100, 100);
    cr_assert_eq(cache_mem_get(c, "b@x", 101, &out, NULL), 0);
    cr_assert_eq(cache_mem_count(c), 0);
    cache_mem_free(c);
}

Test(cache_mem, lru_eviction_order)
{
    struct cache_mem *c = cache_mem_new(3);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;

    cache_mem_put(c, "a", &v, 0, 1000);
    cache_mem_put(c, "b", &v, 0, 1000);
    cache_mem_put(c, "c", &v, 0, 1000);
    /* touch a: b becomes the least recently used */
    cr_assert_eq(cache_mem_get(c, "a", 1, &out, NULL), 1);
    cache_mem_put(c, "d", &v, 1, 1000);
    cr_assert_eq(cache_mem_count(c), 3);
    cr_assert_eq(cache_mem_get(c, "b", 2, &out, NULL), 0, "b was LRU and must be evicted");
    cr_assert_eq(cache_mem_get(c, "c", 2, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, "a", 2, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, "d", 2, &out, NULL), 1);
    /* order now (most recent first): d a c -> next eviction takes c */
    cache_mem_put(c, "e", &v, 3, 1000);
    cr_assert_eq(cache_mem_get(c, "c", 4, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "a", 4, &out, NULL), 1);
    /* a replace counts as a use too */
    cache_mem_put(c, "d", &v, 5, 1000); /* order: d a e */
    cache_mem_put(c, "f", &v, 5, 1000); /* evicts e */
    cr_assert_eq(cache_mem_get(c, "e", 6, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "d", 6, &out, NULL), 1);
    cache_mem_free(c);
}

Test(cache_mem, replace_keeps_one_entry)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v1 = mkv(VERDICT_TEMPFAIL, 450, "try later");
    struct verdict v2 = mkv(VERDICT_INVALID, 550, "no such user"), out;
    time_t stored;

    cache_mem_put(c, "k", &v1, 10, 20);
    cache_mem_put(c, "k", &v2, 15, 500);
    cr_assert_eq(cache_mem_count(c), 1);
    cr_assert_eq(cache_mem_get(c, "k", 100, &out, &stored), 1, "new expiry applies");
    cr_assert_eq(out.kind, VERDICT_INVALID);
    cr_assert_str_eq(out.text, "no such user");
    cr_assert_eq(stored, 15);
    cache_mem_free(c);
}

Test(cache_mem, delete_and_clear)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;

    cache_mem_put(c, "a", &v, 0, 100);
    cache_mem_put(c, "b", &v, 0, 100);
    cache_mem_put(c, "c", &v, 0, 100);
    cr_assert_eq(cache_mem_del(c, "b"), 1);
    cr_assert_eq(cache_mem_del(c, "b"), 0);
    cr_assert_eq(cache_mem_del(c, "zzz"), 0);
    cr_assert_eq(cache_mem_count(c), 2);
    cr_assert_eq(cache_mem_get(c, "b", 1, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "a", 1, &out, NULL), 1);
    cache_mem_clear(c);
    cr_assert_eq(cache_mem_count(c), 0);
    cr_assert_eq(cache_mem_get(c, "a", 1, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "c", 1, &out, NULL), 0);
    /* usable after clear, LRU list rebuilt from scratch */
    cache_mem_put(c, "x", &v, 0, 100);
    cr_assert_eq(cache_mem_get(c, "x", 1, &out, NULL), 1);
    cr_assert_eq(cache_mem_count(c), 1);
    cache_mem_free(c);
}

Test(cache_mem, bound_holds_under_load)
{
    struct cache_mem *c = cache_mem_new(1000);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;
    char key[64];

    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "user%d@example.org", i);
        v.code = i;
        cache_mem_put(c, key, &v, 0, 1000);
        cr_assert_leq(cache_mem_count(c), 1000);
    }
    cr_assert_eq(cache_mem_count(c), 1000);
    /* exactly the last 1000 survive */
    for (int i = 99000; i < 100000; i++) {
        snprintf(key, sizeof(key), "user%d@example.org", i);
        cr_assert_eq(cache_mem_get(c, key, 1, &out, NULL), 1, "%s missing", key);
        cr_assert_eq(out.code, i);
    }
    snprintf(key, sizeof(key), "user%d@example.org", 98999);
    cr_assert_eq(cache_mem_get(c, key, 1, &out, NULL), 0);
    cache_mem_free(c);
}

Test(cache_mem, long_keys)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v = mkv(VERDICT_INVALID, 550, "x"), out;
    char a[700], b[700];

    memset(a, 'a', sizeof(a) - 1);
    a[sizeof(a) - 1] = 0;
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 2] = 'b'; /* differs only in the last byte */
    cache_mem_put(c, a, &v, 0, 100);
    cr_assert_eq(cache_mem_get(c, a, 1, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, b, 1, &out, NULL), 0);
    b[sizeof(b) - 2] = 0; /* a prefix of a */
    cr_assert_eq(cache_mem_get(c, b, 1, &out, NULL), 0);
    /* a 64 KiB key is no problem either */
    static char huge[65536];
    memset(huge, 'h', sizeof(huge) - 1);
    cache_mem_put(c, huge, &v, 0, 100);
    cr_assert_eq(cache_mem_get(c, huge, 1, &out, NULL), 1);
    cr_assert_eq(cache_mem_count(c), 2);
    cache_mem_free(c);
}

Test(cache_mem, hostile_bytes_in_keys)
{
    struct cache_mem *c = cache_mem_new(10);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;
    const char *keys[] = {"a\r\nb", "a\r\n", "\xff\xfe@\x01", " ", "*3\r\n$3\r\nSET"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        v.code = (int)i;
        cache_mem_put(c, keys[i], &v, 0, 100);
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        cr_assert_eq(cache_mem_get(c, keys[i], 1, &out, NULL), 1);
        cr_assert_eq(out.code, (int)i);
    }
    cache_mem_free(c);
}

/*
 * many keys per bucket: with 16 buckets and 4000 keys every chain holds
 * hundreds; lookups, deletes from the middle of chains and eviction must all
 * still find the right entry.
 */
Test(cache_mem, many_colliding_keys)
{
    struct cache_mem *c = cache_mem_new(4000);  /* 4096 buckets */
    struct cache_mem *small = cache_mem_new(8); /* 16 buckets: heavy chaining */
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;
    char key[64];

    for (int i = 0; i < 4000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        v.code = i;
        cache_mem_put(c, key, &v, 0, 100);
    }
    for (int i = 0; i < 4000; i += 2) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(cache_mem_del(c, key), 1);
    }
    for (int i = 0; i < 4000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int hit = cache_mem_get(c, key, 1, &out, NULL);
        cr_assert_eq(hit, i % 2, "k%d", i);
        if (hit)
            cr_assert_eq(out.code, i);
    }
    cr_assert_eq(cache_mem_count(c), 2000);

    /* 8 entries into 16 buckets while churning 10000 keys through them */
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        v.code = i;
        cache_mem_put(small, key, &v, 0, 100);
        if (i % 3 == 0) {
            snprintf(key, sizeof(key), "c%d", i - 1);
            cache_mem_del(small, key);
        }
    }
    cr_assert_leq(cache_mem_count(small), 8);
    snprintf(key, sizeof(key), "c%d", 9999);
    cr_assert_eq(cache_mem_get(small, key, 1, &out, NULL), 1);
    cr_assert_eq(out.code, 9999);
    cache_mem_free(c);
    cache_mem_free(small);
}

Test(cache_mem, bound_of_one)
{
    struct cache_mem *c = cache_mem_new(1);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;

    cache_mem_put(c, "a", &v, 0, 100);
    cache_mem_put(c, "b", &v, 0, 100);
    cr_assert_eq(cache_mem_count(c), 1);
    cr_assert_eq(cache_mem_get(c, "a", 1, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "b", 1, &out, NULL), 1);
    cache_mem_free(c);
    cache_mem_free(NULL); /* like free(3) */
}

/*
 * A reload's smaller bound evicts the least recently used entries at once; a
 * larger one keeps every entry findable (the table is rehashed) and lets the
 * cache hold more.
 */
Test(cache_mem, set_max_shrinks_and_grows)
{
    struct cache_mem *c = cache_mem_new(4);
    struct verdict v = mkv(VERDICT_VALID, 250, "ok"), out;
    char key[32];

    cr_assert_not_null(c);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "u%d@example.org", i);
        cache_mem_put(c, key, &v, 100, 1000);
    }
    cr_assert_eq(cache_mem_get(c, "u0@example.org", 100, &out, NULL), 1); /* u1 is now the LRU */
    cr_assert_eq(cache_mem_set_max(c, 2), 0);
    cr_assert_eq(cache_mem_count(c), 2);
    cr_assert_eq(cache_mem_get(c, "u1@example.org", 100, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "u2@example.org", 100, &out, NULL), 0);
    cr_assert_eq(cache_mem_get(c, "u0@example.org", 100, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, "u3@example.org", 100, &out, NULL), 1);

    cr_assert_eq(cache_mem_set_max(c, 1000), 0);
    for (int i = 4; i < 1000; i++) {
        snprintf(key, sizeof(key), "u%d@example.org", i);
        cache_mem_put(c, key, &v, 100, 1000);
    }
    cr_assert_eq(cache_mem_count(c), 998);
    cr_assert_eq(cache_mem_get(c, "u0@example.org", 100, &out, NULL), 1);
    cr_assert_eq(cache_mem_get(c, "u3@example.org", 100, &out, NULL), 1);
    for (int i = 4; i < 1000; i++) {
        snprintf(key, sizeof(key), "u%d@example.org", i);
        cr_assert_eq(cache_mem_get(c, key, 100, &out, NULL), 1, "%s lost", key);
    }
    cache_mem_free(c);
}
