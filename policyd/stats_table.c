/*
 * stats_table.c - the one table of what policyd reports (see
 * stats_table.h), and the accessors both outputs read values through.
 *
 * To report a new number: add its field to struct stats_snapshot, fill it
 * in stats_collect, and add one row here; the Prometheus exposition, the
 * stats reply and test_stats_format all follow from the row.
 */
#include "stats_table.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stats.h"

#define SNAP(field) offsetof(struct stats_snapshot, field)
#define DEST(field) offsetof(struct verifier_dest, field)
#define POOL(field) offsetof(struct verifier_pool, field)

/* a row of one series of its own, or the first of a family (help set) */
#define ROW(m, lbl, name, t, h, v, o)                                                              \
    {                                                                                              \
        .metric = (m), .label = (lbl), .stat = (name), .type = (t), .help = (h), .value = (v),     \
        .off = (o)                                                                                 \
    }
/* a Redis row: left out without a Redis cache */
#define REDIS_ROW(m, name, t, h, v, o)                                                             \
    {                                                                                              \
        .metric = (m), .stat = (name), .type = (t), .help = (h), .value = (v), .off = (o),         \
        .when = STATS_IF_REDIS                                                                     \
    }

static const char *const yes_no[] = {"no", "yes"};
static const char *const breaker_states[] = {"closed", "open", "half-open", NULL};

/* the busiest destinations (verifier_top_destinations) */
static const struct stats_row dest_rows[] = {
    ROW("destination", NULL, "name", STATS_GAUGE, NULL, STATS_V_LABEL_STR, DEST(name)),
    ROW("callahead_destination_flights", NULL, "flights", STATS_GAUGE,
        "Backend requests now in any state, for the busiest destinations.", STATS_V_UINT,
        DEST(flights)),
    ROW("callahead_destination_probes_running", NULL, "running", STATS_GAUGE,
        "Backend probes running now, for the busiest destinations.", STATS_V_UINT, DEST(running)),
    ROW("callahead_destination_probes_queued", NULL, "queued", STATS_GAUGE,
        "Lookups waiting for a probe slot now, for the busiest destinations.", STATS_V_UINT,
        DEST(queued)),
    {.metric = "callahead_destination_breaker_state",
     .stat = "breaker",
     .type = STATS_GAUGE,
     .help = "1 for the circuit breaker state the destination is in, 0 for the others.",
     .value = STATS_V_STATE,
     .off = DEST(breaker),
     .words = breaker_states},
    ROW("callahead_destination_breaker_failures", NULL, "breaker_failures", STATS_GAUGE,
        "Consecutive failures the destination's circuit breaker counts.", STATS_V_INT,
        DEST(breaker_failures)),
    ROW("callahead_destination_breaker_retry_seconds", NULL, "breaker_retry_in", STATS_GAUGE,
        "Seconds until an open circuit breaker lets one probe through (0 unless open).",
        STATS_V_INT, DEST(breaker_retry_in)),
};

static const struct stats_list dest_list = {
    .item = "dest",
    .array_off = SNAP(dests),
    .item_size = sizeof(struct verifier_dest),
    .count_off = SNAP(ndests),
    .rows = dest_rows,
    .nrows = sizeof(dest_rows) / sizeof(dest_rows[0]),
};

/* the backend pools (ldap: routes), verifier_pools */
static const struct stats_row pool_rows[] = {
    ROW("source", NULL, "source", STATS_GAUGE, NULL, STATS_V_LABEL_STR, POOL(source)),
    ROW("route_line", NULL, "route_line", STATS_GAUGE, NULL, STATS_V_LABEL_INT, POOL(route_line)),
    ROW("callahead_ldap_pool_connections", "state=\"ready\"", "connections_ready", STATS_GAUGE,
        "LDAP connections now, by state (ready, connecting: connect or bind in progress).",
        STATS_V_INT, POOL(conns_ready)),
    ROW("callahead_ldap_pool_connections", "state=\"connecting\"", "connections_connecting",
        STATS_GAUGE, NULL, STATS_V_INT, POOL(conns_connecting)),
    ROW("callahead_ldap_pool_searches_inflight", NULL, "inflight", STATS_GAUGE,
        "LDAP searches sent and not answered yet.", STATS_V_INT, POOL(inflight)),
    ROW("callahead_ldap_pool_searches_queued", NULL, "queued", STATS_GAUGE,
        "LDAP searches waiting for a connection.", STATS_V_INT, POOL(queued)),
    {.metric = "callahead_ldap_pool_backoff",
     .stat = "backoff",
     .type = STATS_GAUGE,
     .help = "1 while the pool refuses searches after failed connects, else 0.",
     .value = STATS_V_FLAG,
     .off = POOL(backing_off),
     .words = yes_no},
    ROW("callahead_ldap_pool_searches_total", NULL, "requests", STATS_COUNTER,
        "LDAP searches sent (retries on a fresh connection included).", STATS_V_ULONG,
        POOL(requests)),
    ROW("callahead_ldap_pool_search_errors_total", NULL, "errors", STATS_COUNTER,
        "LDAP searches refused at once (backoff) or answered with an error or a timeout.",
        STATS_V_ULONG, POOL(errors)),
    ROW("callahead_ldap_pool_search_timeouts_total", NULL, "timeouts", STATS_COUNTER,
        "LDAP searches past their deadline.", STATS_V_ULONG, POOL(timeouts)),
    ROW("callahead_ldap_pool_connect_failures_total", NULL, "connect_failures", STATS_COUNTER,
        "LDAP connections that could not be opened or bound.", STATS_V_ULONG, POOL(connect_fails)),
    ROW("callahead_ldap_pool_drops_total", NULL, "drops", STATS_COUNTER,
        "Ready LDAP connections lost or dropped (errors, stuck; idle ones closed are not "
        "counted).",
        STATS_V_ULONG, POOL(drops)),
    ROW("callahead_ldap_pool_reconnects_total", NULL, "reconnects", STATS_COUNTER,
        "LDAP connections opened to replace a dropped one.", STATS_V_ULONG, POOL(reconnects)),
};

static const struct stats_list pool_list = {
    .item = "pool",
    .array_off = SNAP(pools),
    .item_size = sizeof(struct verifier_pool),
    .count_off = SNAP(npools),
    .rows = pool_rows,
    .nrows = sizeof(pool_rows) / sizeof(pool_rows[0]),
};

static const char *const redis_states[] = {"disconnected", "connected"};
static const char *const flush_states[] = {"down", "subscribed"};

const struct stats_row stats_rows[] = {
    ROW("callahead_start_time_seconds", NULL, "uptime_seconds", STATS_GAUGE,
        "Start time of the daemon (Unix time).", STATS_V_SINCE, SNAP(started)),
    ROW("callahead_policy_connections", NULL, "connections", STATS_GAUGE,
        "Policy client connections open now.", STATS_V_INT, SNAP(connections)),
    ROW("callahead_policy_requests_total", NULL, "requests", STATS_COUNTER,
        "Policy requests answered.", STATS_V_ULONG, SNAP(requests)),
    ROW("callahead_policy_protocol_errors_total", NULL, "protocol_errors", STATS_COUNTER,
        "Policy connections closed for a protocol error.", STATS_V_ULONG, SNAP(protocol_errors)),
    ROW("callahead_policy_connections_refused_total", NULL, "connections_refused", STATS_COUNTER,
        "Policy connections refused (table full of busy connections, or stopping).", STATS_V_ULONG,
        SNAP(refused)),
    ROW("callahead_policy_connections_evicted_total", NULL, "connections_evicted", STATS_COUNTER,
        "Idle or slow policy connections closed to make room for a new one.", STATS_V_ULONG,
        SNAP(evicted)),

    ROW("callahead_lookups_total", NULL, "lookups", STATS_COUNTER, "Recipient lookups started.",
        STATS_V_ULONG, SNAP(v.lookups)),
    ROW("callahead_verdicts_total", "verdict=\"valid\"", "verdict_valid", STATS_COUNTER,
        "Lookups answered, by verdict.", STATS_V_ULONG, SNAP(v.valid)),
    ROW("callahead_verdicts_total", "verdict=\"invalid\"", "verdict_invalid", STATS_COUNTER, NULL,
        STATS_V_ULONG, SNAP(v.invalid)),
    ROW("callahead_verdicts_total", "verdict=\"tempfail\"", "verdict_tempfail", STATS_COUNTER, NULL,
        STATS_V_ULONG, SNAP(v.tempfail)),
    ROW("callahead_verdicts_total", "verdict=\"unknown\"", "verdict_unknown", STATS_COUNTER, NULL,
        STATS_V_ULONG, SNAP(v.unknown)),
    ROW("callahead_verdicts_total", "verdict=\"malformed\"", "verdict_malformed", STATS_COUNTER,
        NULL, STATS_V_ULONG, SNAP(v.malformed)),
    ROW("callahead_budget_expired_total", NULL, "budget_expired", STATS_COUNTER,
        "Lookups answered tempfail because the answer budget passed.", STATS_V_ULONG,
        SNAP(v.budget_expired)),

    ROW("callahead_cache_hits_total", "layer=\"l1\"", "cache_l1_hits", STATS_COUNTER,
        "Cache hits, by layer.", STATS_V_ULONG, SNAP(v.cache.l1_hits)),
    ROW("callahead_cache_hits_total", "layer=\"redis\"", "cache_redis_hits", STATS_COUNTER, NULL,
        STATS_V_ULONG, SNAP(v.cache.redis_hits)),
    ROW("callahead_cache_misses_total", NULL, "cache_misses", STATS_COUNTER,
        "Cache lookups that found nothing.", STATS_V_ULONG, SNAP(v.cache.misses)),
    ROW("callahead_cache_puts_total", NULL, "cache_puts", STATS_COUNTER,
        "Verdicts stored in the cache (in-process, and Redis when it is up).", STATS_V_ULONG,
        SNAP(v.cache.puts)),
    ROW("callahead_cache_l1_entries", NULL, "cache_l1_entries", STATS_GAUGE,
        "Verdicts in the in-process cache.", STATS_V_SIZE, SNAP(v.cache.l1_entries)),

    ROW("callahead_probes_total", NULL, "probes", STATS_COUNTER,
        "Backend probes (callouts) started.", STATS_V_ULONG, SNAP(v.probes)),
    ROW("callahead_probes_running", NULL, "probes_running", STATS_GAUGE,
        "Backend probes running now.", STATS_V_ULONG, SNAP(v.probes_running)),
    ROW("callahead_probes_queued", NULL, "probes_queued", STATS_GAUGE,
        "Lookups waiting for a probe slot now.", STATS_V_ULONG, SNAP(v.probes_queued)),
    ROW("callahead_probes_refused_total", NULL, "probes_refused", STATS_COUNTER,
        "Lookups answered tempfail at once because the probe queue was full.", STATS_V_ULONG,
        SNAP(v.probes_refused)),
    ROW("callahead_probes_dropped_total", NULL, "probes_dropped", STATS_COUNTER,
        "Queued probes dropped because nobody waited for them any more.", STATS_V_ULONG,
        SNAP(v.probes_dropped)),
    ROW("callahead_probes_expired_total", NULL, "probes_expired", STATS_COUNTER,
        "Backend requests failed by their deadline (flight_timeout).", STATS_V_ULONG,
        SNAP(v.flights_expired)),
    ROW("callahead_breakers_open", NULL, "breakers_open", STATS_GAUGE,
        "Next hops whose circuit breaker is open now.", STATS_V_ULONG, SNAP(v.breakers_open)),
    ROW("callahead_breaker_rejects_total", NULL, "breaker_rejects", STATS_COUNTER,
        "Lookups answered tempfail by an open circuit breaker.", STATS_V_ULONG,
        SNAP(v.breaker_rejects)),
    ROW("callahead_accept_all_domains_total", NULL, "accept_all_domains", STATS_COUNTER,
        "Domains found to accept every address.", STATS_V_ULONG, SNAP(v.accept_all_domains)),

    ROW("callahead_destinations", NULL, "destinations", STATS_GAUGE,
        "Destinations with backend requests now or a breaker that counts failures.", STATS_V_SIZE,
        SNAP(dests_total)),
    {.stat = "destinations_shown", .value = STATS_V_LIST, .list = &dest_list},
    ROW("callahead_ldap_pools", NULL, "pools", STATS_GAUGE,
        "Routes with a backend connection pool (ldap: routes).", STATS_V_SIZE, SNAP(pools_total)),
    {.stat = "pools_shown", .value = STATS_V_LIST, .list = &pool_list},

    {.metric = "callahead_redis_up",
     .stat = "redis",
     .type = STATS_GAUGE,
     .help = "1 when the Redis connection is up.",
     .value = STATS_V_FLAG,
     .off = SNAP(redis_connected),
     .words = redis_states,
     .when = STATS_IF_REDIS,
     .absent = "none"},
    REDIS_ROW("callahead_redis_commands_total", "redis_commands", STATS_COUNTER,
              "Redis commands sent.", STATS_V_ULONG, SNAP(redis.commands)),
    REDIS_ROW("callahead_redis_errors_total", "redis_errors", STATS_COUNTER,
              "Redis commands that failed.", STATS_V_ULONG, SNAP(redis.errors)),
    REDIS_ROW("callahead_redis_timeouts_total", "redis_timeouts", STATS_COUNTER,
              "Redis commands that passed their deadline.", STATS_V_ULONG, SNAP(redis.timeouts)),
    REDIS_ROW("callahead_redis_reconnects_total", "redis_reconnects", STATS_COUNTER,
              "Redis reconnect attempts.", STATS_V_ULONG, SNAP(redis.reconnects)),
    REDIS_ROW("callahead_redis_master_switches_total", "redis_master_switches", STATS_COUNTER,
              "Moves to another Redis master announced or named by the sentinels.", STATS_V_ULONG,
              SNAP(redis.master_switches)),
    {.metric = "callahead_redis_reply_duration_seconds",
     .stat = "redis_latency_ms_avg",
     .type = STATS_SUMMARY,
     .help = "Time from sending a Redis command to its reply.",
     .value = STATS_V_MEAN,
     .off = SNAP(redis.reply_seconds),
     .off2 = SNAP(redis.replies),
     .when = STATS_IF_REDIS},
    {.metric = "callahead_redis_flush_subscribed",
     .stat = "redis_flush_channel",
     .type = STATS_GAUGE,
     .help = "1 while subscribed to the flush channel other daemons publish on.",
     .value = STATS_V_FLAG,
     .off = SNAP(flush_subscribed),
     .words = flush_states,
     .when = STATS_IF_REDIS},

    ROW("callahead_harvest_penalties_total", NULL, "harvest_penalties", STATS_COUNTER,
        "Client networks put in their harvest penalty (here or by another host).", STATS_V_ULONG,
        SNAP(harvest_penalties)),
    ROW("callahead_harvest_refused_total", NULL, "harvest_refused", STATS_COUNTER,
        "Requests answered harvest_action.", STATS_V_ULONG, SNAP(harvest_refused)),
    ROW("callahead_harvest_blocked_networks", NULL, "harvest_blocked_networks", STATS_GAUGE,
        "Client networks in their harvest penalty now.", STATS_V_ULONG, SNAP(harvest_blocked)),
    ROW("callahead_control_requests_total", NULL, "control_requests", STATS_COUNTER,
        "Control socket requests.", STATS_V_ULONG, SNAP(control_requests)),
    ROW("callahead_control_errors_total", NULL, "control_errors", STATS_COUNTER,
        "Control socket requests answered with an error.", STATS_V_ULONG, SNAP(control_errors)),
    ROW("callahead_control_refused_total", NULL, "control_refused", STATS_COUNTER,
        "Control socket clients refused (wrong user, too many).", STATS_V_ULONG,
        SNAP(control_refused)),

    {.metric = "callahead_verdict_duration_seconds",
     .stat = "latency",
     .type = STATS_HISTOGRAM,
     .help = "Time from a complete policy request to its verdict, by where the verdict came from.",
     .value = STATS_V_LATENCY,
     .when = STATS_IF_METRICS},
};

const size_t stats_nrows = sizeof(stats_rows) / sizeof(stats_rows[0]);

int stats_row_shown(const struct stats_row *row, const struct stats_snapshot *st)
{
    switch (row->when) {
    case STATS_IF_REDIS:
        return st->redis_configured;
    case STATS_IF_METRICS:
        return st->metrics != NULL;
    case STATS_ALWAYS:
        break;
    }
    return 1;
}

size_t stats_family_end(const struct stats_row *rows, size_t n, size_t i)
{
    size_t e = i + 1;

    while (e < n && rows[e].metric != NULL && rows[i].metric != NULL &&
           strcmp(rows[e].metric, rows[i].metric) == 0)
        e++;
    return e;
}

/* field - the member at off of the struct at base */
static const void *field(const void *base, size_t off)
{
    return (const char *)base + off;
}

int stats_row_number(const struct stats_row *row, const void *base, char *buf, size_t size)
{
    const void *p = field(base, row->off);

    switch (row->value) {
    case STATS_V_ULONG:
        snprintf(buf, size, "%lu", *(const unsigned long *)p);
        return 0;
    case STATS_V_UINT:
        snprintf(buf, size, "%u", *(const unsigned *)p);
        return 0;
    case STATS_V_INT:
    case STATS_V_LABEL_INT:
        snprintf(buf, size, "%d", *(const int *)p);
        return 0;
    case STATS_V_SIZE:
        snprintf(buf, size, "%zu", *(const size_t *)p);
        return 0;
    default:
        return -1;
    }
}

int stats_row_flag(const struct stats_row *row, const void *base)
{
    return *(const int *)field(base, row->off) != 0;
}

const char *stats_row_string(const struct stats_row *row, const void *base)
{
    const void *p = field(base, row->off);

    if (row->value == STATS_V_LABEL_STR)
        return (const char *)p;
    const char *s = *(const char *const *)p;
    return s != NULL ? s : "";
}

long stats_row_time(const struct stats_row *row, const void *base)
{
    return (long)*(const time_t *)field(base, row->off);
}

void stats_row_mean(const struct stats_row *row, const void *base, double *sum,
                    unsigned long *count)
{
    *sum = *(const double *)field(base, row->off);
    *count = *(const unsigned long *)field(base, row->off2);
}

size_t stats_list_count(const struct stats_list *list, const struct stats_snapshot *st)
{
    return *(const size_t *)field(st, list->count_off);
}

const void *stats_list_item(const struct stats_list *list, const struct stats_snapshot *st,
                            size_t i)
{
    return field(st, list->array_off + i * list->item_size);
}
