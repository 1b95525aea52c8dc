/*
 * test_strhash.c - the intrusive hash table behind flights and destination
 * queues: insert, find among equal hashes, remove, growth, and seeding.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strhash.h"

struct item {
    struct strhash_node node;
    char key[32];
};

static struct item *find(struct strhash *h, const char *key)
{
    uint64_t hv = strhash_of(h, key, strlen(key), 0);

    for (struct strhash_node *n = strhash_first(h, hv); n != NULL; n = strhash_next(n, hv))
        if (strcmp(((struct item *)n)->key, key) == 0)
            return (struct item *)n;
    return NULL;
}

Test(strhash, insert_find_remove_and_grow)
{
    enum { N = 5000 };
    static struct item items[N];
    struct strhash h;

    cr_assert_eq(strhash_init(&h), 0);
    for (int i = 0; i < N; i++) {
        snprintf(items[i].key, sizeof(items[i].key), "user%d@example.test", i);
        strhash_insert(&h, &items[i].node, strhash_of(&h, items[i].key, strlen(items[i].key), 0));
    }
    cr_assert_eq(h.count, N);
    cr_assert(h.nbuckets >= N, "the table grew: %zu buckets", h.nbuckets);
    for (int i = 0; i < N; i++)
        cr_assert_eq(find(&h, items[i].key), &items[i], "%s", items[i].key);
    cr_assert_null(find(&h, "nobody@example.test"));
    for (int i = 0; i < N; i += 2)
        strhash_remove(&h, &items[i].node);
    cr_assert_eq(h.count, N / 2);
    for (int i = 0; i < N; i++)
        cr_assert_eq(find(&h, items[i].key), i % 2 ? &items[i] : NULL, "%s", items[i].key);
    strhash_free(&h);
}

Test(strhash, equal_hashes_are_told_apart_by_key)
{
    struct strhash h;
    struct item a = {.key = "a@x.test"}, b = {.key = "b@x.test"};

    cr_assert_eq(strhash_init(&h), 0);
    /* force a collision: both under one hash value */
    strhash_insert(&h, &a.node, 42);
    strhash_insert(&h, &b.node, 42);
    int seen = 0;
    for (struct strhash_node *n = strhash_first(&h, 42); n != NULL; n = strhash_next(n, 42))
        seen++;
    cr_assert_eq(seen, 2);
    strhash_remove(&h, &a.node);
    cr_assert_eq(strhash_first(&h, 42), &b.node);
    strhash_free(&h);
}

Test(strhash, seeded_per_table_and_salted)
{
    struct strhash h1, h2;

    cr_assert_eq(strhash_init(&h1), 0);
    cr_assert_eq(strhash_init(&h2), 0);
    cr_assert_neq(strhash_of(&h1, "k", 1, 0), strhash_of(&h2, "k", 1, 0),
                  "two tables share a seed: colliding keys could be precomputed");
    cr_assert_neq(strhash_of(&h1, "k", 1, 1), strhash_of(&h1, "k", 1, 2), "salt ignored");
    cr_assert_eq(strhash_of(&h1, "k", 1, 7), strhash_of(&h1, "k", 1, 7));
    strhash_free(&h1);
    strhash_free(&h2);
}
