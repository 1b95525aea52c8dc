/*
 * policy_conn.c - one policy client connection as an explicit state machine
 * (see policy_conn.h for the states and why).
 *
 * Lines are taken out of the input buffer with a length check before
 * anything is copied, and reading pauses while max_line_length + 2 bytes
 * wait unparsed, so a client sending an endless line or a flood costs a
 * bounded buffer before it is disconnected. Each connection has one deadline
 * timer; every exit goes through policy_conn_free().
 *
 * The socket is read and written directly rather than through a
 * bufferevent: a reply is sent at once with one writev, and a write event is
 * only armed when the socket is full. A bufferevent arms and disarms its
 * write event (two epoll_ctl calls) and asks FIONREAD for every reply, which
 * made those syscalls half of the daemon's work per request.
 */
#include "policy_conn.h"

#include <errno.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "harvest.h"
#include "log.h"
#include "metrics.h"
#include "policy_proto.h"
#include "reply_policy.h"
#include "verifier.h"

enum conn_state { CONN_READING, CONN_VERIFYING, CONN_WRITING, CONN_STATE_COUNT };

static const char *const conn_state_names[CONN_STATE_COUNT] = {"reading", "verifying", "writing"};

struct policy_conn {
    struct policy_server *s;
    evutil_socket_t fd;
    struct event *ev_read;  /* persistent; deleted only while reading is paused */
    struct event *ev_write; /* armed only while a reply waits for room in the socket */
    struct evbuffer *in, *out;
    int read_paused;
    struct event *deadline;
    long long deadline_ms; /* when the current state times out (conn_now_ms); 0: no deadline */
    long long timer_ms;    /* when the armed deadline timer fires; 0: not armed */
    enum conn_state state;
    char peer[64];
    struct policy_request req;
    int request_started; /* a byte of the current request has arrived */
    int closing;         /* close once the output has drained (SIGTERM drain) */
    int peer_eof;        /* the client shut its sending side: answer what is complete, close */
    struct verifier_req *lookup;
    struct harvest_mark harvest; /* the client's harvest state for this request */
    struct timespec started;
    TAILQ_ENTRY(policy_conn) link;
};

static void conn_process(struct policy_conn *c);

#define CONN_READ_CHUNK 16384

/* conn_enter_state - the one place the state changes; logs transitions at debug level */
static void conn_enter_state(struct policy_conn *c, enum conn_state st)
{
    if ((unsigned)st >= CONN_STATE_COUNT) {
        log_err("policy %s: bad state %d", c->peer, (int)st);
        abort();
    }
    log_debug("policy %s: %s -> %s", c->peer, conn_state_names[c->state], conn_state_names[st]);
    c->state = st;
}

/* conn_now_ms - a cheap monotonic clock for deadlines (a few ms of resolution is plenty) */
static long long conn_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* conn_timer_in - arm the deadline timer to fire in ms milliseconds, at c->deadline_ms */
static void conn_timer_in(struct policy_conn *c, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    event_add(c->deadline, &tv);
    c->timer_ms = c->deadline_ms;
}

/*
 * conn_arm_deadline - set the deadline of the current state; none while
 * verifying (the verifier's answer budget bounds that wait).
 *
 * The timer is not moved for every state change: a request passes through
 * four states, and adding and deleting a timer for each cost two to four
 * timer-heap operations per request. The timer stays armed; it is re-armed
 * only when the new deadline is earlier than the moment it fires. When it
 * fires early (the deadline moved later meanwhile, or there is none now),
 * conn_deadline_cb re-arms it for what is left, or leaves it off.
 */
static void conn_arm_deadline(struct policy_conn *c)
{
    const struct config *cfg = c->s->cfg;
    int secs;

    switch (c->state) {
    case CONN_READING:
        secs = c->request_started ? cfg->request_timeout : cfg->idle_timeout;
        break;
    case CONN_WRITING:
        secs = cfg->request_timeout;
        break;
    default:
        c->deadline_ms = 0;
        return;
    }
    c->deadline_ms = conn_now_ms() + (long long)secs * 1000;
    if (c->timer_ms != 0 && c->timer_ms <= c->deadline_ms)
        return; /* the armed timer fires in time and looks again then */
    conn_timer_in(c, (long long)secs * 1000);
}

void policy_conn_free(struct policy_conn *c)
{
    if (c->lookup != NULL)
        verifier_cancel(c->lookup);
    policy_request_reset(&c->req);
    if (c->deadline)
        event_free(c->deadline);
    if (c->ev_read)
        event_free(c->ev_read);
    if (c->ev_write)
        event_free(c->ev_write);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    if (c->fd >= 0)
        evutil_closesocket(c->fd);
    TAILQ_REMOVE(&c->s->conns, c, link);
    c->s->nconns--;
    free(c);
}

/* ns_since - nanoseconds since t0 (CLOCK_MONOTONIC) */
static long long ns_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - t0->tv_sec) * 1000000000LL + (now.tv_nsec - t0->tv_nsec);
}

/*
 * conn_flush - send what is queued. Returns 1 when all of it went (the
 * connection is READING again, or freed when draining: then -1), 0 when the
 * socket is full (the write event finishes the job), -1 when the connection
 * was freed on an error.
 */
static int conn_flush(struct policy_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                event_add(c->ev_write, NULL);
                return 0;
            }
            log_debug("policy %s: write: %s", c->peer, strerror(errno));
            policy_conn_free(c);
            return -1;
        }
    }
    if (c->closing || c->s->draining) {
        policy_conn_free(c);
        return -1;
    }
    conn_enter_state(c, CONN_READING);
    conn_arm_deadline(c);
    if (c->read_paused && !c->peer_eof) {
        c->read_paused = 0;
        event_add(c->ev_read, NULL);
    }
    return 1;
}

/*
 * conn_reply - send "action=..." now. Returns -1 when the connection was
 * freed, else 0 (READING again, or WRITING until the socket takes it).
 * It never parses further input itself: callers loop (conn_process) or call
 * conn_process afterwards, so no call nests inside the parsing loop.
 */
static int conn_reply(struct policy_conn *c, const char *action)
{
    char buf[1200];
    int n = policy_format_reply(action, buf, sizeof(buf));

    if (n < 0) {
        /* cannot happen with checked templates; answer something harmless */
        n = policy_format_reply("DUNNO", buf, sizeof(buf));
    }
    policy_request_reset(&c->req);
    c->request_started = 0;
    c->s->requests++;
    conn_enter_state(c, CONN_WRITING);
    conn_arm_deadline(c);
    evbuffer_add(c->out, buf, (size_t)n);
    return conn_flush(c) < 0 ? -1 : 0;
}

void policy_reply_policy(const struct config *cfg, struct reply_policy *p)
{
    for (int k = 0; k < VERDICT_KIND_COUNT; k++)
        p->action[k] = cfg->action[k];
    p->action_malformed = cfg->action_malformed;
    p->fail_open = cfg->fail_open != 0;
    p->dry_run = cfg->dry_run != 0;
    p->next_hop_text = cfg->reply_next_hop_text != 0;
}

/* conn_verified - the verifier's answer: decide the reply (reply_policy.h), log it, send it */
static void conn_verified(const struct verdict *v, const struct verifier_result *res, void *arg)
{
    struct policy_conn *c = arg;
    struct reply_policy policy;
    struct reply reply;
    const char *rcpt = c->req.recipient ? c->req.recipient : "";
    long long ns = ns_since(&c->started);
    struct log_ms ms = log_ms_of_ns(ns);

    c->lookup = NULL;
    metrics_observe(c->s->metrics, metrics_classify(v, res->cached), (double)ns / 1e9);
    policy_reply_policy(c->s->cfg, &policy);
    reply_policy_decide(&policy, v, res->key[0] == '\0', res->key[0] ? res->key : rcpt, &reply);
    char hlog[128];
    if (res->key[0] != '\0' && harvest_after(c->s->harvest, c->s->cfg, &c->req, &c->harvest, v,
                                             reply.decided, sizeof(reply.decided))) {
        reply.dry_run = c->s->cfg->dry_run != 0;
        snprintf(reply.action, sizeof(reply.action), "%s", reply.dry_run ? "DUNNO" : reply.decided);
    }
    harvest_log(&c->harvest, c->s->cfg, &c->req, hlog, sizeof(hlog));

    char safe_rcpt[300];
    verdict_sanitize(safe_rcpt, sizeof(safe_rcpt), rcpt, strlen(rcpt));
    /*
     * The decision line, appended piece by piece (log_buf): the same bytes as
     * "%s: recipient=<%s> verdict=%s source=%s code=%d cached=%s route=%s
     * ms=%lld.%d reason=\"%s\"%s action=%s%s", at a fraction of printf's cost.
     */
    struct log_buf line;
    log_buf_init(&line);
    log_buf_str(&line, c->req.queue_id && c->req.queue_id[0] ? c->req.queue_id : "NOQUEUE");
    log_buf_str(&line, ": recipient=<");
    log_buf_str(&line, safe_rcpt);
    log_buf_str(&line, "> verdict=");
    log_buf_str(&line, res->key[0] ? verdict_kind_name(v->kind) : "malformed");
    log_buf_str(&line, " source=");
    log_buf_str(&line, v->source);
    log_buf_str(&line, " code=");
    log_buf_int(&line, v->code);
    log_buf_str(&line, " cached=");
    log_buf_str(&line, res->cached);
    log_buf_str(&line, " route=");
    log_buf_str(&line, res->route[0] ? res->route : "-");
    log_buf_str(&line, " ms=");
    log_buf_ms(&line, ms);
    log_buf_str(&line, " reason=\"");
    log_buf_str(&line, v->text);
    log_buf_str(&line, "\"");
    log_buf_str(&line, hlog);
    log_buf_str(&line, " action=");
    log_buf_str(&line, reply.decided);
    log_buf_str(&line, reply.dry_run ? " (dry_run: answering DUNNO)" : "");
    log_line(LOG_INFO, &line);
    if (conn_reply(c, reply.action) == 0)
        conn_process(c); /* a request that arrived meanwhile */
}

/*
 * conn_request_done - a whole request arrived: decide whether it is ours to
 * answer. Returns -1 when the connection was freed.
 */
static int conn_request_done(struct policy_conn *c)
{
    struct policy_request *r = &c->req;

    /* the list is in order of last activity: the head is what conn_evict takes first */
    TAILQ_REMOVE(&c->s->conns, c, link);
    TAILQ_INSERT_TAIL(&c->s->conns, c, link);
    if (r->request == NULL || strcmp(r->request, "smtpd_access_policy") != 0) {
        log_limited(&c->s->log_not_policy, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                    "policy %s: request=%s is not smtpd_access_policy: DUNNO", c->peer,
                    r->request ? "(other)" : "(missing)");
        return conn_reply(c, "DUNNO");
    }
    if (r->protocol_state == NULL || strcasecmp(r->protocol_state, "RCPT") != 0 ||
        r->recipient == NULL || r->recipient[0] == '\0')
        return conn_reply(c, "DUNNO");
    char action[1024], hlog[128], safe_rcpt[300];
    if (harvest_gate(c->s->harvest, c->s->cfg, r, &c->harvest, action, sizeof(action))) {
        harvest_log(&c->harvest, c->s->cfg, r, hlog, sizeof(hlog));
        verdict_sanitize(safe_rcpt, sizeof(safe_rcpt), r->recipient, strlen(r->recipient));
        log_info("%s: recipient=<%s> verdict=- source=harvest%s action=%s%s",
                 r->queue_id && r->queue_id[0] ? r->queue_id : "NOQUEUE", safe_rcpt, hlog, action,
                 c->s->cfg->dry_run ? " (dry_run: answering DUNNO)" : "");
        return conn_reply(c, c->s->cfg->dry_run ? "DUNNO" : action);
    }
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    conn_enter_state(c, CONN_VERIFYING);
    conn_arm_deadline(c);
    c->lookup =
        verifier_lookup(c->s->verifier, r->recipient, strlen(r->recipient), conn_verified, c);
    if (c->lookup == NULL) {
        struct reply_policy policy;
        struct reply reply;
        log_err("policy %s: out of memory starting a lookup", c->peer);
        policy_reply_policy(c->s->cfg, &policy);
        reply_policy_internal_error(&policy, &reply);
        return conn_reply(c, reply.action);
    }
    return 0;
}

/* conn_protocol_error - log, no reply, close (SMTPD_POLICY_README) */
static void conn_protocol_error(struct policy_conn *c, const char *why)
{
    c->s->protocol_errors++;
    log_limited(&c->s->log_protocol, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                "policy %s: protocol error: %s: closing connection", c->peer, why);
    policy_conn_free(c);
}

/*
 * conn_take_lines - parse the complete lines at the front of the input
 * where they lie, without copying or draining them one by one: Postfix's
 * request is about 30 lines and usually arrives whole in one segment of
 * the buffer. Stops at the end of a request, at an error, or at the first
 * line not wholly inside the first segment (conn_process takes that one the
 * slow way). What was parsed is drained once before returning. Returns the
 * line status of the last line taken, or POLICY_LINE_MORE with *taken = 0
 * when no whole line was in the first segment; on POLICY_LINE_ERROR err
 * says why.
 */
static enum policy_line_status conn_take_lines(struct policy_conn *c, int *taken, char *err,
                                               size_t errlen)
{
    const struct policy_limits *lim = &c->s->cfg->limits;
    struct evbuffer_iovec seg;
    enum policy_line_status st = POLICY_LINE_MORE;
    size_t used = 0;

    *taken = 0;
    if (evbuffer_peek(c->in, -1, NULL, &seg, 1) < 1)
        return st;
    const char *base = seg.iov_base;
    while (used < seg.iov_len) {
        const char *line = base + used;
        const char *nl = memchr(line, '\n', seg.iov_len - used);
        if (nl == NULL)
            break;
        size_t len = (size_t)(nl - line);
        if (len > lim->max_line) {
            snprintf(err, errlen, "line too long");
            return POLICY_LINE_ERROR;
        }
        st = policy_request_add_line(&c->req, line, len, lim, err, errlen);
        if (st == POLICY_LINE_ERROR)
            return st; /* the connection closes: nothing to drain */
        used += len + 1;
        (*taken)++;
        if (st == POLICY_LINE_END)
            break;
    }
    evbuffer_drain(c->in, used);
    return st;
}

/*
 * conn_process - take complete lines while READING. Returns with the
 * connection freed only through conn_protocol_error or conn_request_done's
 * callers; callers must not touch c after a protocol error, so this
 * function is the last thing its callers do.
 */
static void conn_process(struct policy_conn *c)
{
    const struct config *cfg = c->s->cfg;
    struct evbuffer *in = c->in;

    while (c->state == CONN_READING) {
        char err[200];
        int taken;
        enum policy_line_status st = conn_take_lines(c, &taken, err, sizeof(err));
        if (st == POLICY_LINE_ERROR) {
            conn_protocol_error(c, err);
            return;
        }
        if (taken > 0 && st == POLICY_LINE_MORE && !c->request_started) {
            c->request_started = 1;
            conn_arm_deadline(c);
        }
        if (st == POLICY_LINE_END) {
            if (conn_request_done(c) < 0)
                return;
            continue;
        }
        if (taken > 0)
            continue; /* the first segment ran out of whole lines: look again */

        /* no whole line in the first segment: find one across segments, or wait */
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > cfg->limits.max_line) {
                conn_protocol_error(c, "line too long");
                return;
            }
            if (c->peer_eof) {
                /* every complete request has been answered; nothing more can come */
                if (c->request_started || evbuffer_get_length(in) > 0)
                    log_limited(&c->s->log_cut_off, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                                "policy %s: disconnected in the middle of a request", c->peer);
                policy_conn_free(c);
                return;
            }
            if (!c->request_started && evbuffer_get_length(in) > 0) {
                /* the first byte of a request starts its deadline, not the first line */
                c->request_started = 1;
                conn_arm_deadline(c);
            }
            if (c->read_paused) {
                c->read_paused = 0;
                event_add(c->ev_read, NULL);
            }
            return; /* wait for more */
        }
        size_t len = (size_t)eol.pos;
        if (len > cfg->limits.max_line) {
            conn_protocol_error(c, "line too long");
            return;
        }
        char stackbuf[4096];
        char *line = len < sizeof(stackbuf) ? stackbuf : malloc(len + 1);
        if (line == NULL) {
            conn_protocol_error(c, "out of memory");
            return;
        }
        evbuffer_remove(in, line, len);
        evbuffer_drain(in, eol_len);
        line[len] = '\0';

        st = policy_request_add_line(&c->req, line, len, &cfg->limits, err, sizeof(err));
        if (line != stackbuf)
            free(line);
        if (st == POLICY_LINE_ERROR) {
            conn_protocol_error(c, err);
            return;
        }
        if (st == POLICY_LINE_MORE) {
            if (!c->request_started) {
                c->request_started = 1;
                conn_arm_deadline(c);
            }
            continue;
        }
        if (conn_request_done(c) < 0)
            return;
    }
}

/*
 * conn_read_cb - the socket is readable: take what fits under the limit.
 * Postfix sends one request and waits, so while VERIFYING or WRITING bytes
 * only accumulate up to the limit; then reading pauses until READING again.
 */
static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct policy_conn *c = arg;
    size_t cap = c->s->cfg->limits.max_line + 2, have = evbuffer_get_length(c->in);

    if (have >= cap) {
        c->read_paused = 1;
        event_del(c->ev_read);
        if (c->state == CONN_READING)
            conn_process(c); /* takes whole lines (and resumes) or finds a line too long */
        return;
    }
    size_t want = cap - have < CONN_READ_CHUNK ? cap - have : CONN_READ_CHUNK;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->in, (ev_ssize_t)want, &v, 1) < 1) {
        policy_conn_free(c);
        return;
    }
    ssize_t n = recv(fd, v.iov_base, want < v.iov_len ? want : v.iov_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        log_debug("policy %s: read: %s", c->peer, strerror(errno));
        policy_conn_free(c);
        return;
    }
    if (n == 0) {
        /*
         * End of input, maybe only a half-close (shutdown(SHUT_WR)) after a
         * complete request: that request is still answered. Stop reading;
         * conn_process closes the connection once no complete request is
         * left to answer (at once when READING, else after the reply).
         */
        c->peer_eof = 1;
        c->read_paused = 1;
        event_del(c->ev_read);
        if (c->state == CONN_READING)
            conn_process(c);
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(c->in, &v, 1);
    if (c->state == CONN_READING)
        conn_process(c);
}

/* conn_write_cb - the socket has room again for a reply that did not fit */
static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct policy_conn *c = arg;

    if (conn_flush(c) == 1)
        conn_process(c);
}

/*
 * conn_deadline_cb - the timer fired: the deadline has passed (close), or it
 * has moved later since the timer was armed (re-arm for the rest), or the
 * connection is verifying and has none (leave the timer off until
 * conn_arm_deadline sets one).
 */
static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct policy_conn *c = arg;

    c->timer_ms = 0;
    if (c->deadline_ms == 0)
        return;
    long long left = c->deadline_ms - conn_now_ms();
    if (left > 0) {
        conn_timer_in(c, left);
        return;
    }

    if (c->state == CONN_READING && !c->request_started)
        log_debug("policy %s: idle timeout", c->peer);
    else
        log_limited(&c->s->log_timeout, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                    "policy %s: timeout while %s", c->peer, conn_state_names[c->state]);
    policy_conn_free(c);
}

void policy_server_init(struct policy_server *s, struct event_base *base, const struct config *cfg,
                        struct verifier *v)
{
    memset(s, 0, sizeof(*s));
    s->base = base;
    s->cfg = cfg;
    s->verifier = v;
    TAILQ_INIT(&s->conns);
}

/* conn_limit - max_connections, or less when the descriptor limit allows less */
static int conn_limit(const struct policy_server *s)
{
    int max = s->cfg->max_connections;

    return s->conn_cap > 0 && s->conn_cap < max ? s->conn_cap : max;
}

/*
 * conn_evict - the table is full: close the least recently active
 * connection that is waiting for input (idle between requests, or still
 * sending one: a slow client), so a slot held by a trickling or forgotten
 * client goes to the new one. Connections with a lookup or a reply in
 * progress are never taken. Returns 0 when a slot was freed.
 */
static int conn_evict(struct policy_server *s, const char *newcomer)
{
    struct policy_conn *c;

    c = TAILQ_FIRST(&s->conns);
    while (c != NULL && c->state != CONN_READING)
        c = TAILQ_NEXT(c, link);
    if (c == NULL)
        return -1;
    s->evicted++;
    log_limited(&s->log_evicted, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                "policy %s: connection limit %d reached: closed the least recently active "
                "connection (%s, %s) to make room (%lu so far)",
                newcomer, conn_limit(s), c->peer, c->request_started ? "slow request" : "idle",
                s->evicted);
    policy_conn_free(c);
    return 0;
}

struct policy_conn *policy_conn_new(struct policy_server *s, evutil_socket_t fd, const char *peer)
{
    /* more than one only after a reload lowered max_connections below what is open */
    while (!s->draining && s->nconns >= conn_limit(s) && conn_evict(s, peer) == 0)
        ;
    if (s->draining || s->nconns >= conn_limit(s)) {
        s->refused++;
        log_limited(&s->log_refused, POLICY_LOG_INTERVAL_MS, LOG_WARNING,
                    "policy %s: refused: %s (connection limit %d; %lu refused so far)", peer,
                    s->draining ? "shutting down" : "too many connections", conn_limit(s),
                    s->refused);
        evutil_closesocket(fd);
        return NULL;
    }
    struct policy_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->s = s;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    policy_request_init(&c->req);
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    s->nconns++;
    c->fd = fd;
    evutil_make_socket_nonblocking(fd);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->ev_write = event_new(s->base, fd, EV_WRITE, conn_write_cb, c);
    c->deadline = evtimer_new(s->base, conn_deadline_cb, c);
    if (c->in == NULL || c->out == NULL || c->ev_read == NULL || c->ev_write == NULL ||
        c->deadline == NULL) {
        policy_conn_free(c);
        return NULL;
    }
    event_add(c->ev_read, NULL);
    c->state = CONN_READING;
    conn_arm_deadline(c);
    log_debug("policy %s: connected (%d open)", c->peer, s->nconns);
    return c;
}

int policy_server_drain(struct policy_server *s)
{
    struct policy_conn *c, *next;

    s->draining = 1;
    for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->state == CONN_READING && !c->request_started)
            policy_conn_free(c);
        else
            c->closing = 1;
    }
    return s->nconns;
}
