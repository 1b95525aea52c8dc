/*
 * fuzz_value_parse.c - libFuzzer harness for the one parser per value type
 * (value_parse.h) that callahead.conf and every route option go through:
 * no input may crash them, an accepted value is within its bounds, and a
 * refused one leaves the output untouched.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "value_parse.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[512], host[VALUE_HOST_MAX], why[256];
    long long n = -7;
    int b = -7, port = -7;

    if (size >= sizeof(s))
        size = sizeof(s) - 1;
    memcpy(s, data, size);
    s[size] = '\0';

    if (value_parse_duration(s, VALUE_SECONDS, 1, 3600000, &n) == VALUE_OK)
        check(n >= 1 && n <= 3600000);
    else
        check(n == -7);
    if (value_parse_duration(s, VALUE_MS, 0, LLONG_MAX, &n) == VALUE_OK)
        check(n >= 0);
    n = -7;
    if (value_parse_count(s, 1, 1000, &n) == VALUE_OK)
        check(n >= 1 && n <= 1000);
    else
        check(n == -7);
    if (value_parse_bool(s, &b) == VALUE_OK)
        check(b == 0 || b == 1);
    else
        check(b == -7);
    /* the length-bounded host:port parser reads only size bytes of data itself */
    if (value_parse_hostport((const char *)data, size, 1, host, sizeof(host), &port) == VALUE_OK)
        check(port >= 0 && port <= 65535 && strlen(host) > 0 && strlen(host) < sizeof(host));

    static const struct value_decl d[] = {
        {"t", VALUE_DURATION, 1, 3600000}, {"c", VALUE_COUNT, 1, 10}, {"b", VALUE_BOOL, 0, 1},
        {"x", VALUE_TEXT, 0, 0},           {NULL, 0, 0, 0},
    };
    const struct value_decl *tables[] = {d};
    for (size_t i = 0; d[i].name != NULL; i++)
        if (value_check(&d[i], s, why, sizeof(why)) < 0)
            check(strlen(why) < sizeof(why));
    (void)value_closest(s, tables, 1);
    return 0;
}
