/*
 * test_backend_smtp.c - SMTP callouts against real servers on 127.0.0.1:
 * our scripted tests/e2e/smtp_testserver (per-address answers, multi-line,
 * split, garbage, disconnects, 421, tarpits), Postfix's smtp-sink
 * (accept-all, reject-all, defer-all) and a closed port. Each test forks its
 * own server on a free port and stops it by pid at teardown; the server also
 * dies with the test process (PR_SET_PDEATHSIG). Every test checks the
 * verdict's kind, code and text.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "address.h"
#include "backend_smtp.h"
#include "log.h"
#include "route.h"

#define SMTP_SINK "/usr/sbin/smtp-sink"

struct result {
    int calls;
    struct verdict v;
    struct timeval at;
    void *close_state; /* close this backend state from inside the callback */
};

static struct event_base *base;
static char tmpdir[64];
static pid_t server_pid = -1;
static int server_port;
static struct route_table *tables[16];
static int ntables;
static void *states[16];
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
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
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
    stop_server();
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

/* spawn - fork/exec argv; the child dies with us */
static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();

    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (devnull >= 0 && getenv("CALLOUT_DEBUG") == NULL)
            dup2(devnull, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* start_server - run smtp_testserver with this script; sets server_port */
static void start_server(const char *script)
{
    const char *sp = path_in_tmp("script");
    const char *pp = path_in_tmp("port");
    const char *st = path_in_tmp("stats");
    char *argv[] = {(char *)testserver_path(),
                    "-p",
                    "0",
                    "-P",
                    (char *)pp,
                    "-S",
                    (char *)st,
                    "-s",
                    (char *)sp,
                    NULL};
    FILE *f = fopen(sp, "w");

    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    cr_assert_eq(access(argv[0], X_OK), 0, "%s not built", argv[0]);
    server_pid = spawn(argv);
    for (int i = 0; i < 500; i++) {
        f = fopen(pp, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &server_port) == 1;
            fclose(f);
            if (ok)
                return;
        }
        usleep(10000);
    }
    cr_assert_fail("smtp_testserver did not start");
}

/* server_stat - a value from the server's stats file ("name value" lines) */
static const char *server_stat(const char *name)
{
    static char value[4096];
    char line[4096];
    FILE *f = fopen(path_in_tmp("stats"), "r");

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

static long server_count(const char *name)
{
    return atol(server_stat(name));
}

/* free_port - a port nobody listens on (bound, then closed) */
static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    port = ntohs(sin.sin_port);
    close(fd);
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
    for (int i = 0; i < 500; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int r;

        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (r == 0)
            return;
        usleep(10000);
    }
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
    struct backend_env env = {.base = base, .recipient_delimiter = "+"};
    void *state;

    with_port(fmt, line, sizeof(line));
    t = route_table_parse(line, strlen(line), "test", err, errlen);
    cr_assert_not_null(t, "route table: %s", err);
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

/* verify - one lookup to completion, with checks common to all */
static void verify(void *state, const char *rcpt, struct result *r)
{
    char src[64];

    lookup(state, rcpt, r);
    run(r, 1, 15000);
    cr_assert_eq(r->calls, 1, "callback ran once");
    snprintf(src, sizeof(src), "smtp:[127.0.0.1]:%d", server_port);
    cr_assert_str_eq(r->v.source, src);
    cr_assert_gt(r->v.when, 0);
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
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "alice@example.test", &r);
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
    cr_assert(ms >= 450 && ms < 2000, "answered after %ld ms", ms);
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
    cr_assert(ms >= 250 && ms < 2000, "answered after %ld ms", ms);
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
    s = open_route("example.test smtp:[127.0.0.1]:%d max_connections=2");
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
    cr_assert_lt(ms_since(&start, &r.at), 1000);
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

    start_sink("-f", "RCPT");
    verify(open_route("example.test smtp:[127.0.0.1]:%d"), "anyone@example.test", &r);
    assert_verdict(&r, VERDICT_INVALID, 500, "5.3.0 Error: command failed");
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
    static const char *const ok[] = {"[192.0.2.1]:2525",   "192.0.2.1:26",
                                     "[192.0.2.1]",        "192.0.2.1",
                                     "[2001:db8::1]:2525", "[IPv6:2001:db8::1]"};
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
        "example.test smtp:mx",
        "example.test smtp:mail.example.test:25",
        "example.test smtp:[192.0.2.1",
        "example.test smtp:[192.0.2.1]x",
        "example.test smtp:192.0.2.1:0",
        "example.test smtp:192.0.2.1:65536",
        "example.test smtp:192.0.2.1:25x",
        "example.test smtp:2001:db8::1:25",
        "example.test smtp:[not-an-address]:25",
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
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256];
        char err2[256];
        struct route_table *t =
            route_table_parse(bad[i], strlen(bad[i]), "test", err2, sizeof(err2));
        struct backend_env env = {.base = base, .recipient_delimiter = "+"};

        if (t == NULL)
            continue; /* the route parser already refuses it: fine too */
        err[0] = '\0';
        cr_assert_null(backend_smtp_ops.open(&env, route_table_get(t, 0), err, sizeof(err)), "%s",
                       bad[i]);
        cr_assert(err[0] != '\0', "an error message for %s", bad[i]);
        route_table_free(t);
    }
}
