/*
 * test_breaker.c - circuit breaker bookkeeping: opens after N consecutive
 * failures, blocks while open, lets exactly one half-open probe through,
 * closes on success, reopens on failure, and stays bounded.
 */
#include <criterion/criterion.h>

#include <stdio.h>

#include "breaker.h"

Test(breaker, opens_after_consecutive_failures_only)
{
    struct breaker_table *t = breaker_table_new(100);

    cr_assert_eq(breaker_allow(t, "a", 1000, NULL), 1);
    cr_assert_eq(breaker_report(t, "a", 0, 3, 60, 1000), 0);
    cr_assert_eq(breaker_report(t, "a", 0, 3, 60, 1000), 0);
    cr_assert_eq(breaker_report(t, "a", 1, 3, 60, 1000), 0, "a success resets the count");
    cr_assert_eq(breaker_report(t, "a", 0, 3, 60, 1001), 0);
    cr_assert_eq(breaker_report(t, "a", 0, 3, 60, 1001), 0);
    cr_assert_eq(breaker_allow(t, "a", 1001, NULL), 1);
    cr_assert_eq(breaker_report(t, "a", 0, 3, 60, 1001), 1, "third in a row opens it");
    int retry = 0;
    cr_assert_eq(breaker_allow(t, "a", 1002, &retry), 0);
    cr_assert_eq(retry, 59);
    cr_assert_eq(breaker_allow(t, "b", 1002, NULL), 1, "other destinations unaffected");
    cr_assert_eq(breaker_open_count(t, 1002), 1);
    breaker_table_free(t);
}

Test(breaker, half_open_single_probe_then_close_or_reopen)
{
    struct breaker_table *t = breaker_table_new(100);

    breaker_report(t, "a", 0, 1, 10, 100);
    cr_assert_eq(breaker_allow(t, "a", 105, NULL), 0);
    cr_assert_eq(breaker_allow(t, "a", 110, NULL), 1, "half-open: one probe");
    cr_assert_eq(breaker_allow(t, "a", 110, NULL), 0, "only one");
    cr_assert_eq(breaker_report(t, "a", 0, 1, 10, 111), 0, "failure reopens, no new log");
    cr_assert_eq(breaker_allow(t, "a", 115, NULL), 0);
    cr_assert_eq(breaker_allow(t, "a", 121, NULL), 1);
    cr_assert_eq(breaker_report(t, "a", 1, 1, 10, 122), -1, "success closes it");
    cr_assert_eq(breaker_allow(t, "a", 122, NULL), 1);
    cr_assert_eq(breaker_allow(t, "a", 122, NULL), 1, "closed: no limit");
    cr_assert_eq(breaker_open_count(t, 122), 0);
    breaker_table_free(t);
}

Test(breaker, bounded)
{
    struct breaker_table *t = breaker_table_new(10);
    char name[32];

    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "d%d", i);
        breaker_report(t, name, 0, 1, 60, 0);
    }
    cr_assert_leq(breaker_open_count(t, 1), 10);
    cr_assert_eq(breaker_allow(t, "d9999", 1, NULL), 0, "the newest is kept");
    cr_assert_eq(breaker_allow(t, "d0", 1, NULL), 1, "the oldest was dropped");
    breaker_table_free(t);
}

/* breaker_state_of - dest's state name at now, through the read-only view */
static const char *breaker_state_of(struct breaker_table *t, const char *dest, time_t now,
                                    struct breaker_info *bi)
{
    breaker_peek(t, dest, now, bi);
    return breaker_state_name(bi->state);
}

/* the read-only view: closed while counting, open with the time left, half-open, forgotten */
Test(breaker, peek_reports_state_failures_and_retry)
{
    struct breaker_table *t = breaker_table_new(100);
    struct breaker_info bi;

    cr_assert_eq(breaker_peek(t, "a", 1000, &bi), 0, "untracked");
    cr_assert_str_eq(breaker_state_name(bi.state), "closed");
    cr_assert_eq(bi.failures, 0);
    breaker_report(t, "a", 0, 3, 60, 1000);
    breaker_report(t, "a", 0, 3, 60, 1000);
    cr_assert_str_eq(breaker_state_of(t, "a", 1000, &bi), "closed");
    cr_assert_eq(bi.failures, 2);
    cr_assert_eq(bi.retry_in, 0);
    breaker_report(t, "a", 0, 3, 60, 1000);
    cr_assert_str_eq(breaker_state_of(t, "a", 1010, &bi), "open");
    cr_assert_eq(bi.failures, 3);
    cr_assert_eq(bi.retry_in, 50);
    cr_assert_str_eq(bi.dest, "a");
    cr_assert_str_eq(breaker_state_of(t, "a", 1060, &bi), "half-open", "open time over");
    cr_assert_eq(bi.retry_in, 0);
    cr_assert_eq(breaker_allow(t, "a", 1060, NULL), 1, "peeking did not take the trial probe");
    cr_assert_str_eq(breaker_state_of(t, "a", 1061, &bi), "half-open", "trial probe out");
    breaker_report(t, "a", 1, 3, 60, 1061);
    cr_assert_eq(breaker_peek(t, "a", 1061, &bi), 0, "a success forgets it");
    cr_assert_str_eq(breaker_state_name(bi.state), "closed");
    breaker_table_free(t);
}

struct seen {
    int n, open, stop_after;
};

static int count_cb(const struct breaker_info *b, void *arg)
{
    struct seen *s = arg;

    s->n++;
    s->open += b->state == BREAKER_OPEN;
    return s->stop_after > 0 && s->n >= s->stop_after;
}

/* breaker_foreach visits every tracked breaker once, and stops when asked */
Test(breaker, foreach_visits_all_and_stops)
{
    struct breaker_table *t = breaker_table_new(100);
    char name[32];
    struct seen s = {0, 0, 0};

    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof(name), "d%d", i);
        breaker_report(t, name, 0, i < 3 ? 1 : 5, 60, 0); /* d0..d2 open, d3..d6 counting */
    }
    breaker_foreach(t, 1, count_cb, &s);
    cr_assert_eq(s.n, 7);
    cr_assert_eq(s.open, 3);
    struct seen s2 = {0, 0, 2};
    breaker_foreach(t, 1, count_cb, &s2);
    cr_assert_eq(s2.n, 2, "stopped after the callback said so");
    breaker_table_free(t);
}
