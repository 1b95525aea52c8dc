/*
 * cache_mem.c - the bounded in-process verdict cache (L1), see cache_mem.h.
 *
 * A chained hash table keyed by a seeded SipHash-2-4 (the keys are recipient
 * addresses chosen by whoever talks SMTP to us, so an unseeded hash would let
 * a sender pile every key into one chain), plus a doubly linked LRU list.
 * get/put/del are O(1): the table has at least as many buckets as the cache
 * has entries, and eviction takes the LRU tail. Each entry owns a copy of its
 * key. Expired entries are dropped when they are met on access (or pushed
 * out of the LRU), so no timer is needed.
 */
#include "cache_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct cache_mem_entry {
    struct cache_mem_entry *hnext;               /* hash chain */
    struct cache_mem_entry *lru_prev, *lru_next; /* prev: towards the most recently used */
    uint64_t hash;
    time_t stored;
    time_t expires;
    struct verdict v;
    size_t keylen;
    char key[]; /* keylen bytes + NUL */
};

struct cache_mem {
    struct cache_mem_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t max_entries;
    struct cache_mem_entry *lru_head; /* most recently used */
    struct cache_mem_entry *lru_tail; /* next to evict */
    uint64_t seed[2];
};

/* SipHash-2-4 (Aumasson, Bernstein): a keyed hash, so chains cannot be forced */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* load_le64 - 8 bytes little-endian, whatever the host order and alignment */
static uint64_t load_le64(const unsigned char *p)
{
    uint64_t x = 0;

    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* siphash - SipHash-2-4 of len bytes at in under the 128-bit key k0,k1 */
static uint64_t siphash(const void *in, size_t len, uint64_t k0, uint64_t k1)
{
    const unsigned char *p = in;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = ((uint64_t)len) << 56;
    size_t left = len & 7;
    const unsigned char *end = p + (len - left);

    for (; p != end; p += 8) {
        uint64_t m = load_le64(p);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < left; i++)
        b |= ((uint64_t)p[i]) << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* cache_mem_seed - a random hash key; falls back to weaker entropy rather than failing */
static void cache_mem_seed(uint64_t seed[2])
{
    if (getrandom(seed, 2 * sizeof(seed[0]), GRND_NONBLOCK) == (ssize_t)(2 * sizeof(seed[0])))
        return;
    /* XXX: no getrandom (old kernel, early boot): mix what varies per process */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed[0] = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    seed[1] = (uint64_t)(uintptr_t)seed ^ ((uint64_t)ts.tv_nsec << 17) ^ 0x9e3779b97f4a7c15ULL;
}

struct cache_mem *cache_mem_new(size_t max_entries)
{
    struct cache_mem *c;
    size_t n = 16;

    if (max_entries < 1)
        max_entries = 1;
    /* at least one bucket per entry keeps chains short; stop before overflow */
    while (n < max_entries && n < ((size_t)1 << (sizeof(size_t) * 8 - 2)))
        n <<= 1;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    if ((c->buckets = calloc(n, sizeof(*c->buckets))) == NULL) {
        free(c);
        return NULL;
    }
    c->nbuckets = n;
    c->max_entries = max_entries;
    cache_mem_seed(c->seed);
    return c;
}

/* lru_unlink - take e out of the LRU list */
static void lru_unlink(struct cache_mem *c, struct cache_mem_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

/* lru_push_front - make e the most recently used */
static void lru_push_front(struct cache_mem *c, struct cache_mem_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL)
        c->lru_tail = e;
}

/* cache_mem_find - the entry for key, and the link that points to it (for unlinking) */
static struct cache_mem_entry *cache_mem_find(const struct cache_mem *c, const char *key,
                                              size_t keylen, uint64_t hash,
                                              struct cache_mem_entry ***linkp)
{
    struct cache_mem_entry **link = &c->buckets[hash & (c->nbuckets - 1)];

    for (; *link; link = &(*link)->hnext) {
        struct cache_mem_entry *e = *link;
        if (e->hash == hash && e->keylen == keylen && memcmp(e->key, key, keylen) == 0) {
            if (linkp)
                *linkp = link;
            return e;
        }
    }
    return NULL;
}

/* cache_mem_remove - unlink e from its chain (via link) and the LRU, and free it */
static void cache_mem_remove(struct cache_mem *c, struct cache_mem_entry **link,
                             struct cache_mem_entry *e)
{
    *link = e->hnext;
    lru_unlink(c, e);
    c->count--;
    free(e);
}

/* cache_mem_evict - drop the least recently used entry */
static void cache_mem_evict(struct cache_mem *c)
{
    struct cache_mem_entry *e = c->lru_tail;
    struct cache_mem_entry **link;

    if (e == NULL)
        return;
    for (link = &c->buckets[e->hash & (c->nbuckets - 1)]; *link != e; link = &(*link)->hnext)
        ;
    cache_mem_remove(c, link, e);
}

int cache_mem_set_max(struct cache_mem *c, size_t max_entries)
{
    size_t n = c->nbuckets;

    if (max_entries < 1)
        max_entries = 1;
    while (n < max_entries && n < ((size_t)1 << (sizeof(size_t) * 8 - 2)))
        n <<= 1;
    if (n != c->nbuckets) {
        /* rehash every entry into the larger table; the LRU order is untouched */
        struct cache_mem_entry **nb = calloc(n, sizeof(*nb));
        if (nb == NULL)
            return -1;
        for (size_t i = 0; i < c->nbuckets; i++) {
            struct cache_mem_entry *e = c->buckets[i], *next;
            for (; e; e = next) {
                next = e->hnext;
                e->hnext = nb[e->hash & (n - 1)];
                nb[e->hash & (n - 1)] = e;
            }
        }
        free(c->buckets);
        c->buckets = nb;
        c->nbuckets = n;
    }
    c->max_entries = max_entries;
    while (c->count > c->max_entries)
        cache_mem_evict(c);
    return 0;
}

int cache_mem_get(struct cache_mem *c, const char *key, time_t now, struct verdict *out,
                  time_t *stored)
{
    size_t keylen = strlen(key);
    uint64_t hash = siphash(key, keylen, c->seed[0], c->seed[1]);
    struct cache_mem_entry **link;
    struct cache_mem_entry *e = cache_mem_find(c, key, keylen, hash, &link);

    if (e == NULL)
        return 0;
    if (now >= e->expires) {
        cache_mem_remove(c, link, e);
        return 0;
    }
    lru_unlink(c, e);
    lru_push_front(c, e);
    if (out)
        *out = e->v;
    if (stored)
        *stored = e->stored;
    return 1;
}

void cache_mem_put(struct cache_mem *c, const char *key, const struct verdict *v, time_t now,
                   time_t expires)
{
    size_t keylen = strlen(key);
    uint64_t hash = siphash(key, keylen, c->seed[0], c->seed[1]);
    struct cache_mem_entry **link;
    struct cache_mem_entry *e = cache_mem_find(c, key, keylen, hash, &link);

    /* already dead on arrival: just make sure no older value outlives it */
    if (expires <= now) {
        if (e)
            cache_mem_remove(c, link, e);
        return;
    }
    if (e == NULL) {
        if (c->count >= c->max_entries)
            cache_mem_evict(c);
        if ((e = malloc(sizeof(*e) + keylen + 1)) == NULL)
            return; /* a cache may forget: the caller asks the backend next time */
        memcpy(e->key, key, keylen + 1);
        e->keylen = keylen;
        e->hash = hash;
        struct cache_mem_entry **head = &c->buckets[hash & (c->nbuckets - 1)];
        e->hnext = *head;
        *head = e;
        e->lru_prev = e->lru_next = NULL;
        c->count++;
    } else {
        lru_unlink(c, e);
    }
    lru_push_front(c, e);
    e->v = *v;
    e->stored = now;
    e->expires = expires;
}

int cache_mem_del(struct cache_mem *c, const char *key)
{
    size_t keylen = strlen(key);
    uint64_t hash = siphash(key, keylen, c->seed[0], c->seed[1]);
    struct cache_mem_entry **link;
    struct cache_mem_entry *e = cache_mem_find(c, key, keylen, hash, &link);

    if (e == NULL)
        return 0;
    cache_mem_remove(c, link, e);
    return 1;
}

int cache_mem_peek(const struct cache_mem *c, const char *key, time_t now, struct verdict *out,
                   time_t *stored, time_t *expires)
{
    size_t keylen = strlen(key);
    uint64_t hash = siphash(key, keylen, c->seed[0], c->seed[1]);
    struct cache_mem_entry **link;
    struct cache_mem_entry *e = cache_mem_find(c, key, keylen, hash, &link);

    if (e == NULL || now >= e->expires)
        return 0;
    *out = e->v;
    *stored = e->stored;
    *expires = e->expires;
    return 1;
}

size_t cache_mem_del_matching(struct cache_mem *c, cache_mem_match_fn match, void *arg)
{
    struct cache_mem_entry *e, *next;
    size_t dropped = 0;

    for (e = c->lru_head; e; e = next) {
        next = e->lru_next;
        if (!match(e->key, &e->v, arg))
            continue;
        struct cache_mem_entry **link = &c->buckets[e->hash & (c->nbuckets - 1)];
        while (*link != e)
            link = &(*link)->hnext;
        cache_mem_remove(c, link, e);
        dropped++;
    }
    return dropped;
}

void cache_mem_clear(struct cache_mem *c)
{
    struct cache_mem_entry *e, *next;

    for (e = c->lru_head; e; e = next) {
        next = e->lru_next;
        free(e);
    }
    memset(c->buckets, 0, c->nbuckets * sizeof(*c->buckets));
    c->lru_head = c->lru_tail = NULL;
    c->count = 0;
}

size_t cache_mem_count(const struct cache_mem *c)
{
    return c->count;
}

void cache_mem_free(struct cache_mem *c)
{
    if (c == NULL)
        return;
    cache_mem_clear(c);
    free(c->buckets);
    free(c);
}
