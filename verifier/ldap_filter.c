/*
 * ldap_filter.c - query_filter templates and RFC 4515 value escaping (see
 * ldap_filter.h). The escaping is done here rather than with libldap's
 * ldap_bv2escaped_filter_value so that it is the same with and without
 * libldap in the build, and so that the fuzzer can run it alone; it also
 * escapes every non-printable byte, which RFC 4515 allows for any octet.
 */
#include "ldap_filter.h"

#include <stdio.h>
#include <string.h>

/* put - append one byte at *pos, keeping room for the NUL; -1 when full */
static int put(char *out, size_t size, size_t *pos, char c)
{
    if (*pos + 1 >= size)
        return -1;
    out[(*pos)++] = c;
    out[*pos] = '\0';
    return 0;
}

int ldap_filter_escape(const char *in, size_t len, char *out, size_t size, size_t *pos)
{
    static const char hex[] = "0123456789abcdef";

    if (*pos >= size)
        return -1;
    out[*pos] = '\0'; /* terminated even when in is empty */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c > 0x7e) {
            if (put(out, size, pos, '\\') < 0 || put(out, size, pos, hex[c >> 4]) < 0 ||
                put(out, size, pos, hex[c & 0xf]) < 0)
                return -1;
        } else if (put(out, size, pos, (char)c) < 0) {
            return -1;
        }
    }
    return 0;
}

int ldap_filter_check(const char *tmpl, char *why, size_t whylen)
{
    size_t len = strlen(tmpl);
    int depth = 0, expansions = 0;

    if (len == 0 || tmpl[0] != '(' || tmpl[len - 1] != ')') {
        snprintf(why, whylen, "a filter must be enclosed in parentheses");
        return -1;
    }
    if (len >= LDAP_FILTER_TMPL_MAX) {
        snprintf(why, whylen, "the filter is too long (at most %d bytes)",
                 LDAP_FILTER_TMPL_MAX - 1);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tmpl[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, whylen, "control character in the filter");
            return -1;
        }
        if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (--depth < 0 || (depth == 0 && i != len - 1)) {
                snprintf(why, whylen, "unbalanced parentheses in the filter");
                return -1;
            }
        } else if (c == '%') {
            char e = tmpl[++i];
            if (e == 's' || e == 'u' || e == 'd')
                expansions++;
            else if (e != '%') {
                snprintf(why, whylen, "unsupported expansion %%%c (use %%s, %%u, %%d or %%%%)",
                         e != '\0' ? e : '?');
                return -1;
            }
        }
    }
    if (depth != 0) {
        snprintf(why, whylen, "unbalanced parentheses in the filter");
        return -1;
    }
    if (expansions == 0) {
        snprintf(why, whylen, "the filter does not use the address (%%s, %%u or %%d)");
        return -1;
    }
    if (expansions > LDAP_FILTER_EXPANSIONS) {
        snprintf(why, whylen, "at most %d expansions of the address in the filter",
                 LDAP_FILTER_EXPANSIONS);
        return -1;
    }
    return 0;
}

int ldap_filter_expand(const char *tmpl, const char *local, const char *domain, char *out,
                       size_t size)
{
    char why[128];
    size_t pos = 0;

    if (size == 0 || ldap_filter_check(tmpl, why, sizeof(why)) < 0)
        return -1;
    out[0] = '\0';
    for (const char *p = tmpl; *p != '\0'; p++) {
        int rc = 0;
        if (*p != '%') {
            rc = put(out, size, &pos, *p);
            if (rc < 0)
                return -1;
            continue;
        }
        switch (*++p) {
        case 's':
            rc = ldap_filter_escape(local, strlen(local), out, size, &pos);
            if (rc == 0)
                rc = put(out, size, &pos, '@');
            if (rc == 0)
                rc = ldap_filter_escape(domain, strlen(domain), out, size, &pos);
            break;
        case 'u':
            rc = ldap_filter_escape(local, strlen(local), out, size, &pos);
            break;
        case 'd':
            rc = ldap_filter_escape(domain, strlen(domain), out, size, &pos);
            break;
        default: /* "%%": checked above */
            rc = put(out, size, &pos, '%');
            break;
        }
        if (rc < 0)
            return -1;
    }
    return (int)pos;
}
