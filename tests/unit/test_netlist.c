/*
 * test_netlist.c - milter_skip_networks: parsing and matching, IPv4, IPv6,
 * IPv4-mapped clients, and entries that must be refused.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "netlist.h"

static int match(const struct netlist *nl, const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        cr_assert_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        cr_assert_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return netlist_match(nl, (struct sockaddr *)&ss);
}

Test(netlist, match_v4_v6_and_mapped)
{
    struct netlist nl;
    char err[128];

    cr_assert_eq(netlist_parse("10.0.0.0/8, 192.168.1.5 [2001:db8::]/32,fe80::/10 172.16.0.0/12",
                               &nl, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(nl.n, 5);
    cr_assert(match(&nl, "10.200.3.4"));
    cr_assert(match(&nl, "192.168.1.5"));
    cr_assert_not(match(&nl, "192.168.1.6"));
    cr_assert(match(&nl, "172.31.255.255"));
    cr_assert_not(match(&nl, "172.32.0.0"));
    cr_assert(match(&nl, "2001:db8:1::1"));
    cr_assert_not(match(&nl, "2001:db9::1"));
    cr_assert(match(&nl, "::ffff:10.1.1.1"));
    cr_assert_not(match(&nl, "::ffff:11.1.1.1"));
    cr_assert_not(netlist_match(&nl, NULL));
}

Test(netlist, empty_matches_nothing)
{
    struct netlist nl;
    char err[128];

    cr_assert_eq(netlist_parse("", &nl, err, sizeof(err)), 0);
    cr_assert_eq(nl.n, 0);
    cr_assert_not(match(&nl, "127.0.0.1"));
}

Test(netlist, host_bits_and_zero_prefix)
{
    struct netlist nl;
    char err[128];

    cr_assert_eq(netlist_parse("10.1.2.3/8 0.0.0.0/0", &nl, err, sizeof(err)), 0);
    cr_assert(match(&nl, "10.9.9.9"));
    cr_assert(match(&nl, "203.0.113.1"));
    cr_assert_not(match(&nl, "2001:db8::1")); /* an IPv4 entry never matches IPv6 */
}

Test(netlist, bad_entries)
{
    const char *bad[] = {"10.0.0.300",   "10.0.0.0/33", "::1/129",   "10.0.0.0/", "10.0.0.0/-1",
                         "host.example", "10.0.0.0/8x", "[10.0.0.1", "/8"};
    struct netlist nl;
    char err[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(netlist_parse(bad[i], &nl, err, sizeof(err)), -1, "[%s]", bad[i]);
}

Test(netlist, too_many)
{
    static char buf[NETLIST_MAX * 16 + 32];
    struct netlist nl;
    char err[128];
    size_t n = 0;

    for (int i = 0; i <= NETLIST_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "10.0.%d.0/24 ", i);
    cr_assert_eq(netlist_parse(buf, &nl, err, sizeof(err)), -1);
}

/* a bad entry is named in the message, its bytes made printable (it reaches a terminal) */
Test(netlist, error_text_is_printable)
{
    struct netlist nl;
    char err[128];

    cr_assert_eq(netlist_parse("10.0.0.0/8, \x99\xa4\x01", &nl, err, sizeof(err)), -1);
    for (const char *s = err; *s; s++)
        cr_assert((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f, "raw byte in: %s", err);
    cr_assert(strstr(err, "bad network \"???\"") != NULL, "%s", err);
}
