/*
 * ldap_pool.h - connections to one LDAP source and the searches they carry,
 * all on the caller's event loop: libldap's asynchronous API only, nothing
 * that blocks.
 *
 * How the blocking parts of libldap 2.5 are avoided:
 *   - name resolution: libldap never resolves. A host name in server_host
 *     is resolved with the daemon's asynchronous resolver (dns.h, c-ares
 *     on the same loop) each time a connection to it is opened, within
 *     connect_timeout; its addresses (IPv4 first, then IPv6) are tried in
 *     order, each with its own connect_timeout, then the next server.
 *   - the TCP (or ldapi) connect: done here on a non-blocking socket watched
 *     by libevent with connect_timeout; libldap gets the connected socket
 *     through ldap_init_fd and never connects itself.
 *   - reading: the socket is watched for EV_READ and drained with
 *     ldap_result(..., zero timeout) until it returns 0 (libldap buffers,
 *     so one readable event can hold several messages).
 *   - writing: requests are small and the socket is non-blocking; libldap
 *     keeps a request whose write would block and finishes it on the next
 *     ldap_result (XXX: not watched for EV_WRITE; max_inflight keeps the
 *     amount written per connection far below a socket buffer).
 *   - TLS (ldaps://, start_tls): libldap 2.5 only has blocking handshakes,
 *     so the connected socket goes to a worker thread for ldap_init_fd and
 *     the handshake, bounded by the rest of connect_timeout (ldap_tls.h);
 *     the bind and everything after it are on the loop as without TLS.
 * libldap writes with write(2): like every socket user in the daemons, this
 * relies on SIGPIPE being ignored (policyd's main does).
 *
 * A pool has at most pool_size connections (in every state, closing ones
 * included, so the limit is on sockets). A search goes to the least busy
 * ready connection with fewer than max_inflight searches; otherwise it
 * waits in the pool's queue, and a new connection is opened if the limit
 * allows. Every search has one deadline (the source's timeout) from the
 * moment it is asked, queueing included; at the deadline it is abandoned
 * (ldap_abandon_ext) and answered LDAP_POOL_TIMEOUT, and a connection that
 * received nothing at all since that search was sent is dropped as stuck.
 *
 * A connection that fails (reset, closed by the server, garbled) is
 * dropped; the searches it carried are sent once more on a fresh
 * connection, a second failure answers LDAP_POOL_DOWN. A connection that
 * cannot be opened or bound (all servers tried, in order, from the last one
 * that worked) starts a backoff (250ms doubling to 10s, reset by a
 * successful bind): the queued searches are answered LDAP_POOL_DOWN and new
 * ones are refused at once until the backoff ends. A connection idle for
 * idle_timeout is closed quietly (servers and firewalls drop idle ones
 * without telling; a fresh one costs one connect), and TCP keepalive is on.
 */
#ifndef CALLAHEAD_LDAP_POOL_H
#define CALLAHEAD_LDAP_POOL_H

#include <ldap.h>
#include <stddef.h>

struct event_base;
struct dns;
struct ldap_conf;
struct ldap_pool;   /* opaque */
struct ldap_search; /* opaque */

#define LDAP_POOL_QUEUE_MAX 100000          /* searches waiting for a connection, per pool */
#define LDAP_POOL_MAX_MESSAGE (1024 * 1024) /* largest message accepted from a server */
#define LDAP_POOL_BACKOFF_MIN_MS 250
#define LDAP_POOL_BACKOFF_MAX_MS 10000

/* status of a finished search */
enum ldap_pool_status {
    LDAP_POOL_OK = 0,  /* the search completed; its entries were passed to entry_fn */
    LDAP_POOL_DOWN,    /* no connection, or it failed twice: the directory is unreachable */
    LDAP_POOL_TIMEOUT, /* the deadline passed (queued or sent) */
    LDAP_POOL_REFUSED, /* the server answered with an error (size limit, referral, ...) */
};

/*
 * ldap_entry_fn - one entry of a search in progress; msg belongs to the pool
 * and is valid only during the call (read it with ldap_get_values_len etc.
 * on ld).
 */
typedef void (*ldap_entry_fn)(LDAP *ld, LDAPMessage *msg, void *arg);

/*
 * ldap_done_fn - the end of a search: runs exactly once per search that
 * ldap_pool_search returned, always from the event loop, never from inside
 * ldap_pool_search; not after ldap_search_cancel. why is a one-line reason
 * for the log ("" for LDAP_POOL_OK). The search handle is dead once done
 * runs. done may start and cancel other searches.
 */
typedef void (*ldap_done_fn)(enum ldap_pool_status status, const char *why, void *arg);

/*
 * ldap_pool_new - a pool for conf (which must outlive it) on base. dns
 * (which must outlive it too) resolves host names in server_host; NULL:
 * a server given by name cannot be reached (its connect fails). No
 * connection is opened until the first search. NULL on out of memory.
 */
struct ldap_pool *ldap_pool_new(struct event_base *base, struct dns *dns,
                                const struct ldap_conf *conf);

/*
 * ldap_pool_free - close every connection. Searches still pending are
 * dropped without their callbacks (the backend contract has cancelled
 * them all before close).
 */
void ldap_pool_free(struct ldap_pool *p);

/*
 * ldap_pool_search - start a search for filter (already expanded and
 * escaped; copied) with the source's base, scope, attributes and limits.
 * NULL when it cannot even be queued (the directory is in backoff, the
 * queue is full): a reason is written to why and no callback runs.
 */
struct ldap_search *ldap_pool_search(struct ldap_pool *p, const char *filter, ldap_entry_fn entry,
                                     ldap_done_fn done, void *arg, char *why, size_t whylen);

/* ldap_search_cancel - done will not run; the search is abandoned on the server */
void ldap_search_cancel(struct ldap_search *s);

/* ldap_pool_stats - counters for tests and for the operator */
struct ldap_pool_stats {
    int conns;                   /* connections now, in any state */
    int conns_max;               /* most connections at once since the pool was made */
    unsigned long connects;      /* connections opened (connect succeeded) */
    unsigned long connect_fails; /* connections that could not be opened or bound */
    unsigned long drops;         /* connections lost or dropped after they were ready */
    unsigned long retries;       /* searches sent again after their connection failed */
    unsigned long searches;      /* searches sent (retries included) */
    unsigned long timeouts;      /* searches past their deadline */
    int inflight_max;            /* most searches outstanding on one connection at once */
    unsigned long failures;      /* searches refused or answered other than OK */
    unsigned long reconnects;    /* connections opened to replace a dropped one */
    /* gauges, filled in by ldap_pool_get_stats */
    int conns_ready;      /* ready for searches */
    int conns_connecting; /* connecting or binding */
    int inflight;         /* searches sent and not answered yet, all connections */
    int queued;           /* searches waiting for a connection */
    int backing_off;      /* 1 while new searches are refused after a connect failure */
};
void ldap_pool_get_stats(const struct ldap_pool *p, struct ldap_pool_stats *out);

#endif
