/*
 * test_stats_format.c - the two renderings of one stats snapshot: the
 * Prometheus exposition (stats_http_format) and the "callahead stats"
 * reply (control_stats_format). Both are compared byte for byte with the
 * expected texts under tests/unit/stats_golden/, for a snapshot where
 * everything is present (Redis, latency, destinations, pools) and one
 * where nothing optional is, so a change to either output shows up as a
 * diff of those files.
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
