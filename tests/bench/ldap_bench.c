/*
 * ldap_bench.c - what a cold LDAP verdict costs: the same searches issued
 * either through the verifier (route ldap:bench, its pool, flights and
 * in-process cache; every address new, so every lookup is a search) or by
 * a minimal asynchronous libldap client of ours straight at slapd (the
 * ceiling: libldap and slapd with nothing around them). Both keep
 * CONCURRENCY lookups outstanding over POOL connections and time each one
 * by the same clock, so the difference is our overhead.
 *
 * usage: ldap_bench -m verifier|direct -p SLAPD_PORT -c CONCURRENCY -s POOL -n N [-o OFFSET]
 *                   [-i INFLIGHT]
 * INFLIGHT (default 64) caps the searches outstanding on one connection for
 * both: slapd closes an anonymous connection with more than 100 pending
 * (conn_max_pending), so neither may exceed it.
 * Addresses: even i -> u%07d@bench.test (exists), odd i -> x%07d@bench.test (does not).
 * The verifier runs an untimed warm-up of other addresses first, so that its
 * pool has opened its connections, as the direct client has before timing.
 * Prints one line: mode conc pool n verdicts_per_s p50_ms p99_ms errors
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <ldap.h>

#include "backend.h"
#include "log.h"
#include "verifier.h"

#define BASE_DN "dc=example,dc=test"

static struct event_base *base;
static int conc, pool, n, offset, port, inflight_cap = 64;
static int started, done, errors;
static double *lat_ms;
static double t_start;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void address(int i, char *buf, size_t size)
{
    snprintf(buf, size, "%c%07d@bench.test", (i % 2) == 0 ? 'u' : 'x', offset + i);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *mode)
{
    double total = now_ms() - t_start;
    qsort(lat_ms, (size_t)n, sizeof(double), cmp_double);
    printf("%s %d %d %d %.0f %.3f %.3f %d\n", mode, conc, pool, n, n / (total / 1e3), lat_ms[n / 2],
           lat_ms[(int)(n * 0.99)], errors);
}

/* ---------------------------------------------------------------- through the verifier */

struct vreq {
    int i;
    double t0;
};

static struct verifier *ver;
static void v_start(void);
static int warming; /* lookups of the untimed warm-up still running */

/* v_warm_done - the warm-up opens the pool's connections, as the direct client does untimed */
static void v_warm_done(const struct verdict *v, const struct verifier_result *res, void *arg)
{
    if (--warming == 0)
        event_base_loopbreak(base);
}

static void v_done(const struct verdict *v, const struct verifier_result *res, void *arg)
{
    struct vreq *q = arg;
    int want = (q->i % 2) == 0 ? VERDICT_VALID : VERDICT_INVALID;
    lat_ms[done++] = now_ms() - q->t0;
    if ((int)v->kind != want)
        errors++;
    free(q);
    if (done == n)
        event_base_loopbreak(base);
    else
        v_start();
}

static void v_start(void)
{
    while (started < n && started - done < conc) {
        struct vreq *q = malloc(sizeof(*q));
        char addr[64];
        q->i = started++;
        address(q->i, addr, sizeof(addr));
        q->t0 = now_ms();
        if (verifier_lookup(ver, addr, strlen(addr), v_done, q) == NULL) {
            fprintf(stderr, "verifier_lookup failed\n");
            exit(1);
        }
    }
}

static int run_verifier(void)
{
    char dir[] = "/tmp/ldap_bench.XXXXXX", routes[64], err[512], host[64], ps[16], inflight[16];
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(routes, sizeof(routes), "%s/routes", dir);
    FILE *fp = fopen(routes, "w");
    fprintf(fp, "bench.test ldap:bench\n");
    fclose(fp);
    snprintf(host, sizeof(host), "ldap://127.0.0.1:%d", port);
    snprintf(ps, sizeof(ps), "%d", pool);
    snprintf(inflight, sizeof(inflight), "%d", inflight_cap);
    struct backend_param params[] = {
        {"server_host", host, "bench", 1},
        {"search_base", BASE_DN, "bench", 2},
        {"pool_size", ps, "bench", 3},
        {"max_inflight", inflight, "bench", 4}, /* as many as the direct client sends */
        {"timeout", "30s", "bench", 5},
    };
    struct backend_source src = {"ldap", "bench", params, sizeof(params) / sizeof(params[0])};
    struct verifier_config vc;
    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes;
    vc.recipient_delimiter = "+";
    vc.answer_budget_ms = 30000;
    vc.max_probes = conc;
    vc.max_probes_per_destination = conc;
    vc.cache.key_prefix = "callahead:";
    vc.cache.l1_max_entries = (size_t)n + 1;
    vc.cache.l1_ttl = 600;
    vc.cache.ttl[VERDICT_VALID] = 600;
    vc.cache.ttl[VERDICT_INVALID] = 600;
    vc.sources = &src;
    vc.nsources = 1;
    ver = verifier_new(base, &vc, err, sizeof(err));
    unlink(routes);
    rmdir(dir);
    if (ver == NULL) {
        fprintf(stderr, "verifier_new: %s\n", err);
        return 1;
    }
    /* warm-up: enough concurrent lookups of other addresses to open every connection */
    int nwarm = conc > pool * 4 ? conc : pool * 4;
    for (int i = 0; i < nwarm; i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "w%07d@bench.test", offset + i);
        warming++;
        verifier_lookup(ver, addr, strlen(addr), v_warm_done, NULL);
    }
    event_base_dispatch(base);
    t_start = now_ms();
    v_start();
    event_base_dispatch(base);
    report("verifier");
    verifier_free(ver);
    return 0;
}

/* ---------------------------------------------------------------- direct libldap client */

struct dconn {
    LDAP *ld;
    struct event *ev;
    int inflight;
    int msgid[4096];
    int idx[4096];
    double t0[4096];
    int found[4096];
};
static struct dconn *dconns;
static double *arrival; /* when lookup i was asked for: queueing for a slot counts */
static int sent;        /* lookups handed to a connection; started - sent wait for a slot */

static void d_start(void);

static void d_send(struct dconn *c)
{
    char addr[64], filter[128];
    int i = sent++, msgid, slot;
    address(i, addr, sizeof(addr));
    snprintf(filter, sizeof(filter), "(mail=%s)", addr); /* no metacharacters in these */
    char *attrs[] = {"1.1", NULL};
    for (slot = 0; slot < 4096 && c->msgid[slot] != 0; slot++)
        ;
    c->t0[slot] = arrival[i];
    if (ldap_search_ext(c->ld, BASE_DN, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL, NULL, 0,
                        &msgid) != LDAP_SUCCESS) {
        fprintf(stderr, "ldap_search_ext failed\n");
        exit(1);
    }
    c->msgid[slot] = msgid;
    c->idx[slot] = i;
    c->found[slot] = 0;
    c->inflight++;
}

static void d_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct dconn *c = arg;
    for (;;) {
        struct timeval zero = {0, 0};
        LDAPMessage *msg = NULL;
        int type = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
        if (type == 0)
            return;
        if (type < 0) {
            fprintf(stderr, "ldap_result failed\n");
            exit(1);
        }
        int id = ldap_msgid(msg), slot;
        for (slot = 0; slot < 4096 && c->msgid[slot] != id; slot++)
            ;
        if (slot < 4096 && type == LDAP_RES_SEARCH_ENTRY)
            c->found[slot]++;
        if (slot < 4096 && type == LDAP_RES_SEARCH_RESULT) {
            int want = (c->idx[slot] % 2) == 0;
            lat_ms[done++] = now_ms() - c->t0[slot];
            if ((c->found[slot] > 0) != want)
                errors++;
            c->msgid[slot] = 0;
            c->inflight--;
        }
        ldap_msgfree(msg);
        if (done == n) {
            event_base_loopbreak(base);
            return;
        }
        d_start();
    }
}

static void d_start(void)
{
    while (started < n && started - done < conc)
        arrival[started++] = now_ms();
    while (sent < started) {
        struct dconn *best = &dconns[0];
        for (int k = 1; k < pool; k++)
            if (dconns[k].inflight < best->inflight)
                best = &dconns[k];
        if (best->inflight >= inflight_cap)
            return; /* the rest wait for an answer, as in the pool */
        d_send(best);
    }
}

static int run_direct(void)
{
    char url[64];
    snprintf(url, sizeof(url), "ldap://127.0.0.1:%d", port);
    dconns = calloc((size_t)pool, sizeof(*dconns));
    arrival = calloc((size_t)n, sizeof(double));
    for (int k = 0; k < pool; k++) {
        int v3 = LDAP_VERSION3, fd;
        struct berval cred = {0, NULL};
        /* set-up may block: it is not timed, and this client is not a daemon */
        if (ldap_initialize(&dconns[k].ld, url) != LDAP_SUCCESS)
            return 1;
        ldap_set_option(dconns[k].ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
        if (ldap_sasl_bind_s(dconns[k].ld, NULL, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL) !=
            LDAP_SUCCESS)
            return 1;
        ldap_get_option(dconns[k].ld, LDAP_OPT_DESC, &fd);
        dconns[k].ev = event_new(base, fd, EV_READ | EV_PERSIST, d_on_read, &dconns[k]);
        event_add(dconns[k].ev, NULL);
    }
    t_start = now_ms();
    d_start();
    event_base_dispatch(base);
    report("direct");
    for (int k = 0; k < pool; k++) {
        event_free(dconns[k].ev);
        ldap_unbind_ext(dconns[k].ld, NULL, NULL);
    }
    free(dconns);
    free(arrival);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = "verifier";
    int opt;

    conc = 1;
    pool = 1;
    n = 1000;
    while ((opt = getopt(argc, argv, "m:p:c:s:n:o:i:")) != -1) {
        switch (opt) {
        case 'm':
            mode = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            conc = atoi(optarg);
            break;
        case 's':
            pool = atoi(optarg);
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'o':
            offset = atoi(optarg);
            break;
        case 'i':
            inflight_cap = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: ldap_bench -m verifier|direct -p PORT -c CONC -s POOL -n N "
                            "[-o OFFSET] [-i INFLIGHT]\n");
            return 2;
        }
    }
    if (port <= 0 || conc < 1 || conc > 4096 || pool < 1 || n < 1 || inflight_cap < 1 ||
        inflight_cap > 1000) {
        fprintf(stderr, "ldap_bench: bad arguments\n");
        return 2;
    }
    log_open("ldap_bench", 1, LOG_MAIL);
    base = event_base_new();
    lat_ms = calloc((size_t)n, sizeof(double));
    int rc = strcmp(mode, "direct") == 0 ? run_direct() : run_verifier();
    free(lat_ms);
    event_base_free(base);
    return rc;
}
