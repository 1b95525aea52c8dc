/*
 * metrics.c - verdict latency histograms by source class (see metrics.h).
 */
#include "metrics.h"

#include <string.h>

const double metrics_bucket_le[METRICS_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

static const char *const source_names[METRICS_NSOURCES] = {
    "cache_l1", "cache_redis", "cdb", "smtp", "ldap", "static", "other"};

const char *metrics_source_name(enum metrics_source src)
{
    if ((int)src < 0 || src >= METRICS_NSOURCES)
        return "other";
    return source_names[src];
}

/* prefix_is - does source start with word, followed by its end or ':'? ("smtp:[mx]:25") */
static int prefix_is(const char *source, const char *word)
{
    size_t n = strlen(word);

    return strncmp(source, word, n) == 0 && (source[n] == '\0' || source[n] == ':');
}

enum metrics_source metrics_classify(const struct verdict *v, const char *cached)
{
    if (cached != NULL && strcmp(cached, "l1") == 0)
        return METRICS_SRC_L1;
    if (cached != NULL && strcmp(cached, "redis") == 0)
        return METRICS_SRC_REDIS;
    if (prefix_is(v->source, "cdb"))
        return METRICS_SRC_CDB;
    if (prefix_is(v->source, "smtp"))
        return METRICS_SRC_SMTP;
    if (prefix_is(v->source, "ldap"))
        return METRICS_SRC_LDAP;
    if (prefix_is(v->source, "static") || prefix_is(v->source, "syntax") ||
        (prefix_is(v->source, "route") && v->kind == VERDICT_UNKNOWN))
        return METRICS_SRC_STATIC;
    return METRICS_SRC_OTHER;
}

void metrics_observe(struct metrics *m, enum metrics_source src, double secs)
{
    if (m == NULL || (int)src < 0 || src >= METRICS_NSOURCES)
        return;
    struct metrics_hist *h = &m->latency[src];
    if (secs < 0)
        secs = 0;
    for (int i = 0; i < METRICS_NBUCKETS; i++) {
        if (secs <= metrics_bucket_le[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum += secs;
}
