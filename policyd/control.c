/*
 * control.c - control socket connections: credentials, the line protocol
 * and its limits, and the per-connection state machine (see control.h).
 */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "control_cmd.h"
#include "log.h"
#include "stats.h"

#define CONTROL_LOG_INTERVAL_MS 10000
#define CONTROL_LINGER_S 2 /* discarding a refused request's rest before closing */

enum control_state { CTL_READING, CTL_WORKING, CTL_WRITING, CTL_CLOSING, CTL_LINGER };
static const char *const state_names[] = {"READING", "WORKING", "WRITING", "CLOSING", "LINGER"};

struct control_conn {
    struct control_server *cs;
    struct bufferevent *bev;
    enum control_state state;
    struct control_cmd *cmd; /* WORKING: the pending command */
    char peer[64];
    TAILQ_ENTRY(control_conn) link;
};

struct control_server {
    struct event_base *base;
    struct stats_env *env;
    gid_t group;     /* the socket file's group ... */
    int group_write; /* ... when its mode lets the group connect */
    int nconns;
    TAILQ_HEAD(, control_conn) conns;
    struct log_limit log_refused;
};

static void ctl_process(struct control_conn *c);

/* ctl_enter_state - the one place a control connection changes state */
static void ctl_enter_state(struct control_conn *c, enum control_state st)
{
    if ((int)st < 0 || st > CTL_LINGER)
        return;
    log_debug("control %s: %s -> %s", c->peer, state_names[c->state], state_names[st]);
    c->state = st;
}

static void ctl_free(struct control_conn *c)
{
    control_cmd_cancel(c->cmd);
    bufferevent_free(c->bev);
    TAILQ_REMOVE(&c->cs->conns, c, link);
    c->cs->nconns--;
    free(c);
}

/* ctl_reply_ready - the reply is in the output buffer: write it, then read again */
static void ctl_reply_ready(struct control_conn *c)
{
    ctl_enter_state(c, CTL_WRITING);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* ctl_cmd_done - a pending command finished (from the loop, never inside ctl_process) */
static void ctl_cmd_done(void *arg)
{
    struct control_conn *c = arg;

    c->cmd = NULL;
    ctl_reply_ready(c);
}

/* ctl_process - take one complete request line, if there is one */
static void ctl_process(struct control_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);

    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > CONTROL_MAX_LINE) {
            c->cs->env->control_errors++;
            control_reply_error(out, "request line too long");
            ctl_enter_state(c, CTL_CLOSING);
            bufferevent_disable(c->bev, EV_READ);
        }
        return;
    }
    size_t len = (size_t)eol.pos;
    if (len > CONTROL_MAX_LINE) {
        c->cs->env->control_errors++;
        control_reply_error(out, "request line too long");
        ctl_enter_state(c, CTL_CLOSING);
        bufferevent_disable(c->bev, EV_READ);
        return;
    }
    char line[CONTROL_MAX_LINE + 1];
    evbuffer_remove(in, line, len);
    evbuffer_drain(in, eol_len);
    ctl_enter_state(c, CTL_WORKING);
    bufferevent_disable(c->bev, EV_READ);
    if (control_cmd_start(c->cs->env, line, len, out, ctl_cmd_done, c, &c->cmd) == 0)
        ctl_reply_ready(c);
}

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
    struct control_conn *c = arg;

    if (c->state == CTL_READING)
        ctl_process(c);
    else if (c->state == CTL_LINGER)
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

/*
 * ctl_linger - the error reply is out; the client may still be sending the
 * rest of its over-long line. Closing now, with unread input, would make
 * the kernel reset the connection and the client could lose the reply: so
 * say we are done writing, discard input until the client closes, for at
 * most CONTROL_LINGER_S.
 */
static void ctl_linger(struct control_conn *c)
{
    struct timeval tv = {CONTROL_LINGER_S, 0};

    ctl_enter_state(c, CTL_LINGER);
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
}

/* ctl_write_cb - the output drained: the reply is out */
static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
    struct control_conn *c = arg;

    if (c->state == CTL_CLOSING) {
        ctl_linger(c);
    } else if (c->state == CTL_WRITING) {
        ctl_enter_state(c, CTL_READING);
        bufferevent_enable(c->bev, EV_READ);
        ctl_process(c); /* a request the client sent meanwhile */
    }
}

/* ctl_event_cb - end of input, an error or a timeout: nothing more to do for this client */
static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct control_conn *c = arg;

    if (what & BEV_EVENT_TIMEOUT)
        log_debug("control %s: timeout", c->peer);
    ctl_free(c);
}

/*
 * peer_allowed - may the process at the other end of fd use the control
 * socket? Root, our own user, and the socket's group when its mode lets the
 * group connect. The kernel's word (SO_PEERCRED), not the client's.
 */
static int peer_allowed(const struct control_server *cs, int fd, char *who, size_t size)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
        snprintf(who, size, "unknown peer");
        return 0;
    }
    snprintf(who, size, "uid %ld pid %ld", (long)cred.uid, (long)cred.pid);
    if (cred.uid == 0 || cred.uid == geteuid())
        return 1;
    return cs->group_write && cred.gid == cs->group;
}

/* refuse - one error reply, written without waiting, then close */
static void refuse(int fd, const char *why)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "status=error\nerror=%s\n\n", why);

    /* a fresh socket's send buffer holds this; never block the loop for a refused peer */
    if (n > 0 && send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("control: refusal not sent: %s", strerror(errno));
    close(fd);
}

void control_accept(void *arg, int fd, const char *peer)
{
    struct control_server *cs = arg;
    char who[64];

    if (!peer_allowed(cs, fd, who, sizeof(who))) {
        cs->env->control_refused++;
        log_limited(&cs->log_refused, CONTROL_LOG_INTERVAL_MS, LOG_WARNING,
                    "control: refused %s: not root, the daemon's user or the socket's group", who);
        refuse(fd, "permission denied");
        return;
    }
    if (cs->nconns >= CONTROL_MAX_CONNS) {
        cs->env->control_refused++;
        log_limited(&cs->log_refused, CONTROL_LOG_INTERVAL_MS, LOG_WARNING,
                    "control: refused %s: %d control connections open", who, cs->nconns);
        refuse(fd, "too many control connections");
        return;
    }
    struct control_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    c->bev = bufferevent_socket_new(cs->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        return;
    }
    c->cs = cs;
    c->state = CTL_READING;
    snprintf(c->peer, sizeof(c->peer), "%s", who);
    TAILQ_INSERT_TAIL(&cs->conns, c, link);
    cs->nconns++;
    struct timeval tv = {CONTROL_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    /* stop reading once a too-long line is certain: the buffer never grows past this */
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONTROL_MAX_LINE + 2);
    bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
    log_debug("control %s: connected (%s)", who, peer);
}

struct control_server *control_new(struct event_base *base, struct stats_env *env, const char *path)
{
    struct control_server *cs = calloc(1, sizeof(*cs));

    if (cs == NULL)
        return NULL;
    cs->base = base;
    cs->env = env;
    TAILQ_INIT(&cs->conns);
    control_reconfigure(cs, path);
    return cs;
}

void control_reconfigure(struct control_server *cs, const char *path)
{
    struct stat st;

    cs->group = (gid_t)-1;
    cs->group_write = 0;
    if (path != NULL && stat(path, &st) == 0) {
        cs->group = st.st_gid;
        cs->group_write = (st.st_mode & S_IWGRP) != 0;
    }
}

void control_free(struct control_server *cs)
{
    if (cs == NULL)
        return;
    while (!TAILQ_EMPTY(&cs->conns))
        ctl_free(TAILQ_FIRST(&cs->conns));
    free(cs);
}
