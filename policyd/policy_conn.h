/*
 * policy_conn.h - one Postfix policy client connection, and the server
 * state all connections share.
 *
 * A connection is a small state machine with one deadline:
 *   READING   waiting for request lines (idle_timeout before the first byte,
 *             request_timeout from the first byte of a request: a client
 *             trickling a byte at a time is cut off after request_timeout)
 *   VERIFYING the request is complete; the verifier is working (reading is
 *             paused: Postfix sends one request at a time; the answer budget
 *             bounds this state)
 *   WRITING   the reply is queued; when it has drained, back to READING
 * A protocol error (bad line, over a limit) logs, sends no reply and closes
 * only this connection, as SMTPD_POLICY_README says. End of input from the
 * client (also a half-close, shutdown(SHUT_WR)) stops reading; every request
 * already complete is still answered, then the connection is closed.
 */
#ifndef CALLAHEAD_POLICY_CONN_H
#define CALLAHEAD_POLICY_CONN_H

#include <sys/queue.h>

#include <event2/util.h>

#include "log.h"

struct event_base;
struct config;
struct verifier;
struct metrics;
struct harvest;
struct policy_conn;

/*
 * POLICY_LOG_INTERVAL_MS - a client can repeat a warning at will (one
 * "garbage" line per connection), so each kind of client-caused warning is
 * logged at most once per this interval, with a count of those not logged.
 */
#define POLICY_LOG_INTERVAL_MS 10000

/* policy_server - what every connection needs; owned by main.c */
struct policy_server {
    struct event_base *base;
    const struct config *cfg; /* replaced on reload; connections read it per request */
    struct verifier *verifier;
    struct metrics *metrics; /* verdict latencies; NULL = not measured */
    struct harvest *harvest; /* the per-client harvest limit; NULL = none */
    int nconns;
    int conn_cap; /* > 0: fewer connections than max_connections fit the descriptor limit */
    int draining; /* SIGTERM: finish what is in progress, take nothing new */
    TAILQ_HEAD(, policy_conn) conns; /* least recently active first (see policy_conn_new) */
    unsigned long requests, protocol_errors, refused, evicted;
    /* rate limits per kind of client-caused warning (see POLICY_LOG_INTERVAL_MS) */
    struct log_limit log_protocol, log_not_policy, log_cut_off, log_timeout, log_refused,
        log_evicted;
};

void policy_server_init(struct policy_server *s, struct event_base *base, const struct config *cfg,
                        struct verifier *v);

/*
 * policy_conn_new - take over an accepted socket fd (non-blocking is set
 * here). peer is a printable peer name for logs. At max_connections the
 * least recently active connection that waits for input (idle, or a slow
 * request) is closed to make room; when every connection is busy with a
 * lookup or a reply, or on SIGTERM, or out of memory, returns NULL and
 * closes fd.
 */
struct policy_conn *policy_conn_new(struct policy_server *s, evutil_socket_t fd, const char *peer);

/*
 * policy_reply_policy - the reply options of cfg for reply_policy_decide
 * (reply_policy.h): what conn_verified answers with, and what the control
 * socket's verify shows. p points into cfg.
 */
struct reply_policy;
void policy_reply_policy(const struct config *cfg, struct reply_policy *p);

/* policy_conn_free - close and free now; a lookup in progress is cancelled */
void policy_conn_free(struct policy_conn *c);

/*
 * policy_server_drain - stop reading new requests: idle connections are
 * closed now, the others after their reply. Returns the number still open.
 */
int policy_server_drain(struct policy_server *s);

#endif
