/*
 * test_policy_client.c - the milter's policy client against a hostile fake
 * policyd on 127.0.0.1: garbage, oversized answers, control bytes, no or two
 * actions, a slow server, a close in the middle of an answer, unasked data,
 * and an idle connection closed by the server (which must cost one
 * reconnect, not an error). Each fake runs in a thread and records what it
 * received, so the request's framing is checked too.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "policy_client.h"

struct fake {
    int lfd;
    int port;
    const char *answer; /* sent after each complete request */
    size_t answer_len;  /* 0: strlen(answer) */
    int delay_ms;       /* before answering */
    int close_after;    /* close the connection after each answer */
    int max_conns;      /* connections served before the thread ends */
    int drop_request;   /* close without answering when this request (1, 2, ...) arrives */
    int nconns;
    int nrequests;
    char got[16384]; /* every request received, concatenated */
    size_t got_len;
    pthread_t thread;
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* serve_conn - answer each request ("...\n\n") on fd until EOF or close_after */
static void serve_conn(struct fake *f, int fd)
{
    char buf[8192];
    size_t len = 0;

    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (n <= 0)
            return;
        if (f->got_len + (size_t)n < sizeof(f->got)) {
            memcpy(f->got + f->got_len, buf + len, (size_t)n);
            f->got_len += (size_t)n;
        }
        len += (size_t)n;
        char *end = memmem(buf, len, "\n\n", 2);
        if (end == NULL) {
            if (len == sizeof(buf))
                return;
            continue;
        }
        f->nrequests++;
        len = 0;
        if (f->nrequests == f->drop_request)
            return;
        if (f->delay_ms)
            usleep((useconds_t)f->delay_ms * 1000);
        size_t alen = f->answer_len ? f->answer_len : strlen(f->answer);
        if (send(fd, f->answer, alen, MSG_NOSIGNAL) < 0)
            return;
        if (f->close_after)
            return;
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;

    while (f->nconns < f->max_conns) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            break;
        f->nconns++;
        serve_conn(f, fd);
        close(fd);
    }
    return NULL;
}

static void fake_start(struct fake *f, const char *answer, int max_conns)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t slen = sizeof(sin);

    f->answer = answer;
    f->max_conns = max_conns;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(f->lfd, 0);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(f->lfd, 8), 0);
    cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&sin, &slen), 0);
    f->port = ntohs(sin.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

static struct policy_endpoint ep;

static struct policy_client *client_for(struct fake *f)
{
    char spec[64], err[128];

    snprintf(spec, sizeof(spec), "inet:127.0.0.1:%d", f->port);
    cr_assert_eq(policy_endpoint_parse(spec, &ep, err, sizeof(err)), 0, "%s", err);
    struct policy_client *pc = policy_client_new(&ep);
    cr_assert_not_null(pc);
    return pc;
}

static const struct policy_attr req[] = {
    {"request", "smtpd_access_policy"},
    {"protocol_state", "RCPT"},
    {"recipient", "bob@example.test"},
};
#define NREQ ((int)(sizeof(req) / sizeof(req[0])))

/* ask - one query with a 2 s deadline; returns the result, action and err filled */
static int ask(struct policy_client *pc, char *action, char *err)
{
    return policy_client_query(pc, req, NREQ, 2000, action, POLICY_CLIENT_MAX_ACTION + 1, err, 256);
}

Test(policy_client, answer_and_reuse)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    fake_start(&f, "action=550 5.1.1 User unknown\n\n", 1);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    cr_assert_str_eq(action, "550 5.1.1 User unknown");
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    policy_client_free(pc);
    fake_stop(&f);
    cr_assert_eq(f.nconns, 1, "one connection for both queries");
    cr_assert_eq(f.nrequests, 2);
    const char *one = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                      "recipient=bob@example.test\n\n";
    cr_assert_eq(f.got_len, 2 * strlen(one));
    cr_assert_eq(memcmp(f.got, one, strlen(one)), 0);
}

/* an address from the MTA with LF in it must not add an attribute */
Test(policy_client, request_values_cannot_add_lines)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];
    const struct policy_attr evil[] = {{"request", "smtpd_access_policy"},
                                       {"recipient", "a@b\nprotocol_state=DATA\n\nx\r"}};

    fake_start(&f, "action=DUNNO\n\n", 1);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(policy_client_query(pc, evil, 2, 2000, action, sizeof(action), err, sizeof(err)),
                 0, "%s", err);
    policy_client_free(pc);
    fake_stop(&f);
    f.got[f.got_len] = '\0';
    cr_assert_str_eq(f.got, "request=smtpd_access_policy\n"
                            "recipient=a@b?protocol_state=DATA??x?\n\n");
}

/* hostile_answer - the query must fail, promptly, and close the connection (why: the case) */
static void hostile_answer(const char *answer, size_t len, const char *why)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.answer_len = len;
    fake_start(&f, answer, 2);
    struct policy_client *pc = client_for(&f);
    long long t0 = now_ms();
    cr_assert_eq(ask(pc, action, err), -1, "%s: accepted [%.60s]", why, answer);
    cr_assert_lt(now_ms() - t0, 1500, "%s: took %lld ms for [%.60s]", why, now_ms() - t0, answer);
    /* the next query opens a new connection: no stale answer can be read */
    policy_client_free(pc);
    fake_stop(&f);
}

Test(policy_client, garbage_answers)
{
    static const struct {
        const char *answer;
        size_t len; /* 0: strlen(answer) */
        const char *why;
    } cases[] = {
        {"hello world\n\n", 0, "no attribute"},
        {"\n", 0, "empty answer"},
        {"foo=bar\n\n", 0, "no action"},
        {"action=\n\n", 0, "empty action"},
        {"action=DUNNO\naction=550 x\n\n", 0, "two actions"},
        {"action=550 a\rb\n\n", 0, "CR inside"},
        {"action=550 \x01 x\n\n", 0, "control byte"},
        {"action=550 \xc3\xa9t\xc3\xa9\n\n", 0, "not ASCII"},
        {"action=DUNNO\n\naction=550 extra\n\n", 0, "unasked data"},
        {"=DUNNO\n\n", 0, "no attribute name"},
        {"action=DUNNO\0\n\n", 15, "NUL"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        hostile_answer(cases[i].answer, cases[i].len, cases[i].why);
}

Test(policy_client, oversized_answer)
{
    static char big[3 * POLICY_CLIENT_MAX_ANSWER];

    memcpy(big, "action=", 7);
    memset(big + 7, 'x', sizeof(big) - 9);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\n';
    hostile_answer(big, sizeof(big), "answer over the answer limit");
    /* an action within the answer limit but above the action limit */
    static char act[POLICY_CLIENT_MAX_ANSWER - 10];
    memcpy(act, "action=", 7);
    memset(act + 7, 'y', sizeof(act) - 9);
    act[sizeof(act) - 2] = '\n';
    act[sizeof(act) - 1] = '\n';
    hostile_answer(act, sizeof(act), "action over the action limit");
}

Test(policy_client, closed_mid_answer)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.close_after = 1;
    fake_start(&f, "action=55", 3);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(ask(pc, action, err), -1);
    cr_assert_not_null(strstr(err, "middle"), "%s", err);
    policy_client_free(pc);
    fake_stop(&f);
}

Test(policy_client, slow_server_hits_the_deadline)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.delay_ms = 3000; /* an answer after the bound below: the deadline, not the answer, ended it */
    fake_start(&f, "action=DUNNO\n\n", 1);
    struct policy_client *pc = client_for(&f);
    long long t0 = now_ms();
    cr_assert_eq(policy_client_query(pc, req, NREQ, 300, action, sizeof(action), err, sizeof(err)),
                 -1);
    long long took = now_ms() - t0;
    cr_assert_geq(took, 280);
    /* the deadline plus 2 s of slack for a loaded machine, still before the answer */
    cr_assert_lt(took, 2300, "took %lld ms with a 300 ms deadline", took);
    cr_assert_not_null(strstr(err, "deadline"), "%s", err);
    policy_client_free(pc);
    fake_stop(&f);
}

/* policyd closed the idle connection (idle_timeout): the next query reconnects once */
Test(policy_client, stale_idle_connection_reconnects)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.close_after = 1;
    fake_start(&f, "action=DUNNO\n\n", 3);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    usleep(100 * 1000); /* the fake has closed its side by now */
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    cr_assert_str_eq(action, "DUNNO");
    policy_client_free(pc);
    fake_stop(&f);
    cr_assert_eq(f.nconns, 2);
}

/* the same, when the close comes after our request went out: EOF before any answer byte */
Test(policy_client, reused_connection_closed_under_the_request)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.drop_request = 2;
    fake_start(&f, "action=OK\n\n", 3);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    cr_assert_eq(ask(pc, action, err), 0, "%s", err);
    cr_assert_str_eq(action, "OK");
    policy_client_free(pc);
    fake_stop(&f);
    cr_assert_eq(f.nconns, 2);
    cr_assert_eq(f.nrequests, 3);
}

/* but a fresh connection closed without an answer is policyd failing: no second try */
Test(policy_client, fresh_connection_closed_is_an_error)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    f.drop_request = 1;
    fake_start(&f, "action=OK\n\n", 3);
    struct policy_client *pc = client_for(&f);
    cr_assert_eq(ask(pc, action, err), -1);
    policy_client_free(pc);
    fake_stop(&f);
    cr_assert_eq(f.nconns, 1);
}

Test(policy_client, nobody_listening)
{
    struct fake f = {0};
    char action[POLICY_CLIENT_MAX_ACTION + 1], err[256];

    fake_start(&f, "action=DUNNO\n\n", 0);
    fake_stop(&f); /* the port is closed now */
    struct policy_client *pc = client_for(&f);
    long long t0 = now_ms();
    cr_assert_eq(ask(pc, action, err), -1);
    /* refused at once: well before ask()'s 2 s deadline, with slack for a loaded machine */
    cr_assert_lt(now_ms() - t0, 1500);
    cr_assert_not_null(strstr(err, "connect"), "%s", err);
    policy_client_free(pc);
}

Test(policy_client, endpoints)
{
    static const struct {
        const char *spec;
        int family;
    } good[] = {
        {"inet:127.0.0.1:10040", AF_INET},
        {"inet:[::1]:10040", AF_INET6},
        {"unix:/run/callahead/policy", AF_UNIX},
    };
    static const char *const bad[] = {"",         "tcp:1.2.3.4:5", "inet:127.0.0.1",
                                      "inet::25", "inet:[::1]25",  "inet:127.0.0.1:x",
                                      "unix:"};
    struct policy_endpoint e;
    char err[128];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cr_assert_eq(policy_endpoint_parse(good[i].spec, &e, err, sizeof(err)), 0, "[%s]: %s",
                     good[i].spec, err);
        cr_assert_eq(e.family, good[i].family, "[%s] family %d", good[i].spec, e.family);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(policy_endpoint_parse(bad[i], &e, err, sizeof(err)), -1, "[%s]", bad[i]);
}
