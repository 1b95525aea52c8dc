/*
 * control_cmd.c - the control socket's commands (see control_cmd.h): parse
 * one request line, run it against the running daemon's verifier and
 * counters, and write the "name=value" reply.
 *
 * "verify" runs a real lookup (route, cache, backend) through the same
 * verifier and the same reply rules as a policy request, so what it prints
 * is what Postfix would have been told; it is asynchronous like any lookup
 * and bounded by the same answer budget.
 */
#include "control_cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "address.h"
#include "config.h"
#include "control_int.h"
#include "harvest.h"
#include "log.h"
#include "metrics.h"
#include "policy_conn.h"
#include "reply_policy.h"
#include "stats.h"
#include "verifier.h"

#define CONTROL_MAX_WORDS 8

/* a pending "verify" */
struct verify_cmd {
    struct control_cmd base; /* first: cancel */
    struct stats_env *env;
    struct evbuffer *out;
    control_done_fn done;
    void *arg;
    struct verifier_req *lookup;
    struct timespec started;
    char addr[ADDRESS_MAX + 1];
    char sender[ADDRESS_MAX + 1];
    char client[64];
    int refresh;
};

#define kv control_kv

void control_kv(struct evbuffer *out, const char *name, const char *fmt, ...)
{
    char raw[1024], safe[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(raw))
        n = sizeof(raw) - 1;
    verdict_sanitize(safe, sizeof(safe), raw, (size_t)n);
    evbuffer_add_printf(out, "%s=%s\n", name, safe);
}

void control_reply_error(struct evbuffer *out, const char *why)
{
    evbuffer_add_printf(out, "status=error\n");
    kv(out, "error", "%s", why);
    evbuffer_add(out, "\n", 1);
}

#define error_reply control_error

int control_error(struct stats_env *env, struct evbuffer *out, const char *why)
{
    env->control_errors++;
    control_reply_error(out, why);
    return 0;
}

/*
 * split_words - split line into at most max words at single spaces, in
 * place (line must be writable and NUL-terminated). Returns the number of
 * words, or -1 for an empty word (two spaces, leading or trailing space),
 * a control or non-ASCII byte, or too many words.
 */
static int split_words(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;

    for (const unsigned char *q = (const unsigned char *)line; *q; q++)
        if (*q < 0x21 && *q != ' ')
            return -1;
        else if (*q >= 0x7f)
            return -1;
    if (*p == '\0')
        return 0;
    for (;;) {
        if (n == max)
            return -1;
        char *sp = strchr(p, ' ');
        if (sp == p || *p == '\0')
            return -1;
        words[n++] = p;
        if (sp == NULL)
            return n;
        *sp = '\0';
        p = sp + 1;
    }
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1000.0 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* verify_done - the lookup answered: report it the way a policy client would see it */
static void verify_done(const struct verdict *v, const struct verifier_result *res, void *arg)
{
    struct verify_cmd *cmd = arg;
    const struct policy_server *s = cmd->env->server;
    struct reply_policy policy;
    struct reply reply;
    double ms = ms_since(&cmd->started);

    cmd->lookup = NULL;
    policy_reply_policy(s->cfg, &policy);
    reply_policy_decide(&policy, v, res->key[0] == '\0', res->key[0] ? res->key : cmd->addr,
                        &reply);
    /* a client in its harvest penalty would get harvest_action instead (nothing is counted) */
    int harvested = res->key[0] != '\0' && cmd->client[0] != '\0' &&
                    harvest_would_refuse(cmd->env->harvest, s->cfg, cmd->client, v, cmd->addr,
                                         reply.decided, sizeof(reply.decided));
    if (harvested)
        snprintf(reply.action, sizeof(reply.action), "%s",
                 s->cfg->dry_run ? "DUNNO" : reply.decided);
    const char *action = reply.action, *real = reply.decided;
    evbuffer_add_printf(cmd->out, "status=ok\n");
    kv(cmd->out, "address", "%s", cmd->addr);
    kv(cmd->out, "key", "%s", res->key);
    kv(cmd->out, "verdict", "%s", res->key[0] ? verdict_kind_name(v->kind) : "malformed");
    kv(cmd->out, "source", "%s", v->source);
    kv(cmd->out, "code", "%d", v->code);
    kv(cmd->out, "reason", "%s", v->text);
    kv(cmd->out, "cached", "%s", res->cached);
    kv(cmd->out, "refresh", "%s", cmd->refresh ? "yes" : "no");
    kv(cmd->out, "route", "%s", res->route[0] ? res->route : "-");
    kv(cmd->out, "ms", "%.1f", ms);
    kv(cmd->out, "reply", "%s", action);
    if (strcmp(action, real) != 0)
        kv(cmd->out, "reply_without_dry_run", "%s", real);
    if (cmd->sender[0] != '\0')
        kv(cmd->out, "sender", "%s", cmd->sender);
    if (cmd->client[0] != '\0')
        kv(cmd->out, "client", "%s", cmd->client);
    if (harvested)
        kv(cmd->out, "harvest", "blocked");
    evbuffer_add(cmd->out, "\n", 1);
    log_info("control: verify recipient=<%s> verdict=%s source=%s cached=%s route=%s ms=%.1f%s",
             cmd->addr, res->key[0] ? verdict_kind_name(v->kind) : "malformed", v->source,
             res->cached, res->route[0] ? res->route : "-", ms, cmd->refresh ? " refresh" : "");
    control_done_fn done = cmd->done;
    void *darg = cmd->arg;
    free(cmd);
    done(darg);
}

/* verify_cancel - the control connection went away during a lookup */
static void verify_cancel(struct control_cmd *base)
{
    struct verify_cmd *cmd = (struct verify_cmd *)base;

    if (cmd->lookup != NULL)
        verifier_cancel(cmd->lookup);
    free(cmd);
}

/* cmd_verify - "verify ADDR [sender=S] [client=IP] [refresh]" */
static int cmd_verify(struct stats_env *env, char **w, int n, struct evbuffer *out,
                      control_done_fn done, void *arg, struct control_cmd **pending)
{
    if (n < 2)
        return error_reply(env, out, "usage: verify ADDRESS [sender=S] [client=IP] [refresh]");
    if (strlen(w[1]) > ADDRESS_MAX)
        return error_reply(env, out, "address too long");
    struct verify_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return error_reply(env, out, "out of memory");
    cmd->base.cancel = verify_cancel;
    snprintf(cmd->addr, sizeof(cmd->addr), "%s", w[1]);
    for (int i = 2; i < n; i++) {
        if (strncmp(w[i], "sender=", 7) == 0 && strlen(w[i] + 7) <= ADDRESS_MAX) {
            snprintf(cmd->sender, sizeof(cmd->sender), "%s", w[i] + 7);
        } else if (strncmp(w[i], "client=", 7) == 0 && strlen(w[i] + 7) < sizeof(cmd->client)) {
            snprintf(cmd->client, sizeof(cmd->client), "%s", w[i] + 7);
        } else if (strcmp(w[i], "refresh") == 0) {
            cmd->refresh = 1;
        } else {
            free(cmd);
            return error_reply(env, out, "verify: unknown or too long option");
        }
    }
    cmd->env = env;
    cmd->out = out;
    cmd->done = done;
    cmd->arg = arg;
    clock_gettime(CLOCK_MONOTONIC, &cmd->started);
    cmd->lookup = verifier_lookup_flags(env->server->verifier, cmd->addr, strlen(cmd->addr),
                                        cmd->refresh ? VERIFIER_REFRESH : 0, verify_done, cmd);
    if (cmd->lookup == NULL) {
        free(cmd);
        return error_reply(env, out, "out of memory");
    }
    *pending = &cmd->base;
    return 1;
}

void control_stats_format(const struct stats_snapshot *sp, struct evbuffer *out)
{
    const struct stats_snapshot st = *sp;

    evbuffer_add_printf(out, "status=ok\n");
    kv(out, "uptime_seconds", "%ld", (long)(st.now - st.started));
    kv(out, "connections", "%d", st.connections);
    kv(out, "requests", "%lu", st.requests);
    kv(out, "protocol_errors", "%lu", st.protocol_errors);
    kv(out, "connections_refused", "%lu", st.refused);
    kv(out, "connections_evicted", "%lu", st.evicted);
    kv(out, "lookups", "%lu", st.v.lookups);
    kv(out, "verdict_valid", "%lu", st.v.valid);
    kv(out, "verdict_invalid", "%lu", st.v.invalid);
    kv(out, "verdict_tempfail", "%lu", st.v.tempfail);
    kv(out, "verdict_unknown", "%lu", st.v.unknown);
    kv(out, "verdict_malformed", "%lu", st.v.malformed);
    kv(out, "budget_expired", "%lu", st.v.budget_expired);
    kv(out, "cache_l1_hits", "%lu", st.v.cache.l1_hits);
    kv(out, "cache_redis_hits", "%lu", st.v.cache.redis_hits);
    kv(out, "cache_misses", "%lu", st.v.cache.misses);
    kv(out, "cache_puts", "%lu", st.v.cache.puts);
    kv(out, "cache_l1_entries", "%zu", st.v.cache.l1_entries);
    kv(out, "probes", "%lu", st.v.probes);
    kv(out, "probes_running", "%lu", st.v.probes_running);
    kv(out, "probes_queued", "%lu", st.v.probes_queued);
    kv(out, "probes_refused", "%lu", st.v.probes_refused);
    kv(out, "probes_dropped", "%lu", st.v.probes_dropped);
    kv(out, "probes_expired", "%lu", st.v.flights_expired);
    kv(out, "breakers_open", "%lu", st.v.breakers_open);
    kv(out, "breaker_rejects", "%lu", st.v.breaker_rejects);
    kv(out, "accept_all_domains", "%lu", st.v.accept_all_domains);
    /* per destination: only the busiest VERIFIER_DEST_TOP, numbered from 1 */
    kv(out, "destinations", "%zu", st.dests_total);
    kv(out, "destinations_shown", "%zu", st.ndests);
    for (size_t i = 0; i < st.ndests; i++) {
        const struct verifier_dest *d = &st.dests[i];
        char name[64];
#define DEST_KV(what, fmt, val)                                                                    \
    do {                                                                                           \
        snprintf(name, sizeof(name), "dest%zu_%s", i + 1, what);                                   \
        kv(out, name, fmt, val);                                                                   \
    } while (0)
        DEST_KV("name", "%s", d->name);
        DEST_KV("flights", "%u", d->flights);
        DEST_KV("running", "%u", d->running);
        DEST_KV("queued", "%u", d->queued);
        DEST_KV("breaker", "%s", d->breaker);
        DEST_KV("breaker_failures", "%d", d->breaker_failures);
        DEST_KV("breaker_retry_in", "%d", d->breaker_retry_in);
#undef DEST_KV
    }
    /* per backend pool (ldap: routes), in route table order, numbered from 1 */
    kv(out, "pools", "%zu", st.pools_total);
    kv(out, "pools_shown", "%zu", st.npools);
    for (size_t i = 0; i < st.npools; i++) {
        const struct verifier_pool *pl = &st.pools[i];
        char name[64];
#define POOL_KV(what, fmt, val)                                                                    \
    do {                                                                                           \
        snprintf(name, sizeof(name), "pool%zu_%s", i + 1, what);                                   \
        kv(out, name, fmt, val);                                                                   \
    } while (0)
        POOL_KV("source", "%s", pl->source);
        POOL_KV("route_line", "%d", pl->route_line);
        POOL_KV("connections_ready", "%d", pl->conns_ready);
        POOL_KV("connections_connecting", "%d", pl->conns_connecting);
        POOL_KV("inflight", "%d", pl->inflight);
        POOL_KV("queued", "%d", pl->queued);
        POOL_KV("backoff", "%s", pl->backing_off ? "yes" : "no");
        POOL_KV("requests", "%lu", pl->requests);
        POOL_KV("errors", "%lu", pl->errors);
        POOL_KV("timeouts", "%lu", pl->timeouts);
        POOL_KV("connect_failures", "%lu", pl->connect_fails);
        POOL_KV("drops", "%lu", pl->drops);
        POOL_KV("reconnects", "%lu", pl->reconnects);
#undef POOL_KV
    }
    kv(out, "redis", "%s",
       !st.redis_configured ? "none"
       : st.redis_connected ? "connected"
                            : "disconnected");
    if (st.redis_configured) {
        kv(out, "redis_commands", "%lu", st.redis.commands);
        kv(out, "redis_errors", "%lu", st.redis.errors);
        kv(out, "redis_timeouts", "%lu", st.redis.timeouts);
        kv(out, "redis_reconnects", "%lu", st.redis.reconnects);
        kv(out, "redis_master_switches", "%lu", st.redis.master_switches);
        kv(out, "redis_latency_ms_avg", "%.2f",
           st.redis.replies ? st.redis.reply_seconds * 1000.0 / (double)st.redis.replies : 0.0);
        kv(out, "redis_flush_channel", "%s", st.flush_subscribed ? "subscribed" : "down");
    }
    kv(out, "harvest_penalties", "%lu", st.harvest_penalties);
    kv(out, "harvest_refused", "%lu", st.harvest_refused);
    kv(out, "harvest_blocked_networks", "%lu", st.harvest_blocked);
    kv(out, "control_requests", "%lu", st.control_requests);
    kv(out, "control_errors", "%lu", st.control_errors);
    kv(out, "control_refused", "%lu", st.control_refused);
    for (int i = 0; st.metrics != NULL && i < METRICS_NSOURCES; i++) {
        const struct metrics_hist *h = &st.metrics->latency[i];
        char name[64];
        snprintf(name, sizeof(name), "latency_%s_count", metrics_source_name(i));
        kv(out, name, "%lu", h->count);
        snprintf(name, sizeof(name), "latency_%s_ms_avg", metrics_source_name(i));
        kv(out, name, "%.1f", h->count ? h->sum * 1000.0 / (double)h->count : 0.0);
    }
    evbuffer_add(out, "\n", 1);
}

/* cmd_stats - every counter of stats.h as name=value */
static int cmd_stats(struct stats_env *env, struct evbuffer *out)
{
    struct stats_snapshot st;

    stats_collect(env, &st);
    control_stats_format(&st, out);
    return 0;
}

int control_cmd_start(struct stats_env *env, const char *line, size_t len, struct evbuffer *out,
                      control_done_fn done, void *arg, struct control_cmd **pending)
{
    char buf[CONTROL_MAX_LINE + 1];
    char *w[CONTROL_MAX_WORDS];

    env->control_requests++;
    *pending = NULL;
    if (len > CONTROL_MAX_LINE)
        return error_reply(env, out, "request line too long");
    if (memchr(line, '\0', len) != NULL)
        return error_reply(env, out, "NUL byte in request");
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\r')
        buf[len - 1] = '\0';
    int n = split_words(buf, w, CONTROL_MAX_WORDS);
    if (n < 0)
        return error_reply(env, out,
                           "malformed request: words are printable ASCII separated by "
                           "single spaces");
    if (n == 0)
        return error_reply(env, out, "empty request");
    if (strcmp(w[0], "verify") == 0)
        return cmd_verify(env, w, n, out, done, arg, pending);
    if (strcmp(w[0], "stats") == 0 && n == 1)
        return cmd_stats(env, out);
    if (strcmp(w[0], "show") == 0)
        return control_show_start(env, w, n, out, done, arg, pending);
    if (strcmp(w[0], "flush") == 0)
        return control_flush_start(env, w, n, out, done, arg, pending);
    return error_reply(env, out, "unknown command (verify, show, flush, stats)");
}

void control_cmd_cancel(struct control_cmd *cmd)
{
    if (cmd != NULL)
        cmd->cancel(cmd);
}
