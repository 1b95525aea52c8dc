/*
 * test_value_parse.c - the one parser per value type (durations, counts,
 * yes/no, host:port) that callahead.conf and the route options share, fed
 * the hostile inputs a config file can hold, and the typo suggestion.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <string.h>

#include "value_parse.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(value_parse, durations)
{
    const struct {
        const char *s;
        long long bare, ms;
    } good[] = {
        {"500ms", VALUE_SECONDS, 500},
        {"15", VALUE_SECONDS, 15000},
        {"15s", VALUE_SECONDS, 15000},
        {"5m", VALUE_SECONDS, 300000},
        {"1h", VALUE_SECONDS, 3600000},
        {"1d", VALUE_SECONDS, 86400000},
        {"2w", VALUE_SECONDS, 1209600000LL},
        {"5M", VALUE_SECONDS, 300000},
        {"5MS", VALUE_SECONDS, 5},
        {"250", VALUE_MS, 250},
        {"0", VALUE_SECONDS, 0},
        {"007s", VALUE_SECONDS, 7000},
    };
    const char *bad[] = {"",    "-1",  "+5",   " 5",  "5 ", "5 s", "5x",   "s",  "1.5s",
                         "5mm", "5sm", "0x10", "5ss", "ms", "5\n", "5ms ", "5y", "1e3"};
    long long ms = -7;

    for (size_t i = 0; i < N(good); i++) {
        cr_assert_eq(value_parse_duration(good[i].s, good[i].bare, 0, LLONG_MAX, &ms), VALUE_OK,
                     "%s", good[i].s);
        cr_assert_eq(ms, good[i].ms, "%s: %lld", good[i].s, ms);
    }
    for (size_t i = 0; i < N(bad); i++) {
        ms = -7;
        cr_assert_eq(value_parse_duration(bad[i], VALUE_SECONDS, 0, LLONG_MAX, &ms), VALUE_SYNTAX,
                     "'%s' must be refused", bad[i]);
        cr_assert_eq(ms, -7, "output untouched on error");
    }
    cr_assert_eq(value_parse_duration(NULL, VALUE_SECONDS, 0, 1, &ms), VALUE_SYNTAX);
    /* bounds, and numbers too large to compute are range errors, never wrapped */
    cr_assert_eq(value_parse_duration("3601s", VALUE_SECONDS, 1, 3600000, &ms), VALUE_RANGE);
    cr_assert_eq(value_parse_duration("3600s", VALUE_SECONDS, 1, 3600000, &ms), VALUE_OK);
    cr_assert_eq(value_parse_duration("0", VALUE_SECONDS, 1, 3600000, &ms), VALUE_RANGE);
    cr_assert_eq(value_parse_duration("99999999999999999999999", VALUE_SECONDS, 0, LLONG_MAX, &ms),
                 VALUE_RANGE);
    cr_assert_eq(value_parse_duration("99999999999999999999999x", VALUE_SECONDS, 0, LLONG_MAX, &ms),
                 VALUE_SYNTAX, "a huge number with a bad unit is still a syntax error");
    cr_assert_eq(value_parse_duration("9223372036854775w", VALUE_SECONDS, 0, LLONG_MAX, &ms),
                 VALUE_RANGE);
    cr_assert_eq(value_parse_duration("9223372036854775807ms", VALUE_SECONDS, 0, LLONG_MAX, &ms),
                 VALUE_OK);
    cr_assert_eq(ms, LLONG_MAX);
}

Test(value_parse, counts)
{
    long long n = -7;
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x1", "1.0", "1e3", "١"};

    cr_assert_eq(value_parse_count("20", 1, 1000, &n), VALUE_OK);
    cr_assert_eq(n, 20);
    cr_assert_eq(value_parse_count("1000", 1, 1000, &n), VALUE_OK);
    cr_assert_eq(value_parse_count("0", 1, 1000, &n), VALUE_RANGE);
    cr_assert_eq(value_parse_count("1001", 1, 1000, &n), VALUE_RANGE);
    cr_assert_eq(value_parse_count("99999999999999999999", 1, 1000, &n), VALUE_RANGE);
    cr_assert_eq(value_parse_count("18446744073709551615", 0, LLONG_MAX, &n), VALUE_RANGE);
    for (size_t i = 0; i < N(bad); i++)
        cr_assert_eq(value_parse_count(bad[i], 0, 1000, &n), VALUE_SYNTAX, "'%s'", bad[i]);
    cr_assert_eq(n, 1000, "output untouched on error");
    cr_assert_eq(value_parse_count(NULL, 0, 1, &n), VALUE_SYNTAX);
}

Test(value_parse, booleans)
{
    const char *yes[] = {"yes", "YES", "true", "On", "1"};
    const char *no[] = {"no", "No", "false", "OFF", "0"};
    const char *bad[] = {"", "y", "n", "yes ", " no", "2", "maybe", "yess", "tru"};
    int b;

    for (size_t i = 0; i < N(yes); i++) {
        b = 0;
        cr_assert_eq(value_parse_bool(yes[i], &b), VALUE_OK, "%s", yes[i]);
        cr_assert_eq(b, 1);
    }
    for (size_t i = 0; i < N(no); i++) {
        b = 1;
        cr_assert_eq(value_parse_bool(no[i], &b), VALUE_OK, "%s", no[i]);
        cr_assert_eq(b, 0);
    }
    for (size_t i = 0; i < N(bad); i++)
        cr_assert_eq(value_parse_bool(bad[i], &b), VALUE_SYNTAX, "'%s'", bad[i]);
    cr_assert_eq(value_parse_bool(NULL, &b), VALUE_SYNTAX);
}

Test(value_parse, host_and_port)
{
    char host[VALUE_HOST_MAX];
    int port = -1;
    const char *bad[] = {"",       ":25",    "[]:25",  "[127.0.0.1]:25", "::1:25",    "[::1",
                         "[::1]x", "[::1]:", "h:",     "h:-1",           "h:65536",   "h:123456",
                         "h:2 5",  "h p:25", "h/x:25", "h:25:26",        "[::1]:25x", "h\n:25",
                         "h:0x19"};

    cr_assert_eq(value_parse_hostport("127.0.0.1:6379", 14, 1, host, sizeof(host), &port),
                 VALUE_OK);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 6379);
    cr_assert_eq(value_parse_hostport("[::1]:25", 8, 1, host, sizeof(host), &port), VALUE_OK);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 25);
    cr_assert_eq(value_parse_hostport("[fe80::1%eth0]:0", 16, 1, host, sizeof(host), &port),
                 VALUE_OK);
    cr_assert_eq(port, 0);
    port = 7;
    cr_assert_eq(value_parse_hostport("redis.example", 13, 0, host, sizeof(host), &port), VALUE_OK);
    cr_assert_str_eq(host, "redis.example");
    cr_assert_eq(port, 7, "no port: untouched");
    cr_assert_eq(value_parse_hostport("redis.example", 13, 1, host, sizeof(host), &port),
                 VALUE_SYNTAX, "port required");
    /* length-bounded: bytes after len are never read */
    cr_assert_eq(value_parse_hostport("h:25garbage", 4, 1, host, sizeof(host), &port), VALUE_OK);
    cr_assert_eq(port, 25);
    for (size_t i = 0; i < N(bad); i++)
        cr_assert_neq(value_parse_hostport(bad[i], strlen(bad[i]), 1, host, sizeof(host), &port),
                      VALUE_OK, "'%s' must be refused", bad[i]);
    /* a NUL byte inside the length is not a host character (found by fuzz_value_parse) */
    cr_assert_eq(value_parse_hostport("\0\0:25", 5, 1, host, sizeof(host), &port), VALUE_SYNTAX);
    cr_assert_eq(value_parse_hostport("a\0b:25", 6, 1, host, sizeof(host), &port), VALUE_SYNTAX);
    /* a host of 256 bytes does not fit */
    char big[300];
    memset(big, 'a', 256);
    memcpy(big + 256, ":25", 4);
    cr_assert_eq(value_parse_hostport(big, strlen(big), 1, host, sizeof(host), &port),
                 VALUE_SYNTAX);
    cr_assert_eq(value_parse_hostport(big + 1, strlen(big + 1), 1, host, sizeof(host), &port),
                 VALUE_OK);
    cr_assert_eq(strlen(host), 255);
}

Test(value_parse, check_and_closest)
{
    static const struct value_decl a[] = {
        {"connect_timeout", VALUE_DURATION, 1, 3600000},
        {"breaker_failures", VALUE_COUNT, 1, 1000},
        {"reuse", VALUE_BOOL, 0, 1},
        {"sender", VALUE_TEXT, 0, 0},
        {NULL, 0, 0, 0},
    };
    const struct value_decl *tables[] = {a};
    char why[256];

    cr_assert_eq(value_check(&a[0], "10s", why, sizeof(why)), 0);
    cr_assert_eq(value_check(&a[0], "0", why, sizeof(why)), -1);
    cr_assert_str_eq(why,
                     "connect_timeout=0: expected a duration from 1ms to 1h (e.g. 15s, 500ms, 1d)");
    cr_assert_eq(value_check(&a[1], "5", why, sizeof(why)), 0);
    cr_assert_eq(value_check(&a[1], "-5", why, sizeof(why)), -1);
    cr_assert_eq(value_check(&a[2], "true", why, sizeof(why)), 0);
    cr_assert_eq(value_check(&a[2], "sometimes", why, sizeof(why)), -1);
    cr_assert_str_eq(why, "reuse=sometimes: expected yes or no");
    cr_assert_eq(value_check(&a[3], "anything at all", why, sizeof(why)), 0);

    cr_assert_str_eq(value_closest("conect_timeout", tables, 1), "connect_timeout");
    cr_assert_str_eq(value_closest("breaker_falures", tables, 1), "breaker_failures");
    cr_assert_str_eq(value_closest("reuze", tables, 1), "reuse");
    cr_assert_null(value_closest("colour", tables, 1));
    cr_assert_null(value_closest("x", tables, 1));
    cr_assert_null(value_closest("", tables, 1));
    char longname[200];
    memset(longname, 'r', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_null(value_closest(longname, tables, 1));
}
