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
