/*
 * ldap_pool.c - the connections of one LDAP source and the searches they
 * carry (see ldap_pool.h for the rules). Each connection is a small state
 * machine:
 *
 *   (host name) RESOLVING --addresses--> CONNECTING
 *        |
 *        +-- no address, resolver error, connect_timeout: next server
 *
 *   CONNECTING --writable--> (bind = yes) BINDING --bind ok--> READY
 *        |                                   |                   |
 *        +-- refused/timeout: next address   +-- bad password,   +-- EOF, error, stuck,
 *            of the name, else next server       timeout: connect     idle: CLOSING
 *            (all tried: connect failure)        failure
 *
 *   CONNECTING --writable, ldaps:// or start_tls--> TLS --handshake done--> (bind) BINDING
 *                                                    |
 *        handshake failed, or connect_timeout (from the connect) passed:
 *        next address of the name, else next server
 *   TLS: a worker thread owns the socket (ldap_tls.h); c->job is the only
 *   link. Whenever c stops waiting for it (deadline, conn_fail, pool freed)
 *   the job is abandoned and cleans up by itself on the loop.
 *   CLOSING: the socket is no longer used; the connection is freed on the
 *   next loop turn (ev_kill), so that nothing in progress (a read loop, a
 *   callback that starts a search) ever holds a freed connection.
 */
#include "ldap_pool.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openldap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "dns.h"
#include "ldap_conf.h"
#include "ldap_tls.h"
#include "log.h"
#include "verdict.h" /* verdict_sanitize */

enum lconn_state {
    LCONN_RESOLVING,
    LCONN_CONNECTING,
    LCONN_TLS,
    LCONN_BINDING,
    LCONN_READY,
    LCONN_CLOSING,
    LCONN_STATE_COUNT
};

static const char *const lconn_state_names[LCONN_STATE_COUNT] = {
    [LCONN_RESOLVING] = "resolving", [LCONN_CONNECTING] = "connecting", [LCONN_TLS] = "tls",
    [LCONN_BINDING] = "binding",     [LCONN_READY] = "ready",           [LCONN_CLOSING] = "closing",
};

struct lconn;

struct ldap_search {
    struct ldap_pool *pool;
    struct lconn *conn; /* NULL while queued */
    int msgid;          /* while sent */
    int attempts;       /* times sent */
    unsigned long mark; /* conn->received when sent: progress check at the deadline */
    int referral;       /* a continuation reference came back */
    int rejected;       /* libldap refused to encode it: in pool->rejected */
    char *why;          /* rejected: libldap's reason */
    char *filter;
    struct event *deadline;
    ldap_entry_fn entry;
    ldap_done_fn done;
    void *arg;
    TAILQ_ENTRY(ldap_search) link; /* in pool->queue or conn->searches */
};
TAILQ_HEAD(search_list, ldap_search);

struct lconn {
    struct ldap_pool *pool;
    enum lconn_state state;
    int fd;             /* owned by ld once ld is set */
    LDAP *ld;           /* NULL until connected */
    int uri;            /* index into conf->uris being tried or used */
    int tried;          /* servers tried for this connection */
    int bind_msgid;     /* BINDING */
    int ninflight;      /* searches sent and not finished */
    int connect_failed; /* CLOSING because it never became ready: counts for backoff */
    unsigned long received;
    struct dns_req *dreq;           /* RESOLVING */
    struct ldap_tls_job *job;       /* TLS: owns the socket meanwhile */
    struct timeval connect_started; /* of the socket being connected (TLS's time budget) */
    /* the addresses of a host name server (RESOLVING gives them), tried in order */
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    int naddrs, addr_next;
    struct event *ev_io;   /* EV_WRITE while connecting, then EV_READ|EV_PERSIST */
    struct event *timer;   /* connect / bind deadline; idle timer when READY and empty */
    struct event *ev_kill; /* activated to free it on the next loop turn */
    struct search_list searches;
    char why[512]; /* why it is closing */
    TAILQ_ENTRY(lconn) link;
};
TAILQ_HEAD(lconn_list, lconn);

struct ldap_pool {
    struct event_base *base;
    struct dns *dns; /* for host names in server_host; NULL: none can be resolved */
    const struct ldap_conf *conf;
    struct lconn_list conns;
    int nconns;
    struct search_list queue;
    int nqueued;
    struct search_list rejected; /* refused by libldap itself, answered from ev_reject */
    struct event *ev_reject;
    int uri_next;    /* the server a new connection tries first */
    long backoff_ms; /* 0: not backing off */
    struct timeval retry_at;
    struct event *ev_backoff; /* end of the backoff */
    char down_why[512];       /* the last connect failure, for refusals during backoff */
    struct log_limit down_log;
    struct ldap_pool_stats st;
    unsigned long unreplaced; /* connections dropped and not replaced yet (for st.reconnects) */
};

static void conn_on_io(evutil_socket_t fd, short what, void *arg);
static void conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_on_kill(evutil_socket_t fd, short what, void *arg);
static void pool_dispatch(struct ldap_pool *p);
static void conn_next_uri(struct lconn *c);

/* conn_enter_state - every state change of a connection goes through here */
static void conn_enter_state(struct lconn *c, enum lconn_state state)
{
    if ((int)state < 0 || (int)state >= LCONN_STATE_COUNT) {
        log_err("ldap:%s: internal error: bad connection state %d", c->pool->conf->name,
                (int)state);
        state = LCONN_CLOSING;
    }
    if (state != c->state)
        log_debug("ldap:%s: %s: %s -> %s", c->pool->conf->name, c->pool->conf->uris[c->uri].text,
                  lconn_state_names[c->state], lconn_state_names[state]);
    c->state = state;
}

/* ms_timeval - milliseconds as a struct timeval */
static struct timeval ms_timeval(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* search_free - release s (detached from every list) */
static void search_free(struct ldap_search *s)
{
    if (s->deadline != NULL)
        event_free(s->deadline);
    free(s->filter);
    free(s->why);
    free(s);
}

/* search_detach - take s off its queue or connection, stop its deadline */
static void search_detach(struct ldap_search *s)
{
    struct ldap_pool *p = s->pool;

    if (s->conn != NULL) {
        TAILQ_REMOVE(&s->conn->searches, s, link);
        s->conn->ninflight--;
        s->conn = NULL;
    } else if (s->rejected) {
        TAILQ_REMOVE(&p->rejected, s, link);
        s->rejected = 0;
    } else {
        TAILQ_REMOVE(&p->queue, s, link);
        p->nqueued--;
    }
    evtimer_del(s->deadline);
}

/* search_finish - detach s, run its callback once, free it */
static void search_finish(struct ldap_search *s, enum ldap_pool_status status, const char *why)
{
    search_detach(s);
    if (status != LDAP_POOL_OK)
        s->pool->st.failures++;
    ldap_done_fn done = s->done;
    void *arg = s->arg;
    search_free(s);
    done(status, why, arg);
}

/* conn_idle_check - a ready connection with nothing in flight starts its idle timer */
static void conn_idle_check(struct lconn *c)
{
    if (c->state == LCONN_READY && c->ninflight == 0) {
        struct timeval tv = ms_timeval(c->pool->conf->idle_timeout_ms);
        evtimer_add(c->timer, &tv);
    }
}

/* conn_drop_tls - stop waiting for a handshake: the job, owning the socket, cleans up */
static void conn_drop_tls(struct lconn *c)
{
    if (c->job != NULL) {
        ldap_tls_abandon(c->job);
        c->job = NULL;
        c->fd = -1;
    }
}

/*
 * conn_fail - stop using c and free it on the next loop turn. connect_failed:
 * it never became ready (counts for the backoff). Safe to call from
 * anywhere, any number of times.
 */
static void conn_fail(struct lconn *c, int connect_failed, const char *why)
{
    if (c->state == LCONN_CLOSING)
        return;
    c->connect_failed = connect_failed;
    snprintf(c->why, sizeof(c->why), "%s", why);
    if (c->dreq != NULL) {
        dns_cancel(c->dreq);
        c->dreq = NULL;
    }
    conn_drop_tls(c);
    conn_enter_state(c, LCONN_CLOSING);
    event_del(c->ev_io);
    evtimer_del(c->timer);
    event_active(c->ev_kill, 0, 0);
}

/*
 * conn_connect - connect a non-blocking socket to ss (u for messages) and
 * watch it with connect_timeout; -1 and c->why when it failed at once
 */
static int conn_connect(struct lconn *c, const struct ldap_uri *u,
                        const struct sockaddr_storage *ss, socklen_t sslen)
{
    char addr[INET6_ADDRSTRLEN + 2] = "";

    if (u->kind == LDAP_URI_NAME) { /* say which of its addresses */
        const void *a = ss->ss_family == AF_INET6
                            ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                            : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
        addr[0] = ' ';
        if (inet_ntop(ss->ss_family, a, addr + 1, sizeof(addr) - 1) == NULL)
            addr[0] = '\0';
    }
    c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(c->why, sizeof(c->why), "%.150s%s: socket: %s", u->text, addr, strerror(errno));
        return -1;
    }
    if (connect(c->fd, (const struct sockaddr *)ss, sslen) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        snprintf(c->why, sizeof(c->why), "%.150s%s: connect: %s", u->text, addr, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    conn_enter_state(c, LCONN_CONNECTING);
    event_base_gettimeofday_cached(c->pool->base, &c->connect_started);
    event_assign(c->ev_io, c->pool->base, c->fd, EV_WRITE, conn_on_io, c);
    struct timeval tv = ms_timeval(c->pool->conf->connect_timeout_ms);
    event_add(c->ev_io, NULL);
    evtimer_add(c->timer, &tv);
    return 0;
}

/*
 * conn_try_addrs - connect to the next address of the host name being
 * tried; when none is left (or none started), the next server
 */
static void conn_try_addrs(struct lconn *c)
{
    const struct ldap_conf *conf = c->pool->conf;

    while (c->addr_next < c->naddrs) {
        const struct sockaddr_storage *ss = &c->addrs[c->addr_next++];
        socklen_t len =
            ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        if (conn_connect(c, &conf->uris[c->uri], ss, len) == 0)
            return;
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
    }
    c->naddrs = c->addr_next = 0;
    conn_next_uri(c);
}

/* conn_on_resolved - the addresses of the host name being tried (dns_cb) */
static void conn_on_resolved(int status, const struct dns_target *targets, int ntargets,
                             const char *errmsg, void *arg)
{
    struct lconn *c = arg;
    const struct ldap_conf *conf = c->pool->conf;
    const struct ldap_uri *u = &conf->uris[c->uri];

    c->dreq = NULL;
    evtimer_del(c->timer);
    c->naddrs = c->addr_next = 0;
    if (status != DNS_OK || ntargets < 1) {
        snprintf(c->why, sizeof(c->why), "%.150s: resolve %.100s: %s%s%.100s", u->text, u->host,
                 dns_status_name(status), errmsg[0] != '\0' ? ": " : "", errmsg);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        conn_next_uri(c);
        return;
    }
    for (int i = 0; i < targets[0].naddrs && i < DNS_MAX_ADDRS; i++) {
        struct sockaddr_storage *ss = &c->addrs[c->naddrs];
        *ss = targets[0].addrs[i];
        if (ss->ss_family == AF_INET6)
            ((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)u->port);
        else if (ss->ss_family == AF_INET)
            ((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)u->port);
        else
            continue;
        c->naddrs++;
    }
    conn_try_addrs(c);
}

/*
 * conn_start_uri - start on server c->uri: connect to a numeric address or
 * a socket path, or start resolving a host name (with connect_timeout);
 * -1 and c->why when it failed at once
 */
static int conn_start_uri(struct lconn *c)
{
    const struct ldap_uri *u = &c->pool->conf->uris[c->uri];
    struct sockaddr_storage ss;
    socklen_t sslen;

    c->naddrs = c->addr_next = 0;
    memset(&ss, 0, sizeof(ss));
    if (u->kind == LDAP_URI_NAME) {
        if (c->pool->dns == NULL) {
            snprintf(c->why, sizeof(c->why), "%.150s: no resolver for host names", u->text);
            return -1;
        }
        conn_enter_state(c, LCONN_RESOLVING);
        c->dreq = dns_host_lookup(c->pool->dns, u->host, conn_on_resolved, c);
        if (c->dreq == NULL) {
            snprintf(c->why, sizeof(c->why), "%.150s: resolve: out of memory", u->text);
            return -1;
        }
        struct timeval tv = ms_timeval(c->pool->conf->connect_timeout_ms);
        evtimer_add(c->timer, &tv);
        return 0;
    }
    if (u->kind == LDAP_URI_IPC) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", u->path);
        sslen = sizeof(*sun);
    } else if (u->kind == LDAP_URI_TCP6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)u->port);
        inet_pton(AF_INET6, u->host, &sin6->sin6_addr);
        sslen = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)u->port);
        inet_pton(AF_INET, u->host, &sin->sin_addr);
        sslen = sizeof(*sin);
    }
    return conn_connect(c, u, &ss, sslen);
}

/*
 * conn_next_uri - try the servers after c->uri until a connect starts; when
 * all were tried, fail c as a connect failure with the last reason.
 */
static void conn_next_uri(struct lconn *c)
{
    const struct ldap_conf *conf = c->pool->conf;

    while (c->tried < conf->nuris) {
        if (c->tried > 0)
            c->uri = (c->uri + 1) % conf->nuris;
        c->tried++;
        if (conn_start_uri(c) == 0)
            return;
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
    }
    char why[sizeof(c->why)];
    snprintf(why, sizeof(why), "%s", c->why);
    conn_fail(c, 1, why);
}

/* conn_open - a new connection, counted against pool_size; NULL on out of memory */
static struct lconn *conn_open(struct ldap_pool *p)
{
    struct lconn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->pool = p;
    c->fd = -1;
    c->uri = p->uri_next;
    c->state = LCONN_CONNECTING;
    TAILQ_INIT(&c->searches);
    c->ev_io = event_new(p->base, -1, 0, conn_on_io, c);
    c->timer = evtimer_new(p->base, conn_on_timer, c);
    c->ev_kill = event_new(p->base, -1, 0, conn_on_kill, c);
    if (c->ev_io == NULL || c->timer == NULL || c->ev_kill == NULL) {
        if (c->ev_io)
            event_free(c->ev_io);
        if (c->timer)
            event_free(c->timer);
        if (c->ev_kill)
            event_free(c->ev_kill);
        free(c);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&p->conns, c, link);
    p->nconns++;
    if (p->nconns > p->st.conns_max)
        p->st.conns_max = p->nconns;
    conn_next_uri(c);
    return c;
}

/* conn_ready - c can carry searches: reset the backoff, send what waits */
static void conn_ready(struct lconn *c)
{
    struct ldap_pool *p = c->pool;

    evtimer_del(c->timer);
    conn_enter_state(c, LCONN_READY);
    p->backoff_ms = 0;
    p->uri_next = c->uri;
    conn_idle_check(c);
    pool_dispatch(p);
}

static void conn_setup(struct lconn *c);

/*
 * conn_on_tls - the worker's answer for c (on the loop; not after
 * conn_drop_tls): carry on with the handle, or the next address or server
 */
static void conn_on_tls(LDAP *ld, const char *why, void *arg)
{
    struct lconn *c = arg;
    const struct ldap_conf *conf = c->pool->conf;

    c->job = NULL;
    evtimer_del(c->timer);
    if (ld == NULL) {
        c->fd = -1; /* closed by the worker */
        snprintf(c->why, sizeof(c->why), "%s", why);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        conn_try_addrs(c); /* the name's next address, else the next server */
        return;
    }
    c->ld = ld;
    conn_setup(c);
}

/* conn_start_tls - hand the connected socket to a TLS worker, within the rest of connect_timeout */
static void conn_start_tls(struct lconn *c)
{
    const struct ldap_conf *conf = c->pool->conf;
    const struct ldap_uri *u = &conf->uris[c->uri];
    struct timeval now;

    event_base_gettimeofday_cached(c->pool->base, &now);
    long spent = (now.tv_sec - c->connect_started.tv_sec) * 1000 +
                 (now.tv_usec - c->connect_started.tv_usec) / 1000;
    long left = conf->connect_timeout_ms - spent;
    if (left < 1)
        left = 1;
    conn_enter_state(c, LCONN_TLS);
    c->job =
        ldap_tls_start(c->pool->base, c->fd, u->text, u->tls ? LDAP_TLS_LDAPS : LDAP_TLS_STARTTLS,
                       conf->tls_ca_cert_file, conf->tls_require_cert, (int)left, conn_on_tls, c);
    if (c->job == NULL) { /* the socket is closed */
        c->fd = -1;
        snprintf(c->why, sizeof(c->why), "%.150s: TLS: cannot start a handshake", u->text);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        evtimer_del(c->timer);
        conn_try_addrs(c);
        return;
    }
    /* the connect timer keeps running: at connect_timeout the handshake is abandoned */
    struct timeval tv = ms_timeval(left);
    evtimer_add(c->timer, &tv);
}

/* conn_connected - the socket is connected: TLS first when configured, else hand it to libldap */
static void conn_connected(struct lconn *c)
{
    const struct ldap_conf *conf = c->pool->conf;
    const struct ldap_uri *u = &conf->uris[c->uri];
    int one = 1;
    char why[512];

    evtimer_del(c->timer);
    event_del(c->ev_io);
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (u->kind != LDAP_URI_IPC && (u->tls || conf->start_tls)) {
        conn_start_tls(c);
        return;
    }
    int rc = ldap_init_fd(c->fd, u->kind == LDAP_URI_IPC ? LDAP_PROTO_IPC : LDAP_PROTO_TCP, u->text,
                          &c->ld);
    if (rc != LDAP_SUCCESS) {
        snprintf(why, sizeof(why), "%.150s: ldap_init_fd: %s", u->text, ldap_err2string(rc));
        close(c->fd);
        c->fd = -1;
        c->ld = NULL;
        conn_fail(c, 1, why);
        return;
    }
    conn_setup(c);
}

/* conn_setup - c->ld is connected (and encrypted when configured): options, then bind or ready */
static void conn_setup(struct lconn *c)
{
    const struct ldap_conf *conf = c->pool->conf;
    const struct ldap_uri *u = &conf->uris[c->uri];
    int version = LDAP_VERSION3, deref = conf->deref, rc;
    char why[512];

    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(c->ld, LDAP_OPT_RESTART, LDAP_OPT_OFF);
    ldap_set_option(c->ld, LDAP_OPT_DEREF, &deref);
    /* a server cannot make us buffer more than this for one message */
    Sockbuf *sb = NULL;
    ber_len_t max = LDAP_POOL_MAX_MESSAGE;
    if (ldap_get_option(c->ld, LDAP_OPT_SOCKBUF, &sb) == LDAP_OPT_SUCCESS && sb != NULL)
        ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max);
    c->pool->st.connects++;
    if (c->pool->unreplaced > 0) { /* this one replaces a connection that was lost */
        c->pool->unreplaced--;
        c->pool->st.reconnects++;
    }
    event_assign(c->ev_io, c->pool->base, c->fd, EV_READ | EV_PERSIST, conn_on_io, c);
    event_add(c->ev_io, NULL);
    if (!conf->bind) {
        conn_ready(c);
        return;
    }
    struct berval cred = {strlen(conf->bind_pw), conf->bind_pw};
    rc = ldap_sasl_bind(c->ld, conf->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &c->bind_msgid);
    if (rc != LDAP_SUCCESS) {
        snprintf(why, sizeof(why), "%.150s: bind: %s", u->text, ldap_err2string(rc));
        conn_fail(c, 1, why);
        return;
    }
    conn_enter_state(c, LCONN_BINDING);
    struct timeval tv = ms_timeval(conf->timeout_ms);
    evtimer_add(c->timer, &tv);
}

/* clean_diag - a server's diagnostic message, made safe for one log line */
static const char *clean_diag(const char *diag, char *buf, size_t size)
{
    if (diag == NULL || *diag == '\0')
        return "";
    verdict_sanitize(buf, size, diag, strnlen(diag, 4096));
    return buf;
}

/* conn_on_bind - the bind's answer */
static void conn_on_bind(struct lconn *c, LDAPMessage *msg)
{
    const struct ldap_conf *conf = c->pool->conf;
    int err = LDAP_OTHER;
    char *diag = NULL, why[512];

    if (ldap_parse_result(c->ld, msg, &err, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS)
        err = LDAP_OTHER;
    if (err == LDAP_SUCCESS) {
        ldap_memfree(diag);
        conn_ready(c);
        return;
    }
    char dbuf[101], dnbuf[101];
    snprintf(why, sizeof(why), "%.150s: bind as \"%s\" failed: %.80s%s%s", conf->uris[c->uri].text,
             clean_diag(conf->bind_dn, dnbuf, sizeof(dnbuf)), ldap_err2string(err),
             diag != NULL && *diag ? ": " : "", clean_diag(diag, dbuf, sizeof(dbuf)));
    ldap_memfree(diag);
    conn_fail(c, 1, why);
}

/* conn_on_result - the end of search s */
static void conn_on_result(struct lconn *c, struct ldap_search *s, LDAPMessage *msg)
{
    int err = LDAP_OTHER;
    char *diag = NULL, why[512];

    if (ldap_parse_result(c->ld, msg, &err, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS)
        err = LDAP_OTHER;
    if (err == LDAP_SUCCESS && !s->referral) {
        ldap_memfree(diag);
        search_finish(s, LDAP_POOL_OK, "");
        return;
    }
    if (err == LDAP_SUCCESS || err == LDAP_REFERRAL)
        snprintf(why, sizeof(why), "referral (chase_referrals is off)");
    else {
        char dbuf[101];
        snprintf(why, sizeof(why), "%s%s%s", ldap_err2string(err),
                 diag != NULL && *diag ? ": " : "", clean_diag(diag, dbuf, sizeof(dbuf)));
    }
    ldap_memfree(diag);
    search_finish(s, LDAP_POOL_REFUSED, why);
}

/* conn_find - the search of c with msgid, or NULL (cancelled, abandoned) */
static struct ldap_search *conn_find(struct lconn *c, int msgid)
{
    struct ldap_search *s;

    TAILQ_FOREACH(s, &c->searches, link)
    if (s->msgid == msgid)
        return s;
    return NULL;
}

/* conn_on_message - one message from the server */
static void conn_on_message(struct lconn *c, LDAPMessage *msg, int type)
{
    int msgid = ldap_msgid(msg);

    if (c->state == LCONN_BINDING) {
        if (msgid == c->bind_msgid && type == LDAP_RES_BIND)
            conn_on_bind(c, msg);
        return;
    }
    if (msgid == 0) {
        /* unsolicited: a notice of disconnection (RFC 4511 4.4.1) */
        conn_fail(c, 0, "the server closed the connection (notice of disconnection)");
        return;
    }
    struct ldap_search *s = conn_find(c, msgid);
    if (s == NULL)
        return;
    switch (type) {
    case LDAP_RES_SEARCH_ENTRY:
        s->entry(c->ld, msg, s->arg);
        break;
    case LDAP_RES_SEARCH_REFERENCE:
        s->referral = 1;
        break;
    case LDAP_RES_SEARCH_RESULT:
        conn_on_result(c, s, msg);
        conn_idle_check(c);
        pool_dispatch(c->pool);
        break;
    default:
        break;
    }
}

/* conn_drain - read every message libldap has for c, until ldap_result says none */
static void conn_drain(struct lconn *c)
{
    for (;;) {
        struct timeval zero = {0, 0};
        LDAPMessage *msg = NULL;
        int type = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
        if (type == 0)
            return;
        if (type < 0) {
            int err = LDAP_SERVER_DOWN;
            char why[512];
            ldap_get_option(c->ld, LDAP_OPT_RESULT_CODE, &err);
            snprintf(why, sizeof(why), "%.150s: connection lost: %s",
                     c->pool->conf->uris[c->uri].text, ldap_err2string(err));
            conn_fail(c, c->state != LCONN_READY, why);
            return;
        }
        c->received++;
        conn_on_message(c, msg, type);
        ldap_msgfree(msg);
        if (c->state == LCONN_CLOSING)
            return;
    }
}

/* conn_on_io - connect finished (EV_WRITE) or something to read */
static void conn_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct lconn *c = arg;

    if (c->state == LCONN_CLOSING)
        return;
    if (c->state == LCONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            snprintf(c->why, sizeof(c->why), "%.150s: connect: %s",
                     c->pool->conf->uris[c->uri].text, strerror(err));
            log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", c->pool->conf->name,
                        c->why);
            evtimer_del(c->timer);
            close(c->fd);
            c->fd = -1;
            conn_try_addrs(c); /* the name's next address, else the next server */
            return;
        }
        conn_connected(c);
        return;
    }
    conn_drain(c);
}

/* conn_on_timer - connect or bind deadline, or the end of an idle period */
static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lconn *c = arg;
    const struct ldap_conf *conf = c->pool->conf;
    char why[512];

    switch (c->state) {
    case LCONN_RESOLVING:
        dns_cancel(c->dreq);
        c->dreq = NULL;
        snprintf(c->why, sizeof(c->why), "%.150s: resolve: timed out after %dms",
                 conf->uris[c->uri].text, conf->connect_timeout_ms);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        conn_next_uri(c);
        break;
    case LCONN_CONNECTING:
        snprintf(c->why, sizeof(c->why), "%.150s: connect: timed out after %dms",
                 conf->uris[c->uri].text, conf->connect_timeout_ms);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        event_del(c->ev_io);
        close(c->fd);
        c->fd = -1;
        conn_try_addrs(c); /* the name's next address, else the next server */
        break;
    case LCONN_TLS:
        snprintf(c->why, sizeof(c->why), "%.150s: TLS handshake: timed out after %dms",
                 conf->uris[c->uri].text, conf->connect_timeout_ms);
        log_limited(&c->pool->down_log, 10000, LOG_WARNING, "ldap:%s: %s", conf->name, c->why);
        conn_drop_tls(c);
        conn_try_addrs(c); /* the name's next address, else the next server */
        break;
    case LCONN_BINDING:
        snprintf(why, sizeof(why), "%.150s: bind: no answer within %dms", conf->uris[c->uri].text,
                 conf->timeout_ms);
        conn_fail(c, 1, why);
        break;
    case LCONN_READY:
        if (c->ninflight == 0)
            conn_fail(c, 0, "idle");
        break;
    default:
        break;
    }
}

/* backoff_on - in backoff now? */
static int backoff_on(const struct ldap_pool *p)
{
    return p->backoff_ms > 0 && evtimer_pending(p->ev_backoff, NULL);
}

/* pool_usable - is any connection ready or on its way? */
static int pool_usable(const struct ldap_pool *p)
{
    const struct lconn *c;

    TAILQ_FOREACH(c, &p->conns, link)
    if (c->state != LCONN_CLOSING)
        return 1;
    return 0;
}

/* conn_on_kill - free a closing connection; its searches go back to the queue once */
static void conn_on_kill(evutil_socket_t fd, short what, void *arg)
{
    struct lconn *c = arg;
    struct ldap_pool *p = c->pool;
    struct ldap_search *s;

    TAILQ_REMOVE(&p->conns, c, link);
    p->nconns--;
    conn_drop_tls(c);
    if (c->ld != NULL)
        ldap_unbind_ext(c->ld, NULL, NULL); /* closes the socket; the unbind is not waited for */
    else if (c->fd >= 0)
        close(c->fd);
    c->ld = NULL;
    c->fd = -1;
    if (c->connect_failed) {
        p->st.connect_fails++;
        p->backoff_ms = p->backoff_ms == 0 ? LDAP_POOL_BACKOFF_MIN_MS : p->backoff_ms * 2;
        if (p->backoff_ms > LDAP_POOL_BACKOFF_MAX_MS)
            p->backoff_ms = LDAP_POOL_BACKOFF_MAX_MS;
        struct timeval tv = ms_timeval(p->backoff_ms);
        evtimer_add(p->ev_backoff, &tv);
        snprintf(p->down_why, sizeof(p->down_why), "%s", c->why);
        log_limited(&p->down_log, 10000, LOG_WARNING, "ldap:%s: %s (next attempt in %ldms)",
                    p->conf->name, c->why, p->backoff_ms);
    } else if (strcmp(c->why, "idle") != 0) {
        p->st.drops++;
        p->unreplaced++;
        log_limited(&p->down_log, 10000, LOG_WARNING, "ldap:%s: %s", p->conf->name, c->why);
    } else {
        log_debug("ldap:%s: closed an idle connection", p->conf->name);
    }
    /* searches it carried: once more on a fresh connection, else failed */
    while ((s = TAILQ_LAST(&c->searches, search_list)) != NULL) {
        TAILQ_REMOVE(&c->searches, s, link);
        c->ninflight--;
        s->conn = NULL;
        if (s->attempts < 2) {
            p->st.retries++;
            TAILQ_INSERT_HEAD(&p->queue, s, link);
            p->nqueued++;
        } else {
            TAILQ_INSERT_HEAD(&p->queue, s, link); /* so that search_finish can detach it */
            p->nqueued++;
            search_finish(s, LDAP_POOL_DOWN, c->why);
        }
    }
    char why[sizeof(c->why)];
    snprintf(why, sizeof(why), "%s", c->why);
    int connect_failed = c->connect_failed;
    event_free(c->ev_io);
    event_free(c->timer);
    event_free(c->ev_kill);
    free(c);
    /* nothing can connect now: the waiting searches would only wait for their deadline */
    if (connect_failed && backoff_on(p) && !pool_usable(p))
        while ((s = TAILQ_FIRST(&p->queue)) != NULL)
            search_finish(s, LDAP_POOL_DOWN, why);
    pool_dispatch(p);
}

/* pool_on_backoff - the backoff ended: connect for whatever waits */
static void pool_on_backoff(evutil_socket_t fd, short what, void *arg)
{
    pool_dispatch(arg);
}

/*
 * search_reject - libldap would not encode s (a filter its parser refuses,
 * which a template can be): s is answered LDAP_POOL_REFUSED on the next loop
 * turn (this may run inside ldap_pool_search), and the connection is fine.
 */
static void search_reject(struct ldap_pool *p, struct ldap_search *s, int rc)
{
    char why[160];

    snprintf(why, sizeof(why), "the search was not sent: %s (check query_filter)",
             ldap_err2string(rc));
    TAILQ_REMOVE(&p->queue, s, link);
    p->nqueued--;
    s->why = strdup(why);
    s->rejected = 1;
    TAILQ_INSERT_TAIL(&p->rejected, s, link);
    event_active(p->ev_reject, 0, 0);
}

/* pool_on_reject - answer the searches libldap refused */
static void pool_on_reject(evutil_socket_t fd, short what, void *arg)
{
    struct ldap_pool *p = arg;
    struct ldap_search *s;

    while ((s = TAILQ_FIRST(&p->rejected)) != NULL) {
        char why[160];
        snprintf(why, sizeof(why), "%s", s->why != NULL ? s->why : "the search was not sent");
        search_finish(s, LDAP_POOL_REFUSED, why);
    }
}

/*
 * search_send - send s on c; -1 when it was not sent (c failed, or s was
 * refused by libldap and will be answered later)
 */
static int search_send(struct lconn *c, struct ldap_search *s)
{
    const struct ldap_conf *conf = c->pool->conf;
    int msgid = -1;

    /* libldap's prototype lacks const; it does not write to the attribute list */
    int rc = ldap_search_ext(c->ld, conf->search_base, conf->scope, s->filter,
                             (char **)(uintptr_t)conf->attrs, 0, NULL, NULL, NULL, conf->size_limit,
                             &msgid);
    if (rc == LDAP_FILTER_ERROR || rc == LDAP_PARAM_ERROR || rc == LDAP_ENCODING_ERROR ||
        rc == LDAP_NOT_SUPPORTED) {
        search_reject(c->pool, s, rc);
        return -1;
    }
    if (rc != LDAP_SUCCESS) {
        char why[512];
        snprintf(why, sizeof(why), "%.150s: search not sent: %s", conf->uris[c->uri].text,
                 ldap_err2string(rc));
        conn_fail(c, 0, why);
        return -1;
    }
    TAILQ_REMOVE(&c->pool->queue, s, link);
    c->pool->nqueued--;
    s->conn = c;
    s->msgid = msgid;
    s->attempts++;
    s->mark = c->received;
    TAILQ_INSERT_TAIL(&c->searches, s, link);
    c->ninflight++;
    if (c->ninflight > c->pool->st.inflight_max)
        c->pool->st.inflight_max = c->ninflight;
    c->pool->st.searches++;
    evtimer_del(c->timer); /* not idle */
    return 0;
}

/*
 * pool_dispatch - send queued searches on the least busy ready connection
 * with room. While every ready connection is busy and none is on its way,
 * one more is opened (up to pool_size, not during a backoff), so that load
 * spreads over the pool as it grows; searches do not wait for it.
 */
static void pool_dispatch(struct ldap_pool *p)
{
    const struct ldap_conf *conf = p->conf;

    while (!TAILQ_EMPTY(&p->queue)) {
        struct lconn *c, *best = NULL;
        int opening = 0;
        TAILQ_FOREACH(c, &p->conns, link)
        {
            if (c->state == LCONN_RESOLVING || c->state == LCONN_CONNECTING ||
                c->state == LCONN_TLS || c->state == LCONN_BINDING)
                opening++;
            else if (c->state == LCONN_READY && c->ninflight < conf->max_inflight &&
                     (best == NULL || c->ninflight < best->ninflight))
                best = c;
        }
        if ((best == NULL || best->ninflight > 0) && opening == 0 && p->nconns < conf->pool_size &&
            !backoff_on(p)) {
            c = conn_open(p);
            if (c == NULL || c->state == LCONN_CLOSING)
                return; /* failed at once: its kill event starts the backoff */
            continue;
        }
        if (best == NULL)
            return; /* wait for a connection to become ready or to have room */
        search_send(best, TAILQ_FIRST(&p->queue)); /* on failure best is closing, or the
                                                      search was rejected */
    }
}

/* search_on_deadline - the search's time is up, queued or sent */
static void search_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct ldap_search *s = arg;
    struct ldap_pool *p = s->pool;
    struct lconn *c = s->conn;
    char why[512];

    p->st.timeouts++;
    if (c == NULL) {
        snprintf(why, sizeof(why), "no connection within %dms", p->conf->timeout_ms);
        search_finish(s, LDAP_POOL_TIMEOUT, why);
        return;
    }
    snprintf(why, sizeof(why), "%.150s: no answer within %dms", p->conf->uris[c->uri].text,
             p->conf->timeout_ms);
    if (c->state != LCONN_CLOSING)
        ldap_abandon_ext(c->ld, s->msgid, NULL, NULL);
    int stuck = c->received == s->mark;
    search_finish(s, LDAP_POOL_TIMEOUT, why);
    /* nothing at all came back since it was sent: the connection is stuck */
    if (stuck)
        conn_fail(c, 0, why);
    else
        conn_idle_check(c);
}

struct ldap_pool *ldap_pool_new(struct event_base *base, struct dns *dns,
                                const struct ldap_conf *conf)
{
    struct ldap_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->base = base;
    p->dns = dns;
    p->conf = conf;
    TAILQ_INIT(&p->conns);
    TAILQ_INIT(&p->queue);
    TAILQ_INIT(&p->rejected);
    p->ev_backoff = evtimer_new(base, pool_on_backoff, p);
    p->ev_reject = event_new(base, -1, 0, pool_on_reject, p);
    if (p->ev_backoff == NULL || p->ev_reject == NULL) {
        if (p->ev_backoff != NULL)
            event_free(p->ev_backoff);
        if (p->ev_reject != NULL)
            event_free(p->ev_reject);
        free(p);
        return NULL;
    }
    return p;
}

void ldap_pool_free(struct ldap_pool *p)
{
    struct lconn *c;
    struct ldap_search *s;

    if (p == NULL)
        return;
    while ((s = TAILQ_FIRST(&p->queue)) != NULL) {
        search_detach(s);
        search_free(s);
    }
    while ((s = TAILQ_FIRST(&p->rejected)) != NULL) {
        search_detach(s);
        search_free(s);
    }
    while ((c = TAILQ_FIRST(&p->conns)) != NULL) {
        while ((s = TAILQ_FIRST(&c->searches)) != NULL) {
            search_detach(s);
            search_free(s);
        }
        TAILQ_REMOVE(&p->conns, c, link);
        if (c->dreq != NULL)
            dns_cancel(c->dreq);
        conn_drop_tls(c); /* the job cleans up when its worker answers */
        if (c->ld != NULL)
            ldap_unbind_ext(c->ld, NULL, NULL);
        else if (c->fd >= 0)
            close(c->fd);
        event_free(c->ev_io);
        event_free(c->timer);
        event_free(c->ev_kill);
        free(c);
    }
    event_free(p->ev_backoff);
    event_free(p->ev_reject);
    free(p);
}

struct ldap_search *ldap_pool_search(struct ldap_pool *p, const char *filter, ldap_entry_fn entry,
                                     ldap_done_fn done, void *arg, char *why, size_t whylen)
{
    if (p->nqueued >= LDAP_POOL_QUEUE_MAX) {
        p->st.failures++;
        snprintf(why, whylen, "too many searches waiting for a connection");
        return NULL;
    }
    if (backoff_on(p) && !pool_usable(p)) {
        p->st.failures++;
        snprintf(why, whylen, "directory unavailable (%s); next attempt in at most %ldms",
                 p->down_why, p->backoff_ms);
        return NULL;
    }
    struct ldap_search *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->filter = strdup(filter)) == NULL ||
        (s->deadline = evtimer_new(p->base, search_on_deadline, s)) == NULL) {
        if (s != NULL)
            free(s->filter);
        free(s);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    s->pool = p;
    s->msgid = -1;
    s->entry = entry;
    s->done = done;
    s->arg = arg;
    struct timeval tv = ms_timeval(p->conf->timeout_ms);
    evtimer_add(s->deadline, &tv);
    TAILQ_INSERT_TAIL(&p->queue, s, link);
    p->nqueued++;
    pool_dispatch(p);
    return s;
}

void ldap_search_cancel(struct ldap_search *s)
{
    if (s == NULL)
        return;
    if (s->conn != NULL && s->conn->ld != NULL && s->conn->state != LCONN_CLOSING)
        ldap_abandon_ext(s->conn->ld, s->msgid, NULL, NULL);
    struct lconn *c = s->conn;
    search_detach(s);
    search_free(s);
    if (c != NULL)
        conn_idle_check(c);
}

void ldap_pool_get_stats(const struct ldap_pool *p, struct ldap_pool_stats *out)
{
    const struct lconn *c;

    *out = p->st;
    out->conns = p->nconns;
    TAILQ_FOREACH(c, &p->conns, link)
    {
        if (c->state == LCONN_READY)
            out->conns_ready++;
        else if (c->state == LCONN_RESOLVING || c->state == LCONN_CONNECTING ||
                 c->state == LCONN_TLS || c->state == LCONN_BINDING)
            out->conns_connecting++;
        if (c->state != LCONN_CLOSING)
            out->inflight += c->ninflight;
    }
    out->queued = p->nqueued;
    out->backing_off = backoff_on(p);
}
