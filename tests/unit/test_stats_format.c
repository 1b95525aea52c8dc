/*
 * test_stats_format.c - the two renderings of one stats snapshot: the
 * Prometheus exposition (stats_http_format) and the "callahead stats"
 * reply (control_stats_format). Both are compared byte for byte with the
 * expected texts under tests/unit/stats_golden/, for a snapshot where
 * everything is present (Redis, latency, destinations, pools) and one
 * where nothing optional is, so a change to either output shows up as a
 * diff of those files. Then the table both are made from (stats_table.c):
 * every row appears in both outputs with the same value, families are
 * well formed, and no name is used twice.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "control_cmd.h"
#include "metrics.h"
#include "stats.h"
#include "stats_http.h"
#include "stats_table.h"

#define GOLDEN TEST_SRCDIR "/tests/unit/stats_golden/"

static struct metrics test_metrics;

/* full_snapshot - every field a different value, every optional part present */
static void full_snapshot(struct stats_snapshot *st)
{
    memset(st, 0, sizeof(*st));
    st->started = 1700000000;
    st->now = st->started + 4321;
    st->connections = 3;
    st->requests = 101;
    st->protocol_errors = 102;
    st->refused = 103;
    st->evicted = 104;
    st->v.lookups = 201;
    st->v.valid = 202;
    st->v.invalid = 203;
    st->v.tempfail = 204;
    st->v.unknown = 205;
    st->v.malformed = 206;
    st->v.budget_expired = 207;
    st->v.probes = 208;
    st->v.breaker_rejects = 209;
    st->v.accept_all_domains = 210;
    st->v.breakers_open = 211;
    st->v.probes_refused = 212;
    st->v.flights_expired = 213;
    st->v.probes_dropped = 214;
    st->v.flights = 215;
    st->v.probes_queued = 216;
    st->v.probes_running = 217;
    st->v.cache.l1_hits = 301;
    st->v.cache.redis_hits = 302;
    st->v.cache.misses = 303;
    st->v.cache.puts = 304;
    st->v.cache.l1_entries = 305;
    st->redis_configured = 1;
    st->redis_connected = 1;
    st->flush_subscribed = 1;
    st->redis.commands = 401;
    st->redis.replies = 400;
    st->redis.errors = 402;
    st->redis.timeouts = 403;
    st->redis.reconnects = 404;
    st->redis.master_switches = 405;
    st->redis.reply_seconds = 0.5;
    st->control_requests = 501;
    st->control_errors = 502;
    st->control_refused = 503;
    st->harvest_penalties = 601;
    st->harvest_refused = 602;
    st->harvest_blocked = 603;

    memset(&test_metrics, 0, sizeof(test_metrics));
    for (int s = 0; s < METRICS_NSOURCES; s++) {
        /* count holds the buckets' samples and s more above the last bound */
        test_metrics.latency[s].count = (unsigned long)s;
        for (int i = 0; i < METRICS_NBUCKETS; i++) {
            test_metrics.latency[s].bucket[i] = (unsigned long)(s + i);
            test_metrics.latency[s].count += (unsigned long)(s + i);
        }
        test_metrics.latency[s].sum = 0.25 * s;
    }
    st->metrics = &test_metrics;

    /* a name with the characters a label value must escape */
    snprintf(st->dests[0].name, sizeof(st->dests[0].name), "%s", "mx.\"odd\\name\".test");
    st->dests[0].flights = 7;
    st->dests[0].running = 5;
    st->dests[0].queued = 2;
    st->dests[0].breaker = "open";
    st->dests[0].breaker_failures = 4;
    st->dests[0].breaker_retry_in = 30;
    snprintf(st->dests[1].name, sizeof(st->dests[1].name), "%s", "[192.0.2.1]:25");
    st->dests[1].flights = 1;
    st->dests[1].running = 1;
    st->dests[1].breaker = "half-open";
    st->ndests = 2;
    st->dests_total = 9;

    snprintf(st->pools[0].source, sizeof(st->pools[0].source), "%s", "ldap:corp");
    st->pools[0].route_line = 12;
    st->pools[0].conns_ready = 2;
    st->pools[0].conns_connecting = 1;
    st->pools[0].inflight = 6;
    st->pools[0].queued = 3;
    st->pools[0].backing_off = 1;
    st->pools[0].requests = 701;
    st->pools[0].errors = 702;
    st->pools[0].timeouts = 703;
    st->pools[0].connect_fails = 704;
    st->pools[0].drops = 705;
    st->pools[0].reconnects = 706;
    snprintf(st->pools[1].source, sizeof(st->pools[1].source), "%s", "ldap:other");
    st->pools[1].route_line = 14;
    st->pools[1].requests = 801;
    st->npools = 2;
    st->pools_total = 2;
}

/* quiet_snapshot - no Redis, no latency, no destination, no pool */
static void quiet_snapshot(struct stats_snapshot *st)
{
    memset(st, 0, sizeof(*st));
    st->started = 1700000000;
    st->now = st->started + 5;
    st->requests = 1;
    st->v.lookups = 1;
    st->v.valid = 1;
}

/* slurp - the whole of file path, NUL-terminated (the caller frees) */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = malloc(1 << 16);
    cr_assert_not_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/*
 * expect_golden - out must equal the file name under GOLDEN; on a
 * difference the actual text is left in name (in the working directory)
 * for a diff
 */
static void expect_golden(struct evbuffer *out, const char *name)
{
    size_t len = evbuffer_get_length(out);
    char *got = calloc(1, len + 1);
    cr_assert_not_null(got);
    evbuffer_copyout(out, got, len);
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", GOLDEN, name);
    char *want = slurp(path);
    if (strcmp(got, want) != 0) {
        FILE *f = fopen(name, "w");
        if (f != NULL) {
            fputs(got, f);
            fclose(f);
        }
    }
    cr_assert_str_eq(got, want, "%s differs from the expected text (actual text left in ./%s)",
                     name, name);
    free(got);
    free(want);
}

Test(stats_format, prometheus_full)
{
    static struct stats_snapshot st;
    struct evbuffer *out = evbuffer_new();

    full_snapshot(&st);
    stats_http_format(&st, out);
    expect_golden(out, "full.metrics");
    evbuffer_free(out);
}

Test(stats_format, prometheus_quiet)
{
    static struct stats_snapshot st;
    struct evbuffer *out = evbuffer_new();

    quiet_snapshot(&st);
    stats_http_format(&st, out);
    expect_golden(out, "quiet.metrics");
    evbuffer_free(out);
}

Test(stats_format, stats_full)
{
    static struct stats_snapshot st;
    struct evbuffer *out = evbuffer_new();

    full_snapshot(&st);
    control_stats_format(&st, out);
    expect_golden(out, "full.stats");
    evbuffer_free(out);
}

Test(stats_format, stats_quiet)
{
    static struct stats_snapshot st;
    struct evbuffer *out = evbuffer_new();

    quiet_snapshot(&st);
    control_stats_format(&st, out);
    expect_golden(out, "quiet.stats");
    evbuffer_free(out);
}

/* render - both outputs of st as C strings (the caller frees) */
static void render(const struct stats_snapshot *st, char **prom, char **text)
{
    struct evbuffer *out[2] = {evbuffer_new(), evbuffer_new()};
    char **dst[2] = {prom, text};

    stats_http_format(st, out[0]);
    control_stats_format(st, out[1]);
    for (int i = 0; i < 2; i++) {
        size_t len = evbuffer_get_length(out[i]);
        *dst[i] = calloc(1, len + 1);
        cr_assert_not_null(*dst[i]);
        evbuffer_copyout(out[i], *dst[i], len);
        evbuffer_free(out[i]);
    }
}

/*
 * prom_value - the value of the n-th sample line after the "# TYPE" line
 * of family metric, in buf; NULL when the family is missing
 */
static const char *prom_value(const char *prom, const char *metric, size_t n, char *buf,
                              size_t size)
{
    char type[256];
    snprintf(type, sizeof(type), "# TYPE %s ", metric);
    const char *p = strstr(prom, type);
    if (p == NULL)
        return NULL;
    p = strchr(p, '\n');
    for (size_t i = 0; p != NULL && i < n; i++)
        p = strchr(p + 1, '\n');
    if (p == NULL)
        return NULL;
    if (strncmp(p + 1, metric, strlen(metric)) != 0)
        return NULL; /* the family has fewer samples */
    const char *eol = strchr(p + 1, '\n');
    const char *sp = eol;
    while (sp > p && *sp != ' ')
        sp--;
    if (eol == NULL || sp == p)
        return NULL;
    snprintf(buf, size, "%.*s", (int)(eol - sp - 1), sp + 1);
    return buf;
}

/* text_value - the value of "name=" in the stats reply, in buf; NULL when missing */
static const char *text_value(const char *text, const char *name, char *buf, size_t size)
{
    char key[256];
    snprintf(key, sizeof(key), "\n%s=", name);
    const char *p = strstr(text, key);
    if (p == NULL)
        return NULL;
    p += strlen(key);
    snprintf(buf, size, "%.*s", (int)strcspn(p, "\n"), p);
    return buf;
}

/*
 * check_row - row (at index i of rows, n rows; list item 1 when prefix is
 * set) is in both outputs, and where both show a plain number it is the
 * same one
 */
static void check_row(const struct stats_row *rows, size_t n, size_t i, const char *prefix,
                      const char *prom, const char *text)
{
    const struct stats_row *row = &rows[i];
    char name[128], pv[128], tv[128];

    if (row->value == STATS_V_LATENCY) /* latency_<source>_count, _ms_avg for each source */
        snprintf(name, sizeof(name), "%s_%s_count", row->stat, metrics_source_name(0));
    else
        snprintf(name, sizeof(name), "%s%s", prefix, row->stat);
    cr_assert_not_null(text_value(text, name, tv, sizeof(tv)), "stats lacks %s=", name);
    if (row->value == STATS_V_LABEL_STR || row->value == STATS_V_LABEL_INT ||
        row->value == STATS_V_LIST)
        return; /* labels of a list's series, or the list whose rows are checked one by one */
    if (row->value == STATS_V_LATENCY || row->value == STATS_V_MEAN ||
        row->value == STATS_V_STATE) {
        char type[256];
        snprintf(type, sizeof(type), "# TYPE %s ", row->metric);
        cr_assert_not_null(strstr(prom, type), "the exposition lacks %s (stats %s)", row->metric,
                           name);
        return;
    }
    size_t first = i;
    while (first > 0 && rows[first - 1].metric != NULL &&
           strcmp(rows[first - 1].metric, row->metric) == 0)
        first--;
    cr_assert_not_null(prom_value(prom, row->metric, i - first, pv, sizeof(pv)),
                       "the exposition lacks %s (stats %s)", row->metric, name);
    if (row->value == STATS_V_FLAG)
        cr_assert_str_eq(tv, row->words[strcmp(pv, "1") == 0], "%s=%s but %s %s", name, tv,
                         row->metric, pv);
    else if (row->value != STATS_V_SINCE)
        cr_assert_str_eq(tv, pv, "%s=%s but %s %s", name, tv, row->metric, pv);
}

Test(stats_table, every_row_is_in_both_outputs_with_one_value)
{
    static struct stats_snapshot st;
    char *prom, *text;
    size_t checked = 0;

    full_snapshot(&st);
    render(&st, &prom, &text);
    for (size_t i = 0; i < stats_nrows; i++) {
        const struct stats_row *row = &stats_rows[i];
        cr_assert(stats_row_shown(row, &st), "row %s is not shown for the full snapshot",
                  row->stat);
        check_row(stats_rows, stats_nrows, i, "", prom, text);
        checked++;
        if (row->value != STATS_V_LIST)
            continue;
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "%s1_", row->list->item);
        for (size_t k = 0; k < row->list->nrows; k++, checked++)
            check_row(row->list->rows, row->list->nrows, k, prefix, prom, text);
    }
    cr_assert_gt(checked, 60);
    free(prom);
    free(text);
}

/* check_families - help on the first row of each family only, one type and condition each */
static void check_families(const struct stats_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct stats_row *row = &rows[i];
        if (row->value == STATS_V_LIST || row->value == STATS_V_LABEL_STR ||
            row->value == STATS_V_LABEL_INT)
            continue;
        cr_assert_not_null(row->metric, "row %s has no metric", row->stat);
        cr_assert_eq(strncmp(row->metric, "callahead_", 10), 0, "%s lacks the prefix", row->metric);
        int first = i == 0 || rows[i - 1].metric == NULL || strcmp(rows[i - 1].metric, row->metric);
        if (first) {
            cr_assert_not_null(row->help, "family %s has no help", row->metric);
            for (size_t k = i + 1; k < n; k++)
                cr_assert(rows[k].metric == NULL || strcmp(rows[k].metric, row->metric) != 0 ||
                              k < stats_family_end(rows, n, i),
                          "family %s is split", row->metric);
        } else {
            cr_assert_null(row->help, "%s: help on a later row of the family", row->stat);
            cr_assert_not_null(row->label, "%s: a later row of a family needs its label",
                               row->stat);
            cr_assert_eq(row->type, rows[i - 1].type, "%s: one family, two types", row->metric);
            cr_assert_eq(row->when, rows[i - 1].when, "%s: one family, two conditions",
                         row->metric);
        }
        int counter = row->type == STATS_COUNTER;
        size_t len = strlen(row->metric);
        int total = len > 6 && strcmp(row->metric + len - 6, "_total") == 0;
        cr_assert_eq(counter, total, "%s: counters and only counters end in _total", row->metric);
    }
}

/* check_unique - no stats name is used twice in rows */
static void check_unique(const struct stats_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++) {
            cr_assert_str_neq(rows[i].stat, rows[k].stat, "stats name %s twice", rows[i].stat);
            if (rows[i].metric != NULL && rows[k].metric != NULL &&
                strcmp(rows[i].metric, rows[k].metric) == 0)
                cr_assert(rows[i].label != NULL && rows[k].label != NULL &&
                              strcmp(rows[i].label, rows[k].label) != 0,
                          "series %s twice", rows[i].metric);
        }
}

Test(stats_table, families_are_well_formed_and_names_unique)
{
    check_families(stats_rows, stats_nrows);
    check_unique(stats_rows, stats_nrows);
    for (size_t i = 0; i < stats_nrows; i++)
        if (stats_rows[i].value == STATS_V_LIST) {
            check_families(stats_rows[i].list->rows, stats_rows[i].list->nrows);
            check_unique(stats_rows[i].list->rows, stats_rows[i].list->nrows);
        }
}
