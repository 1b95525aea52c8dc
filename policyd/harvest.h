/*
 * harvest.h - the per-client harvest limit: a client (or its /24 or /64
 * network, configurable) that collects more than max_invalid_per_client
 * invalid recipients within harvest_window is answered harvest_action
 * (a tempfail by default) for every further RCPT for harvest_penalty.
 * That is how dictionary attacks ("try every name at this domain") are
 * stopped; milter-ahead's per-client max-failures is the model.
 *
 * Shared across MX hosts through Redis: every invalid recipient increments
 * "<prefix>harvest:<network>:<window>" (INCR, expiring), so the count is
 * the sum over all hosts; the host that sees the count pass the limit
 * publishes "harvest <network> <until>" on the flush channel and every
 * host blocks the network at once. Without Redis (or while it is down)
 * each host counts on its own. The in-process table is bounded
 * (HARVEST_MAX_ENTRIES, least recently used dropped first), so a botnet
 * of many addresses cannot grow it without bound.
 * Exempt: networks in harvest_exempt_networks, and requests with a
 * sasl_username when harvest_exempt_authenticated is on. The exempt list
 * has the grammar of every network list (netlist.h).
 */
#ifndef CALLAHEAD_HARVEST_H
#define CALLAHEAD_HARVEST_H

#include <stddef.h>
#include <time.h>

struct event_base;
struct cache;
struct config;
struct harvest;

#define HARVEST_MAX_ENTRIES 65536

struct harvest *harvest_new(struct event_base *base, struct cache *cache);
/* harvest_free - before the cache is freed: pending Redis replies are cancelled */
void harvest_free(struct harvest *h);

/*
 * harvest_configure - take the harvest parameters of cfg (the exempt
 * network list is parsed here). 0, or -1 + err with the old settings kept.
 */
int harvest_configure(struct harvest *h, const struct config *cfg, char *err, size_t errlen);

/* harvest_check_networks - is text a valid harvest_exempt_networks value? 0 or -1 + err */
int harvest_check_networks(const char *text, char *err, size_t errlen);

enum harvest_state {
    HARVEST_OFF = 0, /* limit off, exempt, or no usable client address */
    HARVEST_OK,      /* counted and under the limit */
    HARVEST_BLOCKED, /* in its penalty */
};

/*
 * harvest_client - the state of the client at client_address (as Postfix
 * sends it) with SASL login sasl (NULL or "" if none), now. *count gets
 * the invalid recipients counted in the current window (here or, last
 * seen, in Redis) and *left the seconds of penalty left; net (netsize
 * bytes) the network it is counted under.
 */
enum harvest_state harvest_client(struct harvest *h, const char *client_address, const char *sasl,
                                  long *count, long *left, char *net, size_t netsize);

/* harvest_note_invalid - the client got an invalid verdict: count it; may start a penalty */
void harvest_note_invalid(struct harvest *h, const char *client_address, const char *sasl);

/*
 * The policy front end's three hooks. harvest_mark is per request: what
 * harvest_gate found before the lookup.
 */
struct policy_request;
struct verdict;
struct harvest_mark {
    enum harvest_state state;
    long count, left;
    char net[64];
};

/*
 * harvest_gate - before the lookup: 1 when the request is answered now
 * (the client is in its penalty and harvest_pass_valid is off), with the
 * expanded harvest_action in action (size bytes); else 0. h may be NULL.
 */
int harvest_gate(struct harvest *h, const struct config *cfg, const struct policy_request *r,
                 struct harvest_mark *m, char *action, size_t size);

/*
 * harvest_after - the verdict: an invalid one is counted; during a penalty
 * (with harvest_pass_valid) anything but valid gets harvest_action, and
 * then 1 is returned with action replaced. h may be NULL.
 */
int harvest_after(struct harvest *h, const struct config *cfg, const struct policy_request *r,
                  struct harvest_mark *m, const struct verdict *v, char *action, size_t size);

/*
 * harvest_would_refuse - for "callahead verify --client": would this client
 * get harvest_action for verdict v about rcpt now? 1 with the action in
 * action (size bytes), else 0. Counts nothing. h may be NULL.
 */
int harvest_would_refuse(struct harvest *h, const struct config *cfg, const char *client,
                         const struct verdict *v, const char *rcpt, char *action, size_t size);

/* harvest_log - " client=ADDR harvest=N/MAX[ blocked]" when it matters, else "" */
void harvest_log(const struct harvest_mark *m, const struct config *cfg,
                 const struct policy_request *r, char *buf, size_t size);

/* harvest_message - "harvest <network> <until>" from the channel (untrusted); 0 or -1 */
int harvest_message(struct harvest *h, const char *msg, size_t len);

struct harvest_stats {
    unsigned long penalties; /* penalties started (here or heard from the channel) */
    unsigned long refused;   /* requests answered harvest_action */
    unsigned long blocked;   /* gauge: networks in their penalty now */
};
void harvest_get_stats(struct harvest *h, struct harvest_stats *out);

#endif
