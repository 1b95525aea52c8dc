/*
 * stats_http.h - Prometheus text exposition (format 0.0.4) of the stats
 * snapshot, served by libevent's HTTP server on the optional stats_listen
 * socket: GET /metrics (HEAD too); other paths get 404, other methods 501
 * (libevent's answer), a request with a body 413.
 * The server runs on the daemon's one event loop; its limits (header size,
 * no request body, a timeout per connection) keep a
 * misbehaving scraper from costing more than a scrape.
 */
#ifndef CALLAHEAD_STATS_HTTP_H
#define CALLAHEAD_STATS_HTTP_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct stats_env;
struct stats_snapshot;
struct stats_http;

/* stats_http_new - serve env on the bound, listening socket fd (taken over); NULL + err */
struct stats_http *stats_http_new(struct event_base *base, int fd, struct stats_env *env, char *err,
                                  size_t errlen);
void stats_http_free(struct stats_http *h);

/*
 * stats_http_reconfigure - serve from now on the bound and listening
 * socket fd (-1: none), and close the one served so far: a reload's new
 * stats_listen. Requests already accepted on the old socket are answered.
 * On failure (-1, err set) nothing changed and fd is still the caller's.
 */
int stats_http_reconfigure(struct stats_http *h, int fd, char *err, size_t errlen);

/* stats_http_format - the exposition text of st (the scrape body), appended to out */
void stats_http_format(const struct stats_snapshot *st, struct evbuffer *out);

#endif
