/*
 * backend_ldap.c - the ldap:NAME backend (see backend_ldap.h): the source's
 * parameters (ldap_conf.c), the filter (ldap_filter.c) and the pool of
 * connections (ldap_pool.c) put behind the backend contract of backend.h,
 * and the reading of the entries a search returns into a verdict.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h" /* HAVE_LDAP */
#endif

#include "backend_ldap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ldap_conf.h"
#include "ldap_filter.h"
#include "log.h"
#include "verifier.h" /* struct verifier_pool */

#ifdef HAVE_LDAP
#include <ldap.h>

#include "dns.h"
#include "ldap_pool.h"
#endif

#define LDAP_INVALID_TEXT "5.1.1 User unknown"
#define LDAP_DISABLED_TEXT "5.2.1 Mailbox disabled"
#define LDAP_DOWN_TEXT "4.4.3 Directory unavailable"
#define LDAP_FAILED_TEXT "4.3.0 Directory lookup failed"

/* the state of one ldap: route */
struct ldap_state {
    struct ldap_conf conf;
    char source[VERDICT_SOURCE_MAX]; /* "ldap:NAME" */
#ifdef HAVE_LDAP
    struct ldap_pool *pool;
    struct dns *own_dns; /* opened for host names when the verifier gave none */
    struct log_limit fail_log;
#endif
};

#ifdef HAVE_LDAP
/* one lookup in progress */
struct backend_req {
    struct ldap_state *st;
    struct ldap_search *search;
    backend_cb cb;
    void *arg;
    unsigned found;    /* entries that make the address valid */
    unsigned disabled; /* entries marked disabled */
    char addr[ADDRESS_LOCAL_MAX + ADDRESS_DOMAIN_MAX + 8];
};
#endif

/* bldap_open - the source named by the route, checked, and its (empty) pool */
static void *bldap_open(const struct backend_env *env, const struct route *r, char *err,
                        size_t errlen)
{
    const struct backend_source *src = backend_source_find(env, "ldap", r->arg);

    if (src == NULL) {
        snprintf(err, errlen,
                 "ldap:%.64s: no LDAP source \"%.64s\" in callahead.conf (define it with "
                 "ldap_%.64s_server_host and its other parameters)",
                 r->arg, r->arg, r->arg);
        return NULL;
    }
    struct ldap_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ldap_conf_parse(src, &st->conf, err, errlen) < 0) {
        free(st);
        return NULL;
    }
    snprintf(st->source, sizeof(st->source), "ldap:%.58s", st->conf.name);
#ifdef HAVE_LDAP
    struct dns *dns = env->dns;
    for (int i = 0; dns == NULL && i < st->conf.nuris; i++)
        if (st->conf.uris[i].kind == LDAP_URI_NAME) {
            /* backend.h: without the shared resolver, one of our own (at open, not on the loop) */
            st->own_dns = dns_new(env->base, NULL, st->conf.connect_timeout_ms, err, errlen);
            if (st->own_dns == NULL) {
                ldap_conf_free(&st->conf);
                free(st);
                return NULL;
            }
            dns = st->own_dns;
        }
    st->pool = ldap_pool_new(env->base, dns, &st->conf);
    if (st->pool == NULL) {
        snprintf(err, errlen, "out of memory");
        if (st->own_dns != NULL)
            dns_free(st->own_dns);
        ldap_conf_free(&st->conf);
        free(st);
        return NULL;
    }
    return st;
#else
    /* the parameters are checked all the same, so -t reports their errors first */
    snprintf(err, errlen,
             "ldap:%.64s: this callahead was built without LDAP support (configure "
             "--with-ldap, package libldap-dev); ldap: routes cannot be used",
             r->arg);
    ldap_conf_free(&st->conf);
    free(st);
    return NULL;
#endif
}

static void bldap_close(void *state)
{
    struct ldap_state *st = state;

    if (st == NULL)
        return;
#ifdef HAVE_LDAP
    ldap_pool_free(st->pool);
    if (st->own_dns != NULL)
        dns_free(st->own_dns);
#endif
    ldap_conf_free(&st->conf);
    free(st);
}

#ifdef HAVE_LDAP
/* has_value - does entry msg have attr with value (case-insensitive, lengths from the server)? */
static int has_value(LDAP *ld, LDAPMessage *msg, const char *attr, const char *value)
{
    struct berval **vals = ldap_get_values_len(ld, msg, attr);
    size_t vlen = value != NULL ? strlen(value) : 0;
    int found = 0;

    for (int i = 0; vals != NULL && vals[i] != NULL && !found; i++) {
        if (value == NULL)
            found = 1; /* any value */
        else if (vals[i]->bv_len == vlen && strncasecmp(vals[i]->bv_val, value, vlen) == 0)
            found = 1;
    }
    ldap_value_free_len(vals);
    return found;
}

/* on_entry - one entry of the search: does it make the address valid, or is it disabled? */
static void on_entry(LDAP *ld, LDAPMessage *msg, void *arg)
{
    struct backend_req *q = arg;
    const struct ldap_conf *c = &q->st->conf;

    if (c->disabled_attribute != NULL &&
        has_value(ld, msg, c->disabled_attribute, c->disabled_value)) {
        q->disabled++;
        return;
    }
    if (c->nresult_attrs == 0) {
        q->found++;
        return;
    }
    for (int i = 0; i < c->nresult_attrs; i++)
        if (has_value(ld, msg, c->attrs[i], NULL)) {
            q->found++;
            return;
        }
}

/* on_done - the search ended: the verdict, then the request is freed */
static void on_done(enum ldap_pool_status status, const char *why, void *arg)
{
    struct backend_req *q = arg;
    struct ldap_state *st = q->st;
    struct verdict v;

    switch (status) {
    case LDAP_POOL_OK:
        if (q->found > 0)
            verdict_set(&v, VERDICT_VALID, 0, st->source, "2.1.5 Found in directory");
        else if (q->disabled > 0)
            verdict_set(&v, VERDICT_INVALID, 550, st->source, LDAP_DISABLED_TEXT);
        else
            verdict_set(&v, VERDICT_INVALID, 550, st->source, LDAP_INVALID_TEXT);
        break;
    case LDAP_POOL_REFUSED:
        log_limited(&st->fail_log, 10000, LOG_WARNING, "ldap:%s: search for <%s> failed: %s",
                    st->conf.name, q->addr, why);
        verdict_set(&v, VERDICT_TEMPFAIL, 0, st->source, LDAP_FAILED_TEXT);
        break;
    default:
        log_limited(&st->fail_log, 10000, LOG_WARNING, "ldap:%s: search for <%s> failed: %s",
                    st->conf.name, q->addr, why);
        verdict_set(&v, VERDICT_TEMPFAIL, 0, st->source, LDAP_DOWN_TEXT);
        v.flags |= VERDICT_DEST_FAILURE;
        break;
    }
    backend_cb cb = q->cb;
    void *cbarg = q->arg;
    free(q);
    cb(&v, cbarg);
}
#endif

/*
 * local_unquoted - the local part as a directory stores it: a quoted local
 * part ("a b"@dom, kept quoted by address.c when the quotes are needed)
 * without its quotes and backslash escapes, as Postfix's internal form
 * would hand it to its ldap_table lookups.
 */
static void local_unquoted(const char *local, char *out, size_t size)
{
    size_t len = strlen(local), o = 0;

    if (len < 2 || local[0] != '"' || local[len - 1] != '"') {
        snprintf(out, size, "%s", local);
        return;
    }
    for (size_t i = 1; i + 1 < len && o + 1 < size; i++) {
        if (local[i] == '\\' && i + 2 < len)
            i++;
        out[o++] = local[i];
    }
    out[o] = '\0';
}

/*
 * bldap_lookup - answer at once what needs no search (empty local part,
 * a domain the source does not serve), else start the search.
 */
static enum backend_status bldap_lookup(void *state, const struct address *addr,
                                        struct verdict *out, backend_cb cb, void *arg,
                                        struct backend_req **req)
{
    struct ldap_state *st = state;
    char filter[LDAP_FILTER_MAX];

    if (addr->is_null || addr->local[0] == '\0') {
        verdict_set(out, VERDICT_INVALID, 550, st->source, LDAP_INVALID_TEXT);
        return BACKEND_DONE;
    }
    if (!ldap_conf_serves(&st->conf, addr->domain)) {
        verdict_set(out, VERDICT_UNKNOWN, 0, st->source, "domain not served by this source");
        return BACKEND_DONE;
    }
    char local[sizeof(addr->local)];
    local_unquoted(addr->local, local, sizeof(local));
    if (ldap_filter_expand(st->conf.query_filter, local, addr->domain_utf8, filter,
                           sizeof(filter)) < 0) {
        verdict_set(out, VERDICT_TEMPFAIL, 0, st->source, LDAP_FAILED_TEXT);
        return BACKEND_DONE;
    }
#ifdef HAVE_LDAP
    struct backend_req *q = calloc(1, sizeof(*q));
    char why[512];
    if (q == NULL) {
        verdict_set(out, VERDICT_TEMPFAIL, 0, st->source, LDAP_FAILED_TEXT);
        return BACKEND_ERROR;
    }
    q->st = st;
    q->cb = cb;
    q->arg = arg;
    if (address_format(addr, q->addr, sizeof(q->addr)) < 0)
        snprintf(q->addr, sizeof(q->addr), "?");
    q->search = ldap_pool_search(st->pool, filter, on_entry, on_done, q, why, sizeof(why));
    if (q->search == NULL) {
        log_limited(&st->fail_log, 10000, LOG_WARNING, "ldap:%s: search for <%s> not started: %s",
                    st->conf.name, q->addr, why);
        free(q);
        verdict_set(out, VERDICT_TEMPFAIL, 0, st->source, LDAP_DOWN_TEXT);
        out->flags |= VERDICT_DEST_FAILURE;
        return BACKEND_DONE;
    }
    *req = q;
    return BACKEND_PENDING;
#else
    verdict_set(out, VERDICT_TEMPFAIL, 0, st->source, "4.3.0 LDAP support not built");
    return BACKEND_DONE;
#endif
}

#ifdef HAVE_LDAP
void backend_ldap_pool_stats(void *state, struct ldap_pool_stats *out)
{
    ldap_pool_get_stats(((struct ldap_state *)state)->pool, out);
}

/* bldap_pool_stats - the pool's counters in the verifier's terms (ops->pool_stats) */
static void bldap_pool_stats(void *state, struct verifier_pool *out)
{
    struct ldap_state *st = state;
    struct ldap_pool_stats ps;

    ldap_pool_get_stats(st->pool, &ps);
    memset(out, 0, sizeof(*out));
    snprintf(out->source, sizeof(out->source), "%s", st->source);
    out->conns_ready = ps.conns_ready;
    out->conns_connecting = ps.conns_connecting;
    out->inflight = ps.inflight;
    out->queued = ps.queued;
    out->backing_off = ps.backing_off;
    out->requests = ps.searches;
    out->errors = ps.failures;
    out->timeouts = ps.timeouts;
    out->connect_fails = ps.connect_fails;
    out->drops = ps.drops;
    out->reconnects = ps.reconnects;
}
#endif

static void bldap_cancel(struct backend_req *q)
{
#ifdef HAVE_LDAP
    if (q == NULL)
        return;
    ldap_search_cancel(q->search);
    free(q);
#else
    (void)q;
#endif
}

const struct backend_ops backend_ldap_ops = {
    .name = "ldap",
    .flags = BACKEND_ASYNC,
    .open = bldap_open,
    .lookup = bldap_lookup,
    .cancel = bldap_cancel,
    .close = bldap_close,
    .options = NULL,
    .destination = NULL,
#ifdef HAVE_LDAP
    .pool_stats = bldap_pool_stats,
#endif
};
