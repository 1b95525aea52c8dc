/*
 * harvest.c - the per-client harvest limit (see harvest.h): a bounded
 * table of networks with their invalid-recipient count in the current
 * fixed window and the end of their penalty, plus the Redis counters and
 * the channel message that share them between hosts.
 */
#include "harvest.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cache.h"
#include "cache_flush.h"
#include "cache_redis.h"
#include "config.h"
#include "log.h"
#include "netlist.h"
#include "reply_action.h"
#include "policy_proto.h"

#define HARVEST_BUCKETS 8192 /* power of two */
#define HARVEST_NET_MAX 64   /* "ffff:...:ffff/128" */
#define HARVEST_MAX_PENALTY (31 * 24 * 3600)

struct net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

struct entry {
    char net[HARVEST_NET_MAX];
    long count;                /* invalid recipients in window */
    time_t window;             /* start of the window counted */
    time_t until;              /* end of the penalty; 0 none */
    struct entry *hnext;       /* bucket chain */
    struct entry *prev, *next; /* LRU: head most recent */
};

struct harvest {
    struct event_base *base;
    struct cache *cache;
    int max_invalid, window, penalty, v4_bits, v6_bits, exempt_auth;
    struct netlist exempt; /* harvest_exempt_networks */
    struct entry *buckets[HARVEST_BUCKETS];
    struct entry *head, *tail;
    size_t count;
    uint32_t seed;
    struct incr_req *pending; /* INCRs awaiting their reply */
    struct harvest_stats stats;
};

/* a pending INCR: the network and the window it counted */
struct incr_req {
    struct harvest *h;
    char net[HARVEST_NET_MAX];
    time_t window;
    struct cache_redis_req *rreq;
    struct incr_req *prev, *next; /* h->pending */
};

static void incr_unlink(struct incr_req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        q->h->pending = q->next;
    if (q->next)
        q->next->prev = q->prev;
}

/* net_parse - "ADDR" or "ADDR/BITS" (IPv4 or IPv6) */
static int net_parse(const char *s, size_t len, struct net *out)
{
    char buf[HARVEST_NET_MAX];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > out->bits)
            return -1;
        out->bits = (int)b;
    }
    return 0;
}

/* net_mask - clear the host bits of a */
static void net_mask(struct net *a)
{
    int bytes = a->family == AF_INET ? 4 : 16;

    for (int i = 0; i < bytes; i++) {
        int keep = a->bits - i * 8;
        a->addr[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
    }
}

/* parse_exempt - harvest_exempt_networks into nl, with the parameter's name in err */
static int parse_exempt(const char *text, struct netlist *nl, char *err, size_t errlen)
{
    char why[200];

    if (netlist_parse(text, nl, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "harvest_exempt_networks: %s", why);
    return -1;
}

int harvest_check_networks(const char *text, char *err, size_t errlen)
{
    struct netlist nl;

    return parse_exempt(text, &nl, err, errlen);
}

struct harvest *harvest_new(struct event_base *base, struct cache *cache)
{
    struct harvest *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->base = base;
    h->cache = cache;
    if (getrandom(&h->seed, sizeof(h->seed), 0) != sizeof(h->seed))
        h->seed = (uint32_t)time(NULL);
    return h;
}

int harvest_configure(struct harvest *h, const struct config *cfg, char *err, size_t errlen)
{
    struct netlist nl;

    if (parse_exempt(cfg->harvest_exempt_networks, &nl, err, errlen) < 0)
        return -1;
    h->exempt = nl;
    h->max_invalid = cfg->max_invalid_per_client;
    h->window = cfg->harvest_window;
    h->penalty = cfg->harvest_penalty;
    h->v4_bits = cfg->harvest_ipv4_prefix;
    h->v6_bits = cfg->harvest_ipv6_prefix;
    h->exempt_auth = cfg->harvest_exempt_authenticated;
    return 0;
}

static void entry_unlink_lru(struct harvest *h, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        h->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        h->tail = e->prev;
    e->prev = e->next = NULL;
}

static void entry_push_front(struct harvest *h, struct entry *e)
{
    e->next = h->head;
    e->prev = NULL;
    if (h->head)
        h->head->prev = e;
    h->head = e;
    if (h->tail == NULL)
        h->tail = e;
}

static uint32_t bucket_of(const struct harvest *h, const char *net)
{
    uint32_t x = 2166136261u ^ h->seed;

    for (const unsigned char *p = (const unsigned char *)net; *p; p++)
        x = (x ^ *p) * 16777619u;
    return x & (HARVEST_BUCKETS - 1);
}

/* entry_drop - remove and free e */
static void entry_drop(struct harvest *h, struct entry *e)
{
    struct entry **link = &h->buckets[bucket_of(h, e->net)];

    while (*link != e)
        link = &(*link)->hnext;
    *link = e->hnext;
    entry_unlink_lru(h, e);
    h->count--;
    free(e);
}

/* entry_get - the entry of net, made most recent; created (evicting the LRU one) if create */
static struct entry *entry_get(struct harvest *h, const char *net, int create)
{
    uint32_t b = bucket_of(h, net);
    struct entry *e;

    for (e = h->buckets[b]; e; e = e->hnext)
        if (strcmp(e->net, net) == 0)
            break;
    if (e == NULL && create) {
        if (h->count >= HARVEST_MAX_ENTRIES)
            entry_drop(h, h->tail);
        if ((e = calloc(1, sizeof(*e))) == NULL)
            return NULL;
        snprintf(e->net, sizeof(e->net), "%s", net);
        e->hnext = h->buckets[b];
        h->buckets[b] = e;
        h->count++;
    } else if (e != NULL) {
        entry_unlink_lru(h, e);
    }
    if (e != NULL)
        entry_push_front(h, e);
    return e;
}

/* client_net - the network client_address is counted under, unless it is exempt; 0 or -1 */
static int client_net(struct harvest *h, const char *client, const char *sasl, char *out,
                      size_t size)
{
    struct net a;
    char text[INET6_ADDRSTRLEN];

    if (h->max_invalid <= 0 || client == NULL)
        return -1;
    if (h->exempt_auth && sasl != NULL && sasl[0] != '\0')
        return -1;
    if (net_parse(client, strlen(client), &a) < 0 || a.bits != (a.family == AF_INET ? 32 : 128))
        return -1; /* "unknown", or garbage */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (a.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, a.addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, a.addr, 16);
    }
    if (netlist_match(&h->exempt, (struct sockaddr *)&ss))
        return -1;
    a.bits = a.family == AF_INET ? h->v4_bits : h->v6_bits;
    net_mask(&a);
    inet_ntop(a.family, a.addr, text, sizeof(text));
    int n = snprintf(out, size, "%s/%d", text, a.bits);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

enum harvest_state harvest_client(struct harvest *h, const char *client, const char *sasl,
                                  long *count, long *left, char *net, size_t netsize)
{
    char key[HARVEST_NET_MAX];
    time_t now = time(NULL);

    *count = 0;
    *left = 0;
    if (netsize > 0)
        net[0] = '\0';
    if (client_net(h, client, sasl, key, sizeof(key)) < 0)
        return HARVEST_OFF;
    snprintf(net, netsize, "%s", key);
    struct entry *e = entry_get(h, key, 0);
    if (e == NULL)
        return HARVEST_OK;
    if (e->window == now - now % h->window)
        *count = e->count;
    if (e->until > now) {
        *left = (long)(e->until - now);
        return HARVEST_BLOCKED;
    }
    return HARVEST_OK;
}

/* channel_publish - tell the other hosts that net is blocked until until */
static void channel_publish(struct harvest *h, const char *net, time_t until)
{
    struct cache_redis *r = cache_redis_handle(h->cache);
    char channel[1200], msg[128];

    if (r == NULL || cache_flush_channel(h->cache, channel, sizeof(channel)) < 0)
        return;
    int mlen = snprintf(msg, sizeof(msg), "harvest %s %ld", net, (long)until);
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t argvlen[3] = {7, strlen(channel), (size_t)mlen};
    (void)cache_redis_command(r, 3, argv, argvlen, NULL, NULL);
}

/* penalise - e passed the limit with count: block it here and tell the others */
static void penalise(struct harvest *h, struct entry *e, long count)
{
    time_t now = time(NULL);

    if (e->until > now)
        return; /* already */
    e->until = now + h->penalty;
    h->stats.penalties++;
    log_warn("harvest: client network %s: %ld invalid recipients within %d s (limit %d): "
             "answering harvest_action for %d s",
             e->net, count, h->window, h->max_invalid, h->penalty);
    channel_publish(h, e->net, e->until);
}

/* incr_done - the shared count for the window; over the limit starts a penalty */
static void incr_done(int status, const char *val, size_t len, void *arg)
{
    struct incr_req *q = arg;
    struct harvest *h = q->h;
    char num[24];

    incr_unlink(q);
    if (status == 1 && len > 0 && len < sizeof(num)) {
        memcpy(num, val, len);
        num[len] = '\0';
        long n = strtol(num, NULL, 10);
        struct entry *e = entry_get(h, q->net, 1);
        if (e != NULL && e->window == q->window && n > e->count)
            e->count = n; /* the other hosts' invalid recipients count too */
        if (e != NULL && n > h->max_invalid)
            penalise(h, e, n);
    }
    free(q);
}

/*
 * harvest_note_invalid - count locally now, and in Redis (the reply may
 * start the penalty when the other hosts' counts push it over the limit).
 * The INCR's callback owns q; harvest_free cancels the ones still pending.
 */
void harvest_note_invalid(struct harvest *h, const char *client, const char *sasl)
{
    char key[HARVEST_NET_MAX];
    time_t now = time(NULL), window;

    if (client_net(h, client, sasl, key, sizeof(key)) < 0)
        return;
    window = now - now % h->window;
    struct entry *e = entry_get(h, key, 1);
    if (e == NULL)
        return;
    if (e->window != window) {
        e->window = window;
        e->count = 0;
    }
    e->count++;
    if (e->count > h->max_invalid)
        penalise(h, e, e->count);

    struct cache_redis *r = cache_redis_handle(h->cache);
    char rkey[1200], name[HARVEST_NET_MAX + 24], ttl[24];
    struct incr_req *q;
    snprintf(name, sizeof(name), "%s:%ld", key, (long)window);
    int klen = cache_key(h->cache, "harvest", name, rkey, sizeof(rkey));
    if (r == NULL || !cache_redis_connected(r) || klen < 0 || (q = calloc(1, sizeof(*q))) == NULL)
        return;
    q->h = h;
    q->window = window;
    snprintf(q->net, sizeof(q->net), "%s", key);
    const char *incr[2] = {"INCR", rkey};
    size_t incrlen[2] = {4, (size_t)klen};
    if ((q->rreq = cache_redis_command(r, 2, incr, incrlen, incr_done, q)) == NULL) {
        free(q);
        return;
    }
    q->next = h->pending;
    if (h->pending)
        h->pending->prev = q;
    h->pending = q;
    int tlen = snprintf(ttl, sizeof(ttl), "%d", h->window * 2);
    const char *exp[3] = {"EXPIRE", rkey, ttl};
    size_t explen[3] = {6, (size_t)klen, (size_t)tlen};
    (void)cache_redis_command(r, 3, exp, explen, NULL, NULL);
}

int harvest_message(struct harvest *h, const char *msg, size_t len)
{
    char buf[128], netbuf[HARVEST_NET_MAX];
    long until;
    struct net n;
    time_t now = time(NULL);

    if (len >= sizeof(buf) || memchr(msg, '\0', len) != NULL)
        return -1;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (sscanf(buf, "harvest %63s %ld", netbuf, &until) != 2)
        return -1;
    /* exactly what harvest_note_invalid publishes: a masked network, a bounded time */
    char again[128];
    snprintf(again, sizeof(again), "harvest %s %ld", netbuf, until);
    if (strcmp(again, buf) != 0 || strchr(netbuf, '/') == NULL ||
        net_parse(netbuf, strlen(netbuf), &n) < 0 || until <= now ||
        until > now + HARVEST_MAX_PENALTY)
        return -1;
    struct net m = n;
    net_mask(&m);
    if (memcmp(m.addr, n.addr, sizeof(n.addr)) != 0)
        return -1;
    if (h->max_invalid <= 0)
        return 0; /* off here: nothing to block */
    struct entry *e = entry_get(h, netbuf, 1);
    if (e == NULL || e->until >= (time_t)until)
        return 0;
    if (e->until <= now)
        h->stats.penalties++;
    e->until = (time_t)until;
    log_info("harvest: client network %s blocked for %ld s by another host", netbuf,
             (long)(until - now));
    return 0;
}

void harvest_get_stats(struct harvest *h, struct harvest_stats *out)
{
    time_t now = time(NULL);

    *out = h->stats;
    out->blocked = 0;
    for (struct entry *e = h->head; e; e = e->next)
        if (e->until > now)
            out->blocked++;
}

void harvest_free(struct harvest *h)
{
    if (h == NULL)
        return;
    while (h->pending) {
        struct incr_req *q = h->pending;
        incr_unlink(q);
        cache_redis_cancel(q->rreq);
        free(q);
    }
    while (h->head)
        entry_drop(h, h->head);
    free(h);
}

/* harvest_reply - harvest_action expanded for the recipient */
static void harvest_reply(const struct config *cfg, const struct policy_request *r, char *action,
                          size_t size)
{
    struct verdict v;

    verdict_set(&v, VERDICT_TEMPFAIL, 450, "harvest", "too many invalid recipients");
    reply_action_expand(cfg->harvest_action, &v, r->recipient ? r->recipient : "", action, size);
}

int harvest_gate(struct harvest *h, const struct config *cfg, const struct policy_request *r,
                 struct harvest_mark *m, char *action, size_t size)
{
    memset(m, 0, sizeof(*m));
    if (h == NULL)
        return 0;
    m->state = harvest_client(h, r->client_address, r->sasl_username, &m->count, &m->left, m->net,
                              sizeof(m->net));
    if (m->state != HARVEST_BLOCKED || cfg->harvest_pass_valid)
        return 0;
    harvest_reply(cfg, r, action, size);
    h->stats.refused++;
    return 1;
}

int harvest_after(struct harvest *h, const struct config *cfg, const struct policy_request *r,
                  struct harvest_mark *m, const struct verdict *v, char *action, size_t size)
{
    if (h == NULL || m->state == HARVEST_OFF)
        return 0;
    if (v->kind == VERDICT_INVALID) {
        harvest_note_invalid(h, r->client_address, r->sasl_username);
        /* the count as it is now, for the log line */
        enum harvest_state st = harvest_client(h, r->client_address, r->sasl_username, &m->count,
                                               &m->left, m->net, sizeof(m->net));
        if (m->state != HARVEST_BLOCKED)
            m->state = st;
    }
    if (m->state != HARVEST_BLOCKED || v->kind == VERDICT_VALID)
        return 0;
    harvest_reply(cfg, r, action, size);
    h->stats.refused++;
    return 1;
}

int harvest_would_refuse(struct harvest *h, const struct config *cfg, const char *client,
                         const struct verdict *v, const char *rcpt, char *action, size_t size)
{
    long count, left;
    char net[64];
    struct policy_request r;

    if (h == NULL ||
        harvest_client(h, client, NULL, &count, &left, net, sizeof(net)) != HARVEST_BLOCKED ||
        (cfg->harvest_pass_valid && v->kind == VERDICT_VALID))
        return 0;
    memset(&r, 0, sizeof(r));
    r.recipient = (char *)rcpt;
    harvest_reply(cfg, &r, action, size);
    return 1;
}

void harvest_log(const struct harvest_mark *m, const struct config *cfg,
                 const struct policy_request *r, char *buf, size_t size)
{
    char client[64];

    buf[0] = '\0';
    if (m->state == HARVEST_OFF || (m->count == 0 && m->state != HARVEST_BLOCKED))
        return;
    verdict_sanitize(client, sizeof(client), r->client_address, strlen(r->client_address));
    snprintf(buf, size, " client=%s harvest=%ld/%d%s", client, m->count,
             cfg->max_invalid_per_client, m->state == HARVEST_BLOCKED ? " harvest_blocked" : "");
}
