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
#include "stats_table.h"
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

/* stat_value - one row's value for the struct at base, as "callahead stats" shows it */
static void stat_value(struct evbuffer *out, const char *name, const struct stats_row *row,
                       const void *base, const struct stats_snapshot *st)
{
    char num[32];

    switch (row->value) {
    case STATS_V_FLAG:
        kv(out, name, "%s", row->words[stats_row_flag(row, base)]);
        break;
    case STATS_V_SINCE:
        kv(out, name, "%ld", (long)st->now - stats_row_time(row, base));
        break;
    case STATS_V_STATE:
    case STATS_V_LABEL_STR:
        kv(out, name, "%s", stats_row_string(row, base));
        break;
    case STATS_V_MEAN: {
        double sum;
        unsigned long count;
        stats_row_mean(row, base, &sum, &count);
        kv(out, name, "%.2f", count ? sum * 1000.0 / (double)count : 0.0);
        break;
    }
    default:
        if (stats_row_number(row, base, num, sizeof(num)) == 0)
            kv(out, name, "%s", num);
        break;
    }
}

/* stat_list - how many items are shown, then each item numbered from 1 (dest1_name=...) */
static void stat_list(struct evbuffer *out, const struct stats_row *row,
                      const struct stats_snapshot *st)
{
    const struct stats_list *list = row->list;
    size_t count = stats_list_count(list, st);

    kv(out, row->stat, "%zu", count);
    for (size_t i = 0; i < count; i++) {
        const void *item = stats_list_item(list, st, i);
        for (size_t r = 0; r < list->nrows; r++) {
            char name[64];
            snprintf(name, sizeof(name), "%s%zu_%s", list->item, i + 1, list->rows[r].stat);
            stat_value(out, name, &list->rows[r], item, st);
        }
    }
}

/* stat_latency - count and mean of the verdict latency, per source class */
static void stat_latency(struct evbuffer *out, const struct stats_row *row,
                         const struct stats_snapshot *st)
{
    for (int i = 0; i < METRICS_NSOURCES; i++) {
        const struct metrics_hist *h = &st->metrics->latency[i];
        char name[64];
        snprintf(name, sizeof(name), "%s_%s_count", row->stat, metrics_source_name(i));
        kv(out, name, "%lu", h->count);
        snprintf(name, sizeof(name), "%s_%s_ms_avg", row->stat, metrics_source_name(i));
        kv(out, name, "%.1f", h->count ? h->sum * 1000.0 / (double)h->count : 0.0);
    }
}

void control_stats_format(const struct stats_snapshot *st, struct evbuffer *out)
{
    evbuffer_add_printf(out, "status=ok\n");
    for (size_t i = 0; i < stats_nrows; i++) {
        const struct stats_row *row = &stats_rows[i];
        if (!stats_row_shown(row, st)) {
            if (row->absent != NULL)
                kv(out, row->stat, "%s", row->absent);
            continue;
        }
        if (row->value == STATS_V_LIST)
            stat_list(out, row, st);
        else if (row->value == STATS_V_LATENCY)
            stat_latency(out, row, st);
        else
            stat_value(out, row->stat, row, st, st);
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
