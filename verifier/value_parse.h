/*
 * value_parse.h - one parser per value type, for callahead.conf and for
 * route options alike, so that "15s", "yes" or "[::1]:6379" mean the same
 * thing wherever a postmaster writes them.
 *
 * Every parser takes a NUL-terminated string that came from a file an
 * administrator wrote, treats it as hostile (no sign, no blanks, no
 * overflow, bounded lengths) and either fills its output or leaves it
 * untouched and returns a negative value.
 *
 * Durations (the one grammar): decimal digits, then a unit "ms", "s", "m",
 * "h", "d" or "w" (case-insensitive). A number without a unit is in the
 * value's own bare unit: seconds for every route option and for every
 * callahead.conf time parameter except the few documented in milliseconds
 * (answer_budget, dns_timeout, redis_timeout, redis_reconnect_max), where
 * a bare number has always meant milliseconds. Postfix does the same with
 * its per-parameter default time unit.
 */
#ifndef CALLAHEAD_VALUE_PARSE_H
#define CALLAHEAD_VALUE_PARSE_H

#include <stddef.h>

/* return values of the parsers */
#define VALUE_OK 0
#define VALUE_SYNTAX (-1) /* not a value of this type at all */
#define VALUE_RANGE (-2)  /* well formed but outside the bounds given */

#define VALUE_HOST_MAX 256 /* a host name or address, with its NUL */

/* milliseconds in one bare unit, for value_parse_duration */
#define VALUE_MS 1LL
#define VALUE_SECONDS 1000LL

/*
 * value_parse_duration - s in the duration grammar above into *ms; a bare
 * number is bare_ms milliseconds each. VALUE_RANGE outside min_ms..max_ms
 * (also for numbers too large to compute).
 */
int value_parse_duration(const char *s, long long bare_ms, long long min_ms, long long max_ms,
                         long long *ms);

/*
 * value_parse_count - decimal digits only (no sign, no blanks, no "0x"),
 * VALUE_RANGE outside min..max.
 */
int value_parse_count(const char *s, long long min, long long max, long long *out);

/* value_parse_bool - yes/no, true/false, on/off, 1/0 (case-insensitive) into 1/0 */
int value_parse_bool(const char *s, int *out);

/*
 * value_parse_hostport - "HOST:PORT" or "[IPV6]:PORT" (s, len bytes, need
 * not be NUL-terminated) into host (hostsize bytes, at least
 * VALUE_HOST_MAX) and *port (0..65535). need_port 0 allows ":PORT" to be
 * missing (*port is then untouched). An IPv6 address must be in brackets,
 * and brackets hold only IPv6 addresses. host may be NULL when only the
 * syntax is checked.
 */
int value_parse_hostport(const char *s, size_t len, int need_port, char *host, size_t hostsize,
                         int *port);

/* value types a parameter or route option can declare */
enum value_type {
    VALUE_BOOL,     /* value_parse_bool */
    VALUE_DURATION, /* value_parse_duration, bare unit seconds; min/max in ms */
    VALUE_COUNT,    /* value_parse_count; min/max */
    VALUE_TEXT,     /* any text: its owner checks the syntax when it opens */
};

/* value_decl - one declared option: name, type and bounds */
struct value_decl {
    const char *name; /* NULL ends a table */
    enum value_type type;
    long long min, max;
};

/*
 * value_check - is s a valid value for d? 0, or -1 with "name=value: what
 * was expected" in why (the value cut to a loggable length).
 */
int value_check(const struct value_decl *d, const char *s, char *why, size_t whylen);

/*
 * value_closest - the name in the NULL-terminated tables (ntables of them)
 * closest to name when it is likely a typo of it (edit distance at most 2,
 * and less than a third of its length), else NULL.
 */
const char *value_closest(const char *name, const struct value_decl *const *tables, size_t ntables);

#endif
