/*
 * dns.h - asynchronous DNS for SMTP callouts: the MX lookup of route method
 * smtp:mx (with RFC 5321 5.1's fall back to the domain's own A/AAAA) and the
 * plain A/AAAA lookup of a static next hop given by name.
 *
 * libevent's evdns cannot ask for MX records, so this wraps c-ares and drives
 * it from the caller's event_base: one event per c-ares socket (through
 * ARES_OPT_SOCK_STATE_CB) and one timer from ares_timeout(). Nothing here
 * blocks the loop except dns_new() reading /etc/resolv.conf at start-up
 * (and dns_reconfigure() at a reload).
 *
 * Answers (struct dns_target, in the order to try them):
 *   - MX records sorted by preference, equal preferences shuffled (RFC 5321
 *     5.1), duplicate hosts kept once; at most DNS_MAX_TARGETS, the most
 *     preferred ones.
 *   - each MX host resolved to A and AAAA (IPv4 first, then IPv6, each in the
 *     server's order, at most DNS_MAX_ADDRS); a host with no address, or whose
 *     lookup failed, is left out.
 *   - no MX record (NODATA): an implicit MX, the domain itself, preference 0.
 * Addresses carry port 0: the caller sets the port it connects to.
 *
 * Statuses (the int passed to dns_cb):
 *   DNS_OK        ntargets >= 1, each with naddrs >= 1.
 *   DNS_NXDOMAIN  the domain (or, for dns_host_lookup, the host) does not
 *                 exist, or the host has no address at all.
 *   DNS_NOMAIL    the domain says it accepts no mail: a null MX (RFC 7505,
 *                 a single MX "."), or no MX and no A/AAAA record.
 *   DNS_TEMPFAIL  try later: timeout, SERVFAIL, REFUSED, no server reachable,
 *                 a malformed answer, or MX hosts none of which resolved (we
 *                 never call a domain invalid over its broken MX set).
 *   DNS_BADNAME   the name is not a valid DNS name (empty, label too long,
 *                 characters other than letters, digits, '-', '_'); nothing
 *                 was sent. Not a statement about the domain.
 * errmsg is a one-line reason for logs (never NULL; "" on DNS_OK); targets
 * is NULL unless DNS_OK.
 */
#ifndef CALLAHEAD_DNS_H
#define CALLAHEAD_DNS_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;

#define DNS_MAX_TARGETS 10 /* MX hosts returned, the most preferred ones */
#define DNS_MAX_ADDRS 8    /* addresses kept per host */
#define DNS_NAME_MAX 253   /* longest DNS name, without the trailing dot */

enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN,
    DNS_NOMAIL,
    DNS_TEMPFAIL,
    DNS_BADNAME,
};

/* One host to try, with its addresses (sin_port / sin6_port are 0). */
struct dns_target {
    char host[DNS_NAME_MAX + 3]; /* MX host name (or the domain, or the host) */
    int preference;              /* MX preference; 0 for implicit MX and host lookups */
    int naddrs;                  /* 1..DNS_MAX_ADDRS */
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
};

struct dns;
struct dns_req;

/*
 * dns_cb - result of one lookup. Runs exactly once per request unless the
 * request was cancelled first, always from the event loop, never from inside
 * the call that started it. targets and errmsg belong to the request and are
 * valid only during the callback: copy what you keep. The request handle is
 * dead once the callback starts (do not dns_cancel it). The callback may start
 * new lookups, cancel other requests, or dns_free() the resolver.
 */
typedef void (*dns_cb)(int status, const struct dns_target *targets, int ntargets,
                       const char *errmsg, void *arg);

/*
 * dns_new - a resolver on base.
 * servers: "" or NULL = the name servers of /etc/resolv.conf; otherwise a
 *   comma list "127.0.0.1:5353,[::1]:53,192.0.2.1" (port defaults to 53).
 * timeout_ms: the whole budget of one lookup (MX query and the address
 *   queries of its hosts together); when it passes the request answers
 *   DNS_TEMPFAIL. Values below 10 are raised to 10.
 * Returns NULL with a message in err on failure. The caller owns the result
 * and frees it with dns_free() before freeing base.
 */
struct dns *dns_new(struct event_base *base, const char *servers, int timeout_ms, char *err,
                    size_t errlen);

/*
 * dns_reconfigure - lookups started from now on ask servers (as dns_new;
 * "" reads /etc/resolv.conf again) within timeout_ms. Lookups in progress
 * finish on the servers and deadline they started with; the old c-ares
 * channel is freed once its last query has been answered. Returns 0, or
 * -1 with err set and nothing changed (a bad list, or c-ares cannot make a
 * channel).
 */
int dns_reconfigure(struct dns *dns, const char *servers, int timeout_ms, char *err, size_t errlen);

/* dns_free - cancel every pending request (their callbacks never run), free the resolver. */
void dns_free(struct dns *dns);

/*
 * dns_mx_lookup - the mail targets of domain (MX, else implicit MX), as above.
 * A trailing dot is allowed. Returns a handle valid until the callback starts
 * or dns_cancel(); NULL only when out of memory (then cb never runs).
 */
struct dns_req *dns_mx_lookup(struct dns *dns, const char *domain, dns_cb cb, void *arg);

/*
 * dns_host_lookup - A and AAAA of one host name: one target (preference 0).
 * An IPv4 or IPv6 address literal ("192.0.2.1", "::1", no brackets) is
 * answered without a query. Same handle rules as dns_mx_lookup.
 */
struct dns_req *dns_host_lookup(struct dns *dns, const char *host, dns_cb cb, void *arg);

/*
 * dns_hosts_file - host's address in the hosts file (/etc/hosts, as c-ares
 * reads it): IPv4 preferred, else IPv6, port 0. A local file read, no
 * query: for names a postmaster expects the system resolver to know
 * (a Redis server named "localhost" or in /etc/hosts), which
 * dns_host_lookup, asking name servers only, would not find.
 * 0 with *ss set, or -1 when the file has no entry.
 */
int dns_hosts_file(struct dns *dns, const char *host, struct sockaddr_storage *ss);

/*
 * dns_cancel - the callback of req will not run. Safe while c-ares still has
 * queries in flight for it (their answers are dropped later). req must be a
 * live handle: not after its callback started, not twice.
 */
void dns_cancel(struct dns_req *req);

/* dns_status_name - "ok", "nxdomain", "nomail", "tempfail", "badname" (for logs). */
const char *dns_status_name(int status);

#endif
