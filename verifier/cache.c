/*
 * cache.c - the verdict cache: in-process L1 in front of optional Redis
 * (see cache.h).
 *
 * L1 answers at once. Redis is asked only when it is connected right now:
 * a down or stalled Redis must cost a lookup nothing but a miss, because the
 * caller can always ask the backend instead. Writes to Redis are fire and
 * forget; a lost write only means one more backend lookup later. Values read
 * back from Redis are untrusted (anyone with access may write them) and go
 * through verdict_parse(); a value that does not parse is a miss.
 */
#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

#include "cache_mem.h"
#include "log.h"

#define CACHE_KEY_MAX 1024   /* "<prefix>rcpt:<address>"; longer addresses are not cached */
#define CACHE_VALUE_MAX 512  /* verdict_format() output: kind code time source text */
#define CACHE_PREFIX_MAX 128 /* bound on key_prefix */

/*
 * A store is where verdicts are shared: the key prefix and the Redis
 * connection. A reload that changes a redis_* parameter builds a new one
 * and swaps it in (cache_swap_store) while the L1 stays. The old one stays
 * usable while a probe lock taken on it is held, because the lock must be
 * released on the server and under the key it was taken with; then its
 * connection is retired (commands in flight finish, then it closes) and
 * the store freed when the connection is gone.
 */
struct cache_store {
    int refs; /* the cache while current, plus one per lock token taken on it */
    char prefix[CACHE_PREFIX_MAX];
    struct cache_redis *redis; /* NULL without Redis */
    struct cache *c;           /* set once swapped in */
    struct cache_store *next;  /* on c->old: no longer current, not yet gone */
};

struct cache {
    struct event_base *base;
    struct cache_config cfg; /* key_prefix points at store->prefix */
    struct cache_store *store;
    struct cache_store *old; /* replaced stores still held or draining */
    struct cache_mem *l1;
    struct cache_req *pending; /* gets waiting for Redis */
    int corrupt_logged;        /* a bad value in Redis was logged once */
    struct cache_stats stats;
};

struct cache_req {
    struct cache *c;
    cache_get_cb cb;
    void *arg;
    struct cache_redis_req *rreq;
    struct cache_req *prev, *next; /* c->pending */
    char *addrkey;                 /* the L1 key, for the L1 fill on a Redis hit */
    int ttl;                       /* TTL of this namespace's entries, 0 = by verdict kind */
    cache_lock_cb lock_cb;         /* set for a lock request instead of cb */
    struct cache_lock_token *tok;  /* a lock request's token */
};

/* cache_ttl_of - the configured TTL for a kind (0 for a kind out of range) */
static int cache_ttl_of(const struct cache *c, enum verdict_kind kind)
{
    if ((int)kind < 0 || (int)kind >= VERDICT_KIND_COUNT)
        return 0;
    return c->cfg.ttl[kind] > 0 ? c->cfg.ttl[kind] : 0;
}

/* cache_is_stale - the verdict is older than its kind's refresh time */
static int cache_is_stale(const struct cache *c, const struct verdict *v, time_t now)
{
    int refresh;

    if ((int)v->kind < 0 || (int)v->kind >= VERDICT_KIND_COUNT)
        return 0;
    refresh = c->cfg.refresh[v->kind];
    return refresh > 0 && now - v->when >= (time_t)refresh;
}

struct cache_store *cache_store_new(struct event_base *base, const struct cache_config *cfg,
                                    char *err, size_t errlen)
{
    struct cache_store *s;
    const char *prefix = cfg->key_prefix ? cfg->key_prefix : "callahead:";

    if (strlen(prefix) >= CACHE_PREFIX_MAX) {
        snprintf(err, errlen, "cache: key prefix longer than %d bytes", CACHE_PREFIX_MAX - 1);
        return NULL;
    }
    if (cfg->use_redis && base == NULL) {
        snprintf(err, errlen, "cache: Redis needs an event base");
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        snprintf(err, errlen, "cache: out of memory");
        return NULL;
    }
    s->refs = 1;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    if (cfg->use_redis && (s->redis = cache_redis_new(base, &cfg->redis, err, errlen)) == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void cache_store_free(struct cache_store *s)
{
    if (s == NULL)
        return;
    cache_redis_free(s->redis);
    free(s);
}

/* store_key - "<prefix><kind>:<name>" of store s into buf; length or -1 if too small */
static int store_key(const struct cache_store *s, const char *kind, const char *name, char *buf,
                     size_t size)
{
    int n;

    if (buf == NULL || size == 0 || kind == NULL || name == NULL)
        return -1;
    n = snprintf(buf, size, "%s%s:%s", s->prefix, kind, name);
    if (n < 0 || (size_t)n >= size)
        return -1;
    return n;
}

/* store_unlink - take s off c->old */
static void store_unlink(struct cache *c, struct cache_store *s)
{
    for (struct cache_store **pp = &c->old; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

/* store_gone - a retired store's connection has drained and closed */
static void store_gone(void *arg)
{
    struct cache_store *s = arg;

    s->redis = NULL; /* freed by cache_redis.c */
    store_unlink(s->c, s);
    free(s);
}

/*
 * store_unref - one holder fewer. The last one of a replaced store retires
 * its connection; the store is freed when that is gone.
 */
static void store_unref(struct cache_store *s)
{
    if (--s->refs > 0 || s->c->store == s)
        return;
    if (s->redis == NULL || cache_redis_retire(s->redis, store_gone, s)) {
        s->redis = NULL;
        store_unlink(s->c, s);
        free(s);
    }
}

void cache_swap_store(struct cache *c, struct cache_store *s)
{
    struct cache_store *old = c->store;

    s->c = c;
    c->store = s;
    c->cfg.key_prefix = s->prefix;
    c->cfg.use_redis = s->redis != NULL;
    c->corrupt_logged = 0;
    old->next = c->old;
    c->old = old;
    store_unref(old);
}

struct cache *cache_new(struct event_base *base, const struct cache_config *cfg, char *err,
                        size_t errlen)
{
    struct cache *c;

    if (cfg->l1_max_entries < 1) {
        snprintf(err, errlen, "cache: l1_max_entries must be at least 1");
        return NULL;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        snprintf(err, errlen, "cache: out of memory");
        return NULL;
    }
    c->base = base;
    c->cfg = *cfg;
    /* the redis config strings are only needed by cache_redis_new, which copies them */
    c->cfg.redis.host = NULL;
    c->cfg.redis.unix_path = NULL;
    c->cfg.redis.sentinels = NULL;
    c->cfg.redis.master_name = NULL;
    c->cfg.redis.password = NULL;
    if ((c->l1 = cache_mem_new(cfg->l1_max_entries)) == NULL) {
        snprintf(err, errlen, "cache: out of memory");
        free(c);
        return NULL;
    }
    if ((c->store = cache_store_new(base, cfg, err, errlen)) == NULL) {
        cache_mem_free(c->l1);
        free(c);
        return NULL;
    }
    c->store->c = c;
    c->cfg.key_prefix = c->store->prefix;
    return c;
}

/* cache_req_unlink - take req off c->pending */
static void cache_req_unlink(struct cache *c, struct cache_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (c->pending == req)
        c->pending = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

/* cache_req_free - free a get request (its Redis side must be finished or cancelled) */
static void cache_req_free(struct cache_req *req)
{
    free(req->addrkey);
    free(req);
}

void cache_set_ttls(struct cache *c, const struct cache_config *cfg)
{
    if (c == NULL || cfg == NULL)
        return;
    for (int k = 0; k < VERDICT_KIND_COUNT; k++) {
        c->cfg.ttl[k] = cfg->ttl[k];
        c->cfg.refresh[k] = cfg->refresh[k];
    }
    c->cfg.l1_ttl = cfg->l1_ttl;
}

int cache_set_l1_size(struct cache *c, size_t l1_max_entries, char *err, size_t errlen)
{
    if (c == NULL || l1_max_entries == c->cfg.l1_max_entries)
        return 0;
    if (cache_mem_set_max(c->l1, l1_max_entries) < 0) {
        snprintf(err, errlen, "cache: no memory for an in-process cache of %zu entries",
                 l1_max_entries);
        return -1;
    }
    c->cfg.l1_max_entries = l1_max_entries;
    return 0;
}

void cache_free(struct cache *c)
{
    struct cache_req *req, *next;

    if (c == NULL)
        return;
    /* cache_redis_free drops pending commands without callbacks: free their requests here */
    cache_store_free(c->store);
    while (c->old != NULL) {
        struct cache_store *s = c->old;
        c->old = s->next;
        cache_store_free(s);
    }
    for (req = c->pending; req; req = next) {
        next = req->next;
        cache_req_free(req);
    }
    cache_mem_free(c->l1);
    free(c);
}

/*
 * cache_l1_key - the L1 key of (ns, name): an address as it is for "rcpt",
 * "<ns>:<name>" (in buf) otherwise; an address always has an '@', a domain
 * fact's name never does, so the two cannot collide. NULL if it does not fit.
 */
static const char *cache_l1_key(const char *ns, const char *name, char *buf, size_t size)
{
    if (strcmp(ns, "rcpt") == 0)
        return name;
    int n = snprintf(buf, size, "%s:%s", ns, name);
    return n < 0 || (size_t)n >= size ? NULL : buf;
}

/*
 * cache_got - the GET reply. Every outcome but a well-formed value is a
 * miss: the caller then asks the backend, which is always correct.
 */
static void cache_got(int status, const char *val, size_t len, void *arg)
{
    struct cache_req *req = arg;
    struct cache *c = req->c;
    cache_get_cb cb = req->cb;
    void *cbarg = req->arg;
    struct verdict v;
    int found = 0, stale = 0;
    time_t now = time(NULL);

    cache_req_unlink(c, req);
    if (status == 1) {
        if (verdict_parse(val, len, &v) == 0) {
            found = 1;
            stale = cache_is_stale(c, &v, now);
            /* keep it near: the L1 lifetime, but never past the kind's own TTL */
            int l1 = c->cfg.l1_ttl;
            int ttl = req->ttl > 0 ? req->ttl : cache_ttl_of(c, v.kind);
            if (ttl > 0 && ttl < l1)
                l1 = ttl;
            if (l1 > 0)
                cache_mem_put(c->l1, req->addrkey, &v, now, now + l1);
        } else if (!c->corrupt_logged) {
            char shown[80], who[160];
            verdict_sanitize(shown, sizeof(shown), val, len < 70 ? len : 70);
            verdict_sanitize(who, sizeof(who), req->addrkey, strlen(req->addrkey));
            log_warn("cache: unreadable value in Redis under %srcpt:%s (\"%s\"), treated as a "
                     "miss; further ones are not logged",
                     c->store->prefix, who, shown);
            c->corrupt_logged = 1;
        }
    } else if (status == -1) {
        log_debug("cache: redis get failed: %.*s", (int)(len < 200 ? len : 200), val ? val : "");
    }
    if (found)
        c->stats.redis_hits++;
    else
        c->stats.misses++;
    cache_req_free(req);
    cb(found, found ? &v : NULL, stale, cbarg);
}

enum cache_status cache_get(struct cache *c, const char *addrkey, struct verdict *out, int *stale,
                            cache_get_cb cb, void *arg, struct cache_req **reqp)
{
    return cache_get_ns(c, "rcpt", addrkey, 0, out, stale, cb, arg, reqp);
}

enum cache_status cache_get_ns(struct cache *c, const char *ns, const char *name, int ttl,
                               struct verdict *out, int *stale, cache_get_cb cb, void *arg,
                               struct cache_req **reqp)
{
    char key[CACHE_KEY_MAX], l1buf[CACHE_KEY_MAX];
    struct verdict v;
    time_t now = time(NULL);
    struct cache_req *req;
    int keylen;
    const char *addrkey = cache_l1_key(ns, name, l1buf, sizeof(l1buf));

    if (reqp)
        *reqp = NULL;
    if (addrkey == NULL)
        goto miss;
    if (cache_mem_get(c->l1, addrkey, now, &v, NULL)) {
        c->stats.l1_hits++;
        if (out)
            *out = v;
        if (stale)
            *stale = cache_is_stale(c, &v, now);
        return CACHE_HIT;
    }
    if (cb == NULL || !cache_redis_connected(c->store->redis) ||
        (keylen = cache_key(c, ns, name, key, sizeof(key))) < 0)
        goto miss;
    if ((req = calloc(1, sizeof(*req))) == NULL || (req->addrkey = strdup(addrkey)) == NULL) {
        free(req);
        goto miss;
    }
    req->ttl = ttl;
    req->c = c;
    req->cb = cb;
    req->arg = arg;
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, (size_t)keylen};
    if ((req->rreq = cache_redis_command(c->store->redis, 2, argv, argvlen, cache_got, req)) ==
        NULL) {
        cache_req_free(req);
        goto miss;
    }
    req->next = c->pending;
    if (c->pending)
        c->pending->prev = req;
    c->pending = req;
    if (reqp)
        *reqp = req;
    return CACHE_PENDING;

miss:
    c->stats.misses++;
    return CACHE_MISS;
}

void cache_cancel(struct cache_req *req)
{
    if (req == NULL)
        return;
    cache_redis_cancel(req->rreq);
    cache_req_unlink(req->c, req);
    cache_req_free(req);
}

void cache_put(struct cache *c, const char *addrkey, const struct verdict *v)
{
    cache_put_ns(c, "rcpt", addrkey, v, cache_ttl_of(c, v->kind));
}

void cache_put_ns(struct cache *c, const char *ns, const char *name, const struct verdict *v,
                  int ttl)
{
    char key[CACHE_KEY_MAX], val[CACHE_VALUE_MAX], ttlbuf[24], l1buf[CACHE_KEY_MAX];
    time_t now = time(NULL);
    int l1, keylen, vallen, ttllen;
    const char *addrkey = cache_l1_key(ns, name, l1buf, sizeof(l1buf));

    if (ttl <= 0 || addrkey == NULL)
        return;
    l1 = ttl;
    if (c->store->redis && c->cfg.l1_ttl < ttl)
        l1 = c->cfg.l1_ttl;
    if (l1 > 0)
        cache_mem_put(c->l1, addrkey, v, now, now + l1);
    else
        cache_mem_del(c->l1, addrkey); /* never leave an older verdict behind */
    c->stats.puts++;

    if (!cache_redis_connected(c->store->redis))
        return;
    if ((keylen = cache_key(c, ns, name, key, sizeof(key))) < 0)
        return;
    if ((vallen = verdict_format(v, val, sizeof(val))) < 0)
        return;
    ttllen = snprintf(ttlbuf, sizeof(ttlbuf), "%d", ttl);
    const char *argv[5] = {"SET", key, val, "EX", ttlbuf};
    size_t argvlen[5] = {3, (size_t)keylen, (size_t)vallen, 2, (size_t)ttllen};
    (void)cache_redis_command(c->store->redis, 5, argv, argvlen, NULL, NULL);
}

void cache_put_if_changed(struct cache *c, const char *addrkey, const struct verdict *v)
{
    struct verdict old;

    if (cache_mem_get(c->l1, addrkey, time(NULL), &old, NULL) && old.kind == v->kind &&
        old.code == v->code)
        return;
    cache_put(c, addrkey, v);
}

int cache_key(const struct cache *c, const char *kind, const char *name, char *buf, size_t size)
{
    return store_key(c->store, kind, name, buf, size);
}

/* cache_locked - the SET NX reply: "OK" means ours; nil means someone else's */
static void cache_locked(int status, const char *val, size_t len, void *arg)
{
    struct cache_req *req = arg;
    cache_lock_cb cb = req->lock_cb;
    void *cbarg = req->arg;
    struct cache_lock_token *tok = req->tok;

    cache_req_unlink(req->c, req);
    cache_req_free(req);
    if (status == 0 && tok->store != NULL) {
        /* another host's lock: there is nothing of ours to release */
        store_unref(tok->store);
        tok->store = NULL;
        tok->len = 0;
    }
    /* an error counts as acquired: probing twice is better than never probing */
    cb(status != 0, cbarg);
}

/* cache_lock_token_new - random bytes, host and pid (see struct cache_lock_token) */
static void cache_lock_token_new(struct cache_lock_token *tok)
{
    unsigned char rnd[16];
    char host[64];
    size_t n = 0;

    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        arc4random_buf(rnd, sizeof(rnd)); /* early boot: the kernel pool is not ready yet */
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += (size_t)snprintf(tok->s + n, sizeof(tok->s) - n, "%02x", rnd[i]);
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';
    /* the host name only informs a human: keep the token one printable word each */
    for (char *p = host; *p != '\0'; p++)
        if (*p <= ' ' || *p > '~')
            *p = '?';
    int m = snprintf(tok->s + n, sizeof(tok->s) - n, " %s pid %ld", host, (long)getpid());
    tok->len = m > 0 && (size_t)m < sizeof(tok->s) - n ? n + (size_t)m : strlen(tok->s);
}

int cache_lock(struct cache *c, const char *name, int px_ms, struct cache_lock_token *tok,
               cache_lock_cb cb, void *arg, struct cache_req **reqp)
{
    char key[CACHE_KEY_MAX], pxbuf[24];
    struct cache_req *req;
    struct cache_redis *r = c->store->redis;
    int keylen;

    *reqp = NULL;
    cache_unlock(c, name, tok); /* a lock still held by this token is given up first */
    if (!cache_redis_connected(r) || (keylen = cache_key(c, "lock", name, key, sizeof(key))) < 0 ||
        (req = calloc(1, sizeof(*req))) == NULL)
        return 1;
    req->c = c;
    req->lock_cb = cb;
    req->arg = arg;
    req->tok = tok;
    int pxlen = snprintf(pxbuf, sizeof(pxbuf), "%d", px_ms > 0 ? px_ms : 1);
    cache_lock_token_new(tok);
    const char *argv[6] = {"SET", key, tok->s, "NX", "PX", pxbuf};
    size_t argvlen[6] = {3, (size_t)keylen, tok->len, 2, 2, (size_t)pxlen};
    if ((req->rreq = cache_redis_command(r, 6, argv, argvlen, cache_locked, req)) == NULL) {
        cache_req_free(req);
        tok->len = 0;
        return 1;
    }
    /* the release goes where the lock went, even after a reload moved the cache */
    tok->store = c->store;
    tok->store->refs++;
    req->next = c->pending;
    if (c->pending)
        c->pending->prev = req;
    c->pending = req;
    *reqp = req;
    return 0;
}

/* compare-and-delete: a lock is deleted only by the holder of its token */
static const char cache_unlock_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

void cache_unlock(struct cache *c, const char *name, struct cache_lock_token *tok)
{
    char key[CACHE_KEY_MAX];
    struct cache_store *s = tok->store;
    int keylen;

    (void)c;
    tok->store = NULL;
    if (tok->len == 0 || s == NULL) {
        tok->len = 0;
        return;
    }
    /* the key under the prefix the lock was taken with, on the server it was taken on */
    keylen = store_key(s, "lock", name, key, sizeof(key));
    if (keylen >= 0 && cache_redis_connected(s->redis)) {
        const char *argv[5] = {"EVAL", cache_unlock_script, "1", key, tok->s};
        size_t argvlen[5] = {4, sizeof(cache_unlock_script) - 1, 1, (size_t)keylen, tok->len};
        (void)cache_redis_command(s->redis, 5, argv, argvlen, NULL, NULL);
    }
    tok->len = 0;
    store_unref(s);
}

struct cache_mem *cache_l1_handle(struct cache *c)
{
    return c->l1;
}

struct cache_redis *cache_store_redis(struct cache_store *s)
{
    return s->redis;
}

struct cache_redis *cache_redis_handle(struct cache *c)
{
    return c->store->redis;
}

void cache_get_stats(const struct cache *c, struct cache_stats *out)
{
    *out = c->stats;
    out->l1_entries = cache_mem_count(c->l1);
}
