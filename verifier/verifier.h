/*
 * verifier.h - address in, verdict out, asynchronously.
 *
 * The library the policy daemon, the milter (through the daemon) and the CLI
 * share. It knows nothing of Postfix or milters. A lookup normalises the
 * address, follows the route table, asks the cache, and on a miss the
 * route's backend; the verdict is cached and handed to the callback.
 */
#ifndef CALLAHEAD_VERIFIER_H
#define CALLAHEAD_VERIFIER_H

#include <stddef.h>

#include "cache.h"
#include "verdict.h"

struct event_base;
struct verifier;       /* opaque */
struct verifier_req;   /* opaque */
struct backend_source; /* backend.h */

struct verifier_config {
    const char *route_table;         /* path of the route table file */
    const char *recipient_delimiter; /* sub-address delimiters, e.g. "+"; "" for none */
    int answer_budget_ms;            /* a lookup answers tempfail after this long */
    struct cache_config cache;
    const char *dns_servers; /* "127.0.0.1:5353,[::1]:53"; NULL or "" = /etc/resolv.conf */
    int dns_timeout_ms;      /* one whole MX + address lookup; <= 0 = the default (4000) */
    int max_probes;          /* backend probes in progress at once; <= 0 = 500 */
    /* probes in progress at once for one destination (next hop, MX domain); <= 0 = max / 5 */
    int max_probes_per_destination;
    int probe_queue_limit;           /* lookups waiting for a probe slot; <= 0 = 10000 */
    int probe_queue_per_destination; /* of which for one destination; <= 0 = 1000 */
    int flight_timeout_ms; /* deadline of one backend request and its lock; <= 0 = 60000 */
    /*
     * named sources from callahead.conf ("ldap:NAME"), handed to the
     * backends while they open (backend.h); need only live during
     * verifier_new / verifier_reload
     */
    const struct backend_source *sources;
    size_t nsources;
};

/* verifier_result - what a lookup found out besides the verdict */
struct verifier_result {
    const char *key;    /* the normalised address that was routed; "" when malformed */
    const char *cached; /* "no", "l1" or "redis" */
    const char *route;  /* "file:line" of the deciding route, "" when none matched */
};

/*
 * verifier_cb - the result of one lookup; runs exactly once per lookup that
 * was not cancelled, always from the event loop (never inside
 * verifier_lookup). v and res are valid only during the call.
 */
typedef void (*verifier_cb)(const struct verdict *v, const struct verifier_result *res, void *arg);

/*
 * verifier_new - load the route table, check every route's options against
 * the declared ones (backend.h), open its backends and the cache. The config
 * strings are copied. NULL + err ("file:line: reason" for the table) on any
 * error. Opening one on a private event base and freeing it unrun is how
 * "callahead-policyd -t" runs exactly the checks of start-up and reload.
 */
struct verifier *verifier_new(struct event_base *base, const struct verifier_config *cfg, char *err,
                              size_t errlen);

/*
 * verifier_reload - load a new route table and backends from cfg (the same
 * checks as verifier_new); on any error the old ones stay in use and -1 +
 * err is returned. Lookups in progress finish against the tables they
 * started with (and with their recipient delimiter). Only the route table,
 * recipient_delimiter, answer_budget_ms, the cache TTLs and the probe limits
 * (max_probes, the queue limits, flight_timeout_ms) are taken from cfg: the
 * cache and the resolver are kept, so a caller that wants them changed must
 * refuse the reload (policyd does).
 */
int verifier_reload(struct verifier *v, const struct verifier_config *cfg, char *err,
                    size_t errlen);

/* verifier_free - cancels all lookups in progress (their callbacks do not run) */
void verifier_free(struct verifier *v);

/* verifier_lookup - start verifying len bytes of rcpt; never NULL except on ENOMEM */
struct verifier_req *verifier_lookup(struct verifier *v, const char *rcpt, size_t len,
                                     verifier_cb cb, void *arg);

/*
 * verifier_lookup_flags - verifier_lookup with VERIFIER_* flags.
 * VERIFIER_REFRESH skips the cache lookup and asks the route's backend
 * (the new verdict is cached as usual): "callahead verify --refresh".
 */
#define VERIFIER_REFRESH 0x1
struct verifier_req *verifier_lookup_flags(struct verifier *v, const char *rcpt, size_t len,
                                           int flags, verifier_cb cb, void *arg);

/* verifier_cancel - the callback will not run; safe to call from any callback but its own */
void verifier_cancel(struct verifier_req *req);

/*
 * verifier_set_backend - use ops for routes of method m in verifiers created
 * (or reloaded) from now on; NULL restores the built-in choice. This is how
 * tests plug a fake backend in, and how optional backends register.
 */
struct backend_ops;
void verifier_set_backend(int method, const struct backend_ops *ops);

struct verifier_stats {
    unsigned long lookups, valid, invalid, tempfail, unknown, malformed, budget_expired;
    unsigned long probes;             /* backend requests started for asynchronous routes */
    unsigned long breaker_rejects;    /* lookups answered tempfail by an open circuit breaker */
    unsigned long accept_all_domains; /* domains found to accept every address */
    unsigned long breakers_open;      /* gauge: destinations whose breaker is open now */
    unsigned long probes_refused;     /* lookups answered tempfail: the probe queue was full */
    unsigned long flights_expired;    /* backend requests failed by their deadline */
    unsigned long probes_dropped;     /* queued probes dropped: nobody waited for them any more */
    unsigned long flights;            /* backend requests now (gauge) */
    unsigned long probes_queued;      /* of which waiting for a probe slot (gauge) */
    unsigned long probes_running;     /* of which probing (gauge) */
    struct cache_stats cache;
};
void verifier_get_stats(const struct verifier *v, struct verifier_stats *out);

/*
 * Destinations (the breaker and probe-queue key: a static next hop, or an
 * MX domain for smtp:mx), read-only, for "callahead show" and "stats".
 * A daemon in front of 100,000 MX domains may know as many destinations,
 * so a report is bounded: the top `max` by activity.
 */
#define VERIFIER_DEST_NAME_MAX 300
#define VERIFIER_DEST_TOP 20 /* what policyd reports: callahead(1), OPERATIONS.md */

struct verifier_dest {
    char name[VERIFIER_DEST_NAME_MAX];
    unsigned flights;     /* backend requests for it now, in any state */
    unsigned running;     /* of which probing */
    unsigned queued;      /* of which waiting for a probe slot */
    const char *breaker;  /* "closed", "open" or "half-open" (static string) */
    int breaker_failures; /* consecutive failures counted */
    int breaker_retry_in; /* seconds until the open breaker lets one probe through; 0 */
};

/*
 * verifier_top_destinations - the destinations with flights now or a
 * breaker that is not forgotten (it failed lately), busiest first: by
 * flights, then open before half-open before closed, then failures, then
 * name. At most max go into out; returns how many did, and *total (may be
 * NULL) gets how many there are in all.
 */
size_t verifier_top_destinations(const struct verifier *v, struct verifier_dest *out, size_t max,
                                 size_t *total);

/*
 * verifier_domain_destination - the destination that a lookup of an
 * address in domain goes to now (the route table's answer for
 * postmaster@domain), with its flights and breaker. 1 when the route has
 * a backend with a destination, 0 when it has none (dunno, accept,
 * reject, no route), -1 + err when domain cannot be routed.
 */
int verifier_domain_destination(const struct verifier *v, const char *domain,
                                struct verifier_dest *out, char *err, size_t errlen);

/*
 * Backend pools (the connections of an ldap: route), read-only, for
 * "callahead stats" and the Prometheus exposition. One per route that has
 * a pool, in route table order; the table is the operator's own, but a
 * report is bounded all the same.
 */
#define VERIFIER_POOL_TOP 16 /* what policyd reports: callahead(1), OPERATIONS.md */

struct verifier_pool {
    char source[64];                   /* "ldap:NAME" */
    int route_line;                    /* line of the route in the route table */
    int conns_ready, conns_connecting; /* connections now */
    int inflight;                      /* requests sent, not answered yet */
    int queued;                        /* requests waiting for a connection */
    int backing_off;                   /* 1: refusing requests after failed connects */
    unsigned long requests;            /* requests sent (retries included) */
    unsigned long errors;   /* requests refused at once or answered with an error or a timeout */
    unsigned long timeouts; /* of which past their deadline */
    unsigned long connect_fails; /* connections that could not be opened or bound */
    unsigned long drops;         /* ready connections lost or dropped (not idle ones closed) */
    unsigned long reconnects;    /* connections opened to replace a dropped one */
};

/*
 * verifier_pools - the pools of the current route table's backends. At most
 * max go into out; returns how many did, and *total (may be NULL) how many
 * there are.
 */
size_t verifier_pools(const struct verifier *v, struct verifier_pool *out, size_t max,
                      size_t *total);

/* verifier_cache - the verdict cache, for inspection and flushing by operators */
struct cache *verifier_cache(struct verifier *v);

#endif
