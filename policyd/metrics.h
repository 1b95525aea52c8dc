/*
 * metrics.h - what policyd measures about its own answers that the
 * verifier's counters do not hold: how long each verdict took, by where it
 * came from. One histogram per source class with fixed buckets, so the
 * memory is bounded whatever the sources are called, and the Prometheus
 * exposition (stats_http.c) and "callahead stats" (control_cmd.c) read the
 * same numbers.
 */
#ifndef CALLAHEAD_METRICS_H
#define CALLAHEAD_METRICS_H

#include "verdict.h"

/* where a verdict came from, as a small fixed set of label values */
enum metrics_source {
    METRICS_SRC_L1,    /* in-process cache */
    METRICS_SRC_REDIS, /* shared cache */
    METRICS_SRC_CDB,
    METRICS_SRC_SMTP,
    METRICS_SRC_LDAP,
    METRICS_SRC_STATIC, /* the route answered: accept, reject, dunno, no route, syntax */
    METRICS_SRC_OTHER,  /* answer budget, breaker, backend unavailable */
};
#define METRICS_NSOURCES 7

/* upper bounds in seconds of the latency buckets (the +Inf bucket is implicit) */
#define METRICS_NBUCKETS 12
extern const double metrics_bucket_le[METRICS_NBUCKETS];

struct metrics_hist {
    unsigned long
        bucket[METRICS_NBUCKETS]; /* not cumulative: bucket i counts le[i-1] < x <= le[i] */
    unsigned long count;
    double sum; /* seconds */
};

struct metrics {
    struct metrics_hist latency[METRICS_NSOURCES];
};

/* metrics_source_name - the label value: "cache_l1", "cache_redis", "cdb", ... */
const char *metrics_source_name(enum metrics_source src);

/* metrics_classify - the class of verdict v given the verifier's "cached" ("no", "l1", "redis") */
enum metrics_source metrics_classify(const struct verdict *v, const char *cached);

/* metrics_observe - count one verdict of class src that took secs seconds */
void metrics_observe(struct metrics *m, enum metrics_source src, double secs);

#endif
