/*
 * test_harvest.c - the harvest limit's bookkeeping without Redis: counting
 * per network prefix, the penalty and its end, exemptions, the bounded
 * table, and penalty messages from the channel parsed as hostile input.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "cache.h"
#include "config.h"
#include "harvest.h"

static struct event_base *base;
static struct cache *cache;
static struct config cfg;
static struct harvest *h;

static void setup(void)
{
    struct cache_config cc;
    char err[256];

    base = event_base_new();
    memset(&cc, 0, sizeof(cc));
    cc.key_prefix = "callahead:";
    cc.l1_max_entries = 10;
    cc.l1_ttl = 60;
    cache = cache_new(base, &cc, err, sizeof(err));
    cr_assert_not_null(cache, "%s", err);
    config_defaults(&cfg);
    cfg.max_invalid_per_client = 3;
    cfg.harvest_ipv4_prefix = 24;
    cfg.harvest_ipv6_prefix = 64;
    free(cfg.harvest_exempt_networks);
    cfg.harvest_exempt_networks = strdup("10.0.0.0/8, 2001:db8:1::/48");
    h = harvest_new(base, cache);
    cr_assert_not_null(h);
    cr_assert_eq(harvest_configure(h, &cfg, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
    harvest_free(h);
    cache_free(cache);
    config_free(&cfg);
    event_base_free(base);
}

static enum harvest_state state(const char *client, const char *sasl, long *count, char *net)
{
    long left;

    return harvest_client(h, client, sasl, count, &left, net, 64);
}

TestSuite(harvest, .init = setup, .fini = teardown);

Test(harvest, counts_per_prefix_and_blocks)
{
    long count;
    char net[64];

    for (int i = 0; i < 3; i++)
        harvest_note_invalid(h, "192.0.2.10", NULL);
    cr_assert_eq(state("192.0.2.99", NULL, &count, net), HARVEST_OK);
    cr_assert_str_eq(net, "192.0.2.0/24");
    cr_assert_eq(count, 3);
    harvest_note_invalid(h, "192.0.2.11", "");
    cr_assert_eq(state("192.0.2.200", NULL, &count, net), HARVEST_BLOCKED);
    cr_assert_eq(state("192.0.3.1", NULL, &count, net), HARVEST_OK, "another /24");
    cr_assert_eq(count, 0);

    harvest_note_invalid(h, "2001:db8:2:3::1", NULL);
    cr_assert_eq(state("2001:db8:2:3:ffff::9", NULL, &count, net), HARVEST_OK);
    cr_assert_str_eq(net, "2001:db8:2:3::/64");
    cr_assert_eq(count, 1);
}

Test(harvest, exemptions)
{
    long count;
    char net[64];

    for (int i = 0; i < 10; i++) {
        harvest_note_invalid(h, "10.1.2.3", NULL);
        harvest_note_invalid(h, "2001:db8:1:5::1", NULL);
        harvest_note_invalid(h, "192.0.2.10", "alice");
    }
    cr_assert_eq(state("10.1.2.3", NULL, &count, net), HARVEST_OFF);
    cr_assert_eq(state("2001:db8:1:5::1", NULL, &count, net), HARVEST_OFF);
    cr_assert_eq(state("192.0.2.10", NULL, &count, net), HARVEST_OK, "authenticated: not counted");
    cr_assert_eq(count, 0);
    cr_assert_eq(state("unknown", NULL, &count, net), HARVEST_OFF);
    cr_assert_eq(state("192.0.2.10/24", NULL, &count, net), HARVEST_OFF);

    char err[128];
    cfg.harvest_exempt_authenticated = 0;
    cr_assert_eq(harvest_configure(h, &cfg, err, sizeof(err)), 0);
    for (int i = 0; i < 4; i++)
        harvest_note_invalid(h, "192.0.2.10", "alice");
    cr_assert_eq(state("192.0.2.10", "alice", &count, net), HARVEST_BLOCKED);

    cfg.max_invalid_per_client = 0;
    cr_assert_eq(harvest_configure(h, &cfg, err, sizeof(err)), 0);
    cr_assert_eq(state("192.0.2.10", NULL, &count, net), HARVEST_OFF, "limit off");
}

Test(harvest, bad_networks)
{
    char err[128];

    cr_assert_eq(harvest_check_networks("", err, sizeof(err)), 0);
    cr_assert_eq(harvest_check_networks("192.0.2.0/24 ::1", err, sizeof(err)), 0);
    cr_assert_eq(harvest_check_networks("192.0.2.0/33", err, sizeof(err)), -1);
    cr_assert_eq(harvest_check_networks("192.0.2.0/", err, sizeof(err)), -1);
    cr_assert_eq(harvest_check_networks("example.org", err, sizeof(err)), -1);
    cr_assert_eq(harvest_check_networks("::1/129", err, sizeof(err)), -1);
}

Test(harvest, channel_messages)
{
    long count, left;
    char net[64], msg[128];
    time_t now = time(NULL);

    snprintf(msg, sizeof(msg), "harvest 198.51.100.0/24 %ld", (long)now + 100);
    cr_assert_eq(harvest_message(h, msg, strlen(msg)), 0);
    cr_assert_eq(harvest_client(h, "198.51.100.7", NULL, &count, &left, net, sizeof(net)),
                 HARVEST_BLOCKED);
    cr_assert(left > 90 && left <= 100, "left %ld", left);

    /* each: the text before and after a good time */
    static const char *const bad[][2] = {
        {"harvest 198.51.100.7/24 ", ""}, /* host bits set: not what we publish */
        {"harvest 198.51.100.0 ", ""},    /* no prefix */
        {"harvest 198.51.100.0/24  ", ""}, {"harvest 198.51.100.0/24 ", " x"},
        {"harvest example.org/24 ", ""},   {"harvest  198.51.100.0/24 ", ""},
        {"HARVEST 198.51.100.0/24 ", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "%s%ld%s", bad[i][0], (long)now + 100, bad[i][1]);
        cr_assert_eq(harvest_message(h, msg, strlen(msg)), -1, "accepted \"%s\"", msg);
    }
    snprintf(msg, sizeof(msg), "harvest 203.0.113.0/24 %ld", (long)now - 1);
    cr_assert_eq(harvest_message(h, msg, strlen(msg)), -1, "a penalty in the past");
    snprintf(msg, sizeof(msg), "harvest 203.0.113.0/24 %ld", (long)now + 40 * 86400);
    cr_assert_eq(harvest_message(h, msg, strlen(msg)), -1, "a penalty of 40 days");
    cr_assert_eq(harvest_message(h, "harvest 203.0.113.0/24 1\0", 25), -1, "a NUL byte");
}

/* a botnet of many networks cannot grow the table past its bound */
Test(harvest, bounded)
{
    char client[32];
    long count;
    char net[64];

    for (int i = 0; i < HARVEST_MAX_ENTRIES + 100; i++) {
        snprintf(client, sizeof(client), "%d.%d.%d.1", 100 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
        harvest_note_invalid(h, client, NULL);
    }
    struct harvest_stats st;
    harvest_get_stats(h, &st);
    cr_assert_eq(st.blocked, 0);
    /* the newest are there, the oldest were dropped */
    cr_assert_eq(state("100.0.0.1", NULL, &count, net), HARVEST_OK);
    cr_assert_eq(count, 0, "the first network was evicted");
    snprintf(client, sizeof(client), "%d.%d.%d.1", 100 + ((HARVEST_MAX_ENTRIES + 99) >> 16),
             ((HARVEST_MAX_ENTRIES + 99) >> 8) & 0xff, (HARVEST_MAX_ENTRIES + 99) & 0xff);
    cr_assert_eq(state(client, NULL, &count, net), HARVEST_OK);
    cr_assert_eq(count, 1);
}
