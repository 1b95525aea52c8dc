/*
 * test_backend_ldap.c - the ldap: backend against a real slapd on loopback,
 * loaded from tests/ldap/users.ldif: the verdict for each kind of entry,
 * filter injection, slapd killed, stopped (SIGSTOP) and closing idle
 * connections, a wrong bind password, failover, and 500 concurrent lookups
 * through a pool of two connections. Each test starts its own slapd on a
 * free port (test_servers.c) and stops it by pid at teardown.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/time.h>

#include <event2/event.h>

#include "address.h"
#include "backend_ldap.h"
#include "dns.h"
#include "ldap_pool.h"
#include "log.h"
#include "route.h"
#include "test_servers.h"
#include "verifier.h"

#define MAX_PARAMS 32

struct result {
    int calls;
    struct verdict v;
};

static struct event_base *base;
static char tmpdir[64];
static pid_t slapd_pid = -1;
static int slapd_port;
static struct backend_param params[MAX_PARAMS];
static char param_values[MAX_PARAMS][256];
static size_t nparams;
static void *state;
static struct dns *resolver; /* env->dns when set */
static pid_t dnsmasq_pid = -1;

static void setup(void)
{
    char tmpl[] = "/tmp/test_backend_ldap.XXXXXX";

    base = event_base_new();
    cr_assert_not_null(base);
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
    signal(SIGPIPE, SIG_IGN); /* as the daemons do: a search may go to a server that left */
    log_open("test_backend_ldap", 1, LOG_MAIL);
    log_set_debug(getenv("LDAP_DEBUG") != NULL);
    nparams = 0;
    state = NULL;
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];

    if (state != NULL)
        backend_ldap_ops.close(state);
    state = NULL;
    if (resolver != NULL)
        dns_free(resolver);
    resolver = NULL;
    ts_stop(&slapd_pid);
    if (dnsmasq_pid > 0)
        kill(dnsmasq_pid, SIGCONT);
    ts_stop(&dnsmasq_pid);
    event_base_free(base);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TestSuite(ldap, .init = setup, .fini = teardown, .timeout = 60);

/* start_slapd - the test directory, with extra global slapd.conf lines */
static void start_slapd(const char *extra)
{
    cr_assert_eq(ts_slapd_prepare(tmpdir, TEST_SRCDIR "/tests/ldap/users.ldif", extra), 0,
                 "slapadd failed: see %s/slapadd.log", tmpdir);
    slapd_port = ts_free_port();
    cr_assert_gt(slapd_port, 0);
    cr_assert_eq(ts_slapd_start(tmpdir, slapd_port, &slapd_pid), 0, "slapd: see %s/slapd.log",
                 tmpdir);
}

/* param - one "name = value" of the source "corp" (line = its index + 1) */
static void param(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void param(const char *name, const char *fmt, ...)
{
    va_list ap;

    cr_assert_lt(nparams, MAX_PARAMS);
    va_start(ap, fmt);
    vsnprintf(param_values[nparams], sizeof(param_values[nparams]), fmt, ap);
    va_end(ap);
    params[nparams].name = name;
    params[nparams].value = param_values[nparams];
    params[nparams].file = "callahead.conf";
    params[nparams].line = (int)nparams + 1;
    nparams++;
}

/* base_params - the directory of start_slapd, searched by mail or alternate address */
static void base_params(void)
{
    param("server_host", "ldap://127.0.0.1:%d", slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    param("query_filter", "%s", "(|(mail=%s)(mailLocalAddress=%s))");
    param("domain", "%s", "example.test, other.test");
    param("disabled_attribute", "%s", "employeeType");
    param("disabled_value", "%s", "disabled");
    param("timeout", "%s", "2s");
}

/*
 * set_timeout - change base_params' search timeout: a test that bounds how
 * soon something fails sets it far above the bound, so that a loaded machine
 * has seconds of slack and a lookup that waited for the timeout still fails it
 */
static void set_timeout(const char *value)
{
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].name, "timeout") == 0)
            snprintf(param_values[i], sizeof(param_values[i]), "%s", value);
}

/* try_open - open the route ldap:corp with the parameters so far; NULL + err on failure */
static void *try_open(char *err, size_t errlen)
{
    struct backend_source src = {"ldap", "corp", params, nparams};
    struct backend_env env = {
        .base = base, .recipient_delimiter = "+", .dns = resolver, .sources = &src, .nsources = 1};
    struct route r;
    memset(&r, 0, sizeof(r));
    r.lineno = 1;
    r.method = ROUTE_LDAP;
    r.arg = (char *)"corp";
    err[0] = '\0';
    return backend_ldap_ops.open(&env, &r, err, errlen);
}

static void open_source(void)
{
    char err[512];
    state = try_open(err, sizeof(err));
    cr_assert_not_null(state, "open: %s", err);
}

static void on_verdict(const struct verdict *v, void *arg)
{
    struct result *r = arg;
    r->calls++;
    r->v = *v;
}

/* make_addr - an address with exactly these parts (no parsing: hostile bytes stay) */
static struct address make_addr(const char *local, const char *domain)
{
    struct address a;
    memset(&a, 0, sizeof(a));
    snprintf(a.local, sizeof(a.local), "%s", local);
    snprintf(a.domain, sizeof(a.domain), "%s", domain);
    snprintf(a.domain_utf8, sizeof(a.domain_utf8), "%s", domain);
    return a;
}

/* start - start a lookup; done at once (r->calls 1) or pending (*req set) */
static void start(const char *local, const char *domain, struct result *r, struct backend_req **req)
{
    struct address a = make_addr(local, domain);
    struct verdict v;
    *req = NULL;
    memset(r, 0, sizeof(*r));
    enum backend_status st = backend_ldap_ops.lookup(state, &a, &v, on_verdict, r, req);
    if (st != BACKEND_PENDING) {
        cr_assert_eq(r->calls, 0, "callback ran inside lookup");
        r->v = v;
        r->calls = 1;
        *req = NULL;
    } else {
        cr_assert_eq(r->calls, 0, "callback ran inside lookup");
        cr_assert_not_null(*req);
    }
}

/* run_until - run the loop until *calls >= n or ms pass */
static void run_until(int *calls, int n, int ms)
{
    struct timeval t0, now;
    gettimeofday(&t0, NULL);
    while (*calls < n) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        gettimeofday(&now, NULL);
        if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_usec - t0.tv_usec) / 1000 > ms)
            break;
        usleep(200);
    }
}

/* lookup - one lookup to its end */
static struct verdict lookup(const char *local, const char *domain)
{
    struct result r;
    struct backend_req *req;
    start(local, domain, &r, &req);
    run_until(&r.calls, 1, 10000);
    cr_assert_eq(r.calls, 1, "no verdict for %s@%s", local, domain);
    return r.v;
}

/* run_for - run the loop for ms */
static void run_for(int ms)
{
    int never = 0;
    run_until(&never, 1, ms);
}

#define expect(local, domain, kind_, text_)                                                        \
    do {                                                                                           \
        struct verdict v_ = lookup(local, domain);                                                 \
        cr_expect_eq(v_.kind, kind_, "%s@%s: %s %s", local, domain, verdict_kind_name(v_.kind),    \
                     v_.text);                                                                     \
        if (text_ != NULL)                                                                         \
            cr_expect_str_eq(v_.text, (const char *)text_, "%s@%s", local, domain);                \
        cr_expect_str_eq(v_.source, "ldap:corp");                                                  \
    } while (0)

Test(ldap, verdicts)
{
    start_slapd(NULL);
    base_params();
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    expect("ALICE", "example.test", VERDICT_VALID, NULL);  /* mail matches case-insensitively */
    expect("robert", "example.test", VERDICT_VALID, NULL); /* alternate address */
    expect("carol", "example.test", VERDICT_INVALID, "5.2.1 Mailbox disabled");
    expect("nobody", "example.test", VERDICT_INVALID, "5.1.1 User unknown");
    expect("nomail", "example.test", VERDICT_INVALID, "5.1.1 User unknown");
    expect("a*(b)\\c", "example.test", VERDICT_VALID, NULL); /* metacharacters match themselves */
    expect("user007", "example.test", VERDICT_VALID, NULL);
    /* a quoted local part is looked up without its quotes and escapes */
    expect("\"a*(b)\\\\c\"", "example.test", VERDICT_VALID, NULL);
    expect("\"alice\"", "example.test", VERDICT_VALID, NULL);
    expect("\"a*(b)*\"", "example.test", VERDICT_INVALID, NULL);
    /* not searched: an empty local part, a domain the source does not serve */
    struct ldap_pool_stats before, after;
    backend_ldap_pool_stats(state, &before);
    expect("", "example.test", VERDICT_INVALID, "5.1.1 User unknown");
    expect("alice", "elsewhere.test", VERDICT_UNKNOWN, NULL);
    backend_ldap_pool_stats(state, &after);
    cr_expect_eq(after.searches, before.searches, "searched anyway");
}

/* expect_parsed - the verdict on a whole address as the verifier parses it (IDN included) */
static void expect_parsed(const char *addr, enum verdict_kind kind)
{
    struct address a;
    char why[128];
    struct result r;
    struct backend_req *req = NULL;
    struct verdict v;

    cr_assert_eq(address_parse(addr, strlen(addr), &a, why, sizeof(why)), 0, "%s: %s", addr, why);
    memset(&r, 0, sizeof(r));
    if (backend_ldap_ops.lookup(state, &a, &v, on_verdict, &r, &req) == BACKEND_PENDING)
        run_until(&r.calls, 1, 10000);
    else
        r.v = v;
    cr_expect_eq(r.v.kind, kind, "%s: %s %s", addr, verdict_kind_name(r.v.kind), r.v.text);
}

/* RFC 6531: the directory is asked with the UTF-8 form of the address, not the A-labels */
Test(ldap, utf8_address_searched_in_utf8)
{
    start_slapd(NULL);
    param("server_host", "ldap://127.0.0.1:%d", slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    param("query_filter", "%s", "(cn=%s)");
    param("timeout", "%s", "2s");
    open_source();
    expect_parsed("j\xc3\xb6rg@b\xc3\xbc"
                  "cher.test",
                  VERDICT_VALID);
    expect_parsed("j\xc3\xb6rg@xn--bcher-kva.test", VERDICT_VALID); /* the A-label spelling */
    expect_parsed("joerg@b\xc3\xbc"
                  "cher.test",
                  VERDICT_INVALID);
}

Test(ldap, injection_never_valid)
{
    start_slapd(NULL);
    base_params();
    open_source();
    const char *hostile[] = {
        "*",    "a*",     "user*",   "user0*",        "*)(uid=*",    "*)(|(mail=*",  ")(",  "\\00",
        "\\2a", "a*(b)*", "*(b)\\c", "alice)(mail=*", "*))(|(uid=*", "\x01\x7f\xff", "a\\", "\\",
    };
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        expect(hostile[i], "example.test", VERDICT_INVALID, "5.1.1 User unknown");
    /* a wildcard in the domain cannot widen the search either */
    expect("alice", "*", VERDICT_UNKNOWN, NULL); /* not a served domain: not searched */
}

Test(ldap, result_attribute)
{
    start_slapd(NULL);
    base_params();
    param("result_attribute", "%s", "mailLocalAddress");
    open_source();
    expect("robert", "example.test", VERDICT_VALID, NULL);
    expect("bob", "example.test", VERDICT_VALID, NULL);     /* the entry has the attribute */
    expect("alice", "example.test", VERDICT_INVALID, NULL); /* found, but without it */
}

Test(ldap, size_limit_tempfails)
{
    start_slapd(NULL);
    base_params();
    param("query_filter", "%s", "(|(mail=%s)(uid=user0*))"); /* matches 50 entries and more */
    param("size_limit", "%s", "5");
    open_source();
    struct verdict v = lookup("alice", "example.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
    cr_assert_eq(v.flags & VERDICT_DEST_FAILURE, 0, "a size limit is not the server failing");
}

/* capture_stderr - log lines go to a file while fn runs; returns its contents */
static char *with_stderr_captured(void (*fn)(void))
{
    static char buf[8192];
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    dup2(fd, 2);
    close(fd);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void wrong_password_lookup(void)
{
    struct verdict v = lookup("alice", "example.test");
    cr_expect_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
    cr_expect(v.flags & VERDICT_DEST_FAILURE);
    /* refused at once during the backoff, still tempfail */
    v = lookup("bob", "example.test");
    cr_expect_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
}

Test(ldap, bind)
{
    start_slapd(NULL);
    base_params();
    param("bind", "%s", "yes");
    param("bind_dn", "%s", TS_SLAPD_ROOTDN);
    param("bind_pw", "%s", TS_SLAPD_ROOTPW);
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
}

Test(ldap, bind_wrong_password)
{
    start_slapd(NULL);
    base_params();
    param("bind", "%s", "yes");
    param("bind_dn", "%s", TS_SLAPD_ROOTDN);
    param("bind_pw", "%s", "wrong");
    open_source();
    const char *log = with_stderr_captured(wrong_password_lookup);
    cr_assert(strstr(log, "bind as \"" TS_SLAPD_ROOTDN "\" failed: Invalid credentials") != NULL,
              "log: %s", log);
}

Test(ldap, bind_pw_file)
{
    char path[PATH_MAX], err[512];
    start_slapd(NULL);
    base_params();
    param("bind", "%s", "yes");
    param("bind_dn", "%s", TS_SLAPD_ROOTDN);
    snprintf(path, sizeof(path), "%s/pw", tmpdir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "%s\n", TS_SLAPD_ROOTPW);
    fclose(fp);
    chmod(path, 0644);
    param("bind_pw_file", "%s", path);
    cr_assert_null(try_open(err, sizeof(err)));
    cr_assert(strstr(err, "readable by others") != NULL, "%s", err);
    chmod(path, 0600);
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
}

/* stop_server - SIGSTOP slapd and wait until every one of its threads has stopped */
static void stop_server(void)
{
    char path[64], buf[512];
    kill(slapd_pid, SIGSTOP);
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)slapd_pid);
    for (int i = 0; i < 200; i++) {
        FILE *fp = fopen(path, "r");
        cr_assert_not_null(fp);
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *st = strrchr(buf, ')');
        if (st != NULL && st[1] == ' ' && st[2] == 'T')
            return;
        usleep(5000);
    }
    cr_assert_fail("slapd did not stop");
}

Test(ldap, killed_then_back)
{
    start_slapd(NULL);
    base_params();
    set_timeout("8s");
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    /* killed with searches in flight: they fail at once (reset, then refused), not at timeout */
    stop_server();
    struct result r[2];
    struct backend_req *req[2];
    start("bob", "example.test", &r[0], &req[0]);
    start("robert", "example.test", &r[1], &req[1]);
    run_for(100);
    cr_assert_eq(r[0].calls + r[1].calls, 0, "answered by a stopped server");
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    ts_stop_sig(&slapd_pid, SIGKILL, 1000);
    run_until(&r[0].calls, 1, 5000);
    run_until(&r[1].calls, 1, 5000);
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].v.kind, VERDICT_TEMPFAIL, "%s", r[i].v.text);
        cr_assert(r[i].v.flags & VERDICT_DEST_FAILURE);
    }
    cr_assert_lt(ms, 4000, "waited for the deadline (%ldms) instead of noticing the reset", ms);
    /* while it is down (and the pool backs off): tempfail at once */
    struct verdict v = lookup("robert", "example.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
    /* back on the same port: answers again once the backoff (at most 10s) has passed */
    cr_assert_eq(ts_slapd_start(tmpdir, slapd_port, &slapd_pid), 0);
    int ok = 0;
    for (int i = 0; i < 60 && !ok; i++) {
        v = lookup("bob", "example.test");
        ok = v.kind == VERDICT_VALID;
        if (!ok)
            run_for(250);
    }
    cr_assert(ok, "no recovery: %s", v.text);
    /* what the operator sees: the lost connection, the failed connects, the replacement */
    struct verifier_pool vp;
    backend_ldap_ops.pool_stats(state, &vp);
    cr_expect(vp.drops >= 1 && vp.drops <= 2, "%lu drops", vp.drops); /* one or two in use */
    cr_expect(vp.reconnects >= 1 && vp.reconnects <= vp.drops, "%lu reconnects", vp.reconnects);
    cr_expect_geq(vp.connect_fails, 1);
    cr_expect_geq(vp.errors, 3, "%lu errors", vp.errors); /* two lost, one refused at once */
    cr_expect_eq(vp.conns_ready, 1);
    cr_expect_eq(vp.backing_off, 0);
}

static int ticks;
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    ticks++;
}

Test(ldap, stopped_server_deadline)
{
    start_slapd(NULL);
    base_params();
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].name, "timeout") == 0)
            snprintf(param_values[i], sizeof(param_values[i]), "%s", "700ms");
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    stop_server();
    usleep(100000); /* the threads of a stopping process may finish a request first */
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);
    ticks = 0;
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    struct result r[3];
    struct backend_req *req[3];
    start("alice", "example.test", &r[0], &req[0]);
    start("bob", "example.test", &r[1], &req[1]);
    start("user001", "example.test", &r[2], &req[2]);
    int calls = 0;
    for (int n = 0; n < 200 && calls < 3; n++) {
        run_for(50);
        calls = r[0].calls + r[1].calls + r[2].calls;
    }
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    event_free(tick);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(r[i].calls, 1);
        cr_expect_eq(r[i].v.kind, VERDICT_TEMPFAIL, "%d: %s", i, r[i].v.text);
    }
    cr_expect_geq(ms, 600, "answered before the deadline: %ldms", ms);
    cr_expect_lt(ms, 2500, "deadline not kept: %ldms", ms);
    cr_expect_geq(ticks, 8, "the loop was blocked: %d ticks in %ldms", ticks, ms);
    kill(slapd_pid, SIGCONT);
    /* the stuck connection was dropped; a fresh one answers */
    int ok = 0;
    struct verdict v;
    for (int i = 0; i < 40 && !ok; i++) {
        v = lookup("alice", "example.test");
        ok = v.kind == VERDICT_VALID;
        if (!ok)
            run_for(250);
    }
    cr_assert(ok, "no recovery: %s", v.text);
}

Test(ldap, idletimeout_reconnects_without_failure)
{
    start_slapd("idletimeout 1");
    base_params();
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    /* the server drops the idle connection while the loop does not run: the
       next search goes out on a dead socket and must be sent again */
    sleep(2);
    expect("bob", "example.test", VERDICT_VALID, NULL);
    /* the same with the loop running: the close is seen before the next search */
    run_for(2200);
    expect("robert", "example.test", VERDICT_VALID, NULL);
    sleep(2);
    expect("user002", "example.test", VERDICT_VALID, NULL);
}

Test(ldap, failover)
{
    start_slapd(NULL);
    int dead = ts_free_port();
    param("server_host", "ldap://127.0.0.1:%d, 127.0.0.1:%d", dead, slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    expect("nobody", "example.test", VERDICT_INVALID, NULL);
}

Test(ldap, cancel)
{
    start_slapd(NULL);
    base_params();
    open_source();
    struct result r;
    struct backend_req *req;
    start("alice", "example.test", &r, &req);
    cr_assert_not_null(req);
    backend_ldap_ops.cancel(req);
    run_for(300);
    cr_assert_eq(r.calls, 0, "callback after cancel");
    expect("alice", "example.test", VERDICT_VALID, NULL);
}

Test(ldap, pool_500_concurrent, .timeout = 120)
{
    enum { N = 500 };
    static struct result r[N];
    static struct backend_req *req[N];
    static char local[N][32];

    start_slapd(NULL);
    base_params();
    param("pool_size", "%s", "2");
    open_source();
    for (int i = 0; i < N; i++) {
        if (i % 10 == 0)
            snprintf(local[i], sizeof(local[i]), "user%03d", i / 10 + 1); /* 50 valid */
        else
            snprintf(local[i], sizeof(local[i]), "nobody%d", i);
        start(local[i], "example.test", &r[i], &req[i]);
    }
    /* the operator's view (ops->pool_stats): all waiting, no connection ready yet */
    struct verifier_pool vp;
    cr_assert_not_null(backend_ldap_ops.pool_stats);
    backend_ldap_ops.pool_stats(state, &vp);
    cr_expect_str_eq(vp.source, "ldap:corp");
    cr_expect_eq(vp.queued, N, "%d queued", vp.queued);
    cr_expect_eq(vp.inflight, 0);
    cr_expect_eq(vp.conns_ready, 0);
    cr_expect(vp.conns_connecting >= 1 && vp.conns_connecting <= 2, "%d connecting",
              vp.conns_connecting);
    int done = 0, busy = 0;
    for (int n = 0; n < 3000 && done < N; n++) {
        run_for(10);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
        backend_ldap_ops.pool_stats(state, &vp);
        if (vp.inflight > busy)
            busy = vp.inflight;
        cr_expect_leq(vp.conns_ready + vp.conns_connecting, 2);
        cr_expect_leq(vp.inflight, 2 * 32, "%d in flight", vp.inflight);
    }
    cr_assert_eq(done, N);
    cr_expect_geq(busy, 1, "never a search in flight");
    backend_ldap_ops.pool_stats(state, &vp);
    cr_expect_eq(vp.queued, 0);
    cr_expect_eq(vp.inflight, 0);
    cr_expect_eq(vp.conns_connecting, 0);
    cr_expect(vp.conns_ready >= 1 && vp.conns_ready <= 2, "%d ready", vp.conns_ready);
    cr_expect_eq(vp.errors, 0);
    cr_expect_eq(vp.reconnects, 0, "reconnected");
    cr_expect_eq(vp.drops, 0);
    cr_expect_geq(vp.requests, N);
    cr_expect_eq(vp.backing_off, 0);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(r[i].calls, 1);
        cr_expect_eq(r[i].v.kind, i % 10 == 0 ? VERDICT_VALID : VERDICT_INVALID, "%s: %s %s",
                     local[i], verdict_kind_name(r[i].v.kind), r[i].v.text);
    }
    struct ldap_pool_stats st;
    backend_ldap_pool_stats(state, &st);
    cr_expect_leq(st.conns_max, 2, "%d connections", st.conns_max);
    cr_expect_geq(st.conns_max, 1);
    cr_expect_leq(st.inflight_max, 32);
    cr_expect_eq(st.timeouts, 0);
}

/*
 * start_dnsmasq - a private dnsmasq for .test: ldap.test is the slapd
 * (127.0.0.1), two.test has a refusing address (127.0.0.2, where nothing
 * listens) and the slapd; the resolver of the source points at it
 */
static void start_dnsmasq(void)
{
    const char *const zone[] = {"--host-record=ldap.test,127.0.0.1",
                                "--host-record=dead.test,127.0.0.2", NULL};
    char servers[64], err[256] = "";
    int port = 0;

    cr_assert_eq(ts_dnsmasq_start(tmpdir, zone, &dnsmasq_pid, &port), 0,
                 "dnsmasq: see %s/dnsmasq.log", tmpdir);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
    resolver = dns_new(base, servers, 1000, err, sizeof(err));
    cr_assert_not_null(resolver, "dns_new: %s", err);
}

/* a host name in server_host: resolved on the loop, its address connected */
Test(ldap, host_name)
{
    start_slapd(NULL);
    start_dnsmasq();
    param("server_host", "ldap://ldap.test:%d", slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    param("domain", "%s", "example.test");
    param("timeout", "%s", "2s");
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    expect("nobody", "example.test", VERDICT_INVALID, "5.1.1 User unknown");
}

/* names tried in order: one that does not exist, one that refuses, then the slapd */
Test(ldap, host_name_failover)
{
    start_slapd(NULL);
    start_dnsmasq();
    param("server_host", "ldap://nowhere.test:%d ldap://dead.test:%d ldap://ldap.test:%d",
          slapd_port, slapd_port, slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    param("domain", "%s", "example.test");
    param("timeout", "%s", "3s");
    open_source();
    expect("alice", "example.test", VERDICT_VALID, NULL);
    struct verifier_pool vp;
    backend_ldap_ops.pool_stats(state, &vp);
    cr_expect_eq(vp.connect_fails, 0, "the servers before were tried within one connect");
}

/* the resolver stopped: the lookup answers within connect_timeout + timeout, the loop runs */
Test(ldap, host_name_resolver_stuck)
{
    start_slapd(NULL);
    start_dnsmasq();
    param("server_host", "ldap://ldap.test:%d", slapd_port);
    param("search_base", "%s", TS_SLAPD_SUFFIX);
    param("domain", "%s", "example.test");
    param("timeout", "%s", "6s"); /* far above the bound below: only connect_timeout meets it */
    param("connect_timeout", "%s", "500ms");
    open_source();
    kill(dnsmasq_pid, SIGSTOP);
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    struct verdict v = lookup("alice", "example.test");
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    cr_expect_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
    cr_expect_lt(ms, 2500, "took %ldms: the resolve deadline (500ms) was not kept", ms);
    kill(dnsmasq_pid, SIGCONT);
}

Test(ldap, bad_parameters)
{
    char err[512];
    struct {
        const char *name, *value, *want;
    } bad[] = {
        {"start_tls", "maybe", "yes or no"},
        {"tls_require_cert", "demand", "yes or no"},
        {"server_host", "ldap://-ldap.example.test", "neither a numeric address nor a host name"},
        {"server_host", "ldap://ldap..example.test", "neither a numeric address nor a host name"},
        {"tls_ca_cert_file", "ca.pem", "an absolute path"},
        {"tls_ca_cert_file", "/nonexistent/ca.pem", "not a readable file"},
        {"chase_referrals", "yes", "referrals"},
        {"version", "2", "only 3"},
        {"query_filter", "(mail=%S)", "unsupported expansion"},
        {"query_filter", "mail=%s", "parentheses"},
        {"scope", "subtree", "base, one or sub"},
        {"timeout", "forever", "duration"},
        {"pool_size", "0", "number from 1"},
        {"domain", "hash:/etc/postfix/domains", "no map references"},
        {"bind", "sasl", "yes or no"},
        {"no_such_parameter", "1", "unknown parameter"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nparams = 0;
        param("search_base", "%s", TS_SLAPD_SUFFIX);
        param(bad[i].name, "%s", bad[i].value);
        cr_expect_null(try_open(err, sizeof(err)), "%s = %s accepted", bad[i].name, bad[i].value);
        cr_expect(strstr(err, bad[i].want) != NULL, "%s: %s", bad[i].name, err);
        cr_expect(strncmp(err, "callahead.conf:2: ldap_corp_", 28) == 0, "%s", err);
    }
    nparams = 0;
    param("bind", "%s", "yes");
    cr_assert_null(try_open(err, sizeof(err)));
    cr_expect(strstr(err, "bind = yes needs bind_dn") != NULL, "%s", err);
    nparams = 0;
    param("disabled_attribute", "%s", "employeeType");
    cr_assert_null(try_open(err, sizeof(err)));
    cr_expect(strstr(err, "go together") != NULL, "%s", err);
    /* a route naming a source nobody defined */
    struct backend_env env = {.base = base, .recipient_delimiter = "+"};
    struct route rt;
    memset(&rt, 0, sizeof(rt));
    rt.method = ROUTE_LDAP;
    rt.arg = (char *)"corp";
    cr_assert_null(backend_ldap_ops.open(&env, &rt, err, sizeof(err)));
    cr_expect(strstr(err, "no LDAP source \"corp\"") != NULL, "%s", err);
}

Test(ldap, filter_libldap_refuses)
{
    start_slapd(NULL);
    base_params();
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].name, "query_filter") == 0)
            snprintf(param_values[i], sizeof(param_values[i]), "%s", "(&(mail=%s)(nonsense))");
    set_timeout("8s");
    open_source();
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    struct verdict v = lookup("alice", "example.test");
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
    cr_assert_str_eq(v.text, "4.3.0 Directory lookup failed");
    cr_assert_lt(ms, 4000, "answered only at the deadline (%ldms)", ms);
    cr_assert_eq(v.flags & VERDICT_DEST_FAILURE, 0);
}

/* --- TLS: ldaps:// and start_tls, the handshake on a worker thread --- */

static int tls_port; /* ldaps:// of the TLS slapd; slapd_port is its ldap:// */
static char ca_pem[PATH_MAX], wrong_ca_pem[PATH_MAX];

/* sh - run a shell command in tmpdir; fail the test when it fails */
static void sh(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof(full), "cd '%s' && { %s; } >>openssl.log 2>&1", tmpdir, cmd);
    cr_assert_eq(system(full), 0, "failed: %s (see %s/openssl.log)", cmd, tmpdir);
}

/*
 * start_slapd_tls - a CA, a server certificate it signs for 127.0.0.1 (an IP
 * subjectAltName), a second CA that signed nothing, and slapd with that
 * certificate on ldap:// (StartTLS) and ldaps://
 */
static void start_slapd_tls(void)
{
    char extra[2 * PATH_MAX], url[160], log[PATH_MAX], conf[PATH_MAX];

    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key "
       "-out ca.pem");
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wrong-ca -keyout wrong.key "
       "-out wrong.pem");
    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out "
       "server.csr");
    sh("printf 'subjectAltName=IP:127.0.0.1\\n' >san.ext && openssl x509 -req -in server.csr -CA "
       "ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem");
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", tmpdir);
    snprintf(wrong_ca_pem, sizeof(wrong_ca_pem), "%s/wrong.pem", tmpdir);
    snprintf(extra, sizeof(extra),
             "TLSCertificateFile %s/server.pem\nTLSCertificateKeyFile %s/server.key", tmpdir,
             tmpdir);
    cr_assert_eq(ts_slapd_prepare(tmpdir, TEST_SRCDIR "/tests/ldap/users.ldif", extra), 0,
                 "slapadd failed: see %s/slapadd.log", tmpdir);
    slapd_port = ts_free_port();
    do
        tls_port = ts_free_port();
    while (tls_port == slapd_port);
    cr_assert_gt(slapd_port, 0);
    cr_assert_gt(tls_port, 0);
    snprintf(conf, sizeof(conf), "%s/slapd.conf", tmpdir);
    snprintf(log, sizeof(log), "%s/slapd.log", tmpdir);
    snprintf(url, sizeof(url), "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", slapd_port, tls_port);
    char *const argv[] = {TS_SLAPD, "-d", "0", "-f", conf, "-h", url, NULL};
    slapd_pid = ts_spawn(argv, log, log);
    cr_assert_gt(slapd_pid, 0);
    cr_assert_eq(ts_wait_tcp(&slapd_pid, slapd_port, 10000), 0, "slapd: see %s", log);
    cr_assert_eq(ts_wait_tcp(&slapd_pid, tls_port, 10000), 0, "slapd: see %s", log);
}

/* tls_params - base_params over TLS: ldaps:// (start_tls 0) or ldap:// + StartTLS */
static void tls_params(int start_tls, const char *ca, const char *require)
{
    base_params();
    if (start_tls) {
        param("start_tls", "%s", "yes");
    } else {
        for (size_t i = 0; i < nparams; i++)
            if (strcmp(params[i].name, "server_host") == 0)
                snprintf(param_values[i], sizeof(param_values[i]), "ldaps://127.0.0.1:%d",
                         tls_port);
    }
    param("tls_ca_cert_file", "%s", ca);
    param("tls_require_cert", "%s", require);
}

/* tls_verdicts - the answers of the verdicts test, through the source now open */
static void tls_verdicts(void)
{
    expect("alice", "example.test", VERDICT_VALID, NULL);
    expect("carol", "example.test", VERDICT_INVALID, "5.2.1 Mailbox disabled");
    expect("nobody", "example.test", VERDICT_INVALID, "5.1.1 User unknown");
    struct ldap_pool_stats st;
    backend_ldap_pool_stats(state, &st);
    cr_expect_geq(st.connects, 1);
    cr_expect_eq(st.connect_fails, 0);
}

Test(ldap, tls_ldaps)
{
    start_slapd_tls();
    tls_params(0, ca_pem, "yes");
    open_source();
    tls_verdicts();
}

Test(ldap, tls_start_tls)
{
    start_slapd_tls();
    tls_params(1, ca_pem, "yes");
    open_source();
    tls_verdicts();
}

static void tls_failing_lookup(void)
{
    struct verdict v = lookup("alice", "example.test");
    cr_expect_eq(v.kind, VERDICT_TEMPFAIL, "%s", v.text);
}

/* a CA that did not sign the server's certificate: tempfail, and the log says why */
Test(ldap, tls_wrong_ca)
{
    start_slapd_tls();
    tls_params(0, wrong_ca_pem, "yes");
    open_source();
    const char *log = with_stderr_captured(tls_failing_lookup);
    cr_assert(strstr(log, "TLS handshake") != NULL &&
                  strstr(log, "certificate verify failed") != NULL,
              "log: %s", log);
    backend_ldap_ops.close(state);
    state = NULL;
    /* the same with StartTLS */
    nparams = 0;
    tls_params(1, wrong_ca_pem, "yes");
    open_source();
    log = with_stderr_captured(tls_failing_lookup);
    cr_assert(strstr(log, "StartTLS") != NULL && strstr(log, "certificate verify failed") != NULL,
              "log: %s", log);
}

/*
 * slapd stopped before the handshake: the lookup answers tempfail at
 * connect_timeout, and meanwhile the loop runs and another source (plain
 * ldap:// to a second slapd) answers at once
 */
Test(ldap, tls_stopped_handshake)
{
    char dir2[256];
    pid_t plain_pid = -1;
    int plain_port;

    /* the second, plain directory */
    snprintf(dir2, sizeof(dir2), "%s/plain", tmpdir);
    cr_assert_eq(mkdir(dir2, 0700), 0);
    cr_assert_eq(ts_slapd_prepare(dir2, TEST_SRCDIR "/tests/ldap/users.ldif", NULL), 0);
    plain_port = ts_free_port();
    cr_assert_eq(ts_slapd_start(dir2, plain_port, &plain_pid), 0, "see %s/slapd.log", dir2);

    start_slapd_tls();
    base_params();
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].name, "server_host") == 0)
            snprintf(param_values[i], sizeof(param_values[i]), "ldap://127.0.0.1:%d", plain_port);
    open_source();
    void *plain = state;
    nparams = 0;
    tls_params(0, ca_pem, "yes");
    param("connect_timeout", "%s", "800ms");
    open_source();
    void *tls = state;

    stop_server();
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);
    ticks = 0;
    struct timeval t0, t1, t2;
    gettimeofday(&t0, NULL);
    struct result r;
    struct backend_req *req;
    start("alice", "example.test", &r, &req); /* its handshake hangs */
    run_for(150);
    cr_assert_eq(r.calls, 0, "answered before the handshake could hang: %s", r.v.text);
    /* the other source answers while that handshake hangs */
    state = plain;
    gettimeofday(&t1, NULL);
    struct verdict v = lookup("bob", "example.test");
    gettimeofday(&t2, NULL);
    state = tls;
    long plain_ms = (t2.tv_sec - t1.tv_sec) * 1000 + (t2.tv_usec - t1.tv_usec) / 1000;
    cr_expect_eq(v.kind, VERDICT_VALID, "%s", v.text);
    cr_expect_lt(plain_ms, 300, "the plain source waited %ldms", plain_ms);
    cr_expect_eq(r.calls, 0, "the TLS lookup answered too early");
    run_until(&r.calls, 1, 5000);
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    event_free(tick);
    cr_expect_eq(r.calls, 1);
    cr_expect_eq(r.v.kind, VERDICT_TEMPFAIL, "%s", r.v.text);
    cr_expect_geq(ms, 700, "answered before connect_timeout: %ldms", ms);
    cr_expect_lt(ms, 2000, "connect_timeout not kept: %ldms", ms);
    cr_expect_geq(ticks, 10, "the loop was blocked: %d ticks in %ldms", ticks, ms);
    /*
     * the abandoned handshake (its socket shut down at the deadline) comes
     * back and is freed on the loop: a leak under the sanitizers otherwise
     */
    run_for(1500);
    kill(slapd_pid, SIGCONT);
    backend_ldap_ops.close(plain);
    ts_stop(&plain_pid);
}
