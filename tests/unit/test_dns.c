/*
 * test_dns.c - the asynchronous resolver (dns.c) against a real DNS server:
 * dnsmasq from Debian's dnsmasq-base, started per test on a free loopback
 * port with its records on the command line (MX, A/AAAA, CNAME, a null MX and
 * a malformed MX as raw records), never forwarding anywhere (--no-resolv).
 * Timeouts use a UDP socket that never answers; refused connections a closed
 * port. The server is stopped by pid at teardown and dies with the test
 * process (PR_SET_PDEATHSIG) if the test crashes (test_servers.c). A scripted UDP responder in
 * the test's own loop pins a lookup in its address phase (cancel, deadline)
 * and sends garbage. DNS_DEBUG=1 prints the resolver's debug log; KEEP_TMP=1
 * keeps dnsmasq's logs in /tmp/test_dns.*.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/event.h>

#include "dns.h"
#include "log.h"
#include "test_servers.h"

#define DNSMASQ TS_DNSMASQ
#define TIMEOUT_MS 2000

static struct event_base *base;
static struct dns *dns;
static pid_t dnsmasq_pid = -1;
static int dns_port;
static char tmpdir[64];
static struct event *ticker;

/* --- what a callback saw */
struct result {
    int calls;
    int status;
    int ntargets;
    struct dns_target targets[DNS_MAX_TARGETS];
    char errmsg[1024];
    int *done; /* shared counter of finished lookups */
};

static void result_cb(int status, const struct dns_target *targets, int ntargets,
                      const char *errmsg, void *arg)
{
    struct result *r = arg;

    r->calls++;
    r->status = status;
    r->ntargets = ntargets;
    if (ntargets > 0 && targets)
        memcpy(r->targets, targets, sizeof(*targets) * (size_t)ntargets);
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg ? errmsg : "(null)");
    if (r->done)
        (*r->done)++;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* run_until - run the loop until *counter >= want or max_ms passed */
static void run_until(int *counter, int want, int max_ms)
{
    long end = now_ms() + max_ms;

    while ((!counter || *counter < want) && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

/* addr_str - one target address as text, for assertions */
static const char *addr_str(const struct sockaddr_storage *ss)
{
    static char buf[4][INET6_ADDRSTRLEN];
    static int i;
    char *b = buf[i++ % 4];

    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, b, INET6_ADDRSTRLEN);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, b, INET6_ADDRSTRLEN);
    else
        snprintf(b, INET6_ADDRSTRLEN, "family-%d", ss->ss_family);
    return b;
}

/* --- dnsmasq */

static char long_label[4][64];

/* dnsmasq_start - dnsmasq with the test zone below on a free port; 0 when it answers */
static int dnsmasq_start(int *port)
{
    char logopt[160];
    const char *argv[96];
    int n = 0;
    static char many[12][200], m01[200];

    snprintf(logopt, sizeof(logopt), "--log-facility=%s/queries.log", tmpdir);
    argv[n++] = logopt;
    argv[n++] = "--log-queries";
    /* two preferences, listed backwards (dnsmasq answers them in reverse) */
    argv[n++] = "--mx-host=two.test,mx1.two.test,10";
    argv[n++] = "--mx-host=two.test,mx2.two.test,20";
    argv[n++] = "--host-record=mx1.two.test,127.0.0.11,::11";
    argv[n++] = "--host-record=mx2.two.test,127.0.0.12";
    /* equal preferences behind a better one */
    argv[n++] = "--mx-host=eq.test,a.eq.test,10";
    argv[n++] = "--mx-host=eq.test,b.eq.test,10";
    argv[n++] = "--mx-host=eq.test,c.eq.test,5";
    argv[n++] = "--host-record=a.eq.test,127.0.0.21";
    argv[n++] = "--host-record=b.eq.test,127.0.0.22";
    argv[n++] = "--host-record=c.eq.test,127.0.0.23";
    /* no MX: implicit MX */
    argv[n++] = "--host-record=amx.test,127.0.0.5";
    argv[n++] = "--host-record=amx6.test,::5";
    argv[n++] = "--txt-record=nothing.test,no mail here";
    /* null MX (RFC 7505): preference 0, exchange "." */
    argv[n++] = "--dns-rr=null.test,15,000000";
    /* truncated MX rdata */
    argv[n++] = "--dns-rr=badrr.test,15,00";
    /* MX hosts that do not resolve, all or some */
    argv[n++] = "--mx-host=dead.test,gone1.dead.test,10";
    argv[n++] = "--mx-host=dead.test,gone2.dead.test,20";
    argv[n++] = "--mx-host=partial.test,gone.partial.test,10";
    argv[n++] = "--mx-host=partial.test,ok.partial.test,20";
    argv[n++] = "--host-record=ok.partial.test,127.0.0.41";
    /* the same host twice */
    argv[n++] = "--mx-host=dup.test,mx.dup.test,30";
    argv[n++] = "--mx-host=dup.test,mx.dup.test,10";
    argv[n++] = "--host-record=mx.dup.test,127.0.0.51";
    /* a CNAME as host */
    argv[n++] = "--cname=alias.test,mx1.two.test";
    /* ten addresses on one host */
    argv[n++] = "--host-record=wide.test,127.0.1.1";
    argv[n++] = "--host-record=wide.test,127.0.1.2";
    argv[n++] = "--host-record=wide.test,127.0.1.3";
    argv[n++] = "--host-record=wide.test,127.0.1.4";
    argv[n++] = "--host-record=wide.test,127.0.1.5";
    argv[n++] = "--host-record=wide.test,127.0.1.6";
    argv[n++] = "--host-record=wide.test,127.0.1.7";
    argv[n++] = "--host-record=wide.test,127.0.1.8";
    argv[n++] = "--host-record=wide.test,127.0.1.9";
    argv[n++] = "--host-record=wide.test,127.0.1.10";
    /* twelve MX with long names: the answer passes 512 bytes (TCP retry), we keep ten */
    for (int i = 0; i < 4; i++) {
        memset(long_label[i], 'a' + i, 63);
        long_label[i][63] = '\0';
    }
    for (int i = 0; i < 12; i++) {
        snprintf(many[i], sizeof(many[i]), "--mx-host=many.test,m%02d.%s.%s.many.test,%d", 12 - i,
                 long_label[i % 4], long_label[(i + 1) % 4], 12 - i);
        argv[n++] = many[i];
    }
    snprintf(m01, sizeof(m01), "--host-record=m01.%s.%s.many.test,127.0.0.61", long_label[3],
             long_label[0]);
    argv[n++] = m01;
    argv[n] = NULL;
    cr_assert_lt(n, 96);
    return ts_dnsmasq_start(tmpdir, argv, &dnsmasq_pid, port);
}

static void dnsmasq_stop(void)
{
    ts_stop(&dnsmasq_pid);
}

/* resolver_new - a resolver for servers with timeout_ms, or fail the test */
static struct dns *resolver_new(const char *servers, int timeout_ms)
{
    char err[256] = "";
    struct dns *d = dns_new(base, servers, timeout_ms, err, sizeof(err));
    cr_assert_not_null(d, "dns_new(%s): %s", servers, err);
    return d;
}

static void setup_base(void)
{
    struct timeval tv = {0, 20000};

    log_open("test_dns", 1, LOG_MAIL);
    log_set_debug(getenv("DNS_DEBUG") != NULL);
    base = event_base_new();
    cr_assert_not_null(base);
    ticker = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(ticker, &tv);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_dns.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void setup_server(void)
{
    char servers[64];
    int started = -1;

    setup_base();
    cr_assert(access(DNSMASQ, X_OK) == 0, "%s missing: apt-get install -y dnsmasq-base", DNSMASQ);
    started = dnsmasq_start(&dns_port); /* tries three free ports */
    cr_assert_gt(dns_port, 0);
    cr_assert_eq(started, 0, "dnsmasq did not start (log in %s)", tmpdir);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns_port);
    dns = resolver_new(servers, TIMEOUT_MS);
}

static void teardown(void)
{
    char cmd[128];

    dns_free(dns);
    dns = NULL;
    dnsmasq_stop();
    if (ticker)
        event_free(ticker);
    ticker = NULL;
    if (base)
        event_base_free(base);
    base = NULL;
    if (tmpdir[0] && !getenv("KEEP_TMP")) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", tmpdir);
    }
}

/* mx - one MX lookup run to completion */
static void mx(const char *domain, struct result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_not_null(dns_mx_lookup(dns, domain, result_cb, r));
    cr_assert_eq(r->calls, 0, "callback ran inside dns_mx_lookup");
    run_until(&r->calls, 1, TIMEOUT_MS + 2000);
    cr_assert_eq(r->calls, 1, "%s: callback ran %d times", domain, r->calls);
}

static void host(const char *name, struct result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_not_null(dns_host_lookup(dns, name, result_cb, r));
    cr_assert_eq(r->calls, 0, "callback ran inside dns_host_lookup");
    run_until(&r->calls, 1, TIMEOUT_MS + 2000);
    cr_assert_eq(r->calls, 1, "%s: callback ran %d times", name, r->calls);
}

TestSuite(dns, .init = setup_server, .fini = teardown, .timeout = 30);

Test(dns, mx_two_preferences_in_order)
{
    struct result r;

    mx("two.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_str_eq(r.errmsg, "");
    cr_assert_eq(r.ntargets, 2);
    cr_assert_str_eq(r.targets[0].host, "mx1.two.test");
    cr_assert_eq(r.targets[0].preference, 10);
    cr_assert_str_eq(r.targets[1].host, "mx2.two.test");
    cr_assert_eq(r.targets[1].preference, 20);
    /* A and AAAA, IPv4 first; ports left to the caller */
    cr_assert_eq(r.targets[0].naddrs, 2);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.11");
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[1]), "::11");
    cr_assert_eq(((struct sockaddr_in *)&r.targets[0].addrs[0])->sin_port, 0);
    cr_assert_eq(r.targets[1].naddrs, 1);
    cr_assert_str_eq(addr_str(&r.targets[1].addrs[0]), "127.0.0.12");
}

Test(dns, mx_trailing_dot_and_case)
{
    struct result r;

    mx("TWO.Test.", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 2);
    cr_assert_str_eq(r.targets[0].host, "mx1.two.test");
}

Test(dns, mx_equal_preferences_shuffled)
{
    int a_first = 0, b_first = 0;

    for (int i = 0; i < 40; i++) {
        struct result r;
        mx("eq.test", &r);
        cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
        cr_assert_eq(r.ntargets, 3);
        cr_assert_str_eq(r.targets[0].host, "c.eq.test"); /* preference 5 always first */
        cr_assert_eq(r.targets[1].preference, 10);
        cr_assert_eq(r.targets[2].preference, 10);
        if (strcmp(r.targets[1].host, "a.eq.test") == 0) {
            cr_assert_str_eq(r.targets[2].host, "b.eq.test");
            a_first++;
        } else {
            cr_assert_str_eq(r.targets[1].host, "b.eq.test");
            cr_assert_str_eq(r.targets[2].host, "a.eq.test");
            b_first++;
        }
    }
    /* chance of one order 40 times in a row: 2^-39 */
    cr_assert_gt(a_first, 0);
    cr_assert_gt(b_first, 0);
}

Test(dns, no_mx_falls_back_to_a)
{
    struct result r;

    mx("amx.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_str_eq(r.targets[0].host, "amx.test");
    cr_assert_eq(r.targets[0].preference, 0);
    cr_assert_eq(r.targets[0].naddrs, 1);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.5");
}

Test(dns, no_mx_falls_back_to_aaaa)
{
    struct result r;

    mx("amx6.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_eq(r.targets[0].naddrs, 1);
    cr_assert_eq(r.targets[0].addrs[0].ss_family, AF_INET6);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "::5");
}

Test(dns, no_mx_no_address_is_nomail)
{
    struct result r;

    mx("nothing.test", &r); /* exists (TXT) but has neither MX nor A/AAAA */
    cr_assert_eq(r.status, DNS_NOMAIL, "%d %s", r.status, r.errmsg);
    cr_assert_eq(r.ntargets, 0);
    cr_assert(strstr(r.errmsg, "no MX and no address"), "%s", r.errmsg);
}

Test(dns, nxdomain)
{
    struct result r;

    mx("nx.test", &r);
    cr_assert_eq(r.status, DNS_NXDOMAIN, "%d %s", r.status, r.errmsg);
    cr_assert_eq(r.ntargets, 0);
    cr_assert(strstr(r.errmsg, "nx.test"), "%s", r.errmsg);
}

Test(dns, unknown_zone_not_forwarded_is_tempfail)
{
    struct result r;

    /* --no-resolv: dnsmasq answers REFUSED for names outside its data; never "does not exist" */
    mx("unknown.example", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "unknown.example"), "%s", r.errmsg);
}

Test(dns, null_mx_is_nomail)
{
    struct result r;

    mx("null.test", &r);
    cr_assert_eq(r.status, DNS_NOMAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "null MX"), "%s", r.errmsg);
}

Test(dns, malformed_mx_is_tempfail)
{
    struct result r;

    mx("badrr.test", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "malformed"), "%s", r.errmsg);
}

Test(dns, mx_hosts_without_address_tempfail)
{
    struct result r;

    mx("dead.test", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "none of the 2 MX hosts"), "%s", r.errmsg);
}

Test(dns, mx_host_without_address_skipped)
{
    struct result r;

    mx("partial.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_str_eq(r.targets[0].host, "ok.partial.test");
    cr_assert_eq(r.targets[0].preference, 20);
}

Test(dns, duplicate_mx_host_kept_once_at_best_preference)
{
    struct result r;

    mx("dup.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_eq(r.targets[0].preference, 10);
}

Test(dns, many_mx_over_tcp_capped_at_ten)
{
    struct result r;

    mx("many.test", &r);
    /* only m01 has an address; the other eleven are skipped, m11 and m12 never asked */
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_eq(r.targets[0].preference, 1);
    cr_assert(strncmp(r.targets[0].host, "m01.ddd", 7) == 0, "%s", r.targets[0].host);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.61");
}

Test(dns, host_lookup_a_and_aaaa)
{
    struct result r;

    host("mx1.two.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.ntargets, 1);
    cr_assert_str_eq(r.targets[0].host, "mx1.two.test");
    cr_assert_eq(r.targets[0].preference, 0);
    cr_assert_eq(r.targets[0].naddrs, 2);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.11");
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[1]), "::11");
}

Test(dns, host_lookup_follows_cname)
{
    struct result r;

    host("alias.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.targets[0].naddrs, 2);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.11");
}

Test(dns, host_lookup_caps_addresses)
{
    struct result r;

    host("wide.test", &r);
    cr_assert_eq(r.status, DNS_OK, "%s", r.errmsg);
    cr_assert_eq(r.targets[0].naddrs, DNS_MAX_ADDRS);
    for (int i = 0; i < DNS_MAX_ADDRS; i++)
        cr_assert_eq(r.targets[0].addrs[i].ss_family, AF_INET);
}

Test(dns, host_lookup_nxdomain)
{
    struct result r;

    host("nohost.test", &r);
    cr_assert_eq(r.status, DNS_NXDOMAIN, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "not found"), "%s", r.errmsg);
    host("nothing.test", &r); /* exists, no address */
    cr_assert_eq(r.status, DNS_NXDOMAIN, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "no address"), "%s", r.errmsg);
}

Test(dns, host_lookup_literals_need_no_query)
{
    struct result r;

    host("127.0.0.9", &r);
    cr_assert_eq(r.status, DNS_OK);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "127.0.0.9");
    host("::1", &r);
    cr_assert_eq(r.status, DNS_OK);
    cr_assert_eq(r.targets[0].addrs[0].ss_family, AF_INET6);
    cr_assert_str_eq(addr_str(&r.targets[0].addrs[0]), "::1");
}

Test(dns, hostile_names_are_badname)
{
    static char toolong[400], longlabel[80];
    const char *bad[] = {
        "",         ".",  "a..b",  "exa mple.test", "a\\.b.test", "x\n.test", "caf\xc3\xa9.test",
        "a/b.test", "..", toolong, longlabel};
    struct result r;

    memset(toolong, 'a', sizeof(toolong) - 1);
    for (size_t i = 1; i < sizeof(toolong) - 1; i += 2)
        toolong[i] = '.';
    memset(longlabel, 'b', 64);
    strcpy(longlabel + 64, ".test");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mx(bad[i], &r);
        cr_assert_eq(r.status, DNS_BADNAME, "mx \"%s\": %d %s", bad[i], r.status, r.errmsg);
        host(bad[i], &r);
        cr_assert_eq(r.status, DNS_BADNAME, "host \"%s\": %d %s", bad[i], r.status, r.errmsg);
    }
    mx(NULL, &r);
    cr_assert_eq(r.status, DNS_BADNAME);
}

Test(dns, cancel_in_flight_never_calls_back)
{
    struct result r[4];
    struct dns_req *q[4];

    memset(r, 0, sizeof(r));
    q[0] = dns_mx_lookup(dns, "two.test", result_cb, &r[0]);
    q[1] = dns_host_lookup(dns, "mx1.two.test", result_cb, &r[1]);
    q[2] = dns_host_lookup(dns, "127.0.0.1", result_cb, &r[2]); /* deferred literal */
    q[3] = dns_mx_lookup(dns, "amx.test", result_cb, &r[3]);    /* keeps running */
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(q[i]);
    for (int i = 0; i < 3; i++)
        dns_cancel(q[i]);
    run_until(&r[3].calls, 1, TIMEOUT_MS);
    run_until(NULL, 0, 300); /* let the cancelled queries' answers arrive */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i].calls, 0, "cancelled request %d called back", i);
    cr_assert_eq(r[3].calls, 1);
    cr_assert_eq(r[3].status, DNS_OK);
}

Test(dns, many_concurrent_lookups)
{
    enum { N = 200 };
    static struct result r[N];
    static const char *names[] = {"two.test", "amx.test", "nx.test", "null.test", "eq.test"};
    static const int want[] = {DNS_OK, DNS_OK, DNS_NXDOMAIN, DNS_NOMAIL, DNS_OK};
    int done = 0;
    long t0 = now_ms();

    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].done = &done;
        cr_assert_not_null(dns_mx_lookup(dns, names[i % 5], result_cb, &r[i]));
    }
    run_until(&done, N, TIMEOUT_MS + 3000);
    cr_assert_eq(done, N, "%d of %d answered in %ld ms", done, N, now_ms() - t0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, want[i % 5], "%s: %d %s", names[i % 5], r[i].status, r[i].errmsg);
    }
    cr_assert_eq(r[0].ntargets, 2);
    cr_assert_str_eq(r[0].targets[0].host, "mx1.two.test");
}

Test(dns, free_with_requests_pending)
{
    struct result r[3];

    memset(r, 0, sizeof(r));
    cr_assert_not_null(dns_mx_lookup(dns, "two.test", result_cb, &r[0]));
    cr_assert_not_null(dns_host_lookup(dns, "mx2.two.test", result_cb, &r[1]));
    cr_assert_not_null(dns_host_lookup(dns, "::1", result_cb, &r[2]));
    dns_free(dns); /* queries sent, answers not read yet, literal not delivered */
    dns = NULL;
    run_until(NULL, 0, 200);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i].calls, 0);
}

static void free_in_cb(int status, const struct dns_target *targets, int ntargets,
                       const char *errmsg, void *arg)
{
    int *calls = arg;

    (*calls)++;
    dns_free(dns); /* the other lookup is still in flight */
    dns = NULL;
}

Test(dns, free_inside_callback)
{
    int calls = 0;
    struct result other = {0};

    cr_assert_not_null(dns_host_lookup(dns, "127.0.0.1", free_in_cb, &calls));
    cr_assert_not_null(dns_mx_lookup(dns, "two.test", result_cb, &other));
    run_until(&calls, 1, 1000);
    run_until(NULL, 0, 200);
    cr_assert_eq(calls, 1);
    cr_assert_eq(other.calls, 0);
    cr_assert_null(dns);
}

/* --- without dnsmasq: servers that do not answer */

TestSuite(dns_noserver, .init = setup_base, .fini = teardown, .timeout = 30);

Test(dns_noserver, silent_server_times_out_within_budget)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    char servers[64];
    struct result r;
    long t0, ms;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    /* a bound UDP socket nobody reads: queries vanish, no ICMP error */
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(sin.sin_port));
    dns = resolver_new(servers, 400);
    t0 = now_ms();
    mx("two.test", &r);
    ms = now_ms() - t0;
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "timed out"), "%s", r.errmsg);
    cr_assert_geq(ms, 350, "answered after %ld ms", ms);
    /* the 400 ms deadline, with 2 s of slack for a loaded machine */
    cr_assert_leq(ms, 2400, "answered after %ld ms", ms);

    t0 = now_ms();
    host("mx.two.test", &r);
    ms = now_ms() - t0;
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert_leq(ms, 2400, "answered after %ld ms", ms);
    close(fd);
}

Test(dns_noserver, cancel_while_server_silent)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    char servers[64];
    struct result r[2];
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(sin.sin_port));
    dns = resolver_new(servers, 200);
    memset(r, 0, sizeof(r));
    dns_cancel(dns_mx_lookup(dns, "two.test", result_cb, &r[0]));
    dns_cancel(dns_host_lookup(dns, "mx.two.test", result_cb, &r[1]));
    run_until(NULL, 0, 1000); /* past the budget and c-ares' own retries */
    cr_assert_eq(r[0].calls, 0);
    cr_assert_eq(r[1].calls, 0);
    close(fd);
}

/*
 * A scripted UDP "server" inside the test's own loop: it answers MX queries
 * with one MX record (or garbage) and never answers anything else, so a
 * lookup reliably sits in its address phase.
 */
struct script {
    int fd;
    int garbage; /* answer MX queries with junk instead */
    int mx_queries, addr_queries;
};

static void script_cb(evutil_socket_t fd, short what, void *arg)
{
    static const unsigned char rr[] = {0xc0, 0x0c, 0,   15,  0, 1,   0, 0,   0,   60,  0,   13, 0,
                                       10,   2,    'm', 'x', 1, 'x', 4, 't', 'e', 's', 't', 0};
    struct script *sc = arg;
    unsigned char buf[600];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof(from);
    ssize_t n = recvfrom(fd, buf, 512, 0, (struct sockaddr *)&from, &fromlen);
    size_t q;

    if (n < 17)
        return;
    for (q = 12; q < (size_t)n && buf[q] != 0; q += buf[q] + 1u) /* skip the question name */
        ;
    if (q + 5 > (size_t)n)
        return;
    if (buf[q + 2] != 15) {
        sc->addr_queries++;
        return; /* silence */
    }
    sc->mx_queries++;
    if (sc->garbage) {
        for (size_t i = 2; i < (size_t)n; i++)
            buf[i] ^= 0x5a; /* keep the id, scramble the rest */
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
        return;
    }
    n = (ssize_t)(q + 5);
    buf[2] = 0x85; /* QR AA RD */
    buf[3] = 0x80; /* RA, NOERROR */
    buf[7] = 1;    /* ANCOUNT */
    memcpy(buf + n, rr, sizeof(rr));
    sendto(fd, buf, (size_t)n + sizeof(rr), 0, (struct sockaddr *)&from, fromlen);
}

/* script_start - bind the scripted server, return its resolver (timeout_ms) */
static struct event *script_start(struct script *sc, int timeout_ms)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    char servers[64];
    struct event *ev;

    sc->fd = socket(AF_INET, SOCK_DGRAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(sc->fd >= 0 && bind(sc->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    cr_assert(getsockname(sc->fd, (struct sockaddr *)&sin, &len) == 0);
    evutil_make_socket_nonblocking(sc->fd);
    ev = event_new(base, sc->fd, EV_READ | EV_PERSIST, script_cb, sc);
    event_add(ev, NULL);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(sin.sin_port));
    dns = resolver_new(servers, timeout_ms);
    return ev;
}

Test(dns_noserver, cancel_during_address_phase)
{
    struct script sc = {0};
    struct event *ev = script_start(&sc, 300);
    struct result r = {0};
    struct dns_req *q = dns_mx_lookup(dns, "x.test", result_cb, &r);

    cr_assert_not_null(q);
    run_until(&sc.addr_queries, 2, 1000); /* MX answered, A and AAAA of mx.x.test asked */
    cr_assert_eq(sc.mx_queries, 1);
    cr_assert_geq(sc.addr_queries, 2);
    cr_assert_eq(r.calls, 0);
    dns_cancel(q);
    run_until(NULL, 0, 1200); /* past the budget and every c-ares retry */
    cr_assert_eq(r.calls, 0);
    event_free(ev);
    close(sc.fd);
}

Test(dns_noserver, deadline_during_address_phase)
{
    struct script sc = {0};
    struct event *ev = script_start(&sc, 300);
    struct result r;
    long t0 = now_ms();

    mx("x.test", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert(strstr(r.errmsg, "address queries"), "%s", r.errmsg);
    cr_assert_leq(now_ms() - t0, 2300); /* the 300 ms deadline, 2 s of slack for a loaded machine */
    cr_assert_geq(sc.addr_queries, 2);
    event_free(ev);
    close(sc.fd);
}

Test(dns_noserver, garbage_answer_is_tempfail)
{
    struct script sc = {.garbage = 1};
    struct event *ev = script_start(&sc, 300);
    struct result r;

    mx("x.test", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
    cr_assert_geq(sc.mx_queries, 1);
    event_free(ev);
    close(sc.fd);
}

Test(dns_noserver, closed_port_is_tempfail)
{
    char servers[64];
    struct result r;
    int port = ts_free_port_udp_tcp();

    cr_assert_gt(port, 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
    dns = resolver_new(servers, 1000);
    mx("two.test", &r);
    cr_assert_eq(r.status, DNS_TEMPFAIL, "%d %s", r.status, r.errmsg);
}

Test(dns_noserver, bad_server_lists_refused)
{
    char err[256];
    const char *bad[] = {"not an address", "127.0.0.1:99999", "[::1",
                         "1.2.3.4:53:53",  "127.0.0.1:",      "127.0.0.1,,::1",
                         "[::1]x",         "[127.0.0.1]:53x", ",",
                         "127.0.0.1:0",    "300.1.1.1"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        struct dns *d = dns_new(base, bad[i], 1000, err, sizeof(err));
        if (d)
            dns_free(d);
        cr_assert_null(d, "accepted \"%s\"", bad[i]);
        cr_assert(strstr(err, "server"), "%s", err);
    }
    err[0] = '\0';
    cr_assert_null(dns_new(NULL, "", 1000, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}

Test(dns_noserver, resolv_conf_default_and_ipv6_list_accepted)
{
    struct dns *d;

    d = resolver_new("", 1000);
    dns_free(d);
    d = resolver_new("127.0.0.1:5353,[::1]:53,127.0.0.2,::1", 1000);
    dns_free(d);
    cr_assert_eq(dns_status_name(DNS_NOMAIL)[0], 'n');
    cr_assert_str_eq(dns_status_name(DNS_TEMPFAIL), "tempfail");
    cr_assert_str_eq(dns_status_name(99), "unknown");
}

/*
 * A reload's dns_reconfigure: a lookup in progress keeps the servers and
 * deadline it started with (its address queries still go to the old server,
 * its timeout is the old one); lookups started afterwards ask the new server
 * with the new deadline; a bad list changes nothing.
 */
Test(dns_noserver, reconfigure_new_lookups_new_servers_old_ones_finish)
{
    struct script old_sc = {0}, new_sc = {0};
    struct event *old_ev = script_start(&old_sc, 300);
    struct dns *first = dns;
    struct event *new_ev = script_start(&new_sc, 700); /* only to bind it: its resolver goes */
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    char servers[64], err[256];
    struct result r_old = {0}, r_new = {0};

    dns_free(dns);
    dns = first;
    cr_assert(getsockname(new_sc.fd, (struct sockaddr *)&sin, &len) == 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(sin.sin_port));

    cr_assert_not_null(dns_mx_lookup(dns, "x.test", result_cb, &r_old));
    run_until(&old_sc.addr_queries, 2, 1000); /* in its address phase on the old server */
    cr_assert_eq(r_old.calls, 0);

    err[0] = '\0';
    cr_assert_eq(dns_reconfigure(dns, "300.1.1.1", 700, err, sizeof(err)), -1);
    cr_assert(strstr(err, "server"), "%s", err);
    cr_assert_eq(dns_reconfigure(dns, servers, 700, err, sizeof(err)), 0, "%s", err);

    cr_assert_not_null(dns_mx_lookup(dns, "y.test", result_cb, &r_new));
    run_until(&r_old.calls, 1, 2000);
    cr_assert_eq(r_old.calls, 1);
    cr_assert_eq(r_old.status, DNS_TEMPFAIL, "%s", r_old.errmsg);
    cr_assert(strstr(r_old.errmsg, "after 300 ms (address queries)"), "%s", r_old.errmsg);
    run_until(&r_new.calls, 1, 3000);
    cr_assert_eq(r_new.calls, 1);
    cr_assert(strstr(r_new.errmsg, "after 700 ms (address queries)"), "%s", r_new.errmsg);
    /* each server saw only its own lookup's MX query */
    cr_assert_eq(old_sc.mx_queries, 1);
    cr_assert_eq(new_sc.mx_queries, 1);
    cr_assert_geq(new_sc.addr_queries, 2);
    run_until(NULL, 0, 200); /* the retired channel is freed from its deferred event */
    event_free(old_ev);
    event_free(new_ev);
    close(old_sc.fd);
    close(new_sc.fd);
}

/* a reconfigure with nothing in flight frees the old channel at once; lookups go on */
Test(dns_noserver, reconfigure_idle_and_repeatedly)
{
    struct script sc = {0};
    struct event *ev = script_start(&sc, 300);
    char err[256];
    struct result r;

    for (int i = 0; i < 5; i++)
        cr_assert_eq(dns_reconfigure(dns, "127.0.0.1:9", 300, err, sizeof(err)), 0, "%s", err);
    host("127.0.0.1", &r); /* a literal: no query, no server needed */
    cr_assert_eq(r.status, DNS_OK);
    event_free(ev);
    close(sc.fd);
}
