/*
 * fuzz_route.c - libFuzzer harness for route_table_parse, then route_match
 * and route_resolve (rewrites, loop limit) on a few addresses, so that a
 * hostile or mistyped table can neither crash the parser nor the matcher.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static const char *const probes[] = {
    "user@example.org",
    "User+Tag@Sub.Example.ORG",
    "<>",
    "\"quoted user\"@example.net",
    "postmaster@[192.0.2.1]",
    "a@b",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];

    err[0] = '\0';
    struct route_table *t = route_table_parse((const char *)data, size, "fuzz", err, sizeof(err));
    if (t == NULL) {
        check(strncmp(err, "fuzz:", 5) == 0);
        return 0;
    }
    int n = route_table_count(t);
    for (int i = 0; i < n; i++) {
        const struct route *r = route_table_get(t, i);
        check(r != NULL && r->pattern != NULL && r->noptions <= ROUTE_MAX_OPTIONS);
        (void)route_option(r, "fold_local", NULL);
        (void)route_method_name(r->method);
    }
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        struct address a;
        char why[128];
        int failed = -1;
        check(address_parse(probes[i], strlen(probes[i]), &a, why, sizeof(why)) == 0);
        (void)route_match(t, &a);
        const struct route *r = route_resolve(t, &a, &failed, err, sizeof(err));
        check(failed == 0 || failed == 1);
        check(!failed || r == NULL);
        check(r == NULL || r->method != ROUTE_REWRITE);
    }
    route_table_free(t);
    return 0;
}
