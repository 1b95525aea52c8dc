/*
 * fuzz_ldap_filter.c - libFuzzer harness for the LDAP filter template
 * check, expansion and RFC 4515 escaping. The input is split at the first
 * two newlines into a template, a local part and a domain. Properties:
 * an escaped value has no filter metacharacter left and decodes back to the
 * input; a template that passes ldap_filter_check always expands (given
 * room); "(mail=%s)" expanded with any address keeps exactly one pair of
 * parentheses, so an address can never add a filter component.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_filter.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* escaped - out is a clean escaping of in (len bytes) */
static void escaped(const char *in, size_t len, const char *out)
{
    size_t j = 0;

    for (const char *p = out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        check(c >= 0x20 && c <= 0x7e && c != '*' && c != '(' && c != ')');
        if (c == '\\') {
            int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
            check(hi >= 0 && lo >= 0);
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
        }
        check(j < len && (unsigned char)in[j] == c);
        j++;
    }
    check(j == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[LDAP_FILTER_MAX * 4];
    char tmpl[1024], local[512], domain[512], why[256];
    const char *p = (const char *)data, *end = p + size;
    char *parts[3] = {tmpl, local, domain};
    size_t sizes[3] = {sizeof(tmpl), sizeof(local), sizeof(domain)};

    for (int i = 0; i < 3; i++) {
        const char *nl = i < 2 ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        if (n >= sizes[i])
            n = sizes[i] - 1;
        memcpy(parts[i], p, n);
        parts[i][n] = '\0';
        p = nl != NULL ? nl + 1 : end;
    }

    /* escaping: any bytes, including NUL (taken from the raw input) */
    size_t pos = 0;
    if (ldap_filter_escape((const char *)data, size, out, sizeof(out), &pos) == 0)
        escaped((const char *)data, size, out);
    pos = 0;
    if (ldap_filter_escape(local, strlen(local), out, sizeof(out), &pos) == 0)
        escaped(local, strlen(local), out);

    /* a fixed template: exactly one '(' and one ')' whatever the address */
    int n = ldap_filter_expand("(mail=%s)", local, domain, out, sizeof(out));
    check(n > 0);
    check(strchr(out + 1, '(') == NULL && strchr(out, ')') == out + n - 1);

    /* a fuzzed template: accepted ones always expand an RFC 5321-sized address */
    local[66] = '\0';
    domain[255] = '\0';
    if (ldap_filter_check(tmpl, why, sizeof(why)) == 0) {
        static char filter[LDAP_FILTER_MAX];
        n = ldap_filter_expand(tmpl, local, domain, filter, sizeof(filter));
        check(n > 0 && (size_t)n == strlen(filter));
    } else {
        check(ldap_filter_expand(tmpl, local, domain, out, sizeof(out)) < 0);
    }
    /* too small a buffer fails cleanly */
    char tiny[8];
    check(ldap_filter_expand("(mail=%s)", "someone", "example.test", tiny, sizeof(tiny)) < 0);
    return 0;
}
