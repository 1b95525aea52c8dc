/*
 * redis_names.c - the Redis names of a configuration, resolved on the loop
 * (see redis_names.h).
 *
 * One struct redis_names per reload, a small state machine:
 *   RESOLVING  lookups in flight (pending counts them); a name that is
 *              numeric or in the hosts file needs none, and when no lookup
 *              is needed at all the zero timer answers from the loop
 *   DONE       every host has its address; the callback ran with ok 1
 *   FAILED     one host failed; the others were cancelled, the callback
 *              ran with ok 0
 * The lookups' deadline is dns.c's (dns_timeout for a whole lookup).
 */
#include "redis_names.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns.h"
#include "log.h"
#include "redis_sentinel.h"
#include "value_parse.h"
#include "verifier.h"

#define RN_MAX (REDIS_SENTINEL_MAX > 1 ? REDIS_SENTINEL_MAX : 1)

enum rn_state { RN_RESOLVING, RN_DONE, RN_FAILED };
static const char *const rn_state_names[] = {"resolving", "done", "failed"};

/* one host to resolve */
struct rn_host {
    struct redis_names *rn;
    char name[VALUE_HOST_MAX];
    int port;
    char addr[INET6_ADDRSTRLEN]; /* numeric, once known */
    struct dns_req *req;         /* lookup in flight, or NULL */
};

struct redis_names {
    enum rn_state state;
    struct dns *dns;
    struct event *answer; /* zero timer: the outcome when no lookup was needed */
    redis_names_cb cb;
    void *arg;
    int sentinels; /* the hosts are sentinels (else host[0] is redis_server) */
    int n;
    int pending;
    struct rn_host host[RN_MAX];
    char list[RN_MAX * (INET6_ADDRSTRLEN + 10)]; /* the resolved sentinel list */
    char err[VALUE_HOST_MAX + 300];
};

/* rn_enter_state - the one place rn's state changes */
static void rn_enter_state(struct redis_names *rn, enum rn_state state)
{
    if ((unsigned)state >= sizeof(rn_state_names) / sizeof(rn_state_names[0]))
        return;
    log_debug("redis names: %s -> %s", rn_state_names[rn->state], rn_state_names[state]);
    rn->state = state;
}

/* rn_numeric - 1 when host is an IPv4 or IPv6 address literal */
static int rn_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* rn_hosts - the hosts of cfg to resolve into names/ports; count, or -1 + err */
static int rn_hosts(const struct config *cfg, char (*names)[VALUE_HOST_MAX], int *ports, char *err,
                    size_t errlen)
{
    if (cfg->redis_sentinels != NULL && cfg->redis_sentinels[0] != '\0')
        return redis_sentinel_parse(cfg->redis_sentinels, names, ports, err, errlen);
    if (cfg->redis_host == NULL) /* no Redis, or unix: */
        return 0;
    snprintf(names[0], VALUE_HOST_MAX, "%s", cfg->redis_host);
    ports[0] = cfg->redis_port;
    return 1;
}

int redis_names_needed(const struct config *cfg)
{
    char names[RN_MAX][VALUE_HOST_MAX];
    int ports[RN_MAX];
    char err[256];
    int n = rn_hosts(cfg, names, ports, err, sizeof(err));

    for (int i = 0; i < n; i++)
        if (!rn_numeric(names[i]))
            return 1;
    return 0;
}

/* rn_sockaddr_text - ss's address as text into h->addr; 0 or -1 */
static int rn_sockaddr_text(struct rn_host *h, const struct sockaddr_storage *ss)
{
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

    if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
        return -1;
    return inet_ntop(ss->ss_family, a, h->addr, sizeof(h->addr)) != NULL ? 0 : -1;
}

/* rn_finish - report the outcome once; rn may be freed by the callback */
static void rn_finish(struct redis_names *rn)
{
    if (rn->state == RN_RESOLVING && rn->err[0] == '\0') {
        size_t used = 0;
        for (int i = 0; rn->sentinels && i < rn->n; i++) {
            int bracket = strchr(rn->host[i].addr, ':') != NULL;
            int w = snprintf(rn->list + used, sizeof(rn->list) - used, "%s%s%s%s:%d", i ? ", " : "",
                             bracket ? "[" : "", rn->host[i].addr, bracket ? "]" : "",
                             rn->host[i].port);
            used += w > 0 ? (size_t)w : 0;
        }
        rn_enter_state(rn, RN_DONE);
        rn->cb(1, "", rn->arg);
        return;
    }
    rn_enter_state(rn, RN_FAILED);
    rn->cb(0, rn->err, rn->arg);
}

/* rn_answer_cb - the zero timer: nothing needed a lookup */
static void rn_answer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rn_finish(arg);
}

/* rn_lookup_cb - one host's lookup is answered (dns_cb: from the loop) */
static void rn_lookup_cb(int status, const struct dns_target *targets, int ntargets,
                         const char *errmsg, void *arg)
{
    struct rn_host *h = arg;
    struct redis_names *rn = h->rn;

    h->req = NULL;
    rn->pending--;
    if (status != DNS_OK || ntargets < 1 || targets[0].naddrs < 1 ||
        rn_sockaddr_text(h, &targets[0].addrs[0]) < 0) {
        snprintf(rn->err, sizeof(rn->err), "redis: cannot resolve %s%s: %s",
                 rn->sentinels ? "sentinel " : "", h->name,
                 status == DNS_OK ? "no usable address" : errmsg);
        for (int i = 0; i < rn->n; i++) {
            if (rn->host[i].req != NULL) {
                dns_cancel(rn->host[i].req);
                rn->host[i].req = NULL;
                rn->pending--;
            }
        }
        rn_finish(rn);
        return;
    }
    log_info("redis: %s resolved to %s (once, for this configuration)", h->name, h->addr);
    if (rn->pending == 0)
        rn_finish(rn);
}

struct redis_names *redis_names_start(struct event_base *base, const struct config *cfg,
                                      redis_names_cb cb, void *arg, char *err, size_t errlen)
{
    char names[RN_MAX][VALUE_HOST_MAX];
    int ports[RN_MAX];
    struct redis_names *rn;
    int n;

    if ((n = rn_hosts(cfg, names, ports, err, errlen)) < 0)
        return NULL;
    if ((rn = calloc(1, sizeof(*rn))) == NULL) {
        snprintf(err, errlen, "redis: out of memory");
        return NULL;
    }
    rn->cb = cb;
    rn->arg = arg;
    rn->n = n;
    rn->sentinels = cfg->redis_sentinels != NULL && cfg->redis_sentinels[0] != '\0';
    rn->answer = evtimer_new(base, rn_answer_cb, rn);
    rn->dns = dns_new(base, cfg->dns_servers, cfg->dns_timeout_ms, err, errlen);
    if (rn->answer == NULL || rn->dns == NULL) {
        if (rn->answer == NULL)
            snprintf(err, errlen, "redis: out of memory");
        redis_names_free(rn);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        struct rn_host *h = &rn->host[i];
        struct sockaddr_storage ss;

        h->rn = rn;
        memcpy(h->name, names[i], sizeof(h->name));
        h->port = ports[i];
        if (rn_numeric(h->name)) {
            snprintf(h->addr, sizeof(h->addr), "%s", h->name);
        } else if (dns_hosts_file(rn->dns, h->name, &ss) == 0 && rn_sockaddr_text(h, &ss) == 0) {
            log_info("redis: %s is %s in the hosts file", h->name, h->addr);
        } else if ((h->req = dns_host_lookup(rn->dns, h->name, rn_lookup_cb, h)) != NULL) {
            rn->pending++;
        } else {
            snprintf(err, errlen, "redis: out of memory");
            redis_names_free(rn);
            return NULL;
        }
    }
    if (rn->pending == 0)
        event_active(rn->answer, EV_TIMEOUT, 1);
    return rn;
}

void redis_names_apply(const struct redis_names *rn, struct verifier_config *vc)
{
    if (rn == NULL || rn->state != RN_DONE)
        return;
    if (rn->sentinels)
        vc->cache.redis.sentinels = rn->list;
    else if (rn->n == 1)
        vc->cache.redis.host = rn->host[0].addr;
}

void redis_names_free(struct redis_names *rn)
{
    if (rn == NULL)
        return;
    dns_free(rn->dns); /* cancels the lookups still in flight: their callbacks never run */
    if (rn->answer != NULL)
        event_free(rn->answer);
    free(rn);
}
