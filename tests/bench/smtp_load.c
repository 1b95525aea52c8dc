/*
 * smtp_load.c - SMTP load generator for the goodput-vs-bounces experiment
 * (tests/bench/paper.sh, docs/BENCHMARKS.md).
 *
 * Why our own: smtp-source cannot mix valid and invalid recipients in one run,
 * does not time each SMTP step, and does not say how many valid messages got
 * through, which is the figure the experiment is about (goodput). One thread,
 * one libevent loop, N sessions kept open; each session says EHLO once, then
 * sends up to M messages (MAIL, one RCPT, DATA, body, ".") and QUITs, and a
 * new session takes its place. Each message goes to an invalid recipient with
 * probability -i percent, else to a valid one. Commands are sent one at a time
 * (no PIPELINING) so each step's reply time is its own.
 *
 *   smtp_load -p port [-h host] [-c conns] [-t seconds] [-w warmup] [-i pct]
 *             [-d domain] [-g tag] [-V valid_pool] [-I invalid_pool] [-M msgs]
 *             [-b body_bytes] [-S seed] [-T timeout_ms] [-r] [-P]
 *
 * Recipients: valid ones are u<tag><n>@domain, n drawn from [0, V); invalid
 * ones x<tag><n>@domain, n from [0, I) or, with I = 0, a counter (every
 * invalid address is new: a dictionary attack). The next hop of the
 * experiment knows u*@ and refuses x*@. -P (prefill) walks each pool address
 * once in order and stops; -r stops every transaction after RCPT (RSET), so a
 * prefill run fills a verification cache without delivering mail.
 *
 * Counted only between the warm-up and its end: every reply, by step and
 * class. Goodput = valid messages accepted (250 after the ".") per second.
 * Exit 0 on a clean run; 1 when the dialogue went wrong (a reply that is not
 * SMTP, an unexpected code at EHLO/MAIL/RSET, an early close, a timeout, a
 * connect error other than a refusal), so a broken run never yields figures;
 * 2 on usage errors. A measuring tool, not a test.
 */
#include <errno.h>
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
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#define SL_MAX_LINE 2048        /* longest SMTP reply line accepted (RFC 5321: 512) */
#define SL_MAX_REPLY_LINES 64   /* lines of one multi-line reply */
#define SL_MAX_CONNS 10000      /* concurrency limit */
#define SL_MAX_SAMPLES 8000000L /* latencies kept per step; later ones are not kept */
#define SL_MAX_BODY (10L << 20) /* -b limit */
#define SL_RETRY_MS 100         /* wait after a refused connection */

/* session states; one reply is awaited in each of them but S_IDLE and S_RETRY */
enum state {
    S_IDLE,    /* no connection */
    S_CONNECT, /* connect() in progress, then waiting for the greeting */
    S_EHLO,    /* EHLO sent */
    S_MAIL,    /* MAIL FROM sent */
    S_RCPT,    /* RCPT TO sent */
    S_DATA,    /* DATA sent, 354 expected */
    S_DOT,     /* body and "." sent */
    S_RSET,    /* RSET sent after a refused transaction */
    S_QUIT,    /* QUIT sent; any reply or the close ends the session */
    S_RETRY,   /* refused; a timer starts the next session */
    S_NSTATES
};
static const char *const state_names[S_NSTATES] = {"idle", "connect", "ehlo", "mail", "rcpt",
                                                   "data", "dot",     "rset", "quit", "retry"};

/* timed steps: the reply to each command, and connect() to greeting */
enum step { STEP_GREETING, STEP_EHLO, STEP_MAIL, STEP_RCPT, STEP_DATA, STEP_DOT, STEP_N };
static const char *const step_names[STEP_N] = {"greeting", "ehlo", "mail", "rcpt", "data", "dot"};

struct session {
    struct bufferevent *bev;
    struct event *timer; /* reply deadline, or the retry delay in S_RETRY */
    enum state state;
    int msgs;        /* messages started in this session */
    int invalid;     /* current recipient is invalid */
    int lines;       /* lines of the reply being read */
    unsigned gen;    /* bumped at each close: a callback sees whether its connection is gone */
    uint64_t t_sent; /* last command written (or connect started) */
    char rcpt[160];  /* current recipient */
};

struct samples {
    uint64_t *v; /* ns */
    long n, cap;
    long dropped;
};

/* options */
static const char *opt_host = "127.0.0.1";
static int opt_port;
static int opt_conns = 200;
static double opt_seconds = 10;
static double opt_warmup = 0;
static double opt_invalid_pct = 0;
static const char *opt_domain = "dept.test";
static const char *opt_tag = "";
static long opt_valid_pool = 1000;
static long opt_invalid_pool = 0;
static int opt_msgs = 5;
static long opt_body = 2048;
static uint64_t opt_seed = 1;
static int opt_timeout_ms = 120000;
static int opt_rcpt_only;
static int opt_prefill;
static const char *opt_sender = "sender@client.bench.test";

/* run state */
static struct event_base *base;
static struct sockaddr_in server;
static struct session *sessions;
static char *body; /* the message text after DATA, ending in ".\r\n" */
static size_t body_len;
static uint64_t rng_state;
static uint64_t t_begin, t_measure, t_end; /* ns */
static unsigned long invalid_counter;
static long prefill_next, prefill_total;
static int stopping;
static struct samples lat[STEP_N];

/* counters, within the measuring window only */
static struct {
    long sessions, messages, accepted_valid, accepted_invalid;
    long rcpt_ok_valid, rcpt_ok_invalid;   /* RCPT accepted (-r) */
    long rcpt_5xx_valid, rcpt_5xx_invalid; /* rejected at RCPT */
    long rcpt_4xx, mail_4xx, data_4xx, data_5xx, dot_4xx, dot_5xx;
    long refused, replies_421;
} cnt;
static long errors; /* whole run: any is fatal for the figures */

static void session_start(struct session *s);
static void session_next_message(struct session *s);

/* now_ns - monotonic clock in nanoseconds */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* measuring - is time T inside the measuring window (after the warm-up)? */
static int measuring(uint64_t t)
{
    return t >= t_measure && t <= t_end;
}

/* rng_next - xorshift64*: the same seed gives the same recipient sequence */
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* sample_add - keep one latency of a step (bounded: later ones are counted, not kept) */
static void sample_add(enum step st, uint64_t ns)
{
    struct samples *sp = &lat[st];
    if (sp->n == sp->cap) {
        if (sp->cap >= SL_MAX_SAMPLES) {
            sp->dropped++;
            return;
        }
        long ncap = sp->cap ? sp->cap * 2 : 4096;
        uint64_t *nv = realloc(sp->v, (size_t)ncap * sizeof(*nv));
        if (nv == NULL) {
            sp->dropped++;
            return;
        }
        sp->v = nv;
        sp->cap = ncap;
    }
    sp->v[sp->n++] = ns;
}

/* enter_state - the one place a session changes state */
static void enter_state(struct session *s, enum state next)
{
    if (next >= S_NSTATES) {
        fprintf(stderr, "smtp_load: bad state %d\n", (int)next);
        abort();
    }
    s->state = next;
}

/* send_cmd - write one command, start its reply deadline and its clock */
static void send_cmd(struct session *s, enum state next, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_cmd(struct session *s, enum state next, const char *fmt, ...)
{
    va_list ap;
    struct timeval tv = {opt_timeout_ms / 1000, (opt_timeout_ms % 1000) * 1000};
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
    va_end(ap);
    enter_state(s, next);
    s->lines = 0;
    s->t_sent = now_ns();
    evtimer_add(s->timer, &tv);
}

/* session_close - drop the connection; the session is idle afterwards */
static void session_close(struct session *s)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    s->gen++;
    evtimer_del(s->timer);
    enter_state(s, S_IDLE);
}

/* session_error - the dialogue went wrong: count it, say why, start over */
static void session_error(struct session *s, const char *why, const char *reply)
{
    errors++;
    if (errors <= 20)
        fprintf(stderr, "smtp_load: error in state %s: %s%s%s\n", state_names[s->state], why,
                reply ? ": " : "", reply ? reply : "");
    session_close(s);
    session_start(s);
}

/* session_retry - refused: wait a little, then connect again */
static void session_retry(struct session *s)
{
    struct timeval tv = {0, SL_RETRY_MS * 1000};
    session_close(s);
    enter_state(s, S_RETRY);
    evtimer_add(s->timer, &tv);
}

/* pick_rcpt - the next recipient: valid or invalid by the configured share, or
 * the next pool address in a prefill run; returns -1 when a prefill is through */
static int pick_rcpt(struct session *s)
{
    if (opt_prefill) {
        if (prefill_next >= prefill_total)
            return -1;
        long i = prefill_next++;
        s->invalid = i >= opt_valid_pool;
        if (s->invalid)
            snprintf(s->rcpt, sizeof(s->rcpt), "x%s%ld@%s", opt_tag, i - opt_valid_pool,
                     opt_domain);
        else
            snprintf(s->rcpt, sizeof(s->rcpt), "u%s%ld@%s", opt_tag, i, opt_domain);
        return 0;
    }
    /* 53 random bits -> [0, 100) */
    double r = (double)(rng_next() >> 11) / 9007199254740992.0 * 100.0;
    s->invalid = r < opt_invalid_pct;
    if (s->invalid) {
        unsigned long n = opt_invalid_pool > 0
                              ? (unsigned long)(rng_next() % (uint64_t)opt_invalid_pool)
                              : invalid_counter++;
        snprintf(s->rcpt, sizeof(s->rcpt), "x%s%lu@%s", opt_tag, n, opt_domain);
    } else {
        snprintf(s->rcpt, sizeof(s->rcpt), "u%s%lu@%s", opt_tag,
                 (unsigned long)(rng_next() % (uint64_t)opt_valid_pool), opt_domain);
    }
    return 0;
}

/* session_next_message - MAIL FROM for the next message, or QUIT at the end of
 * the session (M messages, the run's end, or a prefill that is through) */
static void session_next_message(struct session *s)
{
    if (stopping || s->msgs >= opt_msgs || pick_rcpt(s) < 0) {
        send_cmd(s, S_QUIT, "QUIT\r\n");
        return;
    }
    s->msgs++;
    send_cmd(s, S_MAIL, "MAIL FROM:<%s>\r\n", opt_sender);
}

/* transaction_done - a message ended (accepted or refused at some step) */
static void transaction_done(struct session *s, uint64_t t, int refused)
{
    if (measuring(t))
        cnt.messages++;
    if (refused)
        send_cmd(s, S_RSET, "RSET\r\n");
    else
        session_next_message(s);
}

/* on_reply - one complete reply (CODE is that of its last line) in the session's state */
static void on_reply(struct session *s, int code, const char *text)
{
    uint64_t t = now_ns();
    int m = measuring(t);
    int cls = code / 100;
    evtimer_del(s->timer);

    static const int step_of[S_NSTATES] = {[S_CONNECT] = STEP_GREETING,
                                           [S_EHLO] = STEP_EHLO,
                                           [S_MAIL] = STEP_MAIL,
                                           [S_RCPT] = STEP_RCPT,
                                           [S_DATA] = STEP_DATA,
                                           [S_DOT] = STEP_DOT,
                                           [S_IDLE] = -1,
                                           [S_RSET] = -1,
                                           [S_QUIT] = -1,
                                           [S_RETRY] = -1};
    if (m && step_of[s->state] >= 0)
        sample_add((enum step)step_of[s->state], t - s->t_sent);

    if (code == 421 && s->state != S_QUIT) { /* the server is closing: count, start over */
        if (m)
            cnt.replies_421++;
        if (s->state == S_RCPT || s->state == S_DATA || s->state == S_DOT)
            if (m)
                cnt.messages++;
        session_retry(s); /* not at once: a server that says 421 is overloaded */
        return;
    }
    switch (s->state) {
    case S_CONNECT:
        if (code != 220) {
            session_error(s, "greeting", text);
            return;
        }
        if (m)
            cnt.sessions++;
        s->msgs = 0;
        send_cmd(s, S_EHLO, "EHLO client.bench.test\r\n");
        return;
    case S_EHLO:
        if (code != 250) {
            session_error(s, "EHLO", text);
            return;
        }
        {
            session_next_message(s);
            return;
        }
    case S_MAIL:
        if (cls == 2) {
            send_cmd(s, S_RCPT, "RCPT TO:<%s>\r\n", s->rcpt);
            return;
        }
        if (cls == 4) {
            if (m)
                cnt.mail_4xx++;
            {
                transaction_done(s, t, 1);
                return;
            }
        }
        {
            session_error(s, "MAIL FROM", text);
            return;
        }
    case S_RCPT:
        if (cls == 2) {
            if (opt_rcpt_only) {
                if (m)
                    (*(s->invalid ? &cnt.rcpt_ok_invalid : &cnt.rcpt_ok_valid))++;
                {
                    transaction_done(s, t, 1);
                    return;
                }
            }
            {
                send_cmd(s, S_DATA, "DATA\r\n");
                return;
            }
        }
        if (m) {
            if (cls == 4)
                cnt.rcpt_4xx++;
            else
                (*(s->invalid ? &cnt.rcpt_5xx_invalid : &cnt.rcpt_5xx_valid))++;
        }
        {
            transaction_done(s, t, 1);
            return;
        }
    case S_DATA:
        if (code == 354) {
            evbuffer_add(bufferevent_get_output(s->bev), body, body_len);
            enter_state(s, S_DOT);
            s->lines = 0;
            s->t_sent = now_ns();
            struct timeval tv = {opt_timeout_ms / 1000, (opt_timeout_ms % 1000) * 1000};
            evtimer_add(s->timer, &tv);
            return;
        }
        if (m)
            (*(cls == 4 ? &cnt.data_4xx : &cnt.data_5xx))++;
        {
            transaction_done(s, t, 1);
            return;
        }
    case S_DOT:
        if (cls == 2) {
            if (m)
                (*(s->invalid ? &cnt.accepted_invalid : &cnt.accepted_valid))++;
            {
                transaction_done(s, t, 0);
                return;
            }
        }
        if (m)
            (*(cls == 4 ? &cnt.dot_4xx : &cnt.dot_5xx))++;
        {
            transaction_done(s, t, 0); /* the transaction is over: no RSET needed */
            return;
        }
    case S_RSET:
        if (code != 250) {
            session_error(s, "RSET", text);
            return;
        }
        {
            session_next_message(s);
            return;
        }
    case S_QUIT:
        session_close(s);
        {
            session_start(s);
            return;
        }
    default: {
        session_error(s, "reply in a state that expects none", text);
        return;
    }
    }
}

/* on_read - split the input into replies: "CODE-text" continues, "CODE text" ends one */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned gen = s->gen; /* a reply may close the connection and open the next one */
    size_t len;
    char *line;
    while (s->gen == gen && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
        int code = 0;
        int ok = len >= 3 && len <= SL_MAX_LINE && line[0] >= '2' && line[0] <= '5' &&
                 line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
                 (len == 3 || line[3] == ' ' || line[3] == '-');
        if (!ok || s->state == S_IDLE || s->state == S_RETRY) {
            session_error(s, ok ? "unsolicited reply" : "not an SMTP reply", line);
            free(line);
            return;
        }
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (len > 3 && line[3] == '-') {
            free(line);
            if (++s->lines > SL_MAX_REPLY_LINES) {
                session_error(s, "reply with too many lines", NULL);
                return;
            }
            continue;
        }
        on_reply(s, code, line);
        free(line);
    }
    if (s->gen == gen && evbuffer_get_length(in) > SL_MAX_LINE)
        session_error(s, "reply line too long", NULL);
}

/* on_event - connected, refused, closed or failed */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return; /* the greeting's clock started at connect() */
    }
    if (s->state == S_QUIT) { /* closed after QUIT, with or without its reply */
        session_close(s);
        session_start(s);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (s->state == S_CONNECT && (what & BEV_EVENT_ERROR) &&
        (err == ECONNREFUSED || err == ECONNRESET)) {
        if (measuring(now_ns()))
            cnt.refused++;
        session_retry(s);
        return;
    }
    session_error(s,
                  (what & BEV_EVENT_EOF) ? "connection closed by the server" : "connection error",
                  (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(err) : NULL);
}

/* on_timer - a reply deadline passed, or a retry delay is over */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    (void)fd;
    (void)what;
    if (s->state == S_RETRY) {
        enter_state(s, S_IDLE);
        session_start(s);
        return;
    }
    session_error(s, "timeout waiting for a reply", NULL);
}

/* session_start - open a new connection unless the run is over */
static void session_start(struct session *s)
{
    struct timeval tv = {opt_timeout_ms / 1000, (opt_timeout_ms % 1000) * 1000};
    if (stopping || (opt_prefill && prefill_next >= prefill_total))
        return;
    s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        errors++;
        fprintf(stderr, "smtp_load: bufferevent_socket_new failed\n");
        return;
    }
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    enter_state(s, S_CONNECT);
    s->lines = 0;
    s->t_sent = now_ns();
    evtimer_add(s->timer, &tv);
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&server, sizeof(server)) < 0) {
        int err = EVUTIL_SOCKET_ERROR();
        if (err == ECONNREFUSED) {
            if (measuring(now_ns()))
                cnt.refused++;
            session_retry(s);
            return;
        }
        errors++;
        fprintf(stderr, "smtp_load: connect: %s\n", evutil_socket_error_to_string(err));
        session_close(s);
    }
}

/* on_end - the measuring window is over: stop the loop (open sessions are dropped) */
static void on_end(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    stopping = 1;
    event_base_loopbreak(base);
}

/* on_prefill_check - a prefill run ends when every pool address has been sent
 * and every session has ended */
static void on_prefill_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (prefill_next < prefill_total)
        return;
    for (int i = 0; i < opt_conns; i++)
        if (sessions[i].state != S_IDLE)
            return;
    {
        t_end = now_ns();
        stopping = 1;
        event_base_loopbreak(base);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* pct - the P-th percentile (nearest rank) of sorted samples, in ms */
static double pct(const struct samples *sp, double p)
{
    if (sp->n == 0)
        return 0;
    long k = (long)(p / 100.0 * (double)sp->n + 0.5);
    if (k < 1)
        k = 1;
    if (k > sp->n)
        k = sp->n;
    return (double)sp->v[k - 1] / 1e6;
}

/* build_body - headers and BYTES of text lines, ending in CRLF "." CRLF */
static int build_body(long bytes)
{
    static const char line[] =
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
    size_t ll = sizeof(line) - 1;
    size_t cap = (size_t)bytes + ll + 512;
    body = malloc(cap);
    if (body == NULL)
        return -1;
    int n = snprintf(body, cap,
                     "From: <%s>\r\nTo: undisclosed-recipients:;\r\nSubject: goodput benchmark\r\n"
                     "\r\n",
                     opt_sender);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    body_len = (size_t)n;
    while (body_len < (size_t)n + (size_t)bytes) {
        memcpy(body + body_len, line, ll);
        body_len += ll;
    }
    memcpy(body + body_len, ".\r\n", 3);
    body_len += 3;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: smtp_load -p port [-h host] [-c conns] [-t seconds] [-w warmup_seconds]\n"
            "       [-i invalid_percent] [-d domain] [-g tag] [-V valid_pool] [-I invalid_pool]\n"
            "       [-M msgs_per_session] [-b body_bytes] [-S seed] [-T timeout_ms] [-f sender]\n"
            "       [-r] [-P]\n");
    exit(2);
}

/* num - a bounded number from the command line, or usage() */
static double num(const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "h:p:c:t:w:i:d:g:V:I:M:b:S:T:f:rP")) != -1) {
        switch (c) {
        case 'h':
            opt_host = optarg;
            break;
        case 'p':
            opt_port = (int)num(optarg, 1, 65535);
            break;
        case 'c':
            opt_conns = (int)num(optarg, 1, SL_MAX_CONNS);
            break;
        case 't':
            opt_seconds = num(optarg, 0.1, 86400);
            break;
        case 'w':
            opt_warmup = num(optarg, 0, 3600);
            break;
        case 'i':
            opt_invalid_pct = num(optarg, 0, 100);
            break;
        case 'd':
            opt_domain = optarg;
            break;
        case 'g':
            opt_tag = optarg;
            break;
        case 'V':
            opt_valid_pool = (long)num(optarg, 1, 1e9);
            break;
        case 'I':
            opt_invalid_pool = (long)num(optarg, 0, 1e9);
            break;
        case 'M':
            opt_msgs = (int)num(optarg, 1, 1000);
            break;
        case 'b':
            opt_body = (long)num(optarg, 0, (double)SL_MAX_BODY);
            break;
        case 'S':
            opt_seed = (uint64_t)num(optarg, 1, 1e15);
            break;
        case 'T':
            opt_timeout_ms = (int)num(optarg, 1, 3600000);
            break;
        case 'f':
            opt_sender = optarg;
            break;
        case 'r':
            opt_rcpt_only = 1;
            break;
        case 'P':
            opt_prefill = 1;
            break;
        default:
            usage();
        }
    }
    if (opt_port == 0 || optind != argc || strlen(opt_domain) > 100 || strlen(opt_tag) > 20 ||
        strlen(opt_sender) > 200)
        usage();
    memset(&server, 0, sizeof(server));
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server.sin_addr) != 1)
        usage();
    rng_state = opt_seed * 0x9E3779B97F4A7C15ull | 1;
    if (build_body(opt_body) < 0) {
        fprintf(stderr, "smtp_load: out of memory\n");
        return 1;
    }
    if (opt_prefill) {
        prefill_total = opt_valid_pool + opt_invalid_pool;
        opt_warmup = 0;
    }

    base = event_base_new();
    sessions = calloc((size_t)opt_conns, sizeof(*sessions));
    if (base == NULL || sessions == NULL) {
        fprintf(stderr, "smtp_load: out of memory\n");
        return 1;
    }
    t_begin = now_ns();
    t_measure = t_begin + (uint64_t)(opt_warmup * 1e9);
    t_end = opt_prefill ? UINT64_MAX : t_measure + (uint64_t)(opt_seconds * 1e9);
    for (int i = 0; i < opt_conns; i++) {
        sessions[i].timer = evtimer_new(base, on_timer, &sessions[i]);
        if (sessions[i].timer == NULL) {
            fprintf(stderr, "smtp_load: out of memory\n");
            return 1;
        }
        enter_state(&sessions[i], S_IDLE);
    }
    struct event *end_ev;
    if (opt_prefill) {
        struct timeval tv = {0, 20000};
        end_ev = event_new(base, -1, EV_PERSIST, on_prefill_check, NULL);
        evtimer_add(end_ev, &tv);
    } else {
        double total = opt_warmup + opt_seconds;
        struct timeval tv = {(time_t)total, (suseconds_t)((total - (double)(time_t)total) * 1e6)};
        end_ev = evtimer_new(base, on_end, NULL);
        evtimer_add(end_ev, &tv);
    }
    for (int i = 0; i < opt_conns; i++)
        session_start(&sessions[i]);
    event_base_dispatch(base);
    stopping = 1;

    if (cnt.sessions == 0) { /* nothing measured is not a figure */
        errors++;
        fprintf(stderr, "smtp_load: no session was greeted in the measuring window\n");
    }
    double secs = (double)(t_end - t_measure) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    printf("connections: %d\n", opt_conns);
    printf("invalid_percent: %g\n", opt_invalid_pct);
    printf("messages_per_session: %d\n", opt_msgs);
    printf("body_bytes: %ld\n", opt_body);
    printf("seconds: %.3f\n", secs);
    printf("sessions: %ld\n", cnt.sessions);
    printf("messages: %ld\n", cnt.messages);
    printf("accepted_valid: %ld\n", cnt.accepted_valid);
    printf("accepted_invalid: %ld\n", cnt.accepted_invalid);
    printf("rcpt_accepted_valid: %ld\n", cnt.rcpt_ok_valid);
    printf("rcpt_accepted_invalid: %ld\n", cnt.rcpt_ok_invalid);
    printf("rcpt_rejected_invalid: %ld\n", cnt.rcpt_5xx_invalid);
    printf("rcpt_rejected_valid: %ld\n", cnt.rcpt_5xx_valid);
    printf("rcpt_4xx: %ld\n", cnt.rcpt_4xx);
    printf("mail_4xx: %ld\n", cnt.mail_4xx);
    printf("data_4xx: %ld\n", cnt.data_4xx);
    printf("data_5xx: %ld\n", cnt.data_5xx);
    printf("dot_4xx: %ld\n", cnt.dot_4xx);
    printf("dot_5xx: %ld\n", cnt.dot_5xx);
    printf("refused: %ld\n", cnt.refused);
    printf("replies_421: %ld\n", cnt.replies_421);
    printf("errors: %ld\n", errors);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) /* the client shares the machine with the servers */
        printf("client_cpu_s: %.2f\n",
               (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    printf("goodput_per_s: %.1f\n", (double)cnt.accepted_valid / secs);
    printf("messages_per_s: %.1f\n", (double)cnt.messages / secs);
    for (int st = 0; st < STEP_N; st++) {
        struct samples *sp = &lat[st];
        if (sp->n > 0)
            qsort(sp->v, (size_t)sp->n, sizeof(sp->v[0]), cmp_u64);
        printf("latency_ms %s: n %ld p50 %.3f p99 %.3f max %.3f\n", step_names[st],
               sp->n + sp->dropped, pct(sp, 50), pct(sp, 99),
               sp->n ? (double)sp->v[sp->n - 1] / 1e6 : 0.0);
    }

    for (int i = 0; i < opt_conns; i++) {
        if (sessions[i].bev)
            bufferevent_free(sessions[i].bev);
        event_free(sessions[i].timer);
    }
    event_free(end_ev);
    free(sessions);
    for (int st = 0; st < STEP_N; st++)
        free(lat[st].v);
    free(body);
    event_base_free(base);
    return errors ? 1 : 0;
}
