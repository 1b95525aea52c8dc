/*
 * test_verifier.c - the verifier's lookup pipeline: routing, static answers,
 * the CDB table with write-through to the cache, malformed addresses,
 * rewrites, reloads, and (with a fake asynchronous backend plugged in for
 * the ldap method, whose real backend needs a directory: test_backend_ldap.c)
 * flight sharing, the
 * answer budget, background completion into the cache, and cancel.
 * The cache is the in-process one (no Redis): test_cache_redis covers Redis.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "log.h"
#include "route.h"
#include "verifier.h"

static char dir[] = "/tmp/callahead-test-verifier-XXXXXX";
static char routes_path[256], cdb_path[256];
static struct event_base *base;

/* --- a fake asynchronous backend: answers after delay_ms, counts lookups */
static int fake_lookups, fake_delay_ms = 20;
static enum verdict_kind fake_kind = VERDICT_VALID;
static enum verdict_kind fake_random_kind = VERDICT_INVALID; /* answer for random local parts */
static char fake_last_local[80];
static int fake_inflight, fake_max_inflight;
static int fake_in_cb, fake_closes, fake_closed_in_cb; /* close() inside our own callback? */

struct backend_req {
    struct event *ev;
    backend_cb cb;
    void *arg;
    enum verdict_kind kind;
    int session_failure;
};

static char fake_source_base[64]; /* search_base of source ldap:corp, as open saw it */

static void *fake_open(const struct backend_env *env, const struct route *r, char *err,
                       size_t errlen)
{
    const struct backend_source *src = backend_source_find(env, "ldap", r->arg);

    (void)err, (void)errlen;
    for (size_t i = 0; src != NULL && i < src->nparams; i++)
        if (strcmp(src->params[i].name, "search_base") == 0)
            snprintf(fake_source_base, sizeof(fake_source_base), "%s", src->params[i].value);
    return env->base;
}

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
    struct backend_req *q = arg;
    struct verdict v;

    if (q->session_failure) {
        verdict_set(&v, VERDICT_TEMPFAIL, 0, "fake", "4.4.1 connection refused");
        v.flags = VERDICT_DEST_FAILURE;
    } else
        verdict_set(&v, q->kind, q->kind == VERDICT_INVALID ? 550 : 250, "fake",
                    q->kind == VERDICT_INVALID ? "5.1.1 no such user here" : "2.1.5 ok");
    event_free(q->ev);
    fake_inflight--;
    backend_cb cb = q->cb;
    void *cbarg = q->arg;
    free(q);
    fake_in_cb++;
    cb(&v, cbarg);
    fake_in_cb--;
}

static enum backend_status fake_lookup(void *state, const struct address *addr, struct verdict *out,
                                       backend_cb cb, void *arg, struct backend_req **req)
{
    struct backend_req *q = calloc(1, sizeof(*q));
    struct timeval tv = {0, fake_delay_ms * 1000};

    fake_lookups++;
    if (++fake_inflight > fake_max_inflight)
        fake_max_inflight = fake_inflight;
    snprintf(fake_last_local, sizeof(fake_last_local), "%s", addr->local);
    q->kind = strncmp(addr->local, "callahead-check-", 16) == 0 ? fake_random_kind : fake_kind;
    q->session_failure = strncmp(addr->local, "down", 4) == 0;
    q->cb = cb;
    q->arg = arg;
    q->ev = evtimer_new((struct event_base *)state, fake_fire, q);
    evtimer_add(q->ev, &tv);
    *req = q;
    return BACKEND_PENDING;
}

static void fake_cancel(struct backend_req *q)
{
    fake_inflight--;
    event_free(q->ev);
    free(q);
}

static void fake_close(void *state)
{
    (void)state;
    fake_closes++;
    if (fake_in_cb > 0)
        fake_closed_in_cb++;
}

static const struct backend_ops fake_ops = {.name = "fake",
                                            .flags = BACKEND_ASYNC,
                                            .open = fake_open,
                                            .lookup = fake_lookup,
                                            .cancel = fake_cancel,
                                            .close = fake_close};

/* --- helpers */
struct result {
    int calls;
    struct verdict v;
    char key[400];
    char cached[16];
    char route[300];
};

static int in_lookup; /* set while verifier_lookup runs: the callback must not run then */

static void on_verdict(const struct verdict *v, const struct verifier_result *res, void *arg)
{
    struct result *r = arg;

    cr_assert_eq(in_lookup, 0, "callback ran inside verifier_lookup");
    r->calls++;
    r->v = *v;
    snprintf(r->key, sizeof(r->key), "%s", res->key);
    snprintf(r->cached, sizeof(r->cached), "%s", res->cached);
    snprintf(r->route, sizeof(r->route), "%s", res->route);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int refresh_secs; /* refresh time for valid and invalid verdicts; 0 = never */
static int max_probes;   /* 0: the default */
static int max_per_dest; /* 0: the default (a fifth of max_probes) */

static struct verifier *make_verifier(int budget_ms)
{
    struct verifier_config vc;
    char err[512];

    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.recipient_delimiter = "+";
    vc.answer_budget_ms = budget_ms;
    vc.max_probes = max_probes;
    vc.max_probes_per_destination = max_per_dest;
    vc.cache.key_prefix = "callahead:";
    vc.cache.l1_max_entries = 1000;
    vc.cache.l1_ttl = 60;
    vc.cache.ttl[VERDICT_VALID] = 3600;
    vc.cache.ttl[VERDICT_INVALID] = 600;
    vc.cache.ttl[VERDICT_TEMPFAIL] = 0;
    vc.cache.refresh[VERDICT_VALID] = refresh_secs;
    vc.cache.refresh[VERDICT_INVALID] = refresh_secs;
    struct verifier *v = verifier_new(base, &vc, err, sizeof(err));
    cr_assert_not_null(v, "verifier_new: %s", err);
    return v;
}

/* lookup_wait - one lookup, run the loop until it answered (or 3 s passed) */
static void lookup_wait(struct verifier *v, const char *addr, struct result *r)
{
    memset(r, 0, sizeof(*r));
    in_lookup = 1;
    struct verifier_req *q = verifier_lookup(v, addr, strlen(addr), on_verdict, r);
    in_lookup = 0;
    cr_assert_not_null(q);
    for (int i = 0; i < 3000 && r->calls == 0; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    cr_assert_eq(r->calls, 1, "lookup of %s answered %d times", addr, r->calls);
}

static void run_for_ms(int ms)
{
    for (int i = 0; i < ms; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

static void setup(void)
{
    char cmd[600];

    log_open("test", 1, 0);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(routes_path, sizeof(routes_path), "%s/routes", dir);
    snprintf(cdb_path, sizeof(cdb_path), "%s/users.cdb", dir);
    snprintf(cmd, sizeof(cmd),
             "printf 'alice@example.test OK\\nrejected@example.test REJECT moved away\\n' | "
             "cdb -cm %s",
             cdb_path);
    cr_assert_eq(system(cmd), 0, "cdb -cm failed");
    char routes[1024];
    snprintf(routes, sizeof(routes),
             "# test routes\n"
             "example.test        cdb:%s\n"
             "accept.test         accept\n"
             "reject.test         reject\n"
             "ldap.test           ldap:corp\n"
             "acceptall.test      ldap:corp accept_all_check=yes\n"
             "flaky.test          ldap:flaky breaker_failures=3 breaker_time=1s\n"
             "/^(.+)@old\\.test$/  rewrite:$1@example.test\n"
             "dunno.test          dunno\n",
             cdb_path);
    write_file(routes_path, routes);
    base = event_base_new();
    fake_lookups = 0;
    fake_delay_ms = 20;
    fake_kind = VERDICT_VALID;
    fake_random_kind = VERDICT_INVALID;
    refresh_secs = 0;
    max_probes = 0;
    max_per_dest = 0;
    fake_inflight = fake_max_inflight = 0;
    fake_in_cb = fake_closes = fake_closed_in_cb = 0;
    /* the ldap: routes of the table use the fake unless a test says otherwise */
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
}

static void teardown(void)
{
    char cmd[300];

    verifier_set_backend(ROUTE_LDAP, NULL);
    event_base_free(base);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    system(cmd);
    strcpy(dir, "/tmp/callahead-test-verifier-XXXXXX");
}

TestSuite(verifier, .init = setup, .fini = teardown);

Test(verifier, cdb_valid_and_invalid)
{
    struct verifier *v = make_verifier(1000);
    struct result r;

    lookup_wait(v, "<Alice@Example.TEST>", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_str_eq(r.v.source, "cdb");
    cr_assert_str_eq(r.key, "alice@example.test");

    lookup_wait(v, "bob@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    cr_assert_eq(r.v.code, 550);
    cr_assert(strstr(r.v.text, "5.1.1") != NULL, "text: %s", r.v.text);

    lookup_wait(v, "alice+tag@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "sub-address falls back to the base address");

    lookup_wait(v, "rejected@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    cr_assert(strstr(r.v.text, "moved away") != NULL, "text: %s", r.v.text);

    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.lookups, 4);
    cr_assert_eq(st.valid, 2);
    cr_assert_eq(st.invalid, 2);
    cr_assert_geq(st.cache.puts, 2, "cdb verdicts are written through to the cache");
    verifier_free(v);
}

Test(verifier, static_routes_and_no_route)
{
    struct verifier *v = make_verifier(1000);
    struct result r;

    lookup_wait(v, "x@accept.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    lookup_wait(v, "x@reject.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    cr_assert_eq(r.v.code, 550);
    lookup_wait(v, "x@dunno.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_UNKNOWN);
    lookup_wait(v, "x@nowhere.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_UNKNOWN);
    verifier_free(v);
}

Test(verifier, malformed_addresses)
{
    struct verifier *v = make_verifier(1000);
    struct result r;
    const char *bad[] = {"",
                         "<>",
                         "no-at-sign",
                         "a@",
                         "@b",
                         "a b@example.test",
                         "a@@example.test",
                         "a\r\n@example.test"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lookup_wait(v, bad[i], &r);
        cr_assert_str_eq(r.key, "", "'%s' should be malformed", bad[i]);
        cr_assert_eq(r.v.kind, VERDICT_INVALID);
        cr_assert_str_eq(r.v.source, "syntax");
    }
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.malformed, sizeof(bad) / sizeof(bad[0]));
    verifier_free(v);
}

Test(verifier, rewrite_then_route_again)
{
    struct verifier *v = make_verifier(1000);
    struct result r;

    lookup_wait(v, "alice@old.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_str_eq(r.key, "alice@example.test");
    lookup_wait(v, "carol@old.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    verifier_free(v);
}

/* with the real ldap backend, a route naming a source nobody defined does not load */
Test(verifier, ldap_route_without_source_is_a_load_error)
{
    struct verifier_config vc;
    char err[512] = "";

    verifier_set_backend(ROUTE_LDAP, NULL);
    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.recipient_delimiter = "+";
    vc.cache.key_prefix = "callahead:";
    vc.cache.l1_max_entries = 1000;
    vc.cache.l1_ttl = 60;
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, "routes:5: ldap:corp: no LDAP source \"corp\"") != NULL, "%s", err);
}

Test(verifier, concurrent_lookups_share_one_backend_request)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    struct verifier *v = make_verifier(2000);
    struct result rs[50];

    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 50; i++) {
        in_lookup = 1;
        cr_assert_not_null(verifier_lookup(v, "Someone@LDAP.test", 17, on_verdict, &rs[i]));
        in_lookup = 0;
    }
    run_for_ms(300);
    cr_assert_eq(fake_lookups, 1, "50 concurrent lookups made %d backend requests", fake_lookups);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rs[i].calls, 1);
        cr_assert_eq(rs[i].v.kind, VERDICT_VALID);
        cr_assert_str_eq(rs[i].cached, "no");
    }
    /* the next one comes from the cache, without the backend */
    struct result r;
    lookup_wait(v, "Someone@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_str_eq(r.cached, "l1");
    cr_assert_eq(fake_lookups, 1);
    verifier_free(v);
}

Test(verifier, answer_budget_then_background_fill)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_delay_ms = 400;
    fake_kind = VERDICT_INVALID;
    struct verifier *v = make_verifier(100);
    struct result r;

    lookup_wait(v, "slow@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "budget passed: tempfail now");
    cr_assert(strstr(r.v.text, "try again later") != NULL, "text: %s", r.v.text);
    run_for_ms(500); /* the backend finishes into the cache */
    lookup_wait(v, "slow@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID, "retry gets the definitive answer");
    cr_assert_eq(r.v.code, 550);
    cr_assert_eq(fake_lookups, 1);
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.budget_expired, 1);
    verifier_free(v);
}

Test(verifier, cancel_means_no_callback)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    struct verifier *v = make_verifier(1000);
    struct result r1, r2;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    struct verifier_req *q1 = verifier_lookup(v, "c@ldap.test", 11, on_verdict, &r1);
    struct verifier_req *q2 = verifier_lookup(v, "x@accept.test", 13, on_verdict, &r2);
    verifier_cancel(q1);
    verifier_cancel(q2);
    run_for_ms(100);
    cr_assert_eq(r1.calls, 0);
    cr_assert_eq(r2.calls, 0);
    /* a pending lookup at free time is cancelled too */
    verifier_lookup(v, "d@ldap.test", 11, on_verdict, &r1);
    verifier_free(v);
    cr_assert_eq(r1.calls, 0);
}

Test(verifier, reload_keeps_old_table_on_error)
{
    struct verifier *v = make_verifier(1000);
    struct verifier_config vc;
    struct result r;
    char err[512];

    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    write_file(routes_path, "accept.test  bogus-method\n");
    cr_assert_eq(verifier_reload(v, &vc, err, sizeof(err)), -1);
    cr_assert(strstr(err, ":1:") != NULL, "error names the line: %s", err);
    lookup_wait(v, "x@accept.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "old table still in use");

    write_file(routes_path, "accept.test  reject\n");
    cr_assert_eq(verifier_reload(v, &vc, err, sizeof(err)), 0, "%s", err);
    lookup_wait(v, "x@accept.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID, "new table in use");
    verifier_free(v);
}

Test(verifier, subaddress_folded_before_key_and_probe)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    struct verifier *v = make_verifier(1000);
    struct result r;

    lookup_wait(v, "Ann+lists@ldap.test", &r);
    cr_assert_str_eq(r.key, "ann@ldap.test", "extension folded (and case: not a callout)");
    cr_assert_str_eq(fake_last_local, "Ann", "the probe is for the base address");
    lookup_wait(v, "Ann+other@ldap.test", &r);
    cr_assert_str_eq(r.cached, "l1");
    cr_assert_eq(fake_lookups, 1);
    verifier_free(v);
}

Test(verifier, accept_all_domain_is_not_trusted)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_random_kind = VERDICT_VALID; /* the next hop accepts anything */
    struct verifier *v = make_verifier(2000);
    struct result r;

    lookup_wait(v, "someone@acceptall.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_UNKNOWN, "valid from an accept-all next hop means nothing");
    cr_assert(strstr(r.v.text, "accepts all") != NULL, "text: %s", r.v.text);
    cr_assert_eq(fake_lookups, 2, "the address and one random local part");
    cr_assert(strncmp(fake_last_local, "callahead-check-", 16) == 0, "random probe: %s",
              fake_last_local);
    lookup_wait(v, "other@acceptall.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_UNKNOWN);
    cr_assert_eq(fake_lookups, 2, "the domain fact answers without a probe");
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.accept_all_domains, 1);
    verifier_free(v);
}

Test(verifier, verifying_domain_keeps_valid)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_random_kind = VERDICT_INVALID; /* the next hop rejects unknown users */
    struct verifier *v = make_verifier(2000);
    struct result r;

    lookup_wait(v, "someone@acceptall.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_eq(fake_lookups, 2);
    lookup_wait(v, "second@acceptall.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_eq(fake_lookups, 3, "domain known to verify: no second random probe");
    verifier_free(v);
}

Test(verifier, circuit_breaker_stops_probing_a_failing_next_hop)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    struct verifier *v = make_verifier(2000);
    struct result r;
    char addr[64];

    for (int i = 0; i < 3; i++) {
        snprintf(addr, sizeof(addr), "down%d@flaky.test", i);
        lookup_wait(v, addr, &r);
        cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL);
        cr_assert_str_eq(r.v.source, "fake");
    }
    cr_assert_eq(fake_lookups, 3);
    lookup_wait(v, "down9@flaky.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL);
    cr_assert_str_eq(r.v.source, "breaker");
    cr_assert_eq(fake_lookups, 3, "open breaker: no probe");
    lookup_wait(v, "x@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "other next hops unaffected");

    run_for_ms(1100); /* breaker_time=1s: one half-open probe goes through */
    lookup_wait(v, "alive@flaky.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    lookup_wait(v, "alive2@flaky.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "closed again after a success");
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.breaker_rejects, 1);
    verifier_free(v);
}

Test(verifier, bad_route_option_is_a_load_error)
{
    struct verifier_config vc;
    char err[512];

    write_file(routes_path, "x.test  ldap:corp  breaker_failures=0\n");
    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.cache.l1_max_entries = 10;
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, ":1:") != NULL && strstr(err, "breaker_failures") != NULL, "%s", err);
    write_file(routes_path, "x.test  ldap:corp  accept_all_check=maybe\n");
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, "yes or no") != NULL, "%s", err);
}

Test(verifier, stale_valid_answered_and_refreshed_in_background)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    refresh_secs = 1;
    struct verifier *v = make_verifier(2000);
    struct result r;

    lookup_wait(v, "fresh@ldap.test", &r);
    cr_assert_eq(fake_lookups, 1);
    sleep(2);
    lookup_wait(v, "fresh@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_str_eq(r.cached, "l1", "answered from the cache at once");
    run_for_ms(100);
    cr_assert_eq(fake_lookups, 2, "and re-verified in the background");
    verifier_free(v);
}

Test(verifier, stale_invalid_is_verified_again_before_answering)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    refresh_secs = 1;
    fake_kind = VERDICT_INVALID;
    struct verifier *v = make_verifier(2000);
    struct result r;

    lookup_wait(v, "newuser@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    sleep(2);
    fake_kind = VERDICT_VALID; /* the mailbox was created meanwhile */
    lookup_wait(v, "newuser@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "a stale invalid must not be answered");
    cr_assert_str_eq(r.cached, "no");
    cr_assert_eq(fake_lookups, 2);
    verifier_free(v);
}

Test(verifier, global_probe_limit_queues_the_rest)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    max_probes = 2;
    max_per_dest = 2; /* one destination here: let it use both slots */
    fake_delay_ms = 30;
    struct verifier *v = make_verifier(3000);
    struct result rs[6];
    char addr[6][32];

    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 6; i++) {
        snprintf(addr[i], sizeof(addr[i]), "user%d@ldap.test", i);
        verifier_lookup(v, addr[i], strlen(addr[i]), on_verdict, &rs[i]);
    }
    run_for_ms(400);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(rs[i].calls, 1, "lookup %d answered", i);
        cr_assert_eq(rs[i].v.kind, VERDICT_VALID);
    }
    cr_assert_eq(fake_lookups, 6);
    cr_assert_eq(fake_max_inflight, 2, "never more than max_probes at once (saw %d)",
                 fake_max_inflight);
    verifier_free(v);
}

/* a backend's declared options: claimed for its routes, typed, and nobody else's */
static const struct value_decl fake_options[] = {
    {"depth", VALUE_COUNT, 1, 9},
    {NULL, 0, 0, 0},
};
static const struct backend_ops fake_ops_declared = {.name = "fake",
                                                     .flags = BACKEND_ASYNC,
                                                     .open = fake_open,
                                                     .lookup = fake_lookup,
                                                     .cancel = fake_cancel,
                                                     .close = fake_close,
                                                     .options = fake_options};

Test(verifier, route_options_are_checked_against_the_declarations)
{
    struct verifier_config vc;
    struct verifier *v;
    struct result r;
    char err[512];

    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.cache.l1_max_entries = 10;
    verifier_set_backend(ROUTE_LDAP, &fake_ops_declared);

    write_file(routes_path, "x.test  ldap:corp  depth=3 fold_local=no breaker_time=5m\n");
    v = verifier_new(base, &vc, err, sizeof(err));
    cr_assert_not_null(v, "%s", err);

    /* a typo, on reload as at start-up: refused with file:line and the closest name */
    write_file(routes_path, "# typo\nx.test  ldap:corp  deph=3\n");
    cr_assert_eq(verifier_reload(v, &vc, err, sizeof(err)), -1);
    cr_assert(strstr(err, ":2: unknown option \"deph\" for ldap routes (did you mean \"depth\"?)"),
              "%s", err);
    lookup_wait(v, "y@x.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "old table still in use");
    verifier_free(v);

    write_file(routes_path, "x.test  ldap:corp  depth=10\n");
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, ":1: depth=10: expected a number from 1 to 9"), "%s", err);

    /* the option is the backend's: a backend that declares nothing does not take it */
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    write_file(routes_path, "x.test  ldap:corp  depth=3\n");
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, ":1: unknown option \"depth\" for ldap routes"), "%s", err);
    /* and static routes take none */
    write_file(routes_path, "x.test  accept  depth=3\n");
    cr_assert_null(verifier_new(base, &vc, err, sizeof(err)));
    cr_assert(strstr(err, ":1: unknown option \"depth\" for accept routes"), "%s", err);
}

/*
 * A reload while a probe runs leaves the old tables referenced only by the
 * flight; when the probe answers, the flight drops that last reference from
 * inside the backend's callback. The backend must not be closed there.
 */
Test(verifier, backend_close_never_runs_inside_its_callback)
{
    struct verifier_config vc;
    struct result r;
    char err[512];

    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_delay_ms = 150;
    struct verifier *v = make_verifier(50);
    lookup_wait(v, "slow@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "answer budget first");
    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.cache.l1_max_entries = 10;
    cr_assert_eq(verifier_reload(v, &vc, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(fake_closes, 0, "the flight still holds the old tables");
    run_for_ms(300);
    cr_assert_eq(fake_lookups, 1);
    cr_assert(fake_closes >= 1, "old tables closed once the flight finished");
    cr_assert_eq(fake_closed_in_cb, 0, "close() ran inside the backend's own callback");
    verifier_free(v);
}

/* named sources from the configuration reach the backend's open through its env */
Test(verifier, named_sources_reach_backend_open)
{
    static const struct backend_param params[] = {
        {"server_host", "ldap://127.0.0.1:3389", "callahead.conf", 10},
        {"search_base", "dc=example,dc=test", "callahead.conf", 11},
    };
    static const struct backend_source sources[] = {
        {"ldap", "other", params, 1},
        {"ldap", "corp", params, 2},
    };
    struct verifier_config vc;
    char err[512];

    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_source_base[0] = '\0';
    memset(&vc, 0, sizeof(vc));
    vc.route_table = routes_path;
    vc.cache.l1_max_entries = 10;
    vc.sources = sources;
    vc.nsources = 2;
    struct verifier *v = verifier_new(base, &vc, err, sizeof(err));
    cr_assert_not_null(v, "%s", err);
    cr_assert_str_eq(fake_source_base, "dc=example,dc=test");
    verifier_free(v);
}

/*
 * A stale invalid in L1 waits for re-verification; the answer budget is
 * armed on that path too (an L1 hit that is answered at once has none), so
 * a slow backend still gets tempfail within the budget.
 */
Test(verifier, stale_invalid_waits_within_the_budget)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    refresh_secs = 1;
    fake_kind = VERDICT_INVALID;
    struct verifier *v = make_verifier(100);
    struct result r;

    lookup_wait(v, "gone@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    sleep(2);
    fake_delay_ms = 400;
    lookup_wait(v, "gone@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "budget passed while re-verifying: tempfail");
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    cr_assert_eq(st.budget_expired, 1);
    run_for_ms(500);
    verifier_free(v);
}

/* the decision log's route=: "table:line" of the route that answered, cold and from the cache */
Test(verifier, route_names_table_and_line)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    struct verifier *v = make_verifier(2000);
    struct result r;
    char want[300];

    lookup_wait(v, "someone@accept.test", &r);
    snprintf(want, sizeof(want), "%s:3", routes_path);
    cr_assert_str_eq(r.route, want);
    snprintf(want, sizeof(want), "%s:5", routes_path);
    lookup_wait(v, "someone@ldap.test", &r);
    cr_assert_str_eq(r.cached, "no");
    cr_assert_str_eq(r.route, want);
    lookup_wait(v, "someone@ldap.test", &r);
    cr_assert_str_eq(r.cached, "l1");
    cr_assert_str_eq(r.route, want);
    lookup_wait(v, "alice@old.test", &r);
    snprintf(want, sizeof(want), "%s:2", routes_path);
    cr_assert_str_eq(r.route, want, "a rewrite is logged with the route that answered");
    lookup_wait(v, "x@nowhere.invalid", &r);
    cr_assert_str_eq(r.route, "");
    verifier_free(v);
}

/*
 * Finished requests are kept and reused. A cancelled one had its answer
 * budget running: reused, it must start a budget of its own, not inherit
 * the old one (which would answer tempfail 500 ms early here).
 */
Test(verifier, reused_request_starts_clean)
{
    verifier_set_backend(ROUTE_LDAP, &fake_ops);
    fake_delay_ms = 2000;
    struct verifier *v = make_verifier(1000);
    struct result r, dead;

    memset(&dead, 0, sizeof(dead));
    struct verifier_req *q = verifier_lookup(v, "slow@ldap.test", 14, on_verdict, &dead);
    cr_assert_not_null(q);
    run_for_ms(10);
    verifier_cancel(q); /* its budget was armed: 1 s */
    run_for_ms(500);
    fake_delay_ms = 700; /* answers after 700 ms, inside a fresh 1 s budget */
    lookup_wait(v, "other@ldap.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID, "answered: %s", r.v.text);
    cr_assert_str_eq(r.key, "other@ldap.test");
    /* a malformed recipient after a good one, then a good one: nothing carried over */
    lookup_wait(v, "not an address", &r);
    cr_assert_eq(r.v.kind, VERDICT_INVALID);
    cr_assert_str_eq(r.key, "");
    lookup_wait(v, "someone@accept.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_VALID);
    cr_assert_str_eq(r.key, "someone@accept.test");
    cr_assert_str_eq(r.cached, "no");
    run_for_ms(100);
    cr_assert_eq(dead.calls, 0, "a cancelled lookup is never answered");
    verifier_free(v);
}
