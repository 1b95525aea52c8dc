/*
 * policy_client.h - one blocking connection to callahead-policyd, used from
 * a libmilter worker thread: send one policy request, read one answer,
 * never wait past a deadline.
 *
 * libmilter calls our callbacks on its own threads and expects an answer
 * in each callback, so this client blocks - but only in poll(), and only
 * until the deadline the caller gives (milter_timeout), connect included.
 * A client is owned by one milter session at a time (no locking inside);
 * the connection is reused for every recipient of the session and opened
 * again when policyd closed it while idle.
 *
 * Everything policyd sends is treated as hostile: the answer is bounded
 * (POLICY_CLIENT_MAX_ANSWER bytes), must be "name=value" lines ending in an
 * empty line, must carry exactly one action=, and may hold only printable
 * characters. Anything else is an error and the connection is closed, so a
 * confused policyd can never leave a stale answer for the next recipient.
 */
#ifndef CALLAHEAD_POLICY_CLIENT_H
#define CALLAHEAD_POLICY_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

#define POLICY_CLIENT_MAX_ANSWER 4096 /* whole answer, all lines */
#define POLICY_CLIENT_MAX_ACTION 2048 /* the action value */
#define POLICY_CLIENT_MAX_VALUE 1024  /* one request attribute value, longer ones are cut */
#define POLICY_CLIENT_MAX_ATTRS 16    /* attributes in one request */

struct policy_client;

/* where policyd listens, resolved once at start-up (shared read-only by every client) */
struct policy_endpoint {
    int family; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t addrlen;
    struct sockaddr_storage addr;
    char name[160]; /* as configured, for messages */
};

/* one request attribute; value may be NULL (sent empty) */
struct policy_attr {
    const char *name;
    const char *value;
};

/*
 * policy_endpoint_parse - "inet:HOST:PORT", "inet:[IPV6]:PORT" or
 * "unix:PATH" into ep. HOST may be a name: it is resolved here, once, at
 * start-up, because a lookup on a worker thread could block past any
 * deadline. 0 ok; -1 and a reason in err.
 */
int policy_endpoint_parse(const char *s, struct policy_endpoint *ep, char *err, size_t errlen);

/*
 * policy_client_new - a client for ep (which must outlive it); it connects
 * on the first query. NULL when out of memory. Free with policy_client_free.
 */
struct policy_client *policy_client_new(const struct policy_endpoint *ep);

/*
 * policy_client_query - send the attributes (request=smtpd_access_policy is
 * the caller's first attribute) and wait at most timeout_ms for the answer.
 * Values are sent with control characters replaced by '?' and cut at
 * POLICY_CLIENT_MAX_VALUE bytes: an address from the MTA can never split
 * the request. On success 0 and the action value (NUL-terminated, at most
 * POLICY_CLIENT_MAX_ACTION bytes) in action. On failure -1, a reason in err,
 * and the connection closed (the next query opens a new one).
 */
int policy_client_query(struct policy_client *pc, const struct policy_attr *attrs, int nattrs,
                        int timeout_ms, char *action, size_t actsize, char *err, size_t errlen);

/* policy_client_close - drop the connection (a later query reconnects) */
void policy_client_close(struct policy_client *pc);

/* policy_client_free - close and free; NULL is fine */
void policy_client_free(struct policy_client *pc);

#endif
