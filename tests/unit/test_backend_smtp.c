/*
 * test_backend_smtp.c - SMTP callouts against real servers on loopback:
 * our scripted tests/e2e/smtp_testserver (per-address answers, multi-line,
 * split, garbage, disconnects, 421, tarpits, idle hang-ups), Postfix's
 * smtp-sink (accept-all, reject-all, defer-all), a closed port, and for
 * smtp:mx and named next hops dnsmasq serving a private .test zone (the
 * approach of test_dns.c). Several test servers on one port but different
 * loopback addresses (127.0.0.2, 127.0.0.3, ...) stand for several MX hosts.
 * Each test forks its own servers on free ports and stops them by pid at
 * teardown; they also die with the test process (PR_SET_PDEATHSIG; the
 * plumbing is shared with the other server tests in test_servers.c). Every
 * test checks the verdict's kind, code and text, and the pool tests the
 * servers' connection, RCPT and RSET counts.
 */
#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/time.h>

#include <event2/event.h>

#include "address.h"
#include "backend_smtp.h"
#include "dns.h"
#include "log.h"
#include "route.h"
#include "smtp_tls.h"
#include "test_servers.h"

#define SMTP_SINK "/usr/sbin/smtp-sink"
#define DNSMASQ TS_DNSMASQ
#define MAX_SERVERS 4

struct result {
    int calls;
    struct verdict v;
    struct timeval at;
    void *close_state; /* close this backend state from inside the callback */
};

static struct event_base *base;
static char tmpdir[64];
static pid_t server_pid = -1; /* server 0 */
static int server_port;
static pid_t extra_pid[MAX_SERVERS] = {-1, -1, -1, -1}; /* servers 1.. */
static pid_t dnsmasq_pid = -1;
static struct dns *test_dns; /* given to the backend in backend_env, NULL for none */
#define MAX_ROUTES 32        /* routes one test opens */
static struct route_table *tables[MAX_ROUTES];
static int ntables;
static void *states[MAX_ROUTES];
static int nstates;

static void setup(void)
{
    char tmpl[] = "/tmp/test_backend_smtp.XXXXXX";

    base = event_base_new();
    cr_assert_not_null(base);
    cr_assert_not_null(mkdtemp(tmpl));
    snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
    log_open("test_backend_smtp", 1, LOG_MAIL);
    log_set_debug(getenv("CALLOUT_DEBUG") != NULL);
}

static void stop_server(void)
{
    ts_stop(&server_pid);
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];

    for (int i = 0; i < nstates; i++)
        if (states[i] != NULL)
            backend_smtp_ops.close(states[i]);
    nstates = 0;
    for (int i = 0; i < ntables; i++)
        route_table_free(tables[i]);
    ntables = 0;
    if (test_dns != NULL)
        dns_free(test_dns);
    test_dns = NULL;
    stop_server();
    for (int i = 0; i < MAX_SERVERS; i++)
        ts_stop(&extra_pid[i]);
    ts_stop(&dnsmasq_pid);
    event_base_free(base);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TestSuite(smtp, .init = setup, .fini = teardown, .timeout = 30);

/* path_in_tmp - a file name in this test's temp dir */
static const char *path_in_tmp(const char *name)
{
    static char buf[4][PATH_MAX];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmpdir, name);
    return buf[i];
}

/* testserver_path - the server is built next to us: tests/unit/.. /e2e/smtp_testserver */
static const char *testserver_path(void)
{
    static char path[PATH_MAX];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    cr_assert_gt(n, 0);
    self[n] = '\0';
    snprintf(path, sizeof(path), "%s/../e2e/smtp_testserver", dirname(self));
    return path;
}

/* spawn - fork/exec argv (dies with us); stdout only shown with CALLOUT_DEBUG */
static pid_t spawn(char *const argv[])
{
    pid_t pid = ts_spawn(argv, getenv("CALLOUT_DEBUG") == NULL ? "/dev/null" : NULL, NULL);

    cr_assert_neq(pid, -1);
    return pid;
}

/* server_file - "NAME" for server 0, "NAME.i" for the others */
static const char *server_file(int i, const char *name)
{
    char buf[64];

    if (i == 0)
        return path_in_tmp(name);
    snprintf(buf, sizeof(buf), "%s.%d", name, i);
    return path_in_tmp(buf);
}

/* where smtp_testserver writes the port it listens on, and what was read there */
struct port_file {
    const char *path;
    int port;
};

/* port_file_probe - ts_probe_fn: 0 once the server wrote its port to the file */
static int port_file_probe(void *arg)
{
    struct port_file *pf = arg;
    FILE *f = fopen(pf->path, "r");
    int ok;

    if (f == NULL)
        return -1;
    ok = fscanf(f, "%d", &pf->port) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

/*
 * start_server_at - run smtp_testserver number i (0 = the main one) on
 * addr:port (port 0: any) with this script; returns the port it listens on
 */
static int start_server_at(int i, const char *addr, int port, const char *script)
{
    char portarg[16];
    const char *sp = server_file(i, "script");
    const char *pp = server_file(i, "port");
    const char *st = server_file(i, "stats");
    char *argv[] = {(char *)testserver_path(),
                    "-b",
                    (char *)addr,
                    "-p",
                    portarg,
                    "-P",
                    (char *)pp,
                    "-S",
                    (char *)st,
                    "-s",
                    (char *)sp,
                    NULL};
    FILE *f = fopen(sp, "w");
    struct port_file pf = {pp, 0};
    pid_t *pid;

    cr_assert(i >= 0 && i < MAX_SERVERS);
    pid = i == 0 ? &server_pid : &extra_pid[i];
    snprintf(portarg, sizeof(portarg), "%d", port);
    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    cr_assert_eq(access(argv[0], X_OK), 0, "%s not built", argv[0]);
    *pid = spawn(argv);
    if (ts_wait(pid, port_file_probe, &pf, 5000, 10) == 0)
        return pf.port;
    cr_assert_fail("smtp_testserver %d on %s:%d did not start", i, addr, port);
    return -1;
}

/* start_server - run smtp_testserver with this script on 127.0.0.1; sets server_port */
static void start_server(const char *script)
{
    server_port = start_server_at(0, "127.0.0.1", 0, script);
}

/* server_stat_of - a value from server i's stats file ("name value" lines) */
static const char *server_stat_of(int i, const char *name)
{
    static char value[4096];
    char line[4096];
    FILE *f = fopen(server_file(i, "stats"), "r");

    value[0] = '\0';
    if (f == NULL)
        return value;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(name);
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            snprintf(value, sizeof(value), "%s", line + n + 1);
            value[strcspn(value, "\n")] = '\0';
        }
    }
    fclose(f);
    return value;
}

static const char *server_stat(const char *name)
{
    return server_stat_of(0, name);
}

static long server_count(const char *name)
{
    return atol(server_stat(name));
}

static long server_count_of(int i, const char *name)
{
    return atol(server_stat_of(i, name));
}

/* free_port - a port nobody listens on (bound, then closed) */
static int free_port(void)
{
    int port = ts_free_port();

    cr_assert_gt(port, 0, "no free loopback port");
    return port;
}

/* start_sink - Postfix's smtp-sink on a free port with extra options */
static void start_sink(const char *opt, const char *cmds)
{
    char listen[64];
    char *argv[8];
    int n = 0;

    if (access(SMTP_SINK, X_OK) != 0)
        cr_skip_test("%s not installed (apt-get install postfix)", SMTP_SINK);
    server_port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", server_port);
    argv[n++] = SMTP_SINK;
    argv[n++] = "-u";
    argv[n++] = "nobody";
    if (opt != NULL) {
        argv[n++] = (char *)opt;
        argv[n++] = (char *)cmds;
    }
    argv[n++] = listen;
    argv[n++] = "16";
    argv[n] = NULL;
    server_pid = spawn(argv);
    if (ts_wait_tcp(&server_pid, server_port, 5000) == 0)
        return;
    cr_assert_fail("smtp-sink did not start");
}

/* with_port - copy fmt to out with each "%d" replaced by the current server port */
static void with_port(const char *fmt, char *out, size_t size)
{
    size_t n = 0;

    for (const char *p = fmt; *p != '\0' && n + 8 < size; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            n += (size_t)snprintf(out + n, size - n, "%d", server_port);
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* open_route - backend state for one route line; "%d" in the line becomes the port */
static void *open_route_err(const char *fmt, char *err, size_t errlen)
{
    char line[1024];
    struct route_table *t;
    struct backend_env env = {.base = base, .recipient_delimiter = "+", .dns = test_dns};
    void *state;

    with_port(fmt, line, sizeof(line));
    t = route_table_parse(line, strlen(line), "test", err, errlen);
    cr_assert_not_null(t, "route table: %s", err);
    cr_assert_lt(ntables, MAX_ROUTES, "raise MAX_ROUTES");
    tables[ntables++] = t;
    cr_assert_eq(route_table_count(t), 1);
    err[0] = '\0';
    state = backend_smtp_ops.open(&env, route_table_get(t, 0), err, errlen);
    if (state != NULL)
        states[nstates++] = state;
    return state;
}

static void *open_route(const char *fmt)
{
    char err[256];
    void *state = open_route_err(fmt, err, sizeof(err));

    cr_assert_not_null(state, "open: %s", err);
    return state;
}

static void on_verdict(const struct verdict *v, void *arg)
{
    struct result *r = arg;

    r->calls++;
    r->v = *v;
    gettimeofday(&r->at, NULL);
    if (r->close_state != NULL) {
        backend_smtp_ops.close(r->close_state);
        for (int i = 0; i < nstates; i++)
            if (states[i] == r->close_state)
                states[i] = NULL;
    }
}

/* lookup - start a callout; never answered inside lookup */
static struct backend_req *lookup(void *state, const char *rcpt, struct result *r)
{
    struct address a;
    struct verdict v;
    struct backend_req *req = NULL;
    char err[128];
    enum backend_status st;

    memset(r, 0, sizeof(*r));
    cr_assert_eq(address_parse(rcpt, strlen(rcpt), &a, err, sizeof(err)), 0, "%s", err);
    st = backend_smtp_ops.lookup(state, &a, &v, on_verdict, r, &req);
    cr_assert_eq(st, BACKEND_PENDING);
    cr_assert_not_null(req);
    cr_assert_eq(r->calls, 0, "callback ran inside lookup");
    return req;
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    *(int *)arg = 1;
}

/* run - run the loop until all n results are in, or ms pass */
static void run(struct result *rs, int n, int ms)
{
    int expired = 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    struct event *t = evtimer_new(base, timeout_cb, &expired);

    evtimer_add(t, &tv);
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += rs[i].calls > 0;
        if ((n > 0 && done == n) || expired)
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(t);
}

/* run_for - run the loop for ms (lets QUITs finish, or proves nothing comes) */
static void run_for(int ms)
{
    run(NULL, 0, ms);
}

static long ms_since(const struct timeval *start, const struct timeval *end)
{
    return (end->tv_sec - start->tv_sec) * 1000 + (end->tv_usec - start->tv_usec) / 1000;
}

/* verify_from - one lookup to completion; the verdict must come from source */
static void verify_from(void *state, const char *rcpt, const char *source, struct result *r)
{
    lookup(state, rcpt, r);
    run(r, 1, 15000);
    cr_assert_eq(r->calls, 1, "callback ran once");
    cr_assert_str_eq(r->v.source, source);
    cr_assert_gt(r->v.when, 0);
}

/* verify - one lookup to completion at the main server */
static void verify(void *state, const char *rcpt, struct result *r)
{
    char src[64];

    snprintf(src, sizeof(src), "smtp:[127.0.0.1]:%d", server_port);
    verify_from(state, rcpt, src, r);
}

static void assert_verdict(const struct result *r, enum verdict_kind kind, int code,
                           const char *text)
{
    cr_assert_eq(r->v.kind, kind, "kind %s, want %s (%s)", verdict_kind_name(r->v.kind),
                 verdict_kind_name(kind), r->v.text);
    cr_assert_eq(r->v.code, code, "code %d, want %d (%s)", r->v.code, code, r->v.text);
    cr_assert_str_eq(r->v.text, text);
}

/* --- our test server -------------------------------------------------- */

Test(smtp, valid)
{
    struct result r;

    start_server("rcpt alice@example.test 250 2.1.5 Ok\nrcpt * 550 5.1.1 User unknown\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d reuse=no"), "alice@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    run_for(300);
    cr_assert_eq(server_count("quit"), 1, "the session ends with QUIT");
    cr_assert_eq(server_count("concurrent"), 0, "and the connection is closed");
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<>");
}

Test(smtp, valid_251)
{
    struct result r;

    start_server("rcpt * 251 2.1.5 User not local; will forward\n");
    verify(open_route("example.test smtp:127.0.0.1:%d"), "carol@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 251, "2.1.5 User not local; will forward");
}

Test(smtp, invalid_with_text)
{
    struct result r;

    start_server("rcpt alice@example.test 250 2.1.5 Ok\n"
                 "rcpt * 550 5.1.1 <bob@example.test>: Recipient address rejected: User "
                 "unknown in relay recipient table\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "bob@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550,
                   "5.1.1 <bob@example.test>: Recipient address rejected: User unknown in relay "
                   "recipient table");
}

/*
 * A next hop with delayed rejects (Postfix's smtpd_delay_reject = yes) says
 * at RCPT that it refuses US: that is a failure of the next hop (tempfail,
 * code 0, counted by the breaker), never "user unknown".
 */
Test(smtp, refusal_of_us_at_rcpt_is_not_invalid)
{
    static const char *const refusals[] = {
        "554 5.7.1 <r0@example.test>: Relay access denied",
        "550 5.7.1 Client host [127.0.0.1] blocked using zen.spamhaus.org",
        "553 5.1.8 <probe@nx.example>: Sender address rejected: Domain not found",
        "550 5.7.26 unauthenticated mail is prohibited",
    };
    char script[1024] = "";
    void *s;

    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        snprintf(script + strlen(script), sizeof(script) - strlen(script),
                 "rcpt r%zu@example.test %s\n", i, refusals[i]);
    start_server(script);
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        struct result r;
        char rcpt[64], want[VERDICT_TEXT_MAX];

        snprintf(rcpt, sizeof(rcpt), "r%zu@example.test", i);
        verify(s, rcpt, &r);
        snprintf(want, sizeof(want), "next hop refused us at RCPT TO (not the address): %s",
                 refusals[i]);
        assert_verdict(&r, VERDICT_TEMPFAIL, 0, want);
        run_for(200);
        cr_assert_eq(server_count("quit"), (long)i + 1,
                     "a refusing next hop's session is not pooled: %s", refusals[i]);
    }
}

/* the mailbox exists but cannot take mail: tempfail with the next hop's code, not invalid */
Test(smtp, mailbox_full_is_tempfail)
{
    struct result r;

    start_server("rcpt * 552 5.2.2 Mailbox full\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "bob@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 552, "5.2.2 Mailbox full");
}

/*
 * A 5xx without an enhanced status code is "invalid" only when the same
 * next hop has accepted some RCPT of ours within confirm_window: then it is
 * not refusing us as a client.
 */
Test(smtp, bare_5xx_needs_a_recent_accept)
{
    struct result r1, r2, r3;
    void *s;

    start_server("rcpt alice@example.test 250 Ok\nrcpt * 550 No such user here\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "bob@example.test", &r1);
    assert_verdict(&r1, VERDICT_TEMPFAIL, 550, "No such user here");
    verify(s, "alice@example.test", &r2);
    assert_verdict(&r2, VERDICT_VALID, 250, "Ok");
    verify(s, "bob@example.test", &r3);
    assert_verdict(&r3, VERDICT_INVALID, 550, "No such user here");
}

Test(smtp, bare_5xx_confirmation_expires)
{
    struct result r1, r2;
    void *s;

    start_server("rcpt alice@example.test 250 Ok\nrcpt * 550 No such user here\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d confirm_window=200ms");
    verify(s, "alice@example.test", &r1);
    assert_verdict(&r1, VERDICT_VALID, 250, "Ok");
    run_for(400);
    verify(s, "bob@example.test", &r2);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 550, "No such user here");
}

/* an accept by another next hop confirms nothing */
Test(smtp, bare_5xx_confirmed_per_next_hop)
{
    struct result r1, r2;
    void *a, *b;

    start_server("rcpt alice@example.test 250 Ok\nrcpt * 550 No such user here\n");
    a = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(a, "alice@example.test", &r1);
    assert_verdict(&r1, VERDICT_VALID, 250, "Ok");
    b = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(b, "bob@example.test", &r2);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 550, "No such user here");
}

Test(smtp, bare_5xx_option)
{
    struct result r1, r2;

    start_server("rcpt * 550 No such user here\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d bare_5xx=invalid"), "bob@example.test",
           &r1);
    assert_verdict(&r1, VERDICT_INVALID, 550, "No such user here");
    verify(open_route("example.test smtp:[127.0.0.1]:%d bare_5xx=tempfail"), "bob@example.test",
           &r2);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 550, "No such user here");
}

/* lines that disagree about the status are no clear answer, even from a next hop that accepts */
Test(smtp, mixed_status_lines_are_never_invalid)
{
    struct result r1, r2;
    void *s;

    start_server("rcpt alice@example.test 250 2.1.5 Ok\n"
                 "rcpt * 550 5.1.1 User unknown\\n5.7.1 and you are blocked\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d bare_5xx=invalid");
    verify(s, "alice@example.test", &r1);
    assert_verdict(&r1, VERDICT_VALID, 250, "2.1.5 Ok");
    verify(s, "bob@example.test", &r2);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 550, "5.1.1 User unknown 5.7.1 and you are blocked");
}

Test(smtp, invalid_status_option)
{
    struct result r1, r2;

    start_server("rcpt x@example.test 550 5.1.1 no such user\nrcpt * 550 5.1.0 address rejected\n");
    void *s = open_route("example.test smtp:[127.0.0.1]:%d invalid_status=5.1.1");
    verify(s, "x@example.test", &r1);
    assert_verdict(&r1, VERDICT_INVALID, 550, "5.1.1 no such user");
    verify(s, "y@example.test", &r2);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 550, "5.1.0 address rejected");
}

Test(smtp, local_part_passed_unchanged)
{
    struct result r;

    start_server("rcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "<Bob.Smith+Tag@Example.TEST>", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_str_eq(server_stat("last_rcpt"), "Bob.Smith+Tag@example.test");
}

Test(smtp, sender_and_helo_options)
{
    struct result r;

    start_server("rcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d sender=postmaster@front.test "
                      "helo_name=front.test"),
           "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<postmaster@front.test>");
}

Test(smtp, rcpt_4xx_is_tempfail_with_text)
{
    struct result r;

    start_server("rcpt * 450 4.2.1 Mailbox busy, try later\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 450, "4.2.1 Mailbox busy, try later");
}

Test(smtp, invalid_codes_narrowed)
{
    struct result r, r2;
    void *s;

    start_server("rcpt x@example.test 550 5.1.1 no such user\nrcpt * 553 5.1.3 bad syntax\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d invalid_codes=550,551");
    verify(s, "y@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 553, "5.1.3 bad syntax");
    verify(s, "x@example.test", &r2);
    assert_verdict(&r2, VERDICT_INVALID, 550, "5.1.1 no such user");
}

Test(smtp, multi_line_replies)
{
    struct result r;

    start_server("greeting 220 mx.example.test ESMTP\\nno UCE\n"
                 "mail 250 2.1.0 Sender\\nok\n"
                 "rcpt * 550 5.1.1 The email account that you tried to reach does not "
                 "exist.\\n5.1.1 Please try double-checking the recipient's email address.\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "nobody@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550,
                   "5.1.1 The email account that you tried to reach does not exist. Please try "
                   "double-checking the recipient's email address.");
}

Test(smtp, replies_split_into_single_bytes)
{
    struct result r;

    start_server("split 2\nrcpt * 550 5.1.1 split\\nacross lines\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "z@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 split across lines");
}

Test(smtp, garbage_at_rcpt)
{
    struct result r;

    start_server("raw rcpt this is not smtp\\r\\n\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "garbage reply from next hop at RCPT TO: reply line does not start with a "
                   "code 200-599");
}

Test(smtp, garbage_greeting_mismatched_codes)
{
    struct result r;

    start_server("raw greeting 220-hello\\r\\n250 there\\r\\n\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "garbage reply from next hop at greeting: reply code changes from 220 to 250 "
                   "within a reply");
    cr_assert_eq(server_count("rcpt"), 0);
}

Test(smtp, oversized_reply)
{
    struct result r;
    char script[8192];
    int n;

    n = snprintf(script, sizeof(script), "raw ehlo 250 ");
    memset(script + n, 'x', 3000);
    snprintf(script + n + 3000, sizeof(script) - (size_t)n - 3000, "\\r\\n\n");
    start_server(script);
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "garbage reply from next hop at EHLO: reply line longer than 2048 bytes");
}

Test(smtp, disconnect_at_rcpt)
{
    struct result r;

    start_server("disconnect rcpt\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closed the connection before the RCPT TO reply");
}

Test(smtp, disconnect_at_greeting)
{
    struct result r;

    start_server("disconnect greeting\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closed the connection before the greeting reply");
}

Test(smtp, reply_421_at_mail)
{
    struct result r;

    start_server("mail 421 4.7.0 mx.example.test Error: too many connections\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closing the session at MAIL FROM: 421 4.7.0 mx.example.test Error: "
                   "too many connections");
    cr_assert_eq(server_count("rcpt"), 0);
}

Test(smtp, reply_421_at_rcpt)
{
    struct result r;

    start_server("rcpt * 421 4.3.2 Service shutting down\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closing the session at RCPT TO: 421 4.3.2 Service shutting down");
}

Test(smtp, greeting_554_is_tempfail)
{
    struct result r;

    start_server("greeting 554 5.7.1 No SMTP service here\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop refused the session: 554 5.7.1 No SMTP service here");
    run_for(200);
    cr_assert_eq(server_count("ehlo"), 0);
    cr_assert_eq(server_count("quit"), 1, "we say QUIT politely");
}

Test(smtp, ehlo_502_falls_back_to_helo)
{
    struct result r;

    start_server("ehlo 502 5.5.2 Error: command not recognized\nrcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("ehlo"), 1);
    cr_assert_eq(server_count("helo"), 1);
}

Test(smtp, ehlo_and_helo_refused)
{
    struct result r;

    start_server("ehlo 500 no\nhelo 550 5.7.1 go away\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0, "next hop refused HELO: 550 5.7.1 go away");
}

Test(smtp, mail_5xx_is_tempfail_not_invalid)
{
    struct result r;

    start_server("mail 553 5.1.8 Sender address rejected: Domain not found\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop refused MAIL FROM:<>: 553 5.1.8 Sender address rejected: Domain not "
                   "found");
}

Test(smtp, tarpit_hits_rcpt_deadline)
{
    struct result r;
    struct timeval start;
    long ms;

    start_server("delay rcpt 5000\n");
    gettimeofday(&start, NULL);
    verify(open_route("example.test smtp:[127.0.0.1]:%d rcpt_timeout=500ms"), "a@example.test", &r);
    ms = ms_since(&start, &r.at);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "timeout after 500ms waiting for the RCPT TO reply from next hop");
    /* the deadline plus seconds of slack for a loaded machine, still before the 5 s reply */
    cr_assert(ms >= 450 && ms < 4000, "answered after %ld ms", ms);
}

Test(smtp, tarpit_hits_greeting_deadline)
{
    struct result r;
    struct timeval start;
    long ms;

    start_server("delay greeting 5000\n");
    gettimeofday(&start, NULL);
    verify(open_route("example.test smtp:[127.0.0.1]:%d greeting_timeout=300ms"), "a@example.test",
           &r);
    ms = ms_since(&start, &r.at);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "timeout after 300ms waiting for the greeting reply from next hop");
    /* the deadline plus seconds of slack for a loaded machine, still before the 5 s greeting */
    cr_assert(ms >= 250 && ms < 4000, "answered after %ld ms", ms);
}

Test(smtp, slow_but_within_deadline)
{
    struct result r;

    start_server("delay 100\nrcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d command_timeout=2s"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
}

Test(smtp, cancel_running_callout)
{
    struct result r;
    struct backend_req *req;

    start_server("delay rcpt 400\n");
    req = lookup(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    run_for(150);
    cr_assert_eq(r.calls, 0);
    backend_smtp_ops.cancel(req);
    run_for(700);
    cr_assert_eq(r.calls, 0, "no callback after cancel");
    cr_assert_eq(server_count("concurrent"), 0, "connection dropped");
    cr_assert_eq(server_count("connections"), 1);
}

Test(smtp, cancel_right_after_lookup)
{
    struct result r, r2;
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    backend_smtp_ops.cancel(lookup(s, "a@example.test", &r));
    verify(s, "b@example.test", &r2);
    assert_verdict(&r2, VERDICT_VALID, 250, "2.1.5 Ok");
    run_for(200);
    cr_assert_eq(r.calls, 0);
}

Test(smtp, close_with_callouts_pending)
{
    struct result r1, r2;
    void *s;

    start_server("delay rcpt 300\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=1");
    lookup(s, "a@example.test", &r1);
    lookup(s, "b@example.test", &r2); /* queued */
    run_for(100);
    backend_smtp_ops.close(s);
    states[0] = NULL;
    run_for(500);
    cr_assert_eq(r1.calls + r2.calls, 0, "no callbacks after close");
}

Test(smtp, close_from_inside_callback)
{
    struct result r1, r2;
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    lookup(s, "a@example.test", &r1);
    r1.close_state = s;
    lookup(s, "b@example.test", &r2);
    run(&r1, 1, 5000);
    cr_assert_eq(r1.calls, 1);
    assert_verdict(&r1, VERDICT_VALID, 250, "2.1.5 Ok");
    run_for(300);
    cr_assert_eq(r2.calls, 0, "the other lookup died with the route");
}

Test(smtp, concurrency_limit_queues_fifo)
{
    struct result rs[6];
    char addr[64];
    void *s;

    start_server("delay rcpt 150\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=2 reuse=no");
    for (int i = 0; i < 6; i++) {
        snprintf(addr, sizeof(addr), "u%d@example.test", i);
        lookup(s, addr, &rs[i]);
    }
    run(rs, 6, 10000);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(rs[i].calls, 1);
        assert_verdict(&rs[i], VERDICT_VALID, 250, "2.1.5 Ok");
    }
    /* FIFO: the last two started last, so they finish after the first two */
    cr_assert(ms_since(&rs[1].at, &rs[5].at) > 100);
    run_for(200);
    cr_assert_eq(server_count("connections"), 6);
    cr_assert_eq(server_count("concurrent_max"), 2, "never more than max_connections");
}

Test(smtp, queue_timeout)
{
    struct result r1, r2;
    void *s;

    start_server("delay rcpt 1000\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=1 queue_timeout=200ms");
    lookup(s, "a@example.test", &r1);
    lookup(s, "b@example.test", &r2);
    run(&r2, 1, 5000);
    cr_assert_eq(r1.calls, 0);
    assert_verdict(&r2, VERDICT_TEMPFAIL, 0,
                   "no free connection to next hop within 200ms (max_connections=1)");
    run(&r1, 1, 5000);
    assert_verdict(&r1, VERDICT_VALID, 250, "2.1.5 Ok");
}

/* --- connection failures ---------------------------------------------- */

Test(smtp, connection_refused_is_quick_tempfail)
{
    struct result r;
    struct timeval start;

    server_port = free_port();
    gettimeofday(&start, NULL);
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0, "cannot connect to next hop: Connection refused");
    /* refused at once: well below the 5 s connect_timeout, with slack for a loaded machine */
    cr_assert_lt(ms_since(&start, &r.at), 3000);
}

/* --- Postfix smtp-sink ------------------------------------------------ */

Test(smtp, smtp_sink_accepts_all)
{
    struct result r;

    start_sink(NULL, NULL);
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "anyone@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
}

Test(smtp, smtp_sink_rejects_all)
{
    struct result r;

    /* 5.3.0 is the mail system failing, not "no such user": a failure of the next hop */
    start_sink("-f", "RCPT");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "anyone@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop refused us at RCPT TO (not the address): 500 5.3.0 Error: command "
                   "failed");
}

Test(smtp, smtp_sink_defers_all)
{
    struct result r;

    start_sink("-r", "RCPT");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "anyone@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 450, "4.3.0 Error: command failed");
}

Test(smtp, smtp_sink_421_at_rcpt)
{
    struct result r;

    start_sink("-Q", "RCPT");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "anyone@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL);
    cr_assert_eq(r.v.code, 0);
    cr_assert(strncmp(r.v.text, "next hop closing the session at RCPT TO: 421", 44) == 0, "%s",
              r.v.text);
}

/* --- route arguments and options -------------------------------------- */

Test(smtp, open_parses_next_hops)
{
    /* opened only: never connect anywhere but loopback */
    static const char *const ok[] = {
        "[192.0.2.1]:2525",
        "192.0.2.1:26",
        "[192.0.2.1]",
        "192.0.2.1",
        "[2001:db8::1]:2525",
        "[IPv6:2001:db8::1]",
        "mx",
        "mx port=2525",
        "[mail.example.test]:2525",
        "mail.example.test:26",
        "mail.example.test",
        "[192.0.2.1] reuse=no max_rcpts_per_session=1 idle_timeout=500ms",
        "[192.0.2.1] max_rejects_per_session=1 pipelining=no",
    };
    char err[256];

    /* a resolver that is never asked: opening a route sends no query */
    test_dns = dns_new(base, "127.0.0.1:9", 1000, err, sizeof(err));
    cr_assert_not_null(test_dns, "%s", err);
    /* the source shows in the verdict of a refused loopback connection */
    static const struct {
        const char *arg;
        const char *source;
    } live[] = {
        {"[127.0.0.1]:%d", "smtp:[127.0.0.1]:%d"},
        {"127.0.0.1:%d", "smtp:[127.0.0.1]:%d"},
        {"[::1]:%d", "smtp:[::1]:%d"},
        {"[IPv6:0:0::1]:%d", "smtp:[::1]:%d"},
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char line[128];

        snprintf(line, sizeof(line), "example.test smtp:%s", ok[i]);
        cr_assert_not_null(open_route(line), "%s", ok[i]);
    }
    server_port = free_port();
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        char line[128], src[64];
        struct result r;

        snprintf(line, sizeof(line), "example.test smtp:%s", live[i].arg);
        with_port(live[i].source, src, sizeof(src));
        lookup(open_route(line), "x@example.test", &r);
        run(&r, 1, 5000);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL);
        cr_assert_str_eq(r.v.source, src);
    }
}

Test(smtp, open_rejects_bad_arguments)
{
    static const char *const bad[] = {
        "example.test smtp:mail..example.test:25",
        "example.test smtp:[mail/example.test]:25",
        "example.test smtp:mail.example.test:x",
        "example.test smtp:[192.0.2.1]:25 port=26",
        "example.test smtp:mx port=0",
        "example.test smtp:mx port=65536",
        "example.test smtp:[127.0.0.1]:25 reuse=maybe",
        "example.test smtp:[127.0.0.1]:25 max_rcpts_per_session=0",
        "example.test smtp:[127.0.0.1]:25 max_rcpts_per_session=lots",
        "example.test smtp:[127.0.0.1]:25 max_rejects_per_session=0",
        "example.test smtp:[127.0.0.1]:25 max_rejects_per_session=10001",
        "example.test smtp:[127.0.0.1]:25 pipelining=sometimes",
        "example.test smtp:[127.0.0.1]:25 idle_timeout=0",
        "example.test smtp:[127.0.0.1]:25 rset_timeout=forever",
        "example.test smtp:[127.0.0.1]:25 max_addresses=0",
        "example.test smtp:[192.0.2.1",
        "example.test smtp:[192.0.2.1]x",
        "example.test smtp:192.0.2.1:0",
        "example.test smtp:192.0.2.1:65536",
        "example.test smtp:192.0.2.1:25x",
        "example.test smtp:2001:db8::1:25",
        "example.test smtp:[not_an@address]:25",
        "example.test smtp:-bad-.example.test:25",
        "example.test smtp:[]:25",
        "example.test smtp:[127.0.0.1]:25 connect_timeout=abc",
        "example.test smtp:[127.0.0.1]:25 rcpt_timeout=0",
        "example.test smtp:[127.0.0.1]:25 rcpt_timeout=10h",
        "example.test smtp:[127.0.0.1]:25 command_timeout=-1",
        "example.test smtp:[127.0.0.1]:25 max_connections=0",
        "example.test smtp:[127.0.0.1]:25 max_connections=many",
        "example.test smtp:[127.0.0.1]:25 invalid_codes=450",
        "example.test smtp:[127.0.0.1]:25 invalid_codes=550,",
        "example.test smtp:[127.0.0.1]:25 invalid_codes=5",
        "example.test smtp:[127.0.0.1]:25 sender=no-at-sign",
        "example.test smtp:[127.0.0.1]:25 helo_name=bad/name",
        "example.test smtp:[127.0.0.1]:25 invalid_status=4.1.1",
        "example.test smtp:[127.0.0.1]:25 invalid_status=5.1",
        "example.test smtp:[127.0.0.1]:25 invalid_status=5.1.1,",
        "example.test smtp:[127.0.0.1]:25 bare_5xx=maybe",
        "example.test smtp:[127.0.0.1]:25 confirm_window=2d",
        "example.test smtp:[127.0.0.1]:25 confirm_window=0",
    };
    char derr[256];

    test_dns = dns_new(base, "127.0.0.1:9", 1000, derr, sizeof(derr));
    cr_assert_not_null(test_dns, "%s", derr);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256];
        char err2[256];
        struct route_table *t =
            route_table_parse(bad[i], strlen(bad[i]), "test", err2, sizeof(err2));
        struct backend_env env = {.base = base, .recipient_delimiter = "+", .dns = test_dns};

        if (t == NULL)
            continue; /* the route parser already refuses it: fine too */
        err[0] = '\0';
        cr_assert_null(backend_smtp_ops.open(&env, route_table_get(t, 0), err, sizeof(err)), "%s",
                       bad[i]);
        cr_assert(err[0] != '\0', "an error message for %s", bad[i]);
        route_table_free(t);
    }
}

/* --- connection reuse ------------------------------------------------- */

Test(smtp, reuse_ten_lookups_one_session)
{
    struct result r;
    char addr[64];
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    /* the default cap is 8 RCPTs a session: allow 10 here */
    s = open_route("example.test smtp:[127.0.0.1]:%d max_rcpts_per_session=10");
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "u%d@example.test", i);
        verify(s, addr, &r);
        assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    }
    cr_assert_eq(server_count("connections"), 1);
    cr_assert_eq(server_count("rcpt"), 10);
    cr_assert_eq(server_count("mail"), 1, "one mail transaction carries every RCPT");
    cr_assert_eq(server_count("rset"), 0, "no RSET while the transaction stays open");
    cr_assert_eq(server_count("ehlo"), 1);
    cr_assert_eq(server_count("quit"), 0);
    cr_assert_eq(server_count("concurrent"), 1, "the session stays open, idle");
    cr_assert_str_eq(server_stat("last_rcpt"), "u9@example.test");
}

Test(smtp, default_reject_budget_is_eight_per_session)
{
    struct result r;
    char addr[64];
    void *s;

    start_server("rcpt * 550 5.1.1 User unknown\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "x%d@example.test", i);
        verify(s, addr, &r);
        assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    }
    /* below Postfix's smtpd_soft_error_limit (10): 8 rejections, then a new session */
    run_for(200);
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rcpt"), 10);
    cr_assert_eq(server_count("quit"), 1, "the session with 8 rejections QUITs");
}

Test(smtp, default_cap_is_a_hundred_rcpts_per_session)
{
    struct result r;
    char addr[64];
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    for (int i = 0; i < 101; i++) {
        snprintf(addr, sizeof(addr), "u%d@example.test", i);
        verify(s, addr, &r);
        assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    }
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("mail"), 2);
}

Test(smtp, reject_budget_counts_rejections_not_rcpts)
{
    struct result r;
    char addr[64];
    void *s;

    /* 3 rejections allowed: valid RCPTs between them do not use up the budget */
    start_server("rcpt x3@example.test 550 5.1.1 User unknown\n"
                 "rcpt x7@example.test 550 5.1.1 User unknown\n"
                 "rcpt x11@example.test 550 5.1.1 User unknown\n"
                 "rcpt x12@example.test 550 5.1.1 User unknown\n"
                 "rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_rejects_per_session=3");
    for (int i = 0; i < 12; i++) {
        snprintf(addr, sizeof(addr), "%c%d@example.test", i % 4 == 3 ? 'x' : 'u', i);
        verify(s, addr, &r);
    }
    run_for(200);
    cr_assert_eq(server_count("connections"), 1, "12 RCPTs, 3 of them rejected: one session");
    verify(s, "x12@example.test", &r);
    run_for(200);
    cr_assert_eq(server_count("connections"), 2, "the third rejection retired the session");
    cr_assert_eq(server_count("quit"), 1);
}

/*
 * A session that becomes free serves the lookup that has waited longest, even
 * one whose new connection is still being set up: a RCPT on it is one round
 * trip, the set-up three or more (a loaded or forking next hop is slowest
 * there). Here the greeting takes 3 s: u2 and u3 are answered on the first
 * session before the second one has even been greeted, and that one joins the
 * pool without a lookup (no MAIL) once it is ready.
 */
Test(smtp, free_session_serves_lookup_waiting_on_new_connection)
{
    struct result r[5];
    void *s;

    start_server("delay greeting 3000\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=2");
    verify(s, "u0@example.test", &r[0]); /* one session, now in the pool */
    lookup(s, "u1@example.test", &r[1]); /* takes it: RCPT only */
    lookup(s, "u2@example.test", &r[2]); /* nothing idle: a new connection */
    lookup(s, "u3@example.test", &r[3]); /* no slot left: queued behind u2 */
    run(&r[1], 3, 15000);
    for (int i = 1; i <= 3; i++) {
        cr_assert_eq(r[i].calls, 1, "u%d answered", i);
        assert_verdict(&r[i], VERDICT_VALID, 250, "2.1.5 Ok");
    }
    cr_assert_eq(server_count("ehlo"), 1,
                 "u2 and u3 were answered on the first session, before the second was greeted");
    cr_assert_eq(server_count("connections"), 2, "the second connection was opened all the same");
    run_for(4000); /* its greeting, EHLO: then into the pool */
    cr_assert_eq(server_count("ehlo"), 2);
    cr_assert_eq(server_count("mail"), 1, "no MAIL without a lookup");
    cr_assert_eq(server_count("concurrent"), 2, "both sessions idle in the pool");
    /* both serve at once: one RCPT in the open transaction, one new transaction */
    lookup(s, "u4@example.test", &r[3]);
    lookup(s, "u5@example.test", &r[4]);
    run(&r[3], 2, 15000);
    assert_verdict(&r[3], VERDICT_VALID, 250, "2.1.5 Ok");
    assert_verdict(&r[4], VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("mail"), 2);
    cr_assert_eq(server_count("rcpt"), 6);
}

Test(smtp, reuse_capped_by_max_rcpts_per_session)
{
    struct result r;
    char addr[64];
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_rcpts_per_session=3");
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "u%d@example.test", i);
        verify(s, addr, &r);
        assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    }
    run_for(200);
    cr_assert_eq(server_count("connections"), 4, "3 + 3 + 3 + 1 RCPTs");
    cr_assert_eq(server_count("rcpt"), 10);
    cr_assert_eq(server_count("mail"), 4);
    cr_assert_eq(server_count("rset"), 0);
    cr_assert_eq(server_count("quit"), 3, "a full session QUITs");
    cr_assert_eq(server_count("concurrent"), 1);
}

Test(smtp, reuse_no)
{
    struct result r;
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d reuse=no");
    verify(s, "a@example.test", &r);
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    run_for(200);
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0);
    cr_assert_eq(server_count("quit"), 2);
}

Test(smtp, idle_timeout_quits_and_next_lookup_reconnects)
{
    struct result r;
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d idle_timeout=200ms");
    verify(s, "a@example.test", &r);
    run_for(100);
    cr_assert_eq(server_count("concurrent"), 1, "idle in the pool");
    cr_assert_eq(server_count("quit"), 0);
    run_for(500);
    cr_assert_eq(server_count("quit"), 1, "QUIT after idle_timeout");
    cr_assert_eq(server_count("concurrent"), 0);
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, next_hop_closes_idle_session)
{
    struct result r;
    void *s;

    start_server("hangup 150\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    run_for(500);
    cr_assert_eq(server_count("hangups"), 1);
    cr_assert_eq(server_count("concurrent"), 0);
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0, "the closed session left the pool");
}

Test(smtp, next_hop_closed_idle_session_unnoticed)
{
    struct result r;
    void *s;

    start_server("hangup 100\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    usleep(400000); /* the loop does not run: the hang-up is not seen before the next lookup */
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2, "the dead pooled session was replaced");
    cr_assert_eq(server_count("rcpt"), 2);
}

/*
 * A pooled session needs RSET only for a new transaction: here the next
 * lookup's UTF-8 local part needs MAIL FROM with SMTPUTF8, and the open
 * transaction was started without it.
 */
#define UTF8_EHLO "ehlo 250 smtp_testserver\\nPIPELINING\\nSMTPUTF8\n"
#define UTF8_B "b\xc3\xb6@example.test"

Test(smtp, rset_421_starts_fresh_connection)
{
    struct result r;
    void *s;

    start_server(UTF8_EHLO "rset 421 4.3.2 Service shutting down\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    verify(s, UTF8_B, &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 1);
    cr_assert_eq(server_count("rcpt"), 2, "the next hop hung up after RSET: no RCPT read");
    cr_assert_str_eq(server_stat("last_rcpt"), UTF8_B);
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<> SMTPUTF8");
}

Test(smtp, rset_refused_starts_fresh_connection_once)
{
    struct result r;
    void *s;

    /* pipelining=no: RSET alone, and its refusal is answered by QUIT */
    start_server(UTF8_EHLO "rset 502 5.5.1 no RSET here\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d pipelining=no");
    verify(s, "a@example.test", &r);
    verify(s, UTF8_B, &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    run_for(200);
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 1);
    cr_assert_eq(server_count("rcpt"), 2);
    cr_assert_eq(server_count("pipelined"), 0, "pipelining=no: one command at a time");
    cr_assert_eq(server_count("quit"), 1, "a session that refused RSET is QUIT politely");
}

Test(smtp, pipelined_rset_refused_reads_no_verdict_from_later_replies)
{
    struct result r;
    void *s;

    /*
     * RSET, MAIL, RCPT in one write: the next hop refuses RSET but answers
     * MAIL and RCPT (250): those replies must not decide anything
     */
    start_server(UTF8_EHLO "rset 502 5.5.1 no RSET here\n"
                           "rcpt a@example.test 250 2.1.5 Ok\nrcpt * 550 5.1.1 User unknown\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    verify(s, UTF8_B, &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    run_for(200);
    cr_assert_eq(server_count("connections"), 2, "the fresh connection answered");
    cr_assert_eq(server_count("rset"), 1);
    cr_assert_eq(server_count("rcpt"), 3, "the pipelined RCPT was sent, and its reply ignored");
    cr_assert_geq(server_count("pipelined"), 2, "RSET and MAIL arrived with what follows");
    cr_assert_eq(server_count("concurrent"), 1, "only the fresh session stays, in the pool");
}

Test(smtp, rset_failure_waits_for_fresh_slot)
{
    struct result r, rs[2];
    void *s;

    /* one slot: b's pooled session fails at RSET, c takes the freed slot, b gets it next */
    start_server(UTF8_EHLO "rset 421 4.3.2 Service shutting down\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=1");
    verify(s, "a@example.test", &r);
    lookup(s, UTF8_B, &rs[0]);
    lookup(s, "c@example.test", &rs[1]);
    run(rs, 2, 5000);
    assert_verdict(&rs[0], VERDICT_VALID, 250, "2.1.5 Ok");
    assert_verdict(&rs[1], VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("rset"), 1);
    cr_assert_eq(server_count("rcpt"), 3);
    cr_assert_eq(server_count("connections"), 3,
                 "b never reuses a pooled session after RSET failed");
}

Test(smtp, pooled_session_sends_only_rcpt)
{
    struct result r;
    void *s;

    start_server("rcpt b@example.test 550 5.1.1 User unknown\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    verify(s, "c@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
    cr_assert_eq(server_count("mail"), 1);
    cr_assert_eq(server_count("rset"), 0);
    cr_assert_eq(server_count("rcpt"), 3);
    cr_assert_eq(server_count("pipelined"), 1, "MAIL and RCPT in one write, then RCPT alone");
}

Test(smtp, no_pipelining_when_not_offered)
{
    struct result r;
    void *s;

    start_server("ehlo 250 smtp_testserver\\n8BITMIME\n"
                 "rcpt b@example.test 550 5.1.1 User unknown\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    cr_assert_eq(server_count("pipelined"), 0, "every command waited for its reply");
    cr_assert_eq(server_count("mail"), 1);
    cr_assert_eq(server_count("rcpt"), 2);
}

Test(smtp, too_many_recipients_gets_a_transaction_of_its_own)
{
    struct result r;
    void *s;

    /* 452 past 2 RCPTs a transaction: the third lookup asks again after RSET, MAIL */
    start_server("max_rcpts 2\nrcpt b@example.test 550 5.1.1 User unknown\n"
                 "rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    verify(s, "c@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    verify(s, "d@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
    cr_assert_eq(server_count("mail"), 2);
    cr_assert_eq(server_count("rset"), 1);
    cr_assert_eq(server_count("rcpt"), 5, "a, b, c (452), c again, d");
}

Test(smtp, too_many_recipients_twice_is_tempfail)
{
    struct result r;
    void *s;

    start_server("rcpt c@example.test 452 4.5.3 Error: too many recipients\n"
                 "rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    verify(s, "c@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 452, "4.5.3 Error: too many recipients");
    cr_assert_eq(server_count("rset"), 1, "asked once more, in a transaction of its own");
    verify(s, "d@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
    cr_assert_eq(server_count("rcpt"), 4);
}

Test(smtp, pipelined_garbage_at_mail_is_tempfail)
{
    struct result r;
    void *s;

    /* MAIL and RCPT in one write; the MAIL reply is garbage: no verdict from what follows */
    start_server("raw mail this is not smtp\\r\\n\nrcpt * 550 5.1.1 User unknown\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "%s", r.v.text);
    cr_assert_eq(r.v.code, 0);
    cr_assert(strstr(r.v.text, "garbage reply from next hop at MAIL FROM") != NULL, "%s", r.v.text);
    run_for(200);
    cr_assert_eq(server_count("concurrent"), 0, "out of sync: dropped");
}

Test(smtp, pipelined_mail_refused_ignores_rcpt_reply)
{
    struct result r;
    void *s;

    /* MAIL refused, the pipelined RCPT still answered 250: never valid */
    start_server("mail 451 4.3.0 try again later\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop refused MAIL FROM:<>: 451 4.3.0 try again later");
    run_for(200);
    cr_assert_eq(server_count("rcpt"), 1);
    cr_assert_eq(server_count("concurrent"), 0);
}

Test(smtp, pipelined_close_at_mail_is_tempfail)
{
    struct result r;
    void *s;

    start_server("disconnect mail\nrcpt * 550 5.1.1 User unknown\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closed the connection before the MAIL FROM reply");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closed the connection before the MAIL FROM reply");
    cr_assert_eq(server_count("connections"), 2);
}

Test(smtp, pooled_rcpt_421_starts_fresh_connection)
{
    struct result r;
    void *s;

    /* the RCPT in the open transaction is the first command after the pool */
    start_server("rcpt b@example.test 421 4.3.2 Service shutting down\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closing the session at RCPT TO: 421 4.3.2 Service shutting down");
    cr_assert_eq(server_count("connections"), 2, "once more on a new connection, not more");
    cr_assert_eq(server_count("rcpt"), 3);
}

Test(smtp, queued_lookup_gets_idle_session)
{
    struct result rs[3];
    void *s;

    start_server("delay rcpt 100\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=1");
    lookup(s, "a@example.test", &rs[0]);
    lookup(s, "b@example.test", &rs[1]);
    lookup(s, "c@example.test", &rs[2]);
    run(rs, 3, 5000);
    for (int i = 0; i < 3; i++)
        assert_verdict(&rs[i], VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
    cr_assert_eq(server_count("concurrent_max"), 1);
    cr_assert_eq(server_count("mail"), 1);
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, rcpt_4xx_keeps_session)
{
    struct result r;
    void *s;

    start_server("rcpt a@example.test 450 4.2.1 busy\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 450, "4.2.1 busy");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
}

Test(smtp, no_reuse_after_421)
{
    struct result r;
    void *s;

    start_server("rcpt a@example.test 421 4.3.2 bye\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closing the session at RCPT TO: 421 4.3.2 bye");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, no_reuse_after_timeout)
{
    struct result r;
    void *s;

    start_server("delay rcpt 600\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d rcpt_timeout=200ms");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "timeout after 200ms waiting for the RCPT TO reply from next hop");
    verify(s, "b@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "timeout after 200ms waiting for the RCPT TO reply from next hop");
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, no_reuse_after_garbage)
{
    struct result r;
    void *s;

    start_server("raw rcpt 250 ok\\r\\nthis is not smtp\\r\\n\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "ok");
    run_for(200);
    cr_assert_eq(server_count("concurrent"), 0, "garbage while idle: closed, not reused");
    verify(s, "b@example.test", &r);
    cr_assert_eq(server_count("connections"), 2);
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, no_reuse_after_replies_ahead)
{
    struct result rs[2];
    void *s;

    /*
     * a next hop that answers the next lookup's RSET, MAIL and RCPT in
     * advance, while that lookup waits for the one slot: had the session been
     * handed over, b would read the forged 550
     */
    start_server("raw rcpt 250 2.1.5 Ok\\r\\n250 reset\\r\\n250 ok\\r\\n550 5.1.1 "
                 "forged\\r\\n\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=1");
    lookup(s, "a@example.test", &rs[0]);
    lookup(s, "b@example.test", &rs[1]);
    run(rs, 2, 5000);
    assert_verdict(&rs[0], VERDICT_VALID, 250, "2.1.5 Ok");
    assert_verdict(&rs[1], VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2, "the session with extra replies is not reused");
    cr_assert_eq(server_count("rset"), 0);
}

Test(smtp, cancel_on_reused_session_drops_it)
{
    struct result r, r2;
    struct backend_req *req;
    void *s;

    start_server("delay rcpt 300\nrcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    req = lookup(s, "b@example.test", &r2);
    run_for(150);
    backend_smtp_ops.cancel(req);
    run_for(500);
    cr_assert_eq(r2.calls, 0, "no callback after cancel");
    cr_assert_eq(server_count("concurrent"), 0, "mid-transaction: dropped, not pooled");
    verify(s, "c@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
}

Test(smtp, close_quits_idle_sessions)
{
    struct result r;
    void *s;

    start_server("rcpt * 250 2.1.5 Ok\n");
    s = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(s, "a@example.test", &r);
    cr_assert_eq(server_count("concurrent"), 1);
    backend_smtp_ops.close(s);
    states[0] = NULL;
    run_for(300);
    cr_assert_eq(server_count("quit"), 1, "a polite QUIT");
    cr_assert_eq(server_count("concurrent"), 0);
}

/* --- smtp:mx and named next hops, against dnsmasq --------------------- */

static int dns_port;

/*
 * dnsmasq_start - dnsmasq serving the .test zone below on a free loopback
 * port, never forwarding (--no-resolv); 0 when it answers.
 *   dept.test   MX 10 mx1.dept.test (127.0.0.2), MX 20 mx2.dept.test (127.0.0.3)
 *   other.test  MX 10 mx1.dept.test: shares dept.test's first MX host
 *   amx.test    no MX, A 127.0.0.4: the implicit MX
 *   null.test   null MX (RFC 7505)
 *   hop.test    A 127.0.0.3: a static next hop by name
 *   anything else under .test: NXDOMAIN
 */
static int dnsmasq_start(int *port)
{
    static const char *const zone[] = {
        /* dept.test, and other.test sharing its first MX host */
        "--mx-host=dept.test,mx1.dept.test,10",
        "--mx-host=dept.test,mx2.dept.test,20",
        "--host-record=mx1.dept.test,127.0.0.2",
        "--host-record=mx2.dept.test,127.0.0.3",
        "--mx-host=other.test,mx1.dept.test,10",
        /* the implicit MX, the null MX, a static next hop by name */
        "--host-record=amx.test,127.0.0.4",
        "--dns-rr=null.test,15,000000",
        "--host-record=hop.test,127.0.0.3",
        NULL,
    };

    return ts_dnsmasq_start(tmpdir, zone, &dnsmasq_pid, port);
}

/* setup_dns - the common setup, dnsmasq, a resolver for it, and a port for the MX hosts */
static void setup_dns(void)
{
    char servers[64], err[256];
    int started = -1;

    setup();
    cr_assert(access(DNSMASQ, X_OK) == 0, "%s missing: apt-get install -y dnsmasq-base", DNSMASQ);
    started = dnsmasq_start(&dns_port); /* tries three free ports */
    cr_assert_gt(dns_port, 0);
    cr_assert_eq(started, 0, "dnsmasq did not start (log in %s)", tmpdir);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns_port);
    test_dns = dns_new(base, servers, 2000, err, sizeof(err));
    cr_assert_not_null(test_dns, "%s", err);
    server_port = free_port(); /* every MX host listens here, each on its own address */
}

TestSuite(smtp_dns, .init = setup_dns, .fini = teardown, .timeout = 30);

/* mx_server - smtp_testserver i on addr:server_port */
static void mx_server(int i, const char *addr, const char *script)
{
    cr_assert_eq(start_server_at(i, addr, server_port, script), server_port);
}

/* source_of - "smtp:[host]:port" for the MX port */
static const char *source_of(const char *host)
{
    static char buf[4][128];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "smtp:[%s]:%d", host, server_port);
    return buf[i];
}

Test(smtp_dns, mx_preference_order)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.2", "rcpt * 250 2.1.5 mx1 ok\n");
    mx_server(2, "127.0.0.3", "rcpt * 250 2.1.5 mx2 ok\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx1.dept.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 mx1 ok");
    cr_assert_eq(server_count_of(1, "rcpt"), 1);
    cr_assert_eq(server_count_of(2, "connections"), 0, "the second MX is not asked");
    cr_assert_str_eq(server_stat_of(1, "last_rcpt"), "alice@dept.test");
}

Test(smtp_dns, mx_fallback_when_first_refuses_connections)
{
    struct result r;
    void *s;

    mx_server(2, "127.0.0.3", "rcpt * 550 5.1.1 mx2 says unknown\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "bob@dept.test", source_of("mx2.dept.test"), &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 mx2 says unknown");
}

Test(smtp_dns, mx_fallback_when_first_greets_421)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.2", "greeting 421 4.3.2 mx1 too busy\n");
    mx_server(2, "127.0.0.3", "rcpt * 250 2.1.5 mx2 ok\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx2.dept.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 mx2 ok");
    cr_assert_eq(server_count_of(1, "connections"), 1);
    cr_assert_eq(server_count_of(1, "ehlo"), 0);
}

Test(smtp_dns, mx_fallback_when_first_greets_450)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.2", "greeting 450 4.7.1 mx1 greylisting you\n");
    mx_server(2, "127.0.0.3", "rcpt * 250 2.1.5 mx2 ok\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx2.dept.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 mx2 ok");
    run_for(200);
    cr_assert_eq(server_count_of(1, "quit"), 1, "the refusing MX gets a polite QUIT");
}

Test(smtp_dns, mx_all_fail_is_tempfail_with_last_reason)
{
    struct result r;
    void *s;

    mx_server(2, "127.0.0.3", "greeting 421 4.3.2 mx2 too busy\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx2.dept.test"), &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "next hop closing the session at greeting: 421 4.3.2 mx2 too busy");
}

Test(smtp_dns, mx_rcpt_reject_does_not_fall_back)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.2", "rcpt * 450 4.2.0 try later\n");
    mx_server(2, "127.0.0.3", "rcpt * 250 2.1.5 mx2 ok\n");
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx1.dept.test"), &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 450, "4.2.0 try later");
    cr_assert_eq(server_count_of(2, "connections"), 0, "a RCPT answer is the answer");
}

Test(smtp_dns, implicit_mx)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.4", "rcpt * 250 2.1.5 implicit ok\n");
    s = open_route("amx.test smtp:mx port=%d");
    verify_from(s, "carol@amx.test", source_of("amx.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 implicit ok");
}

Test(smtp_dns, nxdomain_is_invalid)
{
    struct result r;
    void *s;

    s = open_route("* smtp:mx port=%d");
    verify_from(s, "dave@nowhere.test", "smtp:mx", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.2 domain has no mail server");
}

Test(smtp_dns, null_mx_is_invalid)
{
    struct result r;
    void *s;

    s = open_route("null.test smtp:mx port=%d");
    verify_from(s, "erin@null.test", "smtp:mx", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.2 domain has no mail server");
}

Test(smtp_dns, dns_failure_is_tempfail)
{
    struct result r;
    char servers[64], err[256];
    void *s;

    /* a resolver whose server does not exist: refused or timed out, never an answer */
    dns_free(test_dns);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ts_free_port_udp_tcp());
    test_dns = dns_new(base, servers, 500, err, sizeof(err));
    cr_assert_not_null(test_dns, "%s", err);
    s = open_route("dept.test smtp:mx port=%d");
    verify_from(s, "alice@dept.test", "smtp:mx", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "%s", r.v.text);
    cr_assert_eq(r.v.code, 0);
    cr_assert(strncmp(r.v.text, "DNS lookup of dept.test failed: tempfail", 40) == 0, "%s",
              r.v.text);
}

Test(smtp_dns, domain_literal_is_tempfail)
{
    struct result r;
    void *s;

    s = open_route("* smtp:mx port=%d");
    verify_from(s, "frank@[127.0.0.1]", "smtp:mx", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "%s", r.v.text);
    cr_assert_eq(r.v.code, 0);
}

Test(smtp_dns, pool_is_per_mx_host_not_per_domain)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.2", "rcpt * 250 2.1.5 mx1 ok\n");
    s = open_route("* smtp:mx port=%d");
    verify_from(s, "alice@dept.test", source_of("mx1.dept.test"), &r);
    verify_from(s, "bob@other.test", source_of("mx1.dept.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 mx1 ok");
    cr_assert_eq(server_count_of(1, "connections"), 1, "other.test shares dept.test's MX");
    cr_assert_eq(server_count_of(1, "rset"), 0);
    cr_assert_eq(server_count_of(1, "mail"), 1, "one transaction for both domains");
    cr_assert_eq(server_count_of(1, "rcpt"), 2);
}

Test(smtp_dns, mx_connection_limit_per_host)
{
    struct result rs[4];
    char addr[64];
    void *s;

    mx_server(1, "127.0.0.2", "delay rcpt 100\nrcpt * 250 2.1.5 mx1 ok\n");
    s = open_route("* smtp:mx port=%d max_connections=1 reuse=no");
    for (int i = 0; i < 4; i++) {
        snprintf(addr, sizeof(addr), "u%d@%s", i, i % 2 ? "dept.test" : "other.test");
        lookup(s, addr, &rs[i]);
    }
    run(rs, 4, 10000);
    for (int i = 0; i < 4; i++)
        assert_verdict(&rs[i], VERDICT_VALID, 250, "2.1.5 mx1 ok");
    cr_assert_eq(server_count_of(1, "connections"), 4);
    cr_assert_eq(server_count_of(1, "concurrent_max"), 1, "one limit for the host of both");
}

Test(smtp_dns, static_next_hop_by_name)
{
    struct result r;
    void *s;

    mx_server(1, "127.0.0.3", "rcpt * 250 2.1.5 hop ok\n");
    s = open_route("x.test smtp:[hop.test]:%d");
    verify_from(s, "a@x.test", source_of("hop.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 hop ok");
    verify_from(s, "b@x.test", source_of("hop.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 hop ok");
    cr_assert_eq(server_count_of(1, "connections"), 1, "pooled across lookups");
    s = open_route("x.test smtp:hop.test:%d reuse=no");
    verify_from(s, "c@x.test", source_of("hop.test"), &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 hop ok");
}

Test(smtp_dns, static_next_hop_name_missing_is_tempfail)
{
    struct result r;
    void *s;

    s = open_route("x.test smtp:[gone.test]:%d");
    verify_from(s, "a@x.test", source_of("gone.test"), &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL, "a broken next hop is not the address's fault");
    cr_assert_eq(r.v.code, 0);
    cr_assert(strncmp(r.v.text, "DNS lookup of gone.test failed: nxdomain", 40) == 0, "%s",
              r.v.text);
}

Test(smtp_dns, cancel_during_dns)
{
    struct result r, r2;
    void *s;

    mx_server(1, "127.0.0.2", "rcpt * 250 2.1.5 mx1 ok\n");
    s = open_route("dept.test smtp:mx port=%d");
    backend_smtp_ops.cancel(lookup(s, "a@dept.test", &r));
    lookup(s, "b@dept.test", &r2);
    run_for(500);
    cr_assert_eq(r.calls, 0);
    cr_assert_eq(r2.calls, 1);
    cr_assert_eq(server_count_of(1, "rcpt"), 1);
}

Test(smtp_dns, close_during_dns)
{
    struct result r;
    void *s;

    s = open_route("dept.test smtp:mx port=%d");
    lookup(s, "a@dept.test", &r);
    backend_smtp_ops.close(s);
    states[0] = NULL;
    run_for(300);
    cr_assert_eq(r.calls, 0);
}

/* ---- STARTTLS (tls=none|may|encrypt) against a next hop whose TLS is broken */

/* offers STARTTLS, says 220, then answers the ClientHello with plain text */
#define BROKEN_TLS "ehlo 250 ts\\nSTARTTLS\nstarttls 220 2.0.0 Ready to start TLS\n"

Test(smtp, tls_may_falls_back_to_plaintext_after_a_failed_handshake)
{
    struct result r;

    start_server(BROKEN_TLS "rcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("starttls"), 1);
    cr_assert_eq(server_count("connections"), 2, "TLS attempt, then a plaintext connection");
    cr_assert_eq(server_count("rcpt"), 1);
}

Test(smtp, tls_encrypt_never_sends_rcpt_after_a_failed_handshake)
{
    struct result r;

    start_server(BROKEN_TLS "rcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls=encrypt"), "a@example.test", &r);
    cr_assert_eq(r.v.kind, VERDICT_TEMPFAIL);
    cr_assert_eq(r.v.code, 0, "a destination failure (the breaker counts it)");
    cr_assert(strstr(r.v.text, "TLS handshake with next hop failed") != NULL, "%s", r.v.text);
    cr_assert_eq(server_count("mail"), 0);
    cr_assert_eq(server_count("rcpt"), 0);
}

Test(smtp, tls_encrypt_without_starttls_offered)
{
    struct result r;

    start_server("rcpt * 250 2.1.5 Ok\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls=encrypt"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0, "next hop does not offer STARTTLS (tls=encrypt)");
    cr_assert_eq(server_count("mail"), 0);
    cr_assert_eq(server_count("rcpt"), 0);
}

Test(smtp, tls_encrypt_starttls_refused)
{
    struct result r;

    start_server("ehlo 250 ts\\nSTARTTLS\nstarttls 454 4.7.0 TLS not available\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls=encrypt"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0, "next hop does not offer STARTTLS (tls=encrypt)");
    cr_assert_eq(server_count("rcpt"), 0);
}

Test(smtp, tls_may_starttls_refused_goes_on_in_plaintext)
{
    struct result r;

    start_server("ehlo 250 ts\\nSTARTTLS\nstarttls 454 4.7.0 TLS not available\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 1);
}

Test(smtp, tls_none_never_sends_starttls)
{
    struct result r;

    start_server(BROKEN_TLS);
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls=none"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("starttls"), 0);
}

/* bytes after the 220 to STARTTLS would be read as if they came over TLS */
Test(smtp, tls_data_after_starttls_reply_is_not_trusted)
{
    struct result r;

    start_server("ehlo 250 ts\\nSTARTTLS\n"
                 "raw starttls 220 go ahead\\r\\n250 injected\\r\\n\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls=encrypt"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_TEMPFAIL, 0,
                   "TLS handshake with next hop failed: data after the 220 reply to STARTTLS");
    cr_assert_eq(server_count("rcpt"), 0);
}

/* a next hop that never answers the ClientHello: the handshake has a deadline */
Test(smtp, tls_handshake_deadline)
{
    struct result r;

    start_server("ehlo 250 ts\\nSTARTTLS\nraw starttls 220 go ahead\\r\\n\n");
    verify(open_route("example.test smtp:[127.0.0.1]:%d tls_timeout=300ms"), "a@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_eq(server_count("connections"), 2);
}

Test(smtp, tls_options_checked)
{
    char err[256];

    cr_assert_null(open_route_err("example.test smtp:[127.0.0.1]:25 tls=maybe", err, sizeof(err)));
    cr_assert(strstr(err, "tls=maybe: expected none, may or encrypt") != NULL, "%s", err);
    cr_assert_null(open_route_err("example.test smtp:[127.0.0.1]:25 tls_ca_file=/etc/hostname", err,
                                  sizeof(err)));
    cr_assert(strstr(err, "need tls=encrypt") != NULL, "%s", err);
    cr_assert_null(open_route_err("example.test smtp:[127.0.0.1]:25 tls=may tls_verify=name", err,
                                  sizeof(err)));
    cr_assert(strstr(err, "need tls=encrypt") != NULL, "%s", err);
    cr_assert_null(open_route_err(
        "example.test smtp:[127.0.0.1]:25 tls=encrypt tls_ca_file=relative.pem", err, sizeof(err)));
    cr_assert(strstr(err, "expected an absolute path") != NULL, "%s", err);
    cr_assert_null(open_route_err(
        "example.test smtp:[127.0.0.1]:25 tls=encrypt tls_ca_file=/nonexistent/ca.pem", err,
        sizeof(err)));
    cr_assert(strstr(err, "tls_ca_file=/nonexistent/ca.pem: cannot load") != NULL, "%s", err);
    cr_assert_null(open_route_err(
        "example.test smtp:[127.0.0.1]:25 tls=encrypt tls_verify=none tls_ca_file=/etc/hostname",
        err, sizeof(err)));
    cr_assert(strstr(err, "would not be used") != NULL, "%s", err);
    cr_assert_null(open_route_err("example.test smtp:[127.0.0.1]:25 tls=encrypt tls_verify=all",
                                  err, sizeof(err)));
    cr_assert(strstr(err, "tls_verify=all: expected none, ca or name") != NULL, "%s", err);
}

/*
 * RFC 6531: a UTF-8 local part goes out with MAIL FROM:<...> SMTPUTF8 when
 * the next hop offers SMTPUTF8; an IDN domain goes out in A-labels, and an
 * ASCII recipient on the same (pooled) session without the parameter.
 */
Test(smtp, smtputf8_offered)
{
    struct result r;
    void *rt;

    start_server("ehlo 250 smtp_testserver\\nPIPELINING\\nSMTPUTF8\n"
                 "rcpt j\xc3\xb6rg@xn--bcher-kva.example 250 2.1.5 Ok\n"
                 "rcpt * 550 5.1.1 User unknown\n");
    rt = open_route("xn--bcher-kva.example smtp:[127.0.0.1]:%d");
    verify(rt,
           "J\xc3\xb6rg@b\xc3\xbc"
           "cher.example",
           &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<> SMTPUTF8");
    cr_assert_str_eq(server_stat("last_rcpt"), "J\xc3\xb6rg@xn--bcher-kva.example");
    verify(rt, "j\xc3\xb6rn@xn--bcher-kva.example", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    verify(rt, "anna@xn--bcher-kva.example", &r);
    assert_verdict(&r, VERDICT_INVALID, 550, "5.1.1 User unknown");
    /* an ASCII recipient fits in the SMTPUTF8 transaction (RFC 6531 3.4) */
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<> SMTPUTF8");
    cr_assert_eq(server_count("mail"), 1);
    cr_assert_eq(server_count("connections"), 1, "one pooled session for all three");
}

/*
 * A next hop that does not offer SMTPUTF8 cannot be asked about a UTF-8
 * local part: unknown (never invalid), no MAIL or RCPT sent, and the
 * session stays usable for the next ASCII recipient.
 */
Test(smtp, smtputf8_not_offered)
{
    struct result r;
    void *rt;

    start_server("ehlo 250 smtp_testserver\\nPIPELINING\\n8BITMIME\n"
                 "rcpt anna@example.test 250 2.1.5 Ok\n"
                 "rcpt * 550 5.1.1 User unknown\n");
    rt = open_route("example.test smtp:[127.0.0.1]:%d");
    verify(rt, "j\xc3\xb6rg@example.test", &r);
    assert_verdict(&r, VERDICT_UNKNOWN, 0,
                   "UTF-8 local part: next hop does not offer SMTPUTF8, not verified");
    cr_assert_eq(server_count("rcpt"), 0);
    cr_assert_eq(server_count("mail"), 0);
    verify(rt, "anna@example.test", &r);
    assert_verdict(&r, VERDICT_VALID, 250, "2.1.5 Ok");
    cr_assert_str_eq(server_stat("last_mail"), "MAIL FROM:<>");
    cr_assert_eq(server_count("connections"), 1);
}
