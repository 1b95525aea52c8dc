/*
 * verdict.c - verdict names, sanitising, and the cache text form.
 *
 * The cache form "<kind> <code> <unix-time> <source> <text>" is what sits in
 * Redis, where anything may have been written by anyone: verdict_parse()
 * therefore reads a bounded buffer with no terminator, accepts exactly the
 * grammar verdict_format() writes and nothing else, and never touches its
 * output unless the whole input is good.
 *
 * Grammar (single spaces between fields):
 *   kind   = "unknown" / "valid" / "invalid" / "tempfail"
 *   code   = "0" / 3DIGIT in 200..599
 *   time   = "0" / non-zero digit followed by digits (no sign, fits time_t)
 *   source = 1..63 printable non-space ASCII bytes
 *   text   = optional: " " then 0..255 printable ASCII bytes (spaces allowed)
 */
#include "verdict.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const verdict_names[VERDICT_KIND_COUNT] = {
    [VERDICT_UNKNOWN] = "unknown",
    [VERDICT_VALID] = "valid",
    [VERDICT_INVALID] = "invalid",
    [VERDICT_TEMPFAIL] = "tempfail",
};

/* verdict_kind_name - "unknown", "valid", "invalid", "tempfail" ("?" if out of range) */
const char *verdict_kind_name(enum verdict_kind kind)
{
    if ((int)kind < 0 || (int)kind >= VERDICT_KIND_COUNT)
        return "?";
    return verdict_names[kind];
}

/* verdict_kind_parse - exact, case-sensitive match of len bytes against the names */
int verdict_kind_parse(const char *name, size_t len, enum verdict_kind *kind)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < VERDICT_KIND_COUNT; i++) {
        if (strlen(verdict_names[i]) == len && memcmp(verdict_names[i], name, len) == 0) {
            *kind = (enum verdict_kind)i;
            return 0;
        }
    }
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * verdict_sanitize - printable ASCII only, whitespace runs collapsed to one
 * space, leading and trailing whitespace dropped. Always NUL-terminates when
 * size > 0; returns the number of bytes written before the NUL.
 */
size_t verdict_sanitize(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = 0;
    int pending_space = 0;

    if (size == 0)
        return 0;
    for (size_t i = 0; src != NULL && i < len; i++) {
        unsigned char c = (unsigned char)src[i];

        if (is_space(c)) {
            pending_space = n > 0; /* no leading space */
            continue;
        }
        if (c < 0x20 || c > 0x7e)
            c = '?';
        if (pending_space) {
            if (n + 1 >= size)
                break;
            dst[n++] = ' ';
            pending_space = 0;
        }
        if (n + 1 >= size)
            break;
        dst[n++] = (char)c;
    }
    /* truncation may have stopped right after a space */
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
    return n;
}

/*
 * sanitize_source - like verdict_sanitize, but a source is one token: spaces
 * become '_', and an empty source becomes "-" so the cache form keeps its fields.
 */
static void sanitize_source(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = verdict_sanitize(dst, size, src, len);

    for (size_t i = 0; i < n; i++)
        if (dst[i] == ' ')
            dst[i] = '_';
    if (n == 0 && size > 1) {
        dst[0] = '-';
        dst[1] = '\0';
    }
}

/* verdict_set - fill v; source and text copied, truncated and sanitised */
void verdict_set(struct verdict *v, enum verdict_kind kind, int code, const char *source,
                 const char *text)
{
    memset(v, 0, sizeof(*v));
    v->kind = kind;
    v->code = code;
    v->when = time(NULL);
    sanitize_source(v->source, sizeof(v->source), source, source ? strlen(source) : 0);
    verdict_sanitize(v->text, sizeof(v->text), text, text ? strlen(text) : 0);
}

/* flag_letters - the letter of flag bit i in the cache form ("/rod") */
static const char flag_letters[] = "rod";

/*
 * verdict_format - the cache form. The struct may have been filled by hand,
 * so fields are re-checked here: what is written always parses back
 * (codes outside 200..599 become 0, a negative time becomes 0, odd bytes in
 * source or text are replaced).
 */
int verdict_format(const struct verdict *v, char *buf, size_t size)
{
    char source[VERDICT_SOURCE_MAX];
    char text[VERDICT_TEXT_MAX];
    int code = v->code;
    long long when = (long long)v->when;
    int n;

    if ((int)v->kind < 0 || (int)v->kind >= VERDICT_KIND_COUNT || buf == NULL || size == 0)
        return -1;
    if (code < 200 || code > 599)
        code = 0;
    if (when < 0)
        when = 0;
    /* the struct's arrays may lack a NUL if filled by hand: bound the reads */
    sanitize_source(source, sizeof(source), v->source, strnlen(v->source, sizeof(v->source)));
    verdict_sanitize(text, sizeof(text), v->text, strnlen(v->text, sizeof(v->text)));

    char flags[8] = "";
    size_t nf = 0;
    if (v->flags & VERDICT_FLAGS_ALL) {
        flags[nf++] = '/';
        for (size_t i = 0; i < sizeof(flag_letters) - 1; i++)
            if (v->flags & (1u << i))
                flags[nf++] = flag_letters[i];
        flags[nf] = '\0';
    }
    if (text[0] != '\0')
        n = snprintf(buf, size, "%s %d%s %lld %s %s", verdict_names[v->kind], code, flags, when,
                     source, text);
    else
        n = snprintf(buf, size, "%s %d%s %lld %s", verdict_names[v->kind], code, flags, when,
                     source);
    if (n < 0 || (size_t)n >= size)
        return -1;
    return n;
}

/* parse_uint - digits at p[0..len): no sign, no leading zero; -1 on overflow past max */
static int parse_uint(const char *p, size_t len, unsigned long long max, unsigned long long *out)
{
    unsigned long long val = 0;

    if (len == 0 || (len > 1 && p[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (val > (max - d) / 10)
            return -1;
        val = val * 10 + d;
    }
    *out = val;
    return 0;
}

/* next_field - length of the field at buf[pos..len) up to a space or the end */
static size_t next_field(const char *buf, size_t len, size_t pos)
{
    size_t end = pos;

    while (end < len && buf[end] != ' ')
        end++;
    return end - pos;
}

/* verdict_parse - strict parse of the cache form; out untouched on error */
int verdict_parse(const char *buf, size_t len, struct verdict *out)
{
    struct verdict v;
    size_t pos = 0, flen;
    unsigned long long num;
    /* time_t is signed; this bound holds for 32- and 64-bit time_t */
    const unsigned long long time_max =
        sizeof(time_t) >= 8 ? (unsigned long long)INT64_MAX : (unsigned long long)INT32_MAX;

    if (buf == NULL || out == NULL)
        return -1;
    memset(&v, 0, sizeof(v));

    /* kind */
    flen = next_field(buf, len, pos);
    if (verdict_kind_parse(buf + pos, flen, &v.kind) < 0)
        return -1;
    pos += flen;
    if (pos >= len || buf[pos] != ' ')
        return -1;
    pos++;

    /* code: "0" or 200..599, then optional "/" and flag letters */
    flen = next_field(buf, len, pos);
    size_t clen = 0;
    while (clen < flen && buf[pos + clen] != '/')
        clen++;
    if (clen > 3 || parse_uint(buf + pos, clen, 999, &num) < 0)
        return -1;
    if (num != 0 && (num < 200 || num > 599))
        return -1;
    v.code = (int)num;
    if (clen < flen) {
        /* "/" and 1..8 letters; letters of flags we do not know are ignored */
        if (flen - clen - 1 < 1 || flen - clen - 1 > 8)
            return -1;
        for (size_t i = clen + 1; i < flen; i++) {
            char c = buf[pos + i];
            const char *l = c != '\0' ? memchr(flag_letters, c, sizeof(flag_letters) - 1) : NULL;
            if (c < 'a' || c > 'z')
                return -1;
            if (l != NULL)
                v.flags |= 1u << (l - flag_letters);
        }
    }
    pos += flen;
    if (pos >= len || buf[pos] != ' ')
        return -1;
    pos++;

    /* unix time */
    flen = next_field(buf, len, pos);
    if (flen > 20 || parse_uint(buf + pos, flen, time_max, &num) < 0)
        return -1;
    v.when = (time_t)num;
    pos += flen;
    if (pos >= len || buf[pos] != ' ')
        return -1;
    pos++;

    /* source: one token of printable non-space ASCII */
    flen = next_field(buf, len, pos);
    if (flen == 0 || flen >= sizeof(v.source))
        return -1;
    for (size_t i = 0; i < flen; i++) {
        unsigned char c = (unsigned char)buf[pos + i];
        if (c <= 0x20 || c > 0x7e)
            return -1;
    }
    memcpy(v.source, buf + pos, flen);
    v.source[flen] = '\0';
    pos += flen;

    /* optional text: everything after one space, printable ASCII only */
    if (pos < len) {
        pos++; /* the separating space: next_field stopped on it */
        size_t tlen = len - pos;
        if (tlen >= sizeof(v.text))
            return -1;
        for (size_t i = 0; i < tlen; i++) {
            unsigned char c = (unsigned char)buf[pos + i];
            if (c < 0x20 || c > 0x7e)
                return -1;
        }
        memcpy(v.text, buf + pos, tlen);
        v.text[tlen] = '\0';
    }

    *out = v;
    return 0;
}
