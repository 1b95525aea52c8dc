/*
 * callout_bench.c - timed client for the callout benchmark (tests/bench/callout_run.sh).
 *
 * policy_bench cycles through at most 64 recipients, but a callout benchmark
 * needs every request to carry a never-seen address, and it must time a
 * plain SMTP dialogue the same way it times a policy query, so that the
 * difference between the two is the daemon's overhead and not a difference
 * between clients (swaks spends ~100 ms starting perl, far more than what
 * is measured). One thread, one libevent loop, C concurrent slots; each
 * address from the file is used exactly once, in order.
 *
 *   callout_bench -m policy|smtp [-h host] -p port [-c conns] [-T ms] [-s sender] -f addrfile
 *
 * policy: each slot keeps one connection (as Postfix's smtpd does) and sends
 *   a Postfix-like smtpd_access_policy request at protocol_state=RCPT per
 *   address; latency = request written -> "action=...\n\n" read.
 * smtp: each address gets its own session: connect, greeting, EHLO, MAIL
 *   FROM, RCPT TO, then QUIT (not timed). Two latencies are kept: session =
 *   connect() -> RCPT reply (what a callout costs), rcpt = RCPT TO written ->
 *   its reply (what an SMTP client of a front MX waits at RCPT).
 *
 * Prints "key: value" lines; exit 0 on a clean run, 1 when any request
 * failed (connect error, timeout, protocol error), 2 on usage errors, so a
 * script never records figures from a broken run. A measuring tool, not a
 * test.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define CB_MAX_ADDR 512    /* longest address accepted from the file */
#define CB_MAX_LINE 8192   /* longest reply line accepted from a server */
#define CB_MAX_REPLIES 32  /* distinct actions / reply codes counted */
#define CB_MAX_CONNS 10000 /* concurrency limit */

enum mode { MODE_POLICY, MODE_SMTP };
enum step { ST_CONNECT, ST_GREETING, ST_EHLO, ST_MAIL, ST_RCPT, ST_QUIT, ST_POLICY };

struct slot {
    struct bufferevent *bev;
    enum step step;
    long idx;          /* address being handled, -1 when idle */
    uint64_t t_start;  /* connect (smtp) or request write (policy) */
    uint64_t t_rcpt;   /* RCPT TO written */
    char action[256];  /* policy reply collected so far */
    struct event *tmo; /* per-request deadline */
};

struct tally {
    char name[64];
    long count;
};

static enum mode opt_mode = MODE_POLICY;
static const char *opt_host = "127.0.0.1";
static int opt_port;
static int opt_conns = 1;
static int opt_timeout_ms = 30000;
static const char *opt_sender = "sender@client.bench.test";

static char **addrs;
static long naddrs;
static long next_addr;
static long done, errors;
static uint64_t *lat_main; /* session or policy latency per address, ns */
static uint64_t *lat_rcpt; /* smtp only */
static struct tally tallies[CB_MAX_REPLIES];
static int ntallies;
static struct event_base *base;
static struct sockaddr_in server;
static int active;

static void slot_next(struct slot *s);

/* now_ns - monotonic clock in nanoseconds */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* tally_add - count one action or reply code (the first 63 bytes of it) */
static void tally_add(const char *what)
{
    char key[64];
    snprintf(key, sizeof(key), "%s", what);
    for (int i = 0; i < ntallies; i++) {
        if (strcmp(tallies[i].name, key) == 0) {
            tallies[i].count++;
            return;
        }
    }
    if (ntallies == CB_MAX_REPLIES) {
        snprintf(key, sizeof(key), "(other)");
        for (int i = 0; i < ntallies; i++)
            if (strcmp(tallies[i].name, key) == 0) {
                tallies[i].count++;
                return;
            }
        snprintf(tallies[ntallies - 1].name, sizeof(tallies[0].name), "(other)");
        tallies[ntallies - 1].count++;
        return;
    }
    snprintf(tallies[ntallies].name, sizeof(tallies[0].name), "%s", key);
    tallies[ntallies++].count = 1;
}

/* tally_words - count a policy action by its first two words ("550 5.1.1", "DUNNO"):
 * the rest carries the address or the next hop's text, distinct per request */
static void tally_words(const char *action)
{
    char key[64];
    size_t n = 0;
    int words = 0;
    while (action[n] != '\0' && n < sizeof(key) - 1) {
        if (action[n] == ' ' && ++words == 2)
            break;
        key[n] = action[n];
        n++;
    }
    key[n] = '\0';
    tally_add(key);
}

/* slot_close - drop the slot's connection (smtp sessions, errors) */
static void slot_close(struct slot *s)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
}

/* slot_fail - count a failed request, log why, move on to the next address */
static void slot_fail(struct slot *s, const char *why)
{
    if (s->idx >= 0) {
        fprintf(stderr, "callout_bench: %s: %s\n", addrs[s->idx], why);
        errors++;
        done++;
    }
    s->idx = -1;
    evtimer_del(s->tmo);
    slot_close(s);
    slot_next(s);
}

/* slot_finish - a request is answered: record its latencies */
static void slot_finish(struct slot *s, uint64_t t_end)
{
    lat_main[s->idx] = t_end - s->t_start;
    if (opt_mode == MODE_SMTP)
        lat_rcpt[s->idx] = t_end - s->t_rcpt;
    done++;
    s->idx = -1;
    evtimer_del(s->tmo);
}

/* send_fmt - queue one command or request on the slot's connection */
static void send_fmt(struct slot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(struct slot *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
    va_end(ap);
}

/* send_policy - one RCPT-state policy request for the slot's address */
static void send_policy(struct slot *s)
{
    s->action[0] = '\0';
    s->t_start = now_ns();
    send_fmt(s,
             "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
             "client_address=127.0.0.1\nclient_name=localhost\nclient_port=40000\n"
             "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
             "helo_name=client.bench.test\nsender=%s\nrecipient=%s\nrecipient_count=0\n"
             "queue_id=\ninstance=cb.%ld\nsize=0\netrn_domain=\nstress=\n"
             "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n"
             "ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
             "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n",
             opt_sender, addrs[s->idx], s->idx);
}

/* on_policy_read - collect "action=..." up to the empty line */
static void on_policy_read(struct slot *s, struct evbuffer *in)
{
    size_t len;
    char *line;
    while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
        if (len == 0) {
            uint64_t t = now_ns();
            if (s->action[0] == '\0') {
                free(line);
                slot_fail(s, "empty policy reply");
                return;
            }
            tally_words(s->action);
            slot_finish(s, t);
            free(line);
            slot_next(s);
            return;
        }
        if (strncmp(line, "action=", 7) == 0)
            snprintf(s->action, sizeof(s->action), "%s", line + 7);
        free(line);
    }
    if (evbuffer_get_length(in) > CB_MAX_LINE)
        slot_fail(s, "policy reply line too long");
}

/* on_smtp_read - walk the dialogue one complete (multi-line) reply at a time */
static void on_smtp_read(struct slot *s, struct evbuffer *in)
{
    size_t len;
    char *line;
    while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
        uint64_t t = now_ns();
        int code = 0;
        if (len < 3 || sscanf(line, "%3d", &code) != 1 || code < 200 || code > 599 ||
            (len > 3 && line[3] != ' ' && line[3] != '-')) {
            free(line);
            slot_fail(s, "bad SMTP reply");
            return;
        }
        int last = len == 3 || line[3] == ' ';
        if (!last) {
            free(line);
            continue;
        }
        switch (s->step) {
        case ST_GREETING:
            if (code != 220)
                goto bad_code;
            send_fmt(s, "EHLO client.bench.test\r\n");
            s->step = ST_EHLO;
            break;
        case ST_EHLO:
            if (code != 250)
                goto bad_code;
            send_fmt(s, "MAIL FROM:<%s>\r\n", opt_sender);
            s->step = ST_MAIL;
            break;
        case ST_MAIL:
            if (code != 250)
                goto bad_code;
            s->t_rcpt = now_ns();
            send_fmt(s, "RCPT TO:<%s>\r\n", addrs[s->idx]);
            s->step = ST_RCPT;
            break;
        case ST_RCPT: {
            char key[8];
            snprintf(key, sizeof(key), "%d", code);
            tally_add(key);
            slot_finish(s, t);
            send_fmt(s, "QUIT\r\n");
            s->step = ST_QUIT;
            struct timeval qtv = {5, 0}; /* a next hop that never answers QUIT */
            evtimer_add(s->tmo, &qtv);
            break;
        }
        case ST_QUIT:
            free(line);
            evtimer_del(s->tmo);
            slot_close(s);
            slot_next(s);
            return;
        default:
            break;
        }
        free(line);
        continue;
    bad_code:
        free(line);
        slot_fail(s, "unexpected SMTP reply code before RCPT");
        return;
    }
    if (evbuffer_get_length(in) > CB_MAX_LINE)
        slot_fail(s, "SMTP reply line too long");
}

/* on_read - dispatch by mode */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct slot *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (opt_mode == MODE_POLICY)
        on_policy_read(s, in);
    else
        on_smtp_read(s, in);
}

/* on_event - connected, closed or failed */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct slot *s = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (opt_mode == MODE_POLICY)
            send_policy(s);
        else
            s->step = ST_GREETING;
        return;
    }
    if (s->idx < 0 && opt_mode == MODE_SMTP) { /* closed after QUIT's reply or before it */
        evtimer_del(s->tmo);
        slot_close(s);
        slot_next(s);
        return;
    }
    slot_fail(s, (what & BEV_EVENT_EOF) ? "connection closed" : "connection error");
}

/* on_timeout - the request's deadline passed */
static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slot_fail(arg, "timeout");
}

/* slot_connect - open the slot's connection; 0 or -1 */
static int slot_connect(struct slot *s)
{
    s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL)
        return -1;
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    s->step = ST_CONNECT;
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&server, sizeof(server)) < 0) {
        slot_close(s);
        return -1;
    }
    return 0;
}

/* slot_next - take the next address, or retire the slot when none is left */
static void slot_next(struct slot *s)
{
    struct timeval tv = {opt_timeout_ms / 1000, (opt_timeout_ms % 1000) * 1000};
    if (s->idx >= 0 || (opt_mode == MODE_SMTP && s->bev != NULL))
        return; /* still busy (an smtp slot waits for QUIT's reply) */
    if (next_addr >= naddrs) {
        slot_close(s);
        if (--active == 0)
            event_base_loopexit(base, NULL);
        return;
    }
    s->idx = next_addr++;
    evtimer_add(s->tmo, &tv);
    if (opt_mode == MODE_SMTP) {
        s->t_start = now_ns();
        if (slot_connect(s) < 0)
            slot_fail(s, "connect");
        return;
    }
    if (s->bev == NULL) {
        s->t_start = now_ns();
        if (slot_connect(s) < 0)
            slot_fail(s, "connect");
        return; /* the request goes out once connected */
    }
    send_policy(s);
}

/* cmp_u64 - qsort order */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* print_latency - "NAME: p50 .. p90 .. p99 .. max .. mean .." in microseconds */
static void print_latency(const char *name, uint64_t *v, long n)
{
    double sum = 0;
    if (n == 0) {
        printf("%s: none\n", name);
        return;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_u64);
    for (long i = 0; i < n; i++)
        sum += (double)v[i];
#define PCT(p) ((double)v[(long)((double)(n - 1) * (p) + 0.5)] / 1000.0)
    printf("%s: p50 %.1f p90 %.1f p99 %.1f max %.1f mean %.1f\n", name, PCT(0.50), PCT(0.90),
           PCT(0.99), (double)v[n - 1] / 1000.0, sum / (double)n / 1000.0);
#undef PCT
}

/* read_addrs - one address a line; blank lines skipped; 0 or -1 */
static int read_addrs(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[CB_MAX_ADDR + 2];
    long cap = 0;
    if (f == NULL) {
        perror(path);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strcspn(line, "\r\n");
        if (line[len] == '\0' && !feof(f)) {
            fprintf(stderr, "callout_bench: %s: line too long\n", path);
            fclose(f);
            return -1;
        }
        line[len] = '\0';
        if (len == 0)
            continue;
        if (strpbrk(line, " \t<>") != NULL) {
            fprintf(stderr, "callout_bench: %s: bad address %s\n", path, line);
            fclose(f);
            return -1;
        }
        if (naddrs == cap) {
            cap = cap ? cap * 2 : 1024;
            char **n = realloc(addrs, (size_t)cap * sizeof(*addrs));
            if (n == NULL) {
                fclose(f);
                return -1;
            }
            addrs = n;
        }
        if ((addrs[naddrs++] = strdup(line)) == NULL) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

/* usage - print the synopsis and exit 2 */
static void usage(void)
{
    fprintf(stderr, "usage: callout_bench -m policy|smtp [-h host] -p port [-c conns] [-T ms]\n"
                    "                     [-s sender] -f addrfile\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "m:h:p:c:T:s:f:")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "policy") == 0)
                opt_mode = MODE_POLICY;
            else if (strcmp(optarg, "smtp") == 0)
                opt_mode = MODE_SMTP;
            else
                usage();
            break;
        case 'h':
            opt_host = optarg;
            break;
        case 'p':
            opt_port = atoi(optarg);
            break;
        case 'c':
            opt_conns = atoi(optarg);
            break;
        case 'T':
            opt_timeout_ms = atoi(optarg);
            break;
        case 's':
            opt_sender = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        default:
            usage();
        }
    }
    if (file == NULL || opt_port <= 0 || opt_port > 65535 || opt_conns < 1 ||
        opt_conns > CB_MAX_CONNS || opt_timeout_ms < 1 || strlen(opt_sender) > CB_MAX_ADDR)
        usage();
    memset(&server, 0, sizeof(server));
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server.sin_addr) != 1) {
        fprintf(stderr, "callout_bench: %s: not an IPv4 address\n", opt_host);
        return 2;
    }
    if (read_addrs(file) < 0 || naddrs == 0) {
        fprintf(stderr, "callout_bench: no addresses in %s\n", file);
        return 2;
    }
    lat_main = calloc((size_t)naddrs, sizeof(*lat_main));
    lat_rcpt = calloc((size_t)naddrs, sizeof(*lat_rcpt));
    base = event_base_new();
    if (lat_main == NULL || lat_rcpt == NULL || base == NULL)
        return 2;
    if (opt_conns > naddrs)
        opt_conns = (int)naddrs;
    struct slot *slots = calloc((size_t)opt_conns, sizeof(*slots));
    if (slots == NULL)
        return 2;
    uint64_t t0 = now_ns();
    active = opt_conns;
    for (int i = 0; i < opt_conns; i++) {
        slots[i].idx = -1;
        slots[i].tmo = evtimer_new(base, on_timeout, &slots[i]);
        if (slots[i].tmo == NULL)
            return 2;
    }
    for (int i = 0; i < opt_conns; i++)
        slot_next(&slots[i]);
    event_base_dispatch(base);
    double secs = (double)(now_ns() - t0) / 1e9;

    /* failed requests have no latency: keep only the answered ones */
    long n = 0;
    for (long i = 0; i < naddrs; i++) {
        if (lat_main[i] == 0)
            continue;
        lat_main[n] = lat_main[i];
        lat_rcpt[n] = lat_rcpt[i];
        n++;
    }
    printf("mode: %s\n", opt_mode == MODE_POLICY ? "policy" : "smtp");
    printf("addresses: %ld\nconnections: %d\nanswered: %ld\nerrors: %ld\n", naddrs, opt_conns, n,
           errors);
    printf("elapsed_s: %.3f\nper_second: %.1f\n", secs, secs > 0 ? (double)n / secs : 0.0);
    print_latency(opt_mode == MODE_POLICY ? "latency_us" : "session_us", lat_main, n);
    if (opt_mode == MODE_SMTP)
        print_latency("rcpt_us", lat_rcpt, n);
    for (int i = 0; i < ntallies; i++)
        printf("reply: %ld %s\n", tallies[i].count, tallies[i].name);
    return errors || n != naddrs ? 1 : 0;
}
