/*
 * verdict.h - the answer the verifier gives about one recipient address.
 *
 * A verdict is what every backend produces and what the cache stores. It is
 * kept small and fixed-size so it can be copied by value between the cache,
 * the backends and the front ends without ownership questions.
 */
#ifndef CALLAHEAD_VERDICT_H
#define CALLAHEAD_VERDICT_H

#include <stddef.h>
#include <time.h>

enum verdict_kind {
    VERDICT_UNKNOWN = 0, /* no route decides: the MTA decides (DUNNO) */
    VERDICT_VALID,       /* the address exists */
    VERDICT_INVALID,     /* permanent: the address does not exist */
    VERDICT_TEMPFAIL,    /* could not tell now: try again later */
};
#define VERDICT_KIND_COUNT 4

#define VERDICT_SOURCE_MAX 64 /* "cdb", "cache-redis", "smtp:[host]:25", ... */
#define VERDICT_TEXT_MAX 256  /* reason text, sanitised (printable ASCII, no CR/LF) */

/* verdict flags: what the generic layers need to know without reading source or code */
#define VERDICT_REMOTE_TEXT                                                                        \
    0x1                      /* text (and source) come from a remote party: hide from clients      \
                              */
#define VERDICT_OWN_TEXT 0x2 /* text worded by us for clients (budget, breaker, queue full) */
#define VERDICT_DEST_FAILURE                                                                       \
    0x4 /* tempfail: the destination failed, not an answer on the address */
#define VERDICT_FLAGS_ALL 0x7

struct verdict {
    enum verdict_kind kind;
    unsigned flags;                  /* VERDICT_* flags above */
    int code;                        /* SMTP reply code where there was one, else 0 */
    time_t when;                     /* when the verdict was obtained (not when cached) */
    char source[VERDICT_SOURCE_MAX]; /* who decided; no spaces */
    char text[VERDICT_TEXT_MAX];     /* reason, e.g. "5.1.1 User unknown" */
};

/* verdict_kind_name - "unknown", "valid", "invalid", "tempfail" */
const char *verdict_kind_name(enum verdict_kind kind);

/* verdict_kind_parse - inverse of verdict_kind_name; 0 on success, -1 if unknown name */
int verdict_kind_parse(const char *name, size_t len, enum verdict_kind *kind);

/*
 * verdict_set - fill a verdict (flags 0); source and text are copied,
 * truncated and sanitised (see verdict_sanitize). text may be NULL.
 */
void verdict_set(struct verdict *v, enum verdict_kind kind, int code, const char *source,
                 const char *text);

/*
 * verdict_sanitize - copy src (len bytes) to dst (size bytes, NUL-terminated),
 * replacing every byte outside printable ASCII with '?' and collapsing runs of
 * whitespace, so that text from a next hop or from Redis can go into an SMTP
 * reply and a log line safely. Returns the length written.
 */
size_t verdict_sanitize(char *dst, size_t size, const char *src, size_t len);

/*
 * verdict_format - the cache representation, readable with redis-cli:
 *   "<kind> <code>[/<flags>] <unix-time> <source> <text>"
 * e.g. "invalid 550 1732458000 cdb 5.1.1 User unknown", or with flags
 * "invalid 550/r 1732458000 smtp:[10.1.2.3]:25 5.1.1 User unknown". Flags are
 * letters: r remote text, o own text, d destination failure; "/<flags>" is
 * left out when there are none, so entries without flags read as before.
 * (Older versions treat an entry with flags as malformed: a cache miss.)
 * Returns the length written (< size) or -1 if it does not fit.
 */
int verdict_format(const struct verdict *v, char *buf, size_t size);

/*
 * verdict_parse - parse the cache representation. The input is untrusted
 * (it comes from Redis, which anyone may write to): it is length-bounded, need
 * not be NUL-terminated, and anything malformed returns -1 with out untouched.
 */
int verdict_parse(const char *buf, size_t len, struct verdict *out);

#endif
