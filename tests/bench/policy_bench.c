/*
 * policy_bench.c - load generator for a Postfix policy server (callahead-policyd).
 *
 * One thread, one libevent loop, N concurrent connections, the same shape
 * as redis-benchmark so the two can be run side by side and compared. Each
 * connection sends a Postfix 3.7-like smtpd_access_policy request at
 * protocol_state=RCPT, reads "action=...\n\n", records the round-trip time
 * (CLOCK_MONOTONIC, ns) and sends the next one. Postfix sends one request at
 * a time per connection, so the pipeline depth defaults to 1.
 *
 * This is a measuring tool, not a test: it prints figures. A run with any
 * connect failure, protocol error, timeout or early close exits 1, so a
 * script never records figures from a broken run.
 *
 * Sockets are driven with plain read()/write() on libevent events rather
 * than bufferevents: the client must cost less per request than the server
 * it measures, or it measures itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define BENCH_MAX_ADDRS 64     /* recipients cycled through */
#define BENCH_MAX_ADDR_LEN 512 /* one recipient address */
#define BENCH_REPLY_MAX 8192   /* one reply, "action=...\n\n" included */
#define BENCH_MAX_ACTIONS 32   /* distinct actions counted; the rest go to "(other)" */
#define BENCH_MAX_PIPELINE 1024
#define BENCH_MAX_CONNS 100000

/* options */
struct bench_opts {
    const char *host;
    const char *port;
    const char *unix_path;
    int conns;
    long long requests; /* measured requests (-n); 0 when -t is used */
    double seconds;     /* measured duration (-t); 0 when -n is used */
    long long warmup;   /* requests answered before measuring starts */
    int pipeline;
    int timeout_ms; /* per request */
    double rate;    /* -R: requests per second over all connections; 0 = as fast as answered */
    const char *sender;
    char *addrs[BENCH_MAX_ADDRS];
    int naddrs;
    int quiet; /* no progress line */
};

enum conn_state {
    CONN_CONNECTING = 0,
    CONN_READY, /* connected, waiting for the start */
    CONN_RUNNING,
    CONN_CLOSED,
};

struct conn {
    int id;
    int fd;
    enum conn_state state;
    struct event *rev;
    struct event *wev;
    /* unsent request bytes */
    char *out;
    size_t outlen, outcap;
    /* reply bytes not yet parsed */
    char in[BENCH_REPLY_MAX];
    size_t inlen;
    /* send times of requests in flight, oldest first (a ring of pipeline slots) */
    uint64_t *sent_ns;
    /* with -R, the times the pacer scheduled them at (same ring): latency counts from
     * there, so a request that waited in the client for a free connection is not timed
     * as if it had been sent on time (coordinated omission) */
    uint64_t *sched_ns;
    int head, inflight;
    unsigned next_addr;
    int idle_queued; /* waiting in B.idleq for the rate limiter to allow a request */
};

struct action_count {
    char *text;
    long long n;
};

/* all run-time state: one instance, file-local */
static struct bench {
    struct bench_opts o;
    struct event_base *base;
    struct conn *conns;
    int nconnecting, nalive;
    /* prepared requests, one per recipient address */
    char *req[BENCH_MAX_ADDRS];
    size_t reqlen[BENCH_MAX_ADDRS];
    /* counters */
    long long issued;    /* requests sent (warm-up included) */
    long long completed; /* replies received (warm-up included) */
    long long limit;     /* stop issuing after this many (-n mode), or LLONG_MAX */
    int stopping;        /* -t deadline passed or an interrupt: issue no more */
    long long errors_connect, errors_proto, errors_timeout, errors_closed, errors_lost;
    /* measured phase */
    int measuring;
    uint64_t start_ns, end_ns, deadline_ns;
    uint64_t *lat; /* latencies in ns of measured requests */
    size_t nlat, latcap;
    struct action_count actions[BENCH_MAX_ACTIONS];
    int nactions;
    long long actions_other;
    struct event *tick;
    struct event *sigint;
    struct event *kick; /* re-fill idle connections after a close gave requests back */
    /* -R: connections waiting for their turn, first come first served (a ring) */
    struct event *pace;
    uint64_t rate_t0;
    int *idleq;
    int idleq_head, idleq_len;
    long long rate_behind; /* pacing ticks at which no connection was free to send */
} B;

static void conn_close(struct conn *c, long long *errcounter, const char *why);
static void conn_send_more(struct conn *c);

/* now_ns - monotonic clock in nanoseconds */
static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* die - a setup error: print and exit 2 (usage and setup failures differ from a failed run) */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "policy_bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void usage(void)
{
    fprintf(stderr, "usage: policy_bench [-h host] [-p port | -u unix_path] [-c conns]\n"
                    "                    [-n requests | -t seconds] [-w warmup] [-P depth]\n"
                    "                    [-a address]... [-r addr,addr,...] [-s sender]\n"
                    "                    [-R rate] [-T timeout_ms] [-q]\n"
                    "  -h host      server address (127.0.0.1)\n"
                    "  -p port      TCP port (10040)\n"
                    "  -u path      UNIX-domain socket instead of TCP\n"
                    "  -c conns     concurrent connections (50)\n"
                    "  -n requests  measured requests (100000)\n"
                    "  -t seconds   measure for this long instead of -n\n"
                    "  -w warmup    requests answered before measuring starts (0)\n"
                    "  -P depth     requests in flight per connection (1, as Postfix)\n"
                    "  -a address   a recipient; repeat to cycle through several\n"
                    "  -r list      comma-separated recipients, as repeated -a\n"
                    "  -s sender    envelope sender (sender@example.org)\n"
                    "  -R rate      offer this many requests/s over all connections (default:\n"
                    "               each connection sends again as soon as it is answered);\n"
                    "               latency then counts from each request's scheduled time\n"
                    "  -T ms        per-request timeout, counted as an error (10000)\n"
                    "  -q           no progress output\n"
                    "Exit: 0 clean run, 1 run with errors, 2 usage or setup error.\n");
    exit(2);
}

/* parse_ll - a whole non-negative decimal number within [min, max], or die */
static long long parse_ll(const char *s, long long min, long long max, const char *what)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        die("bad %s", what);
    return v;
}

/* add_addr - add one recipient, checking it is sane to put on a protocol line */
static void add_addr(const char *a, size_t len)
{
    char *copy;

    if (len == 0 || len >= BENCH_MAX_ADDR_LEN)
        die("bad recipient length");
    if (memchr(a, '\n', len) || memchr(a, '\r', len))
        die("recipient contains a line break");
    if (B.o.naddrs >= BENCH_MAX_ADDRS)
        die("more than 64 recipients");
    copy = strndup(a, len);
    if (copy == NULL)
        die("out of memory");
    B.o.addrs[B.o.naddrs++] = copy;
}

/* add_addr_list - "a,b,c" as three recipients */
static void add_addr_list(const char *list)
{
    const char *p = list, *comma;
    int before = B.o.naddrs;

    while (*p) {
        comma = strchr(p, ',');
        if (comma == NULL)
            comma = p + strlen(p);
        if (comma > p)
            add_addr(p, (size_t)(comma - p));
        p = *comma ? comma + 1 : comma;
    }
    if (B.o.naddrs == before)
        die("no recipient in list \"%s\"", list);
}

/*
 * build_request - the request for recipient i, as Postfix 3.7 smtpd sends it
 * at RCPT TO (attribute list from SMTPD_POLICY_README), so the server parses
 * a realistic amount of text, not just one line.
 */
static void build_request(int i)
{
    char buf[4096];
    int n;

    n = snprintf(buf, sizeof(buf),
                 "request=smtpd_access_policy\n"
                 "protocol_state=RCPT\n"
                 "protocol_name=ESMTP\n"
                 "client_address=192.0.2.%d\n"
                 "client_name=client%d.example.net\n"
                 "client_port=%d\n"
                 "reverse_client_name=client%d.example.net\n"
                 "server_address=127.0.0.1\n"
                 "server_port=25\n"
                 "helo_name=client%d.example.net\n"
                 "sender=%s\n"
                 "recipient=%s\n"
                 "recipient_count=0\n"
                 "queue_id=4YxTq93Zn2z1kB\n"
                 "instance=%x.%x.%x.%d\n"
                 "size=12345\n"
                 "etrn_domain=\n"
                 "stress=\n"
                 "sasl_method=\n"
                 "sasl_username=\n"
                 "sasl_sender=\n"
                 "ccert_subject=\n"
                 "ccert_issuer=\n"
                 "ccert_fingerprint=\n"
                 "ccert_pubkey_fingerprint=\n"
                 "encryption_protocol=TLSv1.3\n"
                 "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
                 "encryption_keysize=256\n"
                 "policy_context=\n"
                 "\n",
                 10 + i, i, 40000 + i, i, i, B.o.sender, B.o.addrs[i], 0x4a1u + (unsigned)i,
                 0x6745u, 0x1f2e3d4cu, 0);
    if (n < 0 || (size_t)n >= sizeof(buf))
        die("request too long");
    B.req[i] = strdup(buf);
    if (B.req[i] == NULL)
        die("out of memory");
    B.reqlen[i] = (size_t)n;
}

/* raise_nofile - make room for conns sockets plus some slack */
static void raise_nofile(int conns)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)conns + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        rl.rlim_max = need; /* works as root; otherwise the next call fails */
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "policy_bench: warning: RLIMIT_NOFILE is %llu, need %llu\n",
                (unsigned long long)rl.rlim_max, (unsigned long long)need);
        return;
    }
    rl.rlim_cur = need;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* record_latency - keep one measured latency (array grows; sorted once at the end) */
static void record_latency(uint64_t ns)
{
    if (B.nlat == B.latcap) {
        size_t cap = B.latcap ? B.latcap * 2 : 65536;
        uint64_t *p = realloc(B.lat, cap * sizeof(*p));
        if (p == NULL)
            die("out of memory");
        B.lat = p;
        B.latcap = cap;
    }
    B.lat[B.nlat++] = ns;
}

/* count_action - tally one action text (len bytes, no terminator needed) */
static void count_action(const char *a, size_t len)
{
    int i;

    for (i = 0; i < B.nactions; i++)
        if (strlen(B.actions[i].text) == len && memcmp(B.actions[i].text, a, len) == 0) {
            B.actions[i].n++;
            return;
        }
    if (B.nactions == BENCH_MAX_ACTIONS) {
        B.actions_other++;
        return;
    }
    B.actions[B.nactions].text = strndup(a, len);
    if (B.actions[B.nactions].text == NULL)
        die("out of memory");
    B.actions[B.nactions++].n = 1;
}

/* finish_if_done - leave the loop once nothing is in flight and nothing more will be sent */
static void finish_if_done(void)
{
    int more = !B.stopping && B.issued < B.limit;

    /* conn_close takes the lost requests out of issued, so this means "none in flight" */
    if (B.nalive > 0 && (more || B.completed < B.issued))
        return;
    if (B.end_ns == 0)
        B.end_ns = now_ns();
    event_base_loopbreak(B.base);
}

/*
 * reply_done - one complete reply (without its empty line) arrived on c.
 * Returns 0, or -1 after closing c for a protocol error.
 */
static int reply_done(struct conn *c, const char *r, size_t len)
{
    uint64_t t = now_ns(), sent;
    const char *line = r, *end = r + len, *nl, *action = NULL;
    size_t alen = 0;

    if (c->inflight == 0) {
        conn_close(c, &B.errors_proto, "reply without a request");
        return -1;
    }
    /* attributes are "name=value" lines; only "action" matters, others are ignored */
    while (line < end) {
        nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            nl = end;
        size_t ll = (size_t)(nl - line);
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        if (ll >= 7 && memcmp(line, "action=", 7) == 0) {
            action = line + 7;
            alen = ll - 7;
        } else if (memchr(line, '=', ll) == NULL) {
            conn_close(c, &B.errors_proto, "reply line without '='");
            return -1;
        }
        line = nl + 1;
    }
    if (action == NULL) {
        conn_close(c, &B.errors_proto, "reply without action=");
        return -1;
    }
    sent = B.o.rate > 0 ? c->sched_ns[c->head] : c->sent_ns[c->head];
    c->head = (c->head + 1) % B.o.pipeline;
    c->inflight--;
    B.completed++;
    if (B.measuring) {
        record_latency(t - sent);
        count_action(action, alen);
    } else if (B.completed >= B.o.warmup) {
        /* warm-up over: the clock starts now */
        B.measuring = 1;
        B.start_ns = t;
        if (B.o.seconds > 0)
            B.deadline_ns = t + (uint64_t)(B.o.seconds * 1e9);
    }
    if (B.deadline_ns && t >= B.deadline_ns)
        B.stopping = 1;
    return 0;
}

/* conn_flush - write what is pending; wait for EV_WRITE if the socket is full */
static int conn_flush(struct conn *c)
{
    while (c->outlen > 0) {
        ssize_t n = write(c->fd, c->out, c->outlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(c->wev, NULL);
                return 0;
            }
            conn_close(c, &B.errors_closed, strerror(errno));
            return -1;
        }
        memmove(c->out, c->out + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
    }
    return 0;
}

/* rate_allowance - with -R, how many requests may have been sent by now */
static long long rate_allowance(uint64_t t)
{
    return (long long)((double)(t - B.rate_t0) * B.o.rate / 1e9) + 1;
}

/* conn_send_more - fill c's pipeline up to the depth, within the run's limits */
static void conn_send_more(struct conn *c)
{
    int queued = 0;
    long long allowed = LLONG_MAX;

    if (B.o.rate > 0)
        allowed = rate_allowance(now_ns());
    while (c->state == CONN_RUNNING && c->inflight < B.o.pipeline && !B.stopping &&
           B.issued < B.limit) {
        if (B.issued >= allowed) {
            /* the pacer hands out the next slot; wait in line for it */
            if (!c->idle_queued) {
                int tail = (B.idleq_head + B.idleq_len) % B.o.conns;
                B.idleq[tail] = c->id;
                B.idleq_len++;
                c->idle_queued = 1;
            }
            break;
        }
        int a = (int)(c->next_addr++ % (unsigned)B.o.naddrs);
        size_t len = B.reqlen[a];
        if (c->outlen + len > c->outcap) {
            size_t cap = (c->outlen + len) * 2;
            char *p = realloc(c->out, cap);
            if (p == NULL)
                die("out of memory");
            c->out = p;
            c->outcap = cap;
        }
        memcpy(c->out + c->outlen, B.req[a], len);
        c->outlen += len;
        int slot = (c->head + c->inflight) % B.o.pipeline;
        c->sent_ns[slot] = now_ns();
        /* request number B.issued was due at rate_t0 + B.issued / rate (rate_allowance) */
        c->sched_ns[slot] =
            B.rate_t0 + (uint64_t)((double)B.issued * 1e9 / (B.o.rate > 0 ? B.o.rate : 1));
        c->inflight++;
        B.issued++;
        queued = 1;
    }
    if (queued)
        conn_flush(c);
}

/* conn_read_cb - read replies; each complete one frees a slot for the next request */
static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    ssize_t n;
    size_t off = 0;
    char *p;

    (void)what;
    n = read(fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
    if (n == 0) {
        conn_close(c, &B.errors_closed, "server closed the connection");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c, &B.errors_closed, strerror(errno));
        return;
    }
    c->inlen += (size_t)n;
    /* a reply ends at the first empty line: "\n\n" (or "\n\r\n") */
    while (off < c->inlen) {
        size_t rest = c->inlen - off, end, skip = 0;
        p = c->in + off;
        char *q = p;
        end = SIZE_MAX;
        while ((q = memchr(q, '\n', rest - (size_t)(q - p))) != NULL) {
            size_t at = (size_t)(q - p);
            if (at + 1 < rest && p[at + 1] == '\n') {
                end = at;
                skip = 2;
                break;
            }
            if (at + 2 < rest && p[at + 1] == '\r' && p[at + 2] == '\n') {
                end = at;
                skip = 3;
                break;
            }
            q++;
        }
        if (end == SIZE_MAX)
            break;
        if (end == 0 && p[0] == '\n') {
            conn_close(c, &B.errors_proto, "empty reply");
            return;
        }
        if (reply_done(c, p, end) < 0)
            return;
        off += end + skip;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    if (c->inlen == sizeof(c->in)) {
        conn_close(c, &B.errors_proto, "reply longer than 8192 bytes");
        return;
    }
    conn_send_more(c);
    finish_if_done();
}

/* conn_write_cb - the socket drained: send the rest */
static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    conn_flush(c);
}

/* pace_cb - with -R, every millisecond: let waiting connections send what the rate allows */
static void pace_cb(evutil_socket_t fd, short what, void *arg)
{
    long long allowed = rate_allowance(now_ns());

    (void)fd;
    (void)what;
    (void)arg;
    while (B.issued < allowed && !B.stopping && B.issued < B.limit) {
        if (B.idleq_len == 0) {
            B.rate_behind++; /* every connection is busy: the offered rate is not reached */
            break;
        }
        struct conn *c = &B.conns[B.idleq[B.idleq_head]];
        B.idleq_head = (B.idleq_head + 1) % B.o.conns;
        B.idleq_len--;
        c->idle_queued = 0;
        conn_send_more(c); /* may queue c again */
    }
    finish_if_done();
}

/* start_all - every connection is up (or failed): start the clock and send */
static void start_all(void)
{
    if (B.nalive == 0) {
        fprintf(stderr, "policy_bench: no connection could be opened\n");
        event_base_loopbreak(B.base);
        return;
    }
    B.rate_t0 = now_ns();
    if (B.o.rate > 0) {
        struct timeval ms = {0, 1000};
        event_add(B.pace, &ms);
    }
    if (B.o.warmup == 0) {
        B.measuring = 1;
        B.start_ns = now_ns();
        if (B.o.seconds > 0)
            B.deadline_ns = B.start_ns + (uint64_t)(B.o.seconds * 1e9);
    }
    for (int i = 0; i < B.o.conns; i++) {
        struct conn *c = &B.conns[i];
        if (c->state != CONN_READY)
            continue;
        c->state = CONN_RUNNING;
        event_assign(c->wev, B.base, c->fd, EV_WRITE, conn_write_cb, c);
        event_add(c->rev, NULL);
    }
    for (int i = 0; i < B.o.conns; i++)
        if (B.conns[i].state == CONN_RUNNING)
            conn_send_more(&B.conns[i]);
    finish_if_done();
}

/* conn_connected_cb - the non-blocking connect finished, one way or the other */
static void conn_connected_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)what;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    B.nconnecting--;
    if (err != 0) {
        if (++B.errors_connect <= 5)
            fprintf(stderr, "policy_bench: connection %d: connect: %s\n", c->id, strerror(err));
        close(c->fd);
        c->fd = -1;
        c->state = CONN_CLOSED;
    } else {
        c->state = CONN_READY;
        B.nalive++;
    }
    if (B.nconnecting == 0)
        start_all();
}

/* conn_close - close c, counting the requests it had in flight as lost */
static void conn_close(struct conn *c, long long *errcounter, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    if (errcounter != NULL) {
        (*errcounter)++;
        if (*errcounter <= 5)
            fprintf(stderr, "policy_bench: connection %d: %s\n", c->id, why);
    }
    if (c->rev)
        event_del(c->rev);
    if (c->wev)
        event_del(c->wev);
    close(c->fd);
    c->fd = -1;
    B.errors_lost += c->inflight;
    B.issued -= c->inflight; /* never answered: do not wait for them */
    c->inflight = 0;
    if (c->state != CONN_CONNECTING)
        B.nalive--;
    c->state = CONN_CLOSED;
    /* the lost requests are to be sent again, perhaps by a connection that is idle now */
    if (B.kick)
        event_active(B.kick, 0, 0);
    finish_if_done();
}

/* kick_cb - give every running connection the chance to fill its pipeline */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (int i = 0; i < B.o.conns; i++)
        if (B.conns[i].state == CONN_RUNNING)
            conn_send_more(&B.conns[i]);
    finish_if_done();
}

/* open_conn - start a non-blocking connect to the server */
static int open_conn(struct conn *c, const struct sockaddr *sa, socklen_t salen)
{
    int one = 1;

    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        if (++B.errors_connect <= 5)
            fprintf(stderr, "policy_bench: connection %d: socket: %s\n", c->id, strerror(errno));
        c->state = CONN_CLOSED;
        return -1;
    }
    if (sa->sa_family != AF_UNIX)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = CONN_CONNECTING;
    c->next_addr = (unsigned)c->id; /* spread the recipients over the connections */
    c->rev = event_new(B.base, c->fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(B.base, c->fd, EV_WRITE, conn_connected_cb, c);
    c->sent_ns = calloc((size_t)B.o.pipeline, sizeof(uint64_t));
    c->sched_ns = calloc((size_t)B.o.pipeline, sizeof(uint64_t));
    if (c->rev == NULL || c->wev == NULL || c->sent_ns == NULL || c->sched_ns == NULL)
        die("out of memory");
    if (connect(c->fd, sa, salen) != 0 && errno != EINPROGRESS) {
        if (++B.errors_connect <= 5)
            fprintf(stderr, "policy_bench: connection %d: connect: %s\n", c->id, strerror(errno));
        close(c->fd);
        c->fd = -1;
        c->state = CONN_CLOSED;
        return -1;
    }
    /* completion (also an immediate one, as on UNIX sockets) shows as writable */
    event_add(c->wev, NULL);
    B.nconnecting++;
    return 0;
}

/* tick_cb - every 100 ms: time out stuck requests, stop at the -t deadline, show progress */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t t = now_ns();
    uint64_t tmo = (uint64_t)B.o.timeout_ms * 1000000ull;
    static uint64_t last_report;

    (void)fd;
    (void)what;
    (void)arg;
    for (int i = 0; i < B.o.conns; i++) {
        struct conn *c = &B.conns[i];
        if (c->state == CONN_RUNNING && c->inflight > 0 && t - c->sent_ns[c->head] > tmo)
            conn_close(c, &B.errors_timeout, "request timed out");
    }
    if (B.deadline_ns && t >= B.deadline_ns && !B.stopping) {
        B.stopping = 1;
        finish_if_done();
    }
    if (!B.o.quiet && B.measuring && isatty(STDERR_FILENO) && t - last_report > 1000000000ull) {
        last_report = t;
        fprintf(stderr, "\r%lld requests, %.0f/s   ", (long long)B.nlat,
                (double)B.nlat / ((double)(t - B.start_ns) / 1e9));
    }
}

/* sigint_cb - ^C: stop sending, let what is in flight finish, print what we have */
static void sigint_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    if (B.stopping) {
        event_base_loopbreak(B.base);
        return;
    }
    B.stopping = 1;
    finish_if_done();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* pct_us - the p-th percentile (nearest rank) of the sorted latencies, in microseconds */
static double pct_us(double p)
{
    size_t rank;

    if (B.nlat == 0)
        return 0;
    rank = (size_t)((p / 100.0) * (double)B.nlat + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > B.nlat)
        rank = B.nlat;
    return (double)B.lat[rank - 1] / 1000.0;
}

/* report - the figures, one "name: value" per line so scripts can pick them out */
static void report(void)
{
    double secs = B.start_ns && B.end_ns > B.start_ns ? (double)(B.end_ns - B.start_ns) / 1e9 : 0;
    long long errors = B.errors_connect + B.errors_proto + B.errors_timeout + B.errors_closed;

    if (!B.o.quiet && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    if (B.nlat > 0)
        qsort(B.lat, B.nlat, sizeof(*B.lat), cmp_u64);
    if (B.o.unix_path)
        printf("server: unix:%s\n", B.o.unix_path);
    else
        printf("server: inet:%s:%s\n", B.o.host, B.o.port);
    printf("connections: %d\n", B.o.conns);
    printf("pipeline: %d\n", B.o.pipeline);
    printf("warmup: %lld\n", B.o.warmup);
    printf("requests: %zu\n", B.nlat);
    printf("errors: %lld (connect %lld, protocol %lld, timeout %lld, closed %lld; "
           "requests lost %lld)\n",
           errors, B.errors_connect, B.errors_proto, B.errors_timeout, B.errors_closed,
           B.errors_lost);
    printf("seconds: %.3f\n", secs);
    printf("requests_per_second: %.0f\n", secs > 0 ? (double)B.nlat / secs : 0.0);
    printf("latency_us: p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n", pct_us(50), pct_us(90),
           pct_us(99), pct_us(99.9), pct_us(100));
    for (int i = 0; i < B.nactions; i++)
        printf("action: %lld %s\n", B.actions[i].n, B.actions[i].text);
    if (B.actions_other)
        printf("action: %lld (other)\n", B.actions_other);
    if (B.o.rate > 0) {
        printf("offered_rate: %.0f\n", B.o.rate);
        printf("latency_from: scheduled send time\n");
        printf("rate_behind_ms: %lld\n", B.rate_behind);
    }
}

/* resolve - the server's socket address */
static void resolve(struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (B.o.unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(B.o.unix_path) >= sizeof(un->sun_path))
            die("unix socket path too long: %s", B.o.unix_path);
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, B.o.unix_path);
        *len = sizeof(*un);
        return;
    }
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(B.o.host, B.o.port, &hints, &res);
    if (rc != 0)
        die("cannot resolve host: %s", gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct timeval tv = {0, 100000};
    long long errors;
    int ch;

    B.o.host = "127.0.0.1";
    B.o.port = "10040";
    B.o.conns = 50;
    B.o.pipeline = 1;
    B.o.timeout_ms = 10000;
    B.o.sender = "sender@example.org";
    while ((ch = getopt(argc, argv, "h:p:u:c:n:t:w:P:a:r:s:R:T:q")) != -1) {
        switch (ch) {
        case 'h':
            B.o.host = optarg;
            break;
        case 'p':
            B.o.port = optarg;
            parse_ll(optarg, 1, 65535, "port");
            break;
        case 'u':
            B.o.unix_path = optarg;
            break;
        case 'c':
            B.o.conns = (int)parse_ll(optarg, 1, BENCH_MAX_CONNS, "connection count");
            break;
        case 'n':
            B.o.requests = parse_ll(optarg, 1, LLONG_MAX / 4, "request count");
            break;
        case 't': {
            char *end;
            B.o.seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(B.o.seconds > 0 && B.o.seconds < 86400))
                die("bad duration: %s", optarg);
            break;
        }
        case 'w':
            B.o.warmup = parse_ll(optarg, 0, LLONG_MAX / 4, "warm-up count");
            break;
        case 'P':
            B.o.pipeline = (int)parse_ll(optarg, 1, BENCH_MAX_PIPELINE, "pipeline depth");
            break;
        case 'a':
            add_addr(optarg, strlen(optarg));
            break;
        case 'r':
            add_addr_list(optarg);
            break;
        case 's':
            if (strlen(optarg) >= BENCH_MAX_ADDR_LEN || strpbrk(optarg, "\r\n"))
                die("bad sender: %s", optarg);
            B.o.sender = optarg;
            break;
        case 'R': {
            char *end;
            B.o.rate = strtod(optarg, &end);
            if (end == optarg || *end || !(B.o.rate >= 1 && B.o.rate <= 1e8))
                die("bad rate: %s", optarg);
            break;
        }
        case 'T':
            B.o.timeout_ms = (int)parse_ll(optarg, 1, 3600000, "timeout");
            break;
        case 'q':
            B.o.quiet = 1;
            break;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();
    if (B.o.requests && B.o.seconds > 0)
        die("give -n or -t, not both");
    if (!B.o.requests && !(B.o.seconds > 0))
        B.o.requests = 100000;
    if (B.o.naddrs == 0)
        add_addr_list("alice@example.test");
    B.limit = B.o.requests ? B.o.warmup + B.o.requests : LLONG_MAX;

    for (int i = 0; i < B.o.naddrs; i++)
        build_request(i);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(B.o.conns);
    resolve(&ss, &sslen);

    /* pacing at 1 ms needs timers finer than epoll's millisecond rounding */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        die("out of memory");
    if (B.o.rate > 0)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    B.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (B.base == NULL)
        die("event_base_new failed");
    B.idleq = calloc((size_t)B.o.conns, sizeof(*B.idleq));
    if (B.idleq == NULL)
        die("out of memory");
    B.conns = calloc((size_t)B.o.conns, sizeof(*B.conns));
    if (B.conns == NULL)
        die("out of memory");
    for (int i = 0; i < B.o.conns; i++) {
        B.conns[i].id = i;
        B.conns[i].fd = -1;
        open_conn(&B.conns[i], (struct sockaddr *)&ss, sslen);
    }
    B.tick = event_new(B.base, -1, EV_PERSIST, tick_cb, NULL);
    B.sigint = evsignal_new(B.base, SIGINT, sigint_cb, NULL);
    B.kick = event_new(B.base, -1, 0, kick_cb, NULL);
    B.pace = event_new(B.base, -1, EV_PERSIST, pace_cb, NULL);
    event_add(B.tick, &tv);
    event_add(B.sigint, NULL);
    if (B.nconnecting == 0)
        start_all();
    else
        event_base_dispatch(B.base);
    if (B.end_ns == 0)
        B.end_ns = now_ns();

    report();
    errors = B.errors_connect + B.errors_proto + B.errors_timeout + B.errors_closed;

    for (int i = 0; i < B.o.conns; i++) {
        struct conn *c = &B.conns[i];
        if (c->fd >= 0)
            close(c->fd);
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        free(c->out);
        free(c->sent_ns);
        free(c->sched_ns);
    }
    free(B.conns);
    for (int i = 0; i < B.nactions; i++)
        free(B.actions[i].text);
    for (int i = 0; i < B.o.naddrs; i++) {
        free(B.req[i]);
        free(B.o.addrs[i]);
    }
    free(B.lat);
    event_free(B.tick);
    event_free(B.sigint);
    event_free(B.kick);
    event_free(B.pace);
    free(B.idleq);
    event_base_free(B.base);
    return errors ? 1 : (B.nlat == 0 ? 1 : 0);
}
