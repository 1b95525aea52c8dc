/*
 * strhash.c - a small intrusive chained hash table (see strhash.h).
 *
 * FNV-1a over a random 64-bit seed, with a final mix so that the low bits
 * used for the bucket depend on every input byte. Not a cryptographic hash:
 * the random seed is there so that nobody can precompute colliding
 * addresses, and the chains are short because the table doubles at a load
 * factor of 1.
 */
#include "strhash.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define STRHASH_MIN_BUCKETS 64

int strhash_init(struct strhash *h)
{
    memset(h, 0, sizeof(*h));
    if (getrandom(&h->seed, sizeof(h->seed), GRND_NONBLOCK) != (ssize_t)sizeof(h->seed))
        h->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)h;
    h->buckets = calloc(STRHASH_MIN_BUCKETS, sizeof(*h->buckets));
    if (h->buckets == NULL)
        return -1;
    h->nbuckets = STRHASH_MIN_BUCKETS;
    return 0;
}

void strhash_free(struct strhash *h)
{
    free(h->buckets);
    h->buckets = NULL;
    h->nbuckets = h->count = 0;
}

uint64_t strhash_of(const struct strhash *h, const void *key, size_t len, uintptr_t salt)
{
    const unsigned char *p = key;
    uint64_t x = 14695981039346656037ULL ^ h->seed;

    for (size_t i = 0; i < len; i++) {
        x ^= p[i];
        x *= 1099511628211ULL;
    }
    x ^= (uint64_t)salt;
    x *= 1099511628211ULL;
    /* final avalanche (from MurmurHash3's fmix64) */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* strhash_grow - double the buckets; on ENOMEM keep the longer chains */
static void strhash_grow(struct strhash *h)
{
    size_t nb = h->nbuckets * 2;
    struct strhash_node **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        struct strhash_node *n = h->buckets[i], *next;
        for (; n != NULL; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = nb;
}

void strhash_insert(struct strhash *h, struct strhash_node *n, uint64_t hash)
{
    if (h->count >= h->nbuckets)
        strhash_grow(h);
    n->hash = hash;
    n->next = h->buckets[hash & (h->nbuckets - 1)];
    h->buckets[hash & (h->nbuckets - 1)] = n;
    h->count++;
}

void strhash_remove(struct strhash *h, struct strhash_node *n)
{
    struct strhash_node **pp = &h->buckets[n->hash & (h->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            h->count--;
            return;
        }
    }
}

struct strhash_node *strhash_first(const struct strhash *h, uint64_t hash)
{
    struct strhash_node *n = h->buckets[hash & (h->nbuckets - 1)];

    while (n != NULL && n->hash != hash)
        n = n->next;
    return n;
}

struct strhash_node *strhash_next(const struct strhash_node *n, uint64_t hash)
{
    for (n = n->next; n != NULL && n->hash != hash; n = n->next)
        ;
    return (struct strhash_node *)n;
}
