/*
 * fuzz_address.c - libFuzzer harness for address_parse and the functions
 * that work on its output (format, key, strip_subaddress).
 *
 * Besides "no crash", it checks the property the cache and the route table
 * rely on: a parsed address formats to text that parses back to the same
 * address (normalisation is idempotent), and every derived string fits the
 * documented limits. For UTF-8 input it also checks that the A-label and
 * the U-label form of a domain are one address (same key either way).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

/* check - abort (a finding for libFuzzer) when a property does not hold */
static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct address a, b;
    char err[128], buf[ADDRESS_MAX + 1], buf2[ADDRESS_MAX + 1];

    if (address_parse((const char *)data, size, &a, err, sizeof(err)) < 0) {
        check(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        return 0;
    }
    check(strlen(a.local) <= ADDRESS_LOCAL_MAX + 2);
    check(strlen(a.domain) <= ADDRESS_DOMAIN_MAX);

    int n = address_format(&a, buf, sizeof(buf));
    check(n >= 0 && (size_t)n == strlen(buf));
    if (a.is_null) {
        check(n == 0);
        return 0;
    }
    /* idempotence: format(parse(x)) parses to the same address */
    check(address_parse(buf, (size_t)n, &b, err, sizeof(err)) == 0);
    check(strcmp(a.local, b.local) == 0 && strcmp(a.domain, b.domain) == 0 && !b.is_null);
    check(strcmp(a.domain_utf8, b.domain_utf8) == 0 && a.local_utf8 == b.local_utf8);
    for (const char *d = a.domain; *d != '\0'; d++)
        check((unsigned char)*d < 0x80); /* routing, DNS and cache see ASCII only */

    /* the U-label form parses back to the same A-label domain */
    char u8[ADDRESS_UTF8_MAX + 1];
    int n8 = address_key_utf8(&a, false, u8, sizeof(u8));
    check(n8 > 0 && (size_t)n8 == strlen(u8));
    check(address_parse(u8, (size_t)n8, &b, err, sizeof(err)) == 0);
    check(strcmp(a.domain, b.domain) == 0 && strcmp(a.domain_utf8, b.domain_utf8) == 0);

    int k = address_key(&a, true, buf2, sizeof(buf2));
    check(k == n);
    k = address_key(&a, false, buf2, sizeof(buf2));
    check(k == n && strcmp(buf, buf2) == 0);

    /* stripping leaves a valid, shorter address */
    b = a;
    if (address_strip_subaddress(&b, "+-")) {
        check(strlen(b.local) < strlen(a.local) && b.local[0] != '\0');
        n = address_format(&b, buf, sizeof(buf));
        check(n > 0);
        check(address_parse(buf, (size_t)n, &b, err, sizeof(err)) == 0);
    }
    /* a too-small buffer is refused, never overrun */
    check(address_format(&a, buf, 4) == -1 || strlen(buf) < 4);
    return 0;
}
