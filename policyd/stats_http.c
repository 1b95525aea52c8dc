/*
 * stats_http.c - Prometheus metrics over HTTP (see stats_http.h).
 *
 * Names follow the Prometheus conventions: a callahead_ prefix, base units
 * (seconds), _total for counters, labels with a small fixed set of values
 * (verdict kind, cache layer, source class), so the number of series never
 * depends on traffic. The one label that comes from traffic, destination,
 * is bounded the same way: only the VERIFIER_DEST_TOP busiest destinations
 * of the moment are exposed, so at most that many series per metric. The
 * LDAP pool families have one series per ldap: route (labels source and
 * route_line, from the route table and callahead.conf, not from traffic),
 * VERIFIER_POOL_TOP at most.
 */
#include "stats_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "metrics.h"
#include "stats.h"

#define STATS_HTTP_TIMEOUT_S 10
#define STATS_HTTP_MAX_HEADERS 8192

struct stats_http {
    struct evhttp *http;
    struct stats_env *env;
    struct evhttp_bound_socket *bound; /* the stats_listen socket, or NULL */
};

/* metric - "# HELP" and "# TYPE" lines of one metric family */
static void metric(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label_value - s escaped for a Prometheus label value (backslash, quote, newline) */
static void label_value(char *buf, size_t size, const char *s)
{
    size_t n = 0;

    for (; *s != '\0' && n + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            buf[n++] = '\\';
            buf[n++] = *s;
        } else if (*s == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
}

/* dest_metrics - probes and breaker of the busiest destinations (bounded label set) */
static void dest_metrics(const struct stats_snapshot *st, struct evbuffer *out)
{
    static const char *const states[] = {"closed", "open", "half-open"};
    char lv[2 * VERIFIER_DEST_NAME_MAX + 1];

    metric(out, "callahead_destinations", "gauge",
           "Destinations with backend requests now or a breaker that counts failures.");
    evbuffer_add_printf(out, "callahead_destinations %zu\n", st->dests_total);
    if (st->ndests == 0)
        return; /* a family is announced only with samples (the strict parsers insist) */
    metric(out, "callahead_destination_probes_running", "gauge",
           "Backend probes running now, for the busiest destinations.");
    for (size_t i = 0; i < st->ndests; i++) {
        label_value(lv, sizeof(lv), st->dests[i].name);
        evbuffer_add_printf(out, "callahead_destination_probes_running{destination=\"%s\"} %u\n",
                            lv, st->dests[i].running);
    }
    metric(out, "callahead_destination_probes_queued", "gauge",
           "Lookups waiting for a probe slot now, for the busiest destinations.");
    for (size_t i = 0; i < st->ndests; i++) {
        label_value(lv, sizeof(lv), st->dests[i].name);
        evbuffer_add_printf(out, "callahead_destination_probes_queued{destination=\"%s\"} %u\n", lv,
                            st->dests[i].queued);
    }
    metric(out, "callahead_destination_breaker_state", "gauge",
           "1 for the circuit breaker state the destination is in, 0 for the others.");
    for (size_t i = 0; i < st->ndests; i++) {
        label_value(lv, sizeof(lv), st->dests[i].name);
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
            evbuffer_add_printf(
                out, "callahead_destination_breaker_state{destination=\"%s\",state=\"%s\"} %d\n",
                lv, states[k], strcmp(st->dests[i].breaker, states[k]) == 0);
    }
    metric(out, "callahead_destination_breaker_failures", "gauge",
           "Consecutive failures the destination's circuit breaker counts.");
    for (size_t i = 0; i < st->ndests; i++) {
        label_value(lv, sizeof(lv), st->dests[i].name);
        evbuffer_add_printf(out, "callahead_destination_breaker_failures{destination=\"%s\"} %d\n",
                            lv, st->dests[i].breaker_failures);
    }
    metric(out, "callahead_destination_breaker_retry_seconds", "gauge",
           "Seconds until an open circuit breaker lets one probe through (0 unless open).");
    for (size_t i = 0; i < st->ndests; i++) {
        label_value(lv, sizeof(lv), st->dests[i].name);
        evbuffer_add_printf(out,
                            "callahead_destination_breaker_retry_seconds{destination=\"%s\"} %d\n",
                            lv, st->dests[i].breaker_retry_in);
    }
}

/* POOL_SAMPLES - one sample of field per pool, labelled by source and route line (needs lv) */
#define POOL_SAMPLES(st, out, mname, fmt, field)                                                   \
    for (size_t i_ = 0; i_ < (st)->npools; i_++) {                                                 \
        label_value(lv, sizeof(lv), (st)->pools[i_].source);                                       \
        evbuffer_add_printf(out, mname "{source=\"%s\",route_line=\"%d\"} " fmt "\n", lv,          \
                            (st)->pools[i_].route_line, (st)->pools[i_].field);                    \
    }

/*
 * pool_metrics - connections and requests of the backend pools (ldap:
 * routes); one series per route with a pool, a set the route table bounds
 */
static void pool_metrics(const struct stats_snapshot *st, struct evbuffer *out)
{
    char lv[2 * sizeof(st->pools[0].source) + 1];

    if (st->npools == 0)
        return; /* a family is announced only with samples (the strict parsers insist) */
    metric(out, "callahead_ldap_pool_connections", "gauge",
           "LDAP connections now, by state (ready, connecting: connect or bind in progress).");
    for (size_t i = 0; i < st->npools; i++) {
        label_value(lv, sizeof(lv), st->pools[i].source);
        evbuffer_add_printf(out,
                            "callahead_ldap_pool_connections{source=\"%s\",route_line=\"%d\","
                            "state=\"ready\"} %d\n",
                            lv, st->pools[i].route_line, st->pools[i].conns_ready);
        evbuffer_add_printf(out,
                            "callahead_ldap_pool_connections{source=\"%s\",route_line=\"%d\","
                            "state=\"connecting\"} %d\n",
                            lv, st->pools[i].route_line, st->pools[i].conns_connecting);
    }
    metric(out, "callahead_ldap_pool_searches_inflight", "gauge",
           "LDAP searches sent and not answered yet.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_searches_inflight", "%d", inflight);
    metric(out, "callahead_ldap_pool_searches_queued", "gauge",
           "LDAP searches waiting for a connection.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_searches_queued", "%d", queued);
    metric(out, "callahead_ldap_pool_backoff", "gauge",
           "1 while the pool refuses searches after failed connects, else 0.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_backoff", "%d", backing_off);
    metric(out, "callahead_ldap_pool_searches_total", "counter",
           "LDAP searches sent (retries on a fresh connection included).");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_searches_total", "%lu", requests);
    metric(out, "callahead_ldap_pool_search_errors_total", "counter",
           "LDAP searches refused at once (backoff) or answered with an error or a timeout.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_search_errors_total", "%lu", errors);
    metric(out, "callahead_ldap_pool_search_timeouts_total", "counter",
           "LDAP searches past their deadline.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_search_timeouts_total", "%lu", timeouts);
    metric(out, "callahead_ldap_pool_connect_failures_total", "counter",
           "LDAP connections that could not be opened or bound.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_connect_failures_total", "%lu", connect_fails);
    metric(out, "callahead_ldap_pool_drops_total", "counter",
           "Ready LDAP connections lost or dropped (errors, stuck; idle ones closed are not "
           "counted).");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_drops_total", "%lu", drops);
    metric(out, "callahead_ldap_pool_reconnects_total", "counter",
           "LDAP connections opened to replace a dropped one.");
    POOL_SAMPLES(st, out, "callahead_ldap_pool_reconnects_total", "%lu", reconnects);
}

void stats_http_format(const struct stats_snapshot *st, struct evbuffer *out)
{
    metric(out, "callahead_start_time_seconds", "gauge", "Start time of the daemon (Unix time).");
    evbuffer_add_printf(out, "callahead_start_time_seconds %ld\n", (long)st->started);
    metric(out, "callahead_policy_connections", "gauge", "Policy client connections open now.");
    evbuffer_add_printf(out, "callahead_policy_connections %d\n", st->connections);
    metric(out, "callahead_policy_requests_total", "counter", "Policy requests answered.");
    evbuffer_add_printf(out, "callahead_policy_requests_total %lu\n", st->requests);
    metric(out, "callahead_policy_protocol_errors_total", "counter",
           "Policy connections closed for a protocol error.");
    evbuffer_add_printf(out, "callahead_policy_protocol_errors_total %lu\n", st->protocol_errors);
    metric(out, "callahead_policy_connections_refused_total", "counter",
           "Policy connections refused (table full of busy connections, or stopping).");
    evbuffer_add_printf(out, "callahead_policy_connections_refused_total %lu\n", st->refused);
    metric(out, "callahead_policy_connections_evicted_total", "counter",
           "Idle or slow policy connections closed to make room for a new one.");
    evbuffer_add_printf(out, "callahead_policy_connections_evicted_total %lu\n", st->evicted);

    metric(out, "callahead_lookups_total", "counter", "Recipient lookups started.");
    evbuffer_add_printf(out, "callahead_lookups_total %lu\n", st->v.lookups);
    metric(out, "callahead_verdicts_total", "counter", "Lookups answered, by verdict.");
    evbuffer_add_printf(out, "callahead_verdicts_total{verdict=\"valid\"} %lu\n", st->v.valid);
    evbuffer_add_printf(out, "callahead_verdicts_total{verdict=\"invalid\"} %lu\n", st->v.invalid);
    evbuffer_add_printf(out, "callahead_verdicts_total{verdict=\"tempfail\"} %lu\n",
                        st->v.tempfail);
    evbuffer_add_printf(out, "callahead_verdicts_total{verdict=\"unknown\"} %lu\n", st->v.unknown);
    evbuffer_add_printf(out, "callahead_verdicts_total{verdict=\"malformed\"} %lu\n",
                        st->v.malformed);
    metric(out, "callahead_budget_expired_total", "counter",
           "Lookups answered tempfail because the answer budget passed.");
    evbuffer_add_printf(out, "callahead_budget_expired_total %lu\n", st->v.budget_expired);

    metric(out, "callahead_cache_hits_total", "counter", "Cache hits, by layer.");
    evbuffer_add_printf(out, "callahead_cache_hits_total{layer=\"l1\"} %lu\n", st->v.cache.l1_hits);
    evbuffer_add_printf(out, "callahead_cache_hits_total{layer=\"redis\"} %lu\n",
                        st->v.cache.redis_hits);
    metric(out, "callahead_cache_misses_total", "counter", "Cache lookups that found nothing.");
    evbuffer_add_printf(out, "callahead_cache_misses_total %lu\n", st->v.cache.misses);
    metric(out, "callahead_cache_l1_entries", "gauge", "Verdicts in the in-process cache.");
    evbuffer_add_printf(out, "callahead_cache_l1_entries %zu\n", st->v.cache.l1_entries);

    metric(out, "callahead_probes_total", "counter", "Backend probes (callouts) started.");
    evbuffer_add_printf(out, "callahead_probes_total %lu\n", st->v.probes);
    metric(out, "callahead_probes_running", "gauge", "Backend probes running now.");
    evbuffer_add_printf(out, "callahead_probes_running %lu\n", st->v.probes_running);
    metric(out, "callahead_probes_queued", "gauge", "Lookups waiting for a probe slot now.");
    evbuffer_add_printf(out, "callahead_probes_queued %lu\n", st->v.probes_queued);
    metric(out, "callahead_probes_refused_total", "counter",
           "Lookups answered tempfail at once because the probe queue was full.");
    evbuffer_add_printf(out, "callahead_probes_refused_total %lu\n", st->v.probes_refused);
    metric(out, "callahead_probes_dropped_total", "counter",
           "Queued probes dropped because nobody waited for them any more.");
    evbuffer_add_printf(out, "callahead_probes_dropped_total %lu\n", st->v.probes_dropped);
    metric(out, "callahead_probes_expired_total", "counter",
           "Backend requests failed by their deadline (flight_timeout).");
    evbuffer_add_printf(out, "callahead_probes_expired_total %lu\n", st->v.flights_expired);
    metric(out, "callahead_breakers_open", "gauge", "Next hops whose circuit breaker is open now.");
    evbuffer_add_printf(out, "callahead_breakers_open %lu\n", st->v.breakers_open);
    metric(out, "callahead_breaker_rejects_total", "counter",
           "Lookups answered tempfail by an open circuit breaker.");
    evbuffer_add_printf(out, "callahead_breaker_rejects_total %lu\n", st->v.breaker_rejects);
    metric(out, "callahead_accept_all_domains_total", "counter",
           "Domains found to accept every address.");
    evbuffer_add_printf(out, "callahead_accept_all_domains_total %lu\n", st->v.accept_all_domains);

    dest_metrics(st, out);
    pool_metrics(st, out);

    if (st->redis_configured) {
        metric(out, "callahead_redis_up", "gauge", "1 when the Redis connection is up.");
        evbuffer_add_printf(out, "callahead_redis_up %d\n", st->redis_connected ? 1 : 0);
        metric(out, "callahead_redis_flush_subscribed", "gauge",
               "1 while subscribed to the flush channel other daemons publish on.");
        evbuffer_add_printf(out, "callahead_redis_flush_subscribed %d\n", st->flush_subscribed);
        metric(out, "callahead_redis_commands_total", "counter", "Redis commands sent.");
        evbuffer_add_printf(out, "callahead_redis_commands_total %lu\n", st->redis.commands);
        metric(out, "callahead_redis_errors_total", "counter", "Redis commands that failed.");
        evbuffer_add_printf(out, "callahead_redis_errors_total %lu\n", st->redis.errors);
        metric(out, "callahead_redis_timeouts_total", "counter",
               "Redis commands that passed their deadline.");
        evbuffer_add_printf(out, "callahead_redis_timeouts_total %lu\n", st->redis.timeouts);
        metric(out, "callahead_redis_reply_duration_seconds", "summary",
               "Time from sending a Redis command to its reply.");
        evbuffer_add_printf(out, "callahead_redis_reply_duration_seconds_sum %.6f\n",
                            st->redis.reply_seconds);
        evbuffer_add_printf(out, "callahead_redis_reply_duration_seconds_count %lu\n",
                            st->redis.replies);
        metric(out, "callahead_redis_reconnects_total", "counter", "Redis reconnect attempts.");
        evbuffer_add_printf(out, "callahead_redis_reconnects_total %lu\n", st->redis.reconnects);
        metric(out, "callahead_redis_master_switches_total", "counter",
               "Moves to another Redis master announced or named by the sentinels.");
        evbuffer_add_printf(out, "callahead_redis_master_switches_total %lu\n",
                            st->redis.master_switches);
    }

    metric(out, "callahead_harvest_penalties_total", "counter",
           "Client networks put in their harvest penalty (here or by another host).");
    evbuffer_add_printf(out, "callahead_harvest_penalties_total %lu\n", st->harvest_penalties);
    metric(out, "callahead_harvest_refused_total", "counter", "Requests answered harvest_action.");
    evbuffer_add_printf(out, "callahead_harvest_refused_total %lu\n", st->harvest_refused);
    metric(out, "callahead_harvest_blocked_networks", "gauge",
           "Client networks in their harvest penalty now.");
    evbuffer_add_printf(out, "callahead_harvest_blocked_networks %lu\n", st->harvest_blocked);
    metric(out, "callahead_control_requests_total", "counter", "Control socket requests.");
    evbuffer_add_printf(out, "callahead_control_requests_total %lu\n", st->control_requests);

    if (st->metrics == NULL)
        return;
    metric(out, "callahead_verdict_duration_seconds", "histogram",
           "Time from a complete policy request to its verdict, by where the verdict came from.");
    for (int s = 0; s < METRICS_NSOURCES; s++) {
        const struct metrics_hist *h = &st->metrics->latency[s];
        const char *src = metrics_source_name(s);
        unsigned long cum = 0;
        for (int i = 0; i < METRICS_NBUCKETS; i++) {
            cum += h->bucket[i];
            evbuffer_add_printf(
                out,
                "callahead_verdict_duration_seconds_bucket{source=\"%s\",le=\"%g\"} "
                "%lu\n",
                src, metrics_bucket_le[i], cum);
        }
        evbuffer_add_printf(out,
                            "callahead_verdict_duration_seconds_bucket{source=\"%s\",le=\"+Inf\"} "
                            "%lu\n",
                            src, h->count);
        evbuffer_add_printf(out, "callahead_verdict_duration_seconds_sum{source=\"%s\"} %.6f\n",
                            src, h->sum);
        evbuffer_add_printf(out, "callahead_verdict_duration_seconds_count{source=\"%s\"} %lu\n",
                            src, h->count);
    }
}

/* metrics_cb - GET /metrics: a fresh snapshot */
static void metrics_cb(struct evhttp_request *req, void *arg)
{
    struct stats_http *h = arg;
    struct stats_snapshot st;
    struct evbuffer *body = evbuffer_new();

    if (body == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    stats_collect(h->env, &st);
    stats_http_format(&st, body);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

/* other_cb - any other path */
static void other_cb(struct evhttp_request *req, void *arg)
{
    evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
}

struct stats_http *stats_http_new(struct event_base *base, int fd, struct stats_env *env, char *err,
                                  size_t errlen)
{
    struct stats_http *h = calloc(1, sizeof(*h));

    if (h == NULL || (h->http = evhttp_new(base)) == NULL) {
        snprintf(err, errlen, "stats_listen: out of memory");
        free(h);
        return NULL;
    }
    h->env = env;
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h->http, STATS_HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, STATS_HTTP_TIMEOUT_S);
    evhttp_set_cb(h->http, "/metrics", metrics_cb, h);
    evhttp_set_gencb(h->http, other_cb, h);
    if (stats_http_reconfigure(h, fd, err, errlen) < 0) {
        evhttp_free(h->http);
        free(h);
        return NULL;
    }
    return h;
}

int stats_http_reconfigure(struct stats_http *h, int fd, char *err, size_t errlen)
{
    struct evhttp_bound_socket *bound = NULL;

    if (fd >= 0) {
        evutil_make_socket_nonblocking(fd);
        if ((bound = evhttp_accept_socket_with_handle(h->http, fd)) == NULL) {
            snprintf(err, errlen, "stats_listen: cannot accept on the socket");
            return -1;
        }
    }
    /* closes the old listening socket only: requests it accepted are answered */
    if (h->bound != NULL)
        evhttp_del_accept_socket(h->http, h->bound);
    h->bound = bound;
    return 0;
}

void stats_http_free(struct stats_http *h)
{
    if (h == NULL)
        return;
    evhttp_free(h->http); /* closes the listening socket */
    free(h);
}
