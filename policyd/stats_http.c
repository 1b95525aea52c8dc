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
 *
 * What is exposed, under which name, type and help, comes from the table
 * in stats_table.c, which "callahead stats" walks too; this file only
 * writes it in the text format.
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
#include "stats_table.h"

#define STATS_HTTP_TIMEOUT_S 10
#define STATS_HTTP_MAX_HEADERS 8192

struct stats_http {
    struct evhttp *http;
    struct stats_env *env;
    struct evhttp_bound_socket *bound; /* the stats_listen socket, or NULL */
};

static const char *const type_names[] = {
    [STATS_COUNTER] = "counter",
    [STATS_GAUGE] = "gauge",
    [STATS_SUMMARY] = "summary",
    [STATS_HISTOGRAM] = "histogram",
};

/* header - "# HELP" and "# TYPE" lines of the family that row starts */
static void header(struct evbuffer *out, const struct stats_row *row)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", row->metric, row->help, row->metric,
                        type_names[row->type]);
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

/* sample - one line "metric{labels,label} value"; either label part may be empty */
static void sample(struct evbuffer *out, const char *metric, const char *labels, const char *label,
                   const char *value)
{
    if (*labels == '\0' && *label == '\0')
        evbuffer_add_printf(out, "%s %s\n", metric, value);
    else
        evbuffer_add_printf(out, "%s{%s%s%s} %s\n", metric, labels,
                            *labels != '\0' && *label != '\0' ? "," : "", label, value);
}

/*
 * row_samples - the series of one row for the struct at base (the
 * snapshot, or a list item whose labels are in labels)
 */
static void row_samples(struct evbuffer *out, const struct stats_row *row, const void *base,
                        const char *labels)
{
    const char *label = row->label != NULL ? row->label : "";
    char value[32];

    switch (row->value) {
    case STATS_V_FLAG:
        snprintf(value, sizeof(value), "%d", stats_row_flag(row, base));
        break;
    case STATS_V_SINCE:
        snprintf(value, sizeof(value), "%ld", stats_row_time(row, base));
        break;
    case STATS_V_STATE: {
        /* a state set: one series per state, 1 for the current one */
        const char *now = stats_row_string(row, base);
        for (size_t k = 0; row->words[k] != NULL; k++) {
            char state[64];
            snprintf(state, sizeof(state), "state=\"%s\"", row->words[k]);
            sample(out, row->metric, labels, state, strcmp(now, row->words[k]) == 0 ? "1" : "0");
        }
        return;
    }
    default:
        if (stats_row_number(row, base, value, sizeof(value)) < 0)
            return;
        break;
    }
    sample(out, row->metric, labels, label, value);
}

/*
 * item_labels - the label rows of a list item as Prometheus labels
 * (destination="...", source="...",route_line="12") into buf
 */
static void item_labels(const struct stats_list *list, const void *item, char *buf, size_t size)
{
    char lv[2 * VERIFIER_DEST_NAME_MAX + 1];
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < list->nrows && n < size; i++) {
        const struct stats_row *row = &list->rows[i];
        if (row->value == STATS_V_LABEL_STR)
            label_value(lv, sizeof(lv), stats_row_string(row, item));
        else if (row->value == STATS_V_LABEL_INT)
            stats_row_number(row, item, lv, sizeof(lv));
        else
            continue;
        int k = snprintf(buf + n, size - n, "%s%s=\"%s\"", n > 0 ? "," : "", row->metric, lv);
        n = k < 0 ? size : n + (size_t)k;
    }
}

/*
 * list_families - each family of a list over all its items. The label set
 * of an item comes from the route table or from the bounded top of the
 * busiest destinations, never from raw traffic; a family is announced
 * only with samples (the strict parsers insist), so none without items.
 */
static void list_families(const struct stats_list *list, const struct stats_snapshot *st,
                          struct evbuffer *out)
{
    size_t count = stats_list_count(list, st);
    char labels[2 * (2 * VERIFIER_DEST_NAME_MAX + 1)];

    if (count == 0)
        return;
    for (size_t i = 0; i < list->nrows;) {
        size_t end = stats_family_end(list->rows, list->nrows, i);
        if (list->rows[i].value == STATS_V_LABEL_STR || list->rows[i].value == STATS_V_LABEL_INT) {
            i = end;
            continue;
        }
        header(out, &list->rows[i]);
        for (size_t k = 0; k < count; k++) {
            const void *item = stats_list_item(list, st, k);
            item_labels(list, item, labels, sizeof(labels));
            for (size_t r = i; r < end; r++)
                row_samples(out, &list->rows[r], item, labels);
        }
        i = end;
    }
}

/* latency - the verdict latency histograms, one per source class */
static void latency(const struct stats_row *row, const struct stats_snapshot *st,
                    struct evbuffer *out)
{
    header(out, row);
    for (int s = 0; s < METRICS_NSOURCES; s++) {
        const struct metrics_hist *h = &st->metrics->latency[s];
        const char *src = metrics_source_name(s);
        unsigned long cum = 0;
        for (int i = 0; i < METRICS_NBUCKETS; i++) {
            cum += h->bucket[i];
            evbuffer_add_printf(out, "%s_bucket{source=\"%s\",le=\"%g\"} %lu\n", row->metric, src,
                                metrics_bucket_le[i], cum);
        }
        evbuffer_add_printf(out, "%s_bucket{source=\"%s\",le=\"+Inf\"} %lu\n", row->metric, src,
                            h->count);
        evbuffer_add_printf(out, "%s_sum{source=\"%s\"} %.6f\n", row->metric, src, h->sum);
        evbuffer_add_printf(out, "%s_count{source=\"%s\"} %lu\n", row->metric, src, h->count);
    }
}

void stats_http_format(const struct stats_snapshot *st, struct evbuffer *out)
{
    for (size_t i = 0; i < stats_nrows; i++) {
        const struct stats_row *row = &stats_rows[i];
        if (!stats_row_shown(row, st))
            continue;
        switch (row->value) {
        case STATS_V_LIST:
            list_families(row->list, st, out);
            break;
        case STATS_V_LATENCY:
            latency(row, st, out);
            break;
        case STATS_V_MEAN: {
            double sum;
            unsigned long count;
            stats_row_mean(row, st, &sum, &count);
            header(out, row);
            evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %lu\n", row->metric, sum, row->metric,
                                count);
            break;
        }
        default:
            if (row->help != NULL)
                header(out, row);
            row_samples(out, row, st, "");
            break;
        }
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
