/*
 * strhash.h - a small intrusive chained hash table keyed by bytes.
 *
 * The flight table (one entry per address being verified) and the
 * destination queues are looked up on every request, and their keys come
 * from the network: a linear scan or an unseeded hash lets a sender who
 * picks the addresses make each lookup cost O(n). Entries embed a struct
 * strhash_node; the table only links them. The hash is seeded per table
 * with random bytes, and the table doubles its buckets as it fills.
 */
#ifndef CALLAHEAD_STRHASH_H
#define CALLAHEAD_STRHASH_H

#include <stddef.h>
#include <stdint.h>

struct strhash_node {
    struct strhash_node *next;
    uint64_t hash;
};

struct strhash {
    struct strhash_node **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    uint64_t seed;
};

/* strhash_init - an empty table; 0, or -1 when out of memory */
int strhash_init(struct strhash *h);

/* strhash_free - free the buckets (not the entries, which the caller owns) */
void strhash_free(struct strhash *h);

/* strhash_of - the seeded hash of len bytes of key, extended by the integer salt */
uint64_t strhash_of(const struct strhash *h, const void *key, size_t len, uintptr_t salt);

/* strhash_insert - link n under hash (from strhash_of); grows the table when it can */
void strhash_insert(struct strhash *h, struct strhash_node *n, uint64_t hash);

/* strhash_remove - unlink n, which must be in h */
void strhash_remove(struct strhash *h, struct strhash_node *n);

/*
 * strhash_first / strhash_next - the entries whose hash equals hash (the
 * caller compares its keys: different keys may share a hash).
 */
struct strhash_node *strhash_first(const struct strhash *h, uint64_t hash);
struct strhash_node *strhash_next(const struct strhash_node *n, uint64_t hash);

#endif
