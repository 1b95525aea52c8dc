/*
 * test_policy_conn.c - the policy connection state machine over a real
 * socketpair, driven by the event loop: replies to many requests when the
 * daemon's socket is full (a tiny send buffer forces the write-when-ready
 * path the end-to-end tests cannot reach on loopback), a protocol error
 * closing only its own connection, the idle deadline, and a disconnect in
 * the middle of a lookup.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "policy_conn.h"
#include "verifier.h"

static char dir[] = "/tmp/callahead-test-conn-XXXXXX";
static struct event_base *base;
static struct config cfg;
static struct verifier *ver;
static struct policy_server srv;

static void setup(void)
{
    char path[300], err[512];

    log_open("test", 1, 0);
    signal(SIGPIPE, SIG_IGN); /* writes to a connection the daemon closed must not kill us */
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/routes", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    /* async.test: a callout to a closed loopback port, answered from the loop, not inline */
    fputs("reject.test reject\nasync.test smtp:[127.0.0.1]:9\n* accept\n", fp);
    fclose(fp);
    config_defaults(&cfg);
    free(cfg.route_table);
    cfg.route_table = strdup(path);
    cfg.idle_timeout = 1;
    base = event_base_new();
    struct verifier_config vc;
    config_verifier(&cfg, &vc);
    ver = verifier_new(base, &vc, err, sizeof(err));
    cr_assert_not_null(ver, "%s", err);
    policy_server_init(&srv, base, &cfg, ver);
}

static void teardown(void)
{
    char cmd[300];

    while (!TAILQ_EMPTY(&srv.conns))
        policy_conn_free(TAILQ_FIRST(&srv.conns));
    verifier_free(ver);
    event_base_free(base);
    config_free(&cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    system(cmd);
    strcpy(dir, "/tmp/callahead-test-conn-XXXXXX");
}

TestSuite(policy_conn, .init = setup, .fini = teardown);

/* connect_client - a socketpair: one end to the daemon, the other returned (non-blocking) */
static int connect_client(int sndbuf)
{
    int sv[2];

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (sndbuf > 0)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    cr_assert_not_null(policy_conn_new(&srv, sv[0], "test"));
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    return sv[1];
}

static void run_ms(int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

/* pump - write out[*off..len) as the socket allows, read what is there into in */
static void pump(int fd, const char *out, size_t len, size_t *off, char *in, size_t cap,
                 size_t *got)
{
    if (*off < len) {
        ssize_t n = write(fd, out + *off, len - *off);
        if (n > 0)
            *off += (size_t)n;
    }
    if (*got < cap) {
        ssize_t n = read(fd, in + *got, cap - *got);
        if (n > 0)
            *got += (size_t)n;
    }
}

Test(policy_conn, many_requests_through_a_full_socket)
{
    enum { N = 3000 };
    static const char req_ok[] = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                                 "recipient=a@ok.test\n\n";
    static const char req_bad[] = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                                  "recipient=a@reject.test\n\n";
    size_t len = 0, off = 0, got = 0, cap = (size_t)N * 64;
    char *out = malloc((size_t)N * sizeof(req_bad)), *in = malloc(cap + 1);
    int fd = connect_client(1024); /* the daemon's side can hold almost nothing */

    for (int i = 0; i < N; i++) {
        const char *r = i % 2 ? req_bad : req_ok;
        memcpy(out + len, r, strlen(r));
        len += strlen(r);
    }
    /* first send everything while reading nothing: replies pile up against a full socket */
    for (int i = 0; i < 2000 && off < len; i++) {
        ssize_t n = write(fd, out + off, len - off);
        if (n > 0)
            off += (size_t)n;
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    for (int i = 0; i < 20000 && got < cap; i++) {
        pump(fd, out, len, &off, in, cap, &got);
        event_base_loop(base, EVLOOP_NONBLOCK);
        int done = 0;
        for (size_t k = 0; k + 1 < got; k++)
            done += in[k] == '\n' && in[k + 1] == '\n';
        if (done == N)
            break;
    }
    in[got] = '\0';
    int dunno = 0, reject = 0, i = 0;
    for (char *p = in; *p != '\0'; i++) {
        char *end = strstr(p, "\n\n");
        cr_assert_not_null(end, "reply %d is not terminated by an empty line", i);
        *end = '\0';
        /* requests alternate ok / reject, so must the replies */
        if (i % 2 == 0) {
            cr_assert_str_eq(p, "action=DUNNO", "reply %d", i);
            dunno++;
        } else {
            cr_assert(strncmp(p, "action=550 5.1.1 ", 17) == 0, "reply %d: %s", i, p);
            reject++;
        }
        p = end + 2;
    }
    cr_assert_eq(dunno, N / 2);
    cr_assert_eq(reject, N / 2);
    cr_assert_eq(srv.requests, N);
    cr_assert_eq(srv.nconns, 1);
    close(fd);
    free(out);
    free(in);
}

Test(policy_conn, protocol_error_closes_only_its_connection)
{
    int good = connect_client(0), bad = connect_client(0);
    char buf[256];

    cr_assert_eq(srv.nconns, 2);
    const char *half = "request=smtpd_access_policy\nprotocol_state=RCPT\n";
    cr_assert_eq(write(good, half, strlen(half)), (ssize_t)strlen(half));
    cr_assert_eq(write(bad, "no equals sign\n", 15), 15);
    run_ms(50);
    cr_assert_eq(srv.nconns, 1, "the bad connection is closed");
    cr_assert_eq(srv.protocol_errors, 1);
    cr_assert_eq(read(bad, buf, sizeof(buf)), 0, "no reply, just EOF");
    const char *rest = "recipient=x@reject.test\n\n";
    cr_assert_eq(write(good, rest, strlen(rest)), (ssize_t)strlen(rest));
    run_ms(50);
    ssize_t n = read(good, buf, sizeof(buf) - 1);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    cr_assert(strncmp(buf, "action=550 5.1.1 ", 17) == 0, "reply: %s", buf);
    close(good);
    close(bad);
}

Test(policy_conn, endless_line_is_cut_off)
{
    int fd = connect_client(0);
    char junk[1024];

    memset(junk, 'x', sizeof(junk));
    for (int i = 0; i < 64; i++) {
        (void)write(fd, junk, sizeof(junk));
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    run_ms(50);
    cr_assert_eq(srv.nconns, 0, "a 64 KiB line without LF closes the connection");
    cr_assert_eq(srv.protocol_errors, 1);
    close(fd);
}

Test(policy_conn, idle_deadline_closes)
{
    int fd = connect_client(0);

    run_ms(300);
    cr_assert_eq(srv.nconns, 1);
    run_ms(1200); /* idle_timeout = 1 s */
    cr_assert_eq(srv.nconns, 0);
    close(fd);
}

Test(policy_conn, client_gone_mid_request)
{
    int fd = connect_client(0);
    const char *half = "request=smtpd_access_policy\nprotocol_state=RCPT\n";

    cr_assert_eq(write(fd, half, strlen(half)), (ssize_t)strlen(half));
    run_ms(20);
    close(fd);
    run_ms(50);
    cr_assert_eq(srv.nconns, 0);
    cr_assert_eq(srv.requests, 0);
}

/* stderr_to - send stderr (the log in tests) to a temporary file; returns it */
static FILE *stderr_to(int *saved)
{
    FILE *fp = tmpfile();

    cr_assert_not_null(fp);
    fflush(stderr);
    *saved = dup(2);
    dup2(fileno(fp), 2);
    return fp;
}

/* stderr_back - restore stderr and count lines of the capture containing needle */
static int stderr_back(FILE *fp, int saved, const char *needle)
{
    char line[2048];
    int n = 0;

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(fp);
    while (fgets(line, sizeof(line), fp) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

Test(policy_conn, protocol_error_warnings_are_rate_limited)
{
    int saved;
    FILE *log = stderr_to(&saved);

    for (int i = 0; i < 200; i++) {
        int fd = connect_client(0);
        cr_assert_eq(write(fd, "garbage\n", 8), 8);
        run_ms(1);
        close(fd);
    }
    run_ms(20);
    int lines = stderr_back(log, saved, "protocol error");
    cr_assert_eq(srv.protocol_errors, 200);
    cr_assert_eq(srv.nconns, 0);
    cr_assert_eq(lines, 1, "200 protocol errors in well under %d ms logged %d lines",
                 POLICY_LOG_INTERVAL_MS, lines);
}

/* read_all - read until EOF or about ms milliseconds pass, running the loop meanwhile */
static size_t read_all(int fd, char *buf, size_t cap, int ms, int *eof)
{
    size_t got = 0;

    *eof = 0;
    for (int i = 0; i < ms && got < cap - 1; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n == 0) {
            *eof = 1;
            break;
        }
        if (n > 0)
            got += (size_t)n;
        else
            usleep(1000);
    }
    buf[got] = '\0';
    return got;
}

Test(policy_conn, half_close_after_complete_requests_is_answered)
{
    int fd = connect_client(0), eof;
    char buf[512];
    /* two pipelined requests, then the client's write side closes */
    const char *reqs = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                       "recipient=x@async.test\n\n"
                       "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                       "recipient=y@ok.test\n\n";

    cr_assert_eq(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert(strncmp(buf, "action=DEFER_IF_PERMIT 4.", 25) == 0, "first reply: [%s]", buf);
    cr_assert_not_null(strstr(buf, "\n\naction=DUNNO\n\n"), "second reply: [%s]", buf);
    cr_assert(eof, "the connection is closed once the replies are written");
    cr_assert_eq(srv.nconns, 0);
    cr_assert_eq(srv.requests, 2);
    close(fd);
}

Test(policy_conn, half_close_mid_request_closes_without_reply)
{
    int fd = connect_client(0), eof;
    char buf[512];
    const char *half = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=x@ok";

    cr_assert_eq(write(fd, half, strlen(half)), (ssize_t)strlen(half));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    size_t n = read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert_eq(n, 0, "no reply to half a request: [%s]", buf);
    cr_assert(eof);
    cr_assert_eq(srv.nconns, 0);
    cr_assert_eq(srv.requests, 0);
    close(fd);
}

Test(policy_conn, slow_request_is_cut_off_after_request_timeout)
{
    cfg.idle_timeout = 30;
    cfg.request_timeout = 1;
    int fd = connect_client(0);
    const char *req = "request=smtpd_access_policy\n";

    /* one byte every 100 ms: never a whole line within the first second */
    for (int i = 0; i < 20 && srv.nconns == 1; i++) {
        cr_assert_eq(write(fd, req + i, 1), 1);
        run_ms(100);
    }
    cr_assert_eq(srv.nconns, 0,
                 "a request trickling a byte at a time is closed at request_timeout");
    close(fd);
}

Test(policy_conn, full_table_makes_room_for_a_new_client)
{
    enum { MAX = 4 };
    int fds[MAX], eof;
    char buf[256];
    const char *req = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                      "recipient=x@reject.test\n\n";

    cfg.max_connections = MAX;
    /* the oldest sends half a line; the others complete a request, then stay idle */
    for (int i = 0; i < MAX; i++)
        fds[i] = connect_client(0);
    cr_assert_eq(write(fds[0], "requ", 4), 4);
    for (int i = 1; i < MAX; i++) {
        cr_assert_eq(write(fds[i], req, strlen(req)), (ssize_t)strlen(req));
        run_ms(5);
        cr_assert_gt(read_all(fds[i], buf, sizeof(buf), 50, &eof), 0);
    }
    cr_assert_eq(srv.nconns, MAX);
    /* a new client gets a slot: the least recently active one (the slow client) is closed */
    int legit = connect_client(0);
    cr_assert_eq(srv.nconns, MAX);
    cr_assert_eq(srv.evicted, 1);
    read_all(fds[0], buf, sizeof(buf), 50, &eof);
    cr_assert(eof, "the slow client was closed");
    cr_assert_eq(write(legit, req, strlen(req)), (ssize_t)strlen(req));
    read_all(legit, buf, sizeof(buf), 100, &eof);
    cr_assert(strncmp(buf, "action=550 5.1.1 ", 17) == 0, "new client's reply: [%s]", buf);
    /* next in line: the connection whose request is oldest */
    int another = connect_client(0);
    read_all(fds[1], buf, sizeof(buf), 50, &eof);
    cr_assert(eof, "the least recently active idle client was closed next");
    for (int i = 0; i < MAX; i++)
        close(fds[i]);
    close(legit);
    close(another);
}

/* a request written one byte at a time: every line crosses the reads it arrives in */
Test(policy_conn, request_one_byte_at_a_time)
{
    int fd = connect_client(0), eof;
    char buf[512];
    const char *req = "request=smtpd_access_policy\r\nprotocol_state=RCPT\n"
                      "recipient=x@reject.test\n\n";

    for (const char *p = req; *p != '\0'; p++) {
        cr_assert_eq(write(fd, p, 1), 1);
        event_base_loop(base, EVLOOP_NONBLOCK);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert(strncmp(buf, "action=550 5.1.1 ", 17) == 0, "reply: [%s]", buf);
    cr_assert_eq(srv.requests, 1);
    cr_assert_eq(srv.protocol_errors, 0);
    close(fd);
}

/*
 * Hostile input after a complete request in the same write: the request is
 * answered, the bad line then closes the connection, and nothing after it
 * is taken as a request.
 */
Test(policy_conn, bad_line_after_a_request_in_one_write)
{
    int fd = connect_client(0), eof;
    char buf[512];
    const char *reqs = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                       "recipient=x@reject.test\n\n"
                       "=no name\n"
                       "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                       "recipient=y@ok.test\n\n";

    cr_assert_eq(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
    read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert(strncmp(buf, "action=550 5.1.1 ", 17) == 0, "reply: [%s]", buf);
    cr_assert_null(strstr(buf, "DUNNO"), "the request after the bad line is not answered");
    cr_assert(eof, "the bad line closes the connection");
    cr_assert_eq(srv.requests, 1);
    cr_assert_eq(srv.protocol_errors, 1);
    close(fd);
}

/* a line one byte over max_line_length, whole in one write with its LF and more after it */
Test(policy_conn, over_long_line_with_its_end_in_one_write)
{
    int fd = connect_client(0), eof;
    size_t n = cfg.limits.max_line + 1;
    char *msg = malloc(n + 128), buf[256];

    memcpy(msg, "recipient=", 10);
    memset(msg + 10, 'x', n - 10);
    memcpy(msg + n, "\nsender=a@b\n\n", 14);
    cr_assert_eq(write(fd, msg, n + 13), (ssize_t)(n + 13));
    size_t got = read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert_eq(got, 0, "no reply: [%s]", buf);
    cr_assert(eof);
    cr_assert_eq(srv.protocol_errors, 1);
    cr_assert_eq(srv.requests, 0);
    /* exactly max_line_length is still a line */
    fd = connect_client(0);
    memcpy(msg, "instance=", 9);
    memset(msg + 9, 'y', n - 1 - 9);
    const char *tail =
        "\nrequest=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=z@ok.test\n\n";
    memcpy(msg + n - 1, tail, strlen(tail));
    cr_assert_eq(write(fd, msg, n - 1 + strlen(tail)), (ssize_t)(n - 1 + strlen(tail)));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    read_all(fd, buf, sizeof(buf), 500, &eof);
    cr_assert_str_eq(buf, "action=DUNNO\n\n");
    free(msg);
    close(fd);
}

/* the decision line, byte for byte (ms= aside, which depends on the machine) */
Test(policy_conn, decision_line_bytes)
{
    int fd = connect_client(0), eof, saved = dup(2);
    char buf[512], log[2048], want[1024];
    FILE *cap = tmpfile();
    const char *req = "request=smtpd_access_policy\nprotocol_state=RCPT\nqueue_id=4Xyz1\n"
                      "recipient=Bad\x01User@reject.test\n\n";

    cr_assert_not_null(cap);
    fflush(stderr);
    dup2(fileno(cap), 2);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    read_all(fd, buf, sizeof(buf), 500, &eof);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(cap);
    size_t n = fread(log, 1, sizeof(log) - 1, cap);
    log[n] = '\0';
    fclose(cap);
    cr_assert(strncmp(buf, "action=", 7) == 0, "reply: [%s]", buf);
    const char *line = strstr(log, "test: info: 4Xyz1: ");
    cr_assert_not_null(line, "log: [%s]", log);
    const char *ms = strstr(line, " ms=");
    cr_assert_not_null(ms);
    snprintf(want, sizeof(want),
             "test: info: 4Xyz1: recipient=<Bad?User@reject.test> verdict=malformed source=syntax "
             "code=501 cached=no route=- ms=");
    cr_assert_eq(strncmp(line, want, strlen(want)), 0, "line: [%s]", line);
    const char *p = ms + 4;
    while (*p >= '0' && *p <= '9')
        p++;
    cr_assert(*p == '.' && p[1] >= '0' && p[1] <= '9' && p[2] == ' ', "ms: [%s]", ms);
    const char *rest = "reason=\"5.1.3 ";
    cr_assert_eq(strncmp(p + 3, rest, strlen(rest)), 0, "after ms: [%s]", p + 3);
    cr_assert_not_null(strstr(p, "\" action=DUNNO\n"), "end: [%s]", p);
    close(fd);
}

/* wait_closed - run the loop until the daemon has no connection, at most ms; 1 if closed */
static int wait_closed(int ms)
{
    for (int i = 0; i < ms && srv.nconns > 0; i += 10)
        run_ms(10);
    return srv.nconns == 0;
}

/*
 * The deadline timer stays armed across a request and is moved only when a
 * deadline comes earlier: after an answer, the idle deadline (1 s, shorter
 * than request_timeout's 30 s, whose timer is the one armed) still closes.
 */
Test(policy_conn, idle_deadline_after_an_answer)
{
    cfg.idle_timeout = 1;
    cfg.request_timeout = 30;
    int fd = connect_client(0), eof;
    char buf[256];
    const char *req = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=y@ok.test\n\n";

    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    read_all(fd, buf, sizeof(buf), 200, &eof);
    cr_assert_str_eq(buf, "action=DUNNO\n\n");
    cr_assert(wait_closed(10000), "idle after an answer: closed at idle_timeout");
    close(fd);
}

/*
 * The other way round: an answer, then the start of a request that never
 * ends. Its deadline (request_timeout 1 s) is earlier than the idle one
 * (30 s) the timer was last armed for, so the timer must be moved.
 */
Test(policy_conn, request_deadline_after_an_answer)
{
    cfg.idle_timeout = 30;
    cfg.request_timeout = 1;
    int fd = connect_client(0), eof;
    char buf[256];
    const char *req = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=y@ok.test\n\n";

    run_ms(20);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    read_all(fd, buf, sizeof(buf), 200, &eof);
    cr_assert_str_eq(buf, "action=DUNNO\n\n");
    cr_assert_eq(write(fd, "request=smtpd", 13), 13);
    cr_assert(wait_closed(10000), "half a request after an answer: closed at request_timeout");
    cr_assert_eq(srv.requests, 1);
    close(fd);
}
