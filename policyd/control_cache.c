/*
 * control_cache.c - the control socket's cache commands: "show" reports
 * what the in-process cache and Redis hold for an address or a domain,
 * "flush" forgets verdicts here, in Redis and (through the Redis channel,
 * cache_flush.h) on every daemon that shares it.
 * Both run on the event loop: every Redis command is asynchronous with
 * the cache's deadline, and the reply is written once all have answered.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "cache.h"
#include "cache_flush.h"
#include "cache_mem.h"
#include "cache_redis.h"
#include "config.h"
#include "control_int.h"
#include "harvest.h"
#include "log.h"
#include "policy_conn.h"
#include "stats.h"
#include "verifier.h"

#define SHOW_MAX_KEYS 2
#define SHOW_KEY_MAX 1100
#define SHOW_VALUE_MAX 600

/* one cache entry to show: the L1 copy, and the Redis value and TTL */
struct show_key {
    const char *label; /* prefix of the reply's names: "", "as_given_", "accept_all_" */
    char l1key[ADDRESS_MAX + 8];
    char rkey[SHOW_KEY_MAX];
    int rkeylen;
    int l1_found;
    struct verdict l1;
    time_t l1_expires;
    int get_status, ttl_status; /* as cache_redis_cb; 2 = not asked */
    char get_val[SHOW_VALUE_MAX];
    size_t get_len;
    long ttl;
    struct cache_redis_req *get_req, *ttl_req;
    struct show_cmd *cmd;
};

struct show_cmd {
    struct control_cmd base; /* first */
    struct stats_env *env;
    struct evbuffer *out;
    control_done_fn done;
    void *arg;
    struct cache_flush_sel sel; /* the normalised name */
    struct show_key keys[SHOW_MAX_KEYS];
    int nkeys;
    int waiting;   /* Redis replies still to come */
    int has_redis; /* Redis is configured */
};

/* show_verdict - one cached verdict as name=value lines (label + what) */
static void show_verdict(struct evbuffer *out, const char *label, const char *what,
                         const struct verdict *v, long ttl, time_t now)
{
    char name[64], text[VERDICT_TEXT_MAX + VERDICT_SOURCE_MAX + 64];

    verdict_format(v, text, sizeof(text));
    snprintf(name, sizeof(name), "%s%s", label, what);
    control_kv(out, name, "%s", text);
    snprintf(name, sizeof(name), "%s%s_age", label, what);
    control_kv(out, name, "%ld", (long)(now - v->when));
    snprintf(name, sizeof(name), "%s%s_ttl", label, what);
    control_kv(out, name, "%ld", ttl);
}

/*
 * show_destination - where lookups in the domain go now (the route table's
 * answer) and that destination's probes and circuit breaker, read when the
 * reply is written so that it is current
 */
static void show_destination(struct show_cmd *cmd)
{
    struct evbuffer *out = cmd->out;
    const char *at = strrchr(cmd->sel.name, '@');
    const char *domain = at != NULL ? at + 1 : cmd->sel.name;
    struct verifier_dest d;
    char err[160];

    switch (verifier_domain_destination(cmd->env->server->verifier, domain, &d, err, sizeof(err))) {
    case 1:
        control_kv(out, "destination", "%s", d.name);
        control_kv(out, "destination_flights", "%u", d.flights);
        control_kv(out, "destination_running", "%u", d.running);
        control_kv(out, "destination_queued", "%u", d.queued);
        control_kv(out, "breaker", "%s", d.breaker);
        control_kv(out, "breaker_failures", "%d", d.breaker_failures);
        control_kv(out, "breaker_retry_in", "%d", d.breaker_retry_in);
        break;
    case 0:
        control_kv(out, "destination", "none");
        break;
    default:
        control_kv(out, "destination", "error: %s", err);
        break;
    }
}

/* show_write - every answer is in: write the reply and free cmd */
static void show_write(struct show_cmd *cmd)
{
    time_t now = time(NULL);
    struct evbuffer *out = cmd->out;
    char name[64];

    evbuffer_add_printf(out, "status=ok\n");
    control_kv(out, cmd->sel.kind == CACHE_FLUSH_ADDRESS ? "address" : "domain", "%s",
               cmd->sel.name);
    for (int i = 0; i < cmd->nkeys; i++) {
        struct show_key *k = &cmd->keys[i];
        snprintf(name, sizeof(name), "%skey", k->label);
        control_kv(out, name, "%s", k->l1key);
        snprintf(name, sizeof(name), "%sl1", k->label);
        if (k->l1_found)
            show_verdict(out, k->label, "l1", &k->l1, (long)(k->l1_expires - now), now);
        else
            control_kv(out, name, "none");
        snprintf(name, sizeof(name), "%sredis", k->label);
        struct verdict v;
        if (!cmd->has_redis)
            control_kv(out, name, "not configured");
        else if (k->get_status == -1 || k->get_status == 2)
            control_kv(out, name, "error: %s", k->get_status == 2 ? "not connected" : k->get_val);
        else if (k->get_status == 0)
            control_kv(out, name, "none");
        else if (verdict_parse(k->get_val, k->get_len, &v) == 0)
            show_verdict(out, k->label, "redis", &v, k->ttl_status == 1 ? k->ttl : -1, now);
        else
            control_kv(out, name, "unreadable: %.*s", (int)k->get_len, k->get_val);
    }
    show_destination(cmd);
    evbuffer_add(out, "\n", 1);
    free(cmd);
}

/* show_finish - the last Redis answer came: reply and tell the connection */
static void show_finish(struct show_cmd *cmd)
{
    control_done_fn done = cmd->done;
    void *arg = cmd->arg;

    show_write(cmd);
    done(arg);
}

static void show_got(int status, const char *val, size_t len, void *arg)
{
    struct show_key *k = arg;

    k->get_req = NULL;
    k->get_status = status;
    if (status != 0) {
        k->get_len = len < sizeof(k->get_val) ? len : sizeof(k->get_val) - 1;
        memcpy(k->get_val, val, k->get_len);
        k->get_val[k->get_len] = '\0';
    }
    if (--k->cmd->waiting == 0)
        show_finish(k->cmd);
}

static void show_got_ttl(int status, const char *val, size_t len, void *arg)
{
    struct show_key *k = arg;
    char num[24];

    k->ttl_req = NULL;
    k->ttl_status = status;
    if (status == 1 && len > 0 && len < sizeof(num)) {
        memcpy(num, val, len);
        num[len] = '\0';
        k->ttl = strtol(num, NULL, 10);
    } else {
        k->ttl_status = -1;
    }
    if (--k->cmd->waiting == 0)
        show_finish(k->cmd);
}

static void show_cancel(struct control_cmd *base)
{
    struct show_cmd *cmd = (struct show_cmd *)base;

    for (int i = 0; i < cmd->nkeys; i++) {
        cache_redis_cancel(cmd->keys[i].get_req);
        cache_redis_cancel(cmd->keys[i].ttl_req);
    }
    free(cmd);
}

/* show_key_add - peek into L1 for l1key and queue GET + TTL of the Redis key (ns, name) */
static void show_key_add(struct show_cmd *cmd, struct cache *c, const char *label, const char *ns,
                         const char *name)
{
    struct show_key *k = &cmd->keys[cmd->nkeys++];
    time_t stored;

    k->cmd = cmd;
    k->label = label;
    k->get_status = k->ttl_status = 2;
    if (strcmp(ns, "rcpt") == 0)
        snprintf(k->l1key, sizeof(k->l1key), "%s", name);
    else
        snprintf(k->l1key, sizeof(k->l1key), "%s:%s", ns, name); /* cache.c's L1 key form */
    k->l1_found =
        cache_mem_peek(cache_l1_handle(c), k->l1key, time(NULL), &k->l1, &stored, &k->l1_expires);
    k->rkeylen = cache_key(c, ns, name, k->rkey, sizeof(k->rkey));
}

/* show_client - "show IP": the client's harvest limit state on this host */
static int show_client(struct stats_env *env, const char *ip, struct evbuffer *out)
{
    long count, left;
    char net[64];
    enum harvest_state st =
        env->harvest ? harvest_client(env->harvest, ip, NULL, &count, &left, net, sizeof(net))
                     : HARVEST_OFF;

    evbuffer_add_printf(out, "status=ok\n");
    control_kv(out, "client", "%s", ip);
    control_kv(out, "harvest", "%s",
               st == HARVEST_OFF       ? "off"
               : st == HARVEST_BLOCKED ? "blocked"
                                       : "counting");
    if (st != HARVEST_OFF) {
        control_kv(out, "harvest_network", "%s", net);
        control_kv(out, "harvest_count", "%ld", count);
        control_kv(out, "harvest_limit", "%d", env->server->cfg->max_invalid_per_client);
        control_kv(out, "harvest_penalty_left", "%ld", left);
    }
    evbuffer_add(out, "\n", 1);
    return 0;
}

int control_show_start(struct stats_env *env, char **w, int n, struct evbuffer *out,
                       control_done_fn done, void *arg, struct control_cmd **pending)
{
    struct cache *c = verifier_cache(env->server->verifier);
    struct cache_redis *r = cache_redis_handle(c);
    unsigned char ipbuf[16];
    char err[160];

    if (n != 2)
        return control_error(env, out, "usage: show ADDRESS|DOMAIN|CLIENT-IP");
    if (inet_pton(AF_INET, w[1], ipbuf) == 1 || inet_pton(AF_INET6, w[1], ipbuf) == 1)
        return show_client(env, w[1], out);
    struct show_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return control_error(env, out, "out of memory");
    cmd->base.cancel = show_cancel;
    cmd->env = env;
    cmd->out = out;
    cmd->done = done;
    cmd->arg = arg;
    cmd->has_redis = r != NULL;
    int is_addr = strchr(w[1], '@') != NULL && w[1][0] != '@';
    if (cache_flush_select(is_addr ? CACHE_FLUSH_ADDRESS : CACHE_FLUSH_DOMAIN, w[1], &cmd->sel, err,
                           sizeof(err)) < 0) {
        free(cmd);
        return control_error(env, out, err);
    }
    if (is_addr) {
        show_key_add(cmd, c, "", "rcpt", cmd->sel.name);
        if (cmd->sel.alt[0])
            show_key_add(cmd, c, "as_given_", "rcpt", cmd->sel.alt);
    } else {
        show_key_add(cmd, c, "accept_all_", "dom", cmd->sel.name);
    }
    for (int i = 0; r != NULL && i < cmd->nkeys; i++) {
        struct show_key *k = &cmd->keys[i];
        const char *argv[2] = {"GET", k->rkey};
        size_t argvlen[2] = {3, (size_t)k->rkeylen};
        if (k->rkeylen < 0)
            continue;
        if ((k->get_req = cache_redis_command(r, 2, argv, argvlen, show_got, k)) == NULL)
            continue; /* not connected: reported as such */
        cmd->waiting++;
        argv[0] = "TTL";
        if ((k->ttl_req = cache_redis_command(r, 2, argv, argvlen, show_got_ttl, k)) != NULL)
            cmd->waiting++;
    }
    if (cmd->waiting == 0) {
        show_write(cmd); /* nothing asked of Redis: the reply is complete now */
        return 0;
    }
    *pending = &cmd->base;
    return 1;
}

/* a pending "flush" */
struct flush_cmd {
    struct control_cmd base; /* first */
    struct stats_env *env;
    struct evbuffer *out;
    control_done_fn done;
    void *arg;
    struct cache_flush_sel sel;
    unsigned long l1;
    struct cache_flush_op *op;
};

/* flush_log - one line per flush, whoever asked */
static void flush_log(const struct cache_flush_sel *sel, unsigned long l1, const char *redis)
{
    log_info("control: flush %s%s%s: %lu in-process entries dropped; redis: %s",
             cache_flush_kind_name(sel->kind), sel->name[0] ? " " : "", sel->name, l1, redis);
}

/* flush_done - Redis is done (or failed): tell the operator what was flushed where */
static void flush_done(int ok, unsigned long deleted, long receivers, const char *err, void *arg)
{
    struct flush_cmd *cmd = arg;
    struct cache *c = verifier_cache(cmd->env->server->verifier);
    char what[200];

    cmd->op = NULL;
    /* entries read back from Redis while the keys were being deleted are dropped too */
    cmd->l1 += cache_flush_l1(c, &cmd->sel);
    if (ok) {
        snprintf(what, sizeof(what), "%lu keys deleted, %ld daemons notified", deleted, receivers);
        flush_log(&cmd->sel, cmd->l1, what);
        evbuffer_add_printf(cmd->out, "status=ok\n");
        control_kv(cmd->out, "l1_dropped", "%lu", cmd->l1);
        control_kv(cmd->out, "redis_deleted", "%lu", deleted);
        control_kv(cmd->out, "daemons_notified", "%ld", receivers);
        evbuffer_add(cmd->out, "\n", 1);
    } else {
        flush_log(&cmd->sel, cmd->l1, err);
        cmd->env->control_errors++;
        evbuffer_add_printf(cmd->out, "status=error\n");
        control_kv(cmd->out, "error",
                   "%s: only this daemon's in-process cache was flushed (%lu entries); Redis and "
                   "the other daemons were not",
                   err, cmd->l1);
        control_kv(cmd->out, "partial", "yes");
        control_kv(cmd->out, "l1_dropped", "%lu", cmd->l1);
        evbuffer_add(cmd->out, "\n", 1);
    }
    control_done_fn done = cmd->done;
    void *darg = cmd->arg;
    free(cmd);
    done(darg);
}

static void flush_cancel(struct control_cmd *base)
{
    struct flush_cmd *cmd = (struct flush_cmd *)base;

    cache_flush_cancel(cmd->op);
    free(cmd);
}

int control_flush_start(struct stats_env *env, char **w, int n, struct evbuffer *out,
                        control_done_fn done, void *arg, struct control_cmd **pending)
{
    static const char usage[] = "usage: flush address ADDRESS|domain DOMAIN|invalid|all";
    struct cache *c = verifier_cache(env->server->verifier);
    struct cache_flush_sel sel;
    enum cache_flush_kind kind;
    char err[160];

    if (n == 3 && strcmp(w[1], "address") == 0)
        kind = CACHE_FLUSH_ADDRESS;
    else if (n == 3 && strcmp(w[1], "domain") == 0)
        kind = CACHE_FLUSH_DOMAIN;
    else if (n == 2 && strcmp(w[1], "invalid") == 0)
        kind = CACHE_FLUSH_INVALID;
    else if (n == 2 && strcmp(w[1], "all") == 0)
        kind = CACHE_FLUSH_ALL;
    else
        return control_error(env, out, usage);
    if (cache_flush_select(kind, n == 3 ? w[2] : "", &sel, err, sizeof(err)) < 0)
        return control_error(env, out, err);

    unsigned long l1 = cache_flush_l1(c, &sel);
    if (cache_redis_handle(c) == NULL) {
        /* no Redis: this daemon's cache is the whole cache */
        flush_log(&sel, l1, "not configured");
        evbuffer_add_printf(out, "status=ok\n");
        control_kv(out, "l1_dropped", "%lu", l1);
        control_kv(out, "redis_deleted", "0");
        control_kv(out, "daemons_notified", "0");
        evbuffer_add(out, "\n", 1);
        return 0;
    }
    struct flush_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return control_error(env, out, "out of memory");
    cmd->base.cancel = flush_cancel;
    cmd->env = env;
    cmd->out = out;
    cmd->done = done;
    cmd->arg = arg;
    cmd->sel = sel;
    cmd->l1 = l1;
    cmd->op = cache_flush_redis(env->server->base, c, &sel, flush_done, cmd);
    if (cmd->op == NULL) {
        free(cmd);
        return control_error(env, out, "out of memory");
    }
    *pending = &cmd->base;
    return 1;
}
