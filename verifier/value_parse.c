/*
 * value_parse.c - the one parser per value type (see value_parse.h).
 *
 * Before this module callahead.conf and the route options each had their
 * own duration, yes/no and count parsers, and they disagreed ("1w" worked in
 * one file and not the other, "true" in one option and not the next). Now
 * config.c, route.c, verifier.c and the backends call these, and a route
 * option or parameter declares its type in a table (struct value_decl) so
 * that checking it needs no code of its own.
 */
#include "value_parse.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * value_digits - leading decimal digits of s into *v; *end after them (also
 * on overflow, so the caller can still tell a unit from garbage).
 * VALUE_RANGE when the number does not fit.
 */
static int value_digits(const char *s, unsigned long long *v, const char **end)
{
    unsigned long long n = 0;
    const char *p = s;
    int rc = VALUE_OK;

    if (!isdigit((unsigned char)*p))
        return VALUE_SYNTAX;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (ULLONG_MAX - 9) / 10)
            rc = VALUE_RANGE;
        else
            n = n * 10 + (unsigned)(*p - '0');
    }
    *v = n;
    *end = p;
    return rc;
}

int value_parse_duration(const char *s, long long bare_ms, long long min_ms, long long max_ms,
                         long long *ms)
{
    static const struct {
        const char *suffix;
        long long ms;
    } units[] = {{"ms", 1},        {"s", 1000},       {"m", 60000},
                 {"h", 3600000LL}, {"d", 86400000LL}, {"w", 7 * 86400000LL}};
    unsigned long long v;
    const char *end;
    long long unit = 0;

    if (s == NULL)
        return VALUE_SYNTAX;
    int rc = value_digits(s, &v, &end);
    if (rc == VALUE_SYNTAX)
        return rc;
    if (*end == '\0') {
        unit = bare_ms;
    } else {
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strcasecmp(end, units[i].suffix) == 0)
                unit = units[i].ms;
    }
    if (unit <= 0)
        return VALUE_SYNTAX;
    if (rc == VALUE_RANGE || v > (unsigned long long)(LLONG_MAX / unit))
        return VALUE_RANGE;
    long long total = (long long)v * unit;
    if (total < min_ms || total > max_ms)
        return VALUE_RANGE;
    *ms = total;
    return VALUE_OK;
}

int value_parse_count(const char *s, long long min, long long max, long long *out)
{
    unsigned long long v;
    const char *end;

    if (s == NULL)
        return VALUE_SYNTAX;
    int rc = value_digits(s, &v, &end);
    if (rc == VALUE_SYNTAX || *end != '\0')
        return VALUE_SYNTAX;
    if (rc == VALUE_RANGE || v > (unsigned long long)LLONG_MAX || (long long)v < min ||
        (long long)v > max)
        return VALUE_RANGE;
    *out = (long long)v;
    return VALUE_OK;
}

int value_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    if (s == NULL)
        return VALUE_SYNTAX;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return VALUE_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return VALUE_OK;
        }
    }
    return VALUE_SYNTAX;
}

/* value_port - decimal 0..65535 (s, len bytes); 0 is for tests that let the kernel pick */
static int value_port(const char *s, size_t len, int *port)
{
    long v = 0;

    if (len == 0 || len > 5)
        return VALUE_SYNTAX;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return VALUE_SYNTAX;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535)
        return VALUE_RANGE;
    *port = (int)v;
    return VALUE_OK;
}

int value_parse_hostport(const char *s, size_t len, int need_port, char *host, size_t hostsize,
                         int *port)
{
    const char *h = s, *rest;
    size_t hlen;
    int p = -1;

    if (s == NULL)
        return VALUE_SYNTAX;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return VALUE_SYNTAX;
        h = s + 1;
        hlen = (size_t)(close - h);
        rest = close + 1;
        if (memchr(h, ':', hlen) == NULL)
            return VALUE_SYNTAX; /* brackets are for IPv6 only */
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
            return VALUE_SYNTAX; /* an IPv6 address must be written in brackets */
        hlen = colon ? (size_t)(colon - s) : len;
        rest = s + hlen;
    }
    if (hlen == 0 || hlen >= VALUE_HOST_MAX)
        return VALUE_SYNTAX;
    /* h[i] != '\0' first: strchr would find a NUL byte as the terminator of its set */
    for (size_t i = 0; i < hlen; i++)
        if (h[i] == '\0' || (!isalnum((unsigned char)h[i]) && strchr(".-_:%", h[i]) == NULL))
            return VALUE_SYNTAX;
    size_t rlen = len - (size_t)(rest - s);
    if (rlen == 0) {
        if (need_port)
            return VALUE_SYNTAX;
    } else {
        if (rest[0] != ':')
            return VALUE_SYNTAX;
        int rc = value_port(rest + 1, rlen - 1, &p);
        if (rc != VALUE_OK)
            return rc;
    }
    if (host != NULL) {
        if (hostsize <= hlen)
            return VALUE_RANGE;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (p >= 0 && port != NULL)
        *port = p;
    return VALUE_OK;
}

/* value_format_ms - a duration in the largest unit that keeps it exact */
static void value_format_ms(char *buf, size_t size, long long ms)
{
    static const struct {
        const char *suffix;
        long long ms;
    } units[] = {
        {"w", 7 * 86400000LL}, {"d", 86400000LL}, {"h", 3600000LL}, {"m", 60000}, {"s", 1000}};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, size, "%lld%s", ms / units[i].ms, units[i].suffix);
            return;
        }
    }
    snprintf(buf, size, "%lldms", ms);
}

int value_check(const struct value_decl *d, const char *s, char *why, size_t whylen)
{
    char lo[32], hi[32];
    long long n;
    int b;

    switch (d->type) {
    case VALUE_BOOL:
        if (value_parse_bool(s, &b) == VALUE_OK)
            return 0;
        snprintf(why, whylen, "%s=%.60s: expected yes or no", d->name, s);
        return -1;
    case VALUE_DURATION:
        if (value_parse_duration(s, VALUE_SECONDS, d->min, d->max, &n) == VALUE_OK)
            return 0;
        value_format_ms(lo, sizeof(lo), d->min);
        value_format_ms(hi, sizeof(hi), d->max);
        snprintf(why, whylen, "%s=%.60s: expected a duration from %s to %s (e.g. 15s, 500ms, 1d)",
                 d->name, s, lo, hi);
        return -1;
    case VALUE_COUNT:
        if (value_parse_count(s, d->min, d->max, &n) == VALUE_OK)
            return 0;
        snprintf(why, whylen, "%s=%.60s: expected a number from %lld to %lld", d->name, s, d->min,
                 d->max);
        return -1;
    case VALUE_TEXT:
        return 0;
    }
    snprintf(why, whylen, "%s: bad declaration", d->name);
    return -1;
}

#define VALUE_NAME_MAX 64

/* value_distance - Levenshtein distance of a and b (both shorter than VALUE_NAME_MAX) */
static size_t value_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[VALUE_NAME_MAX + 1];

    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *value_closest(const char *name, const struct value_decl *const *tables, size_t ntables)
{
    const char *best = NULL;
    size_t best_d = 3, len = strlen(name);

    if (len == 0 || len >= VALUE_NAME_MAX)
        return NULL;
    for (size_t t = 0; t < ntables; t++) {
        for (const struct value_decl *d = tables[t]; d != NULL && d->name != NULL; d++) {
            if (strlen(d->name) >= VALUE_NAME_MAX)
                continue;
            size_t dist = value_distance(name, d->name);
            if (dist < best_d && dist * 3 < len) {
                best = d->name;
                best_d = dist;
            }
        }
    }
    return best;
}
