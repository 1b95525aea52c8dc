/*
 * breaker.h - circuit breakers for next hops that keep failing.
 *
 * A callout to a next hop that is down costs a connect timeout per lookup
 * and, worse, hammers the next hop the moment it comes back. After
 * `failures` consecutive failures (verdicts the backend marks
 * VERDICT_DEST_FAILURE: about the destination, not the address, such as a
 * refused connection, a timeout or garbage) the breaker for that
 * destination opens: for `open_secs` no probe is made and lookups that the
 * cache cannot answer get tempfail at once. Then one probe is let through
 * (half-open); its success closes the breaker, its failure opens it again.
 * Pure bookkeeping with the time passed in, so it is tested without clocks.
 */
#ifndef CALLAHEAD_BREAKER_H
#define CALLAHEAD_BREAKER_H

#include <stddef.h>
#include <time.h>

struct breaker_table; /* opaque */

/* breaker_table_new - at most max_entries destinations tracked (oldest healthy ones dropped) */
struct breaker_table *breaker_table_new(size_t max_entries);
void breaker_table_free(struct breaker_table *t);

/*
 * breaker_allow - may a probe to dest start now? 1 yes (closed, or the one
 * half-open probe), 0 no (open). *retry_in gets the seconds until it
 * half-opens when 0 is returned (may be NULL).
 */
int breaker_allow(struct breaker_table *t, const char *dest, time_t now, int *retry_in);

/*
 * breaker_report - the outcome of a probe that breaker_allow let through:
 * ok 1 (the next hop answered about the address) or 0 (session failure).
 * Returns 1 when this report opened the breaker, -1 when it closed an open
 * one, 0 otherwise (so the caller logs transitions once).
 */
int breaker_report(struct breaker_table *t, const char *dest, int ok, int failures, int open_secs,
                   time_t now);

/* breaker_open_count - destinations whose breaker is open now */
size_t breaker_open_count(const struct breaker_table *t, time_t now);

/* what an operator sees of one breaker ("callahead show", "callahead stats") */
enum breaker_state {
    BREAKER_CLOSED,    /* probes run (failures may be counting up) */
    BREAKER_OPEN,      /* no probes until retry_in seconds have passed */
    BREAKER_HALF_OPEN, /* open time over: the next probe (or the one out) decides */
};

struct breaker_info {
    const char *dest; /* valid until the table next changes */
    enum breaker_state state;
    int failures; /* consecutive failures counted */
    int retry_in; /* seconds until it half-opens; 0 unless open */
};

/*
 * breaker_peek - the state of dest's breaker at now, without touching the
 * table's order. An untracked destination is closed with no failures (a
 * healthy one is forgotten): returns 1 when tracked, 0 when not.
 */
int breaker_peek(const struct breaker_table *t, const char *dest, time_t now,
                 struct breaker_info *out);

/* breaker_foreach_fn - one tracked breaker; return nonzero to stop */
typedef int (*breaker_foreach_fn)(const struct breaker_info *b, void *arg);

/* breaker_foreach - every tracked breaker (most recently touched first); no changes meanwhile */
void breaker_foreach(const struct breaker_table *t, time_t now, breaker_foreach_fn fn, void *arg);

/* breaker_state_name - "closed", "open", "half-open" */
const char *breaker_state_name(enum breaker_state st);

#endif
