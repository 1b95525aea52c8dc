/*
 * flush_listen.c - apply flushes published by other daemons to our
 * in-process cache (see flush_listen.h).
 */
#include "flush_listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_flush.h"
#include "harvest.h"
#include "log.h"
#include "redis_sub.h"
#include "verifier.h"

#define FLUSH_LOG_INTERVAL_MS 10000

struct flush_listen {
    struct verifier *v;
    struct harvest *harvest;
    struct redis_sub *sub;
    struct log_limit log_bad;
    struct flush_listen *prev; /* the subscription this one replaces, until this one is up */
};

/* on_message - a flush from some daemon (maybe us): the text is untrusted */
static void on_message(const char *msg, size_t len, void *arg)
{
    struct flush_listen *fl = arg;
    struct cache_flush_sel sel;

    if (len > 8 && memcmp(msg, "harvest ", 8) == 0 && harvest_message(fl->harvest, msg, len) == 0)
        return;
    if (cache_flush_parse(msg, len, &sel) < 0) {
        char shown[80];
        verdict_sanitize(shown, sizeof(shown), msg, len < 70 ? len : 70);
        log_limited(&fl->log_bad, FLUSH_LOG_INTERVAL_MS, LOG_WARNING,
                    "flush channel: ignoring a message that is not a flush: \"%s\"", shown);
        return;
    }
    unsigned long n = cache_flush_l1(verifier_cache(fl->v), &sel);
    log_info("flush %s%s%s from the flush channel: %lu in-process entries dropped",
             cache_flush_kind_name(sel.kind), sel.name[0] ? " " : "", sel.name, n);
}

/* on_resync - (re)subscribed: flushes may have been missed, so forget everything local */
static void on_resync(void *arg)
{
    struct flush_listen *fl = arg;
    struct cache_flush_sel all = {.kind = CACHE_FLUSH_ALL};

    if (fl->prev != NULL) {
        /* the one replaced heard the channel until now: nothing was missed */
        int gapless = flush_listen_subscribed(fl->prev);
        flush_listen_free(fl->prev);
        fl->prev = NULL;
        if (gapless) {
            log_info("flush channel subscribed on the new Redis connection, the old one closed; "
                     "no flush was missed, the in-process cache is kept");
            return;
        }
    }
    unsigned long n = cache_flush_l1(verifier_cache(fl->v), &all);

    if (n > 0)
        log_info("flush channel (re)subscribed: %lu in-process entries dropped, flushes "
                 "published meanwhile may have been missed",
                 n);
}

struct flush_listen *flush_listen_new(struct event_base *base, struct verifier *v,
                                      struct harvest *harvest, const struct verifier_config *vc,
                                      char *err, size_t errlen)
{
    char channel[1200];

    err[0] = '\0';
    if (!vc->cache.use_redis)
        return NULL;
    struct flush_listen *fl = calloc(1, sizeof(*fl));
    if (fl == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fl->v = v;
    fl->harvest = harvest;
    if (cache_flush_channel_of(vc->cache.key_prefix, channel, sizeof(channel)) < 0) {
        snprintf(err, errlen, "redis_key_prefix too long for the flush channel");
        free(fl);
        return NULL;
    }
    fl->sub =
        redis_sub_new(base, &vc->cache.redis, channel, on_message, on_resync, fl, err, errlen);
    if (fl->sub == NULL) {
        free(fl);
        return NULL;
    }
    return fl;
}

void flush_listen_take_over(struct flush_listen *fl, struct flush_listen *prev)
{
    if (fl == NULL || prev == NULL) {
        flush_listen_free(prev);
        return;
    }
    flush_listen_free(fl->prev);
    fl->prev = prev;
}

void flush_listen_free(struct flush_listen *fl)
{
    if (fl == NULL)
        return;
    flush_listen_free(fl->prev);
    redis_sub_free(fl->sub);
    free(fl);
}

int flush_listen_subscribed(const struct flush_listen *fl)
{
    return fl != NULL && redis_sub_subscribed(fl->sub);
}
