/*
 * policy_client.c - the milter's side of the policy protocol: one request,
 * one answer, over a connection kept for the whole milter session (see
 * policy_client.h for the contract).
 *
 * A query walks an explicit state machine - CLOSED -> CONNECTING -> SENDING
 * -> READING -> IDLE - in which every wait is a poll() bounded by one
 * deadline computed when the query starts. A connection reused from IDLE
 * may have been closed by policyd meanwhile (its idle_timeout): that shows
 * up as a readable socket before we send, or as EOF/EPIPE before the first
 * answer byte, and costs one reconnect within the same deadline. Any other
 * failure closes the connection and reports an error; the caller applies
 * milter_default_action.
 */
#include "policy_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum pc_state {
    PC_CLOSED,     /* no socket */
    PC_CONNECTING, /* non-blocking connect in progress */
    PC_SENDING,    /* writing the request */
    PC_READING,    /* waiting for the answer */
    PC_IDLE,       /* connected, last answer complete: reusable */
    PC_STATE_COUNT
};

static const char *const pc_state_names[PC_STATE_COUNT] = {"closed", "connecting", "sending",
                                                           "reading", "idle"};

struct policy_client {
    const struct policy_endpoint *ep;
    int fd;
    enum pc_state state;
};

/* pc_enter_state - the one place a client changes state (debug-logged) */
static void pc_enter_state(struct policy_client *pc, enum pc_state next)
{
    if ((unsigned)next >= PC_STATE_COUNT)
        next = PC_CLOSED;
    log_debug("policy client fd=%d %s -> %s", pc->fd, pc_state_names[pc->state],
              pc_state_names[next]);
    pc->state = next;
}

static int pc_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pc_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int policy_endpoint_parse(const char *s, struct policy_endpoint *ep, char *err, size_t errlen)
{
    memset(ep, 0, sizeof(*ep));
    snprintf(ep->name, sizeof(ep->name), "%s", s);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ep->addr;
        size_t len = strlen(s + 5);
        if (len == 0 || len >= sizeof(sun->sun_path))
            return pc_err(err, errlen, "%s: bad unix socket path", s);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, s + 5, len + 1);
        ep->family = AF_UNIX;
        ep->addrlen = sizeof(*sun);
        return 0;
    }
    if (strncmp(s, "inet:", 5) != 0)
        return pc_err(err, errlen, "%s: want inet:HOST:PORT or unix:PATH", s);
    char host[256];
    const char *h = s + 5, *port;
    size_t hlen;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (close == NULL || close[1] != ':')
            return pc_err(err, errlen, "%s: want inet:[IPV6]:PORT", s);
        h++;
        hlen = (size_t)(close - h);
        port = close + 2;
    } else {
        const char *colon = strrchr(h, ':');
        if (colon == NULL)
            return pc_err(err, errlen, "%s: no port", s);
        hlen = (size_t)(colon - h);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host) || *port == '\0' ||
        strspn(port, "0123456789") != strlen(port))
        return pc_err(err, errlen, "%s: want inet:HOST:PORT", s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || res == NULL)
        return pc_err(err, errlen, "%s: %s", s, rc ? gai_strerror(rc) : "no address");
    if (res->ai_addrlen > sizeof(ep->addr)) {
        freeaddrinfo(res);
        return pc_err(err, errlen, "%s: address too long", s);
    }
    memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
    ep->addrlen = res->ai_addrlen;
    ep->family = res->ai_family;
    freeaddrinfo(res);
    return 0;
}

struct policy_client *policy_client_new(const struct policy_endpoint *ep)
{
    struct policy_client *pc = calloc(1, sizeof(*pc));

    if (pc == NULL)
        return NULL;
    pc->ep = ep;
    pc->fd = -1;
    pc->state = PC_CLOSED;
    return pc;
}

void policy_client_close(struct policy_client *pc)
{
    if (pc->fd >= 0)
        close(pc->fd);
    pc_enter_state(pc, PC_CLOSED);
    pc->fd = -1;
}

void policy_client_free(struct policy_client *pc)
{
    if (pc == NULL)
        return;
    policy_client_close(pc);
    free(pc);
}

/* pc_now_ms - monotonic milliseconds */
static long long pc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pc_wait - poll fd for events until deadline; 1 ready, 0 deadline passed, -1 error */
static int pc_wait(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - pc_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return 1;
    }
}

/* pc_connect - CLOSED -> CONNECTING -> SENDING, non-blocking, within deadline */
static int pc_connect(struct policy_client *pc, long long deadline, char *err, size_t errlen)
{
    int fd = socket(pc->ep->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return pc_err(err, errlen, "socket: %s", strerror(errno));
    pc->fd = fd;
    pc_enter_state(pc, PC_CONNECTING);
    if (connect(fd, (const struct sockaddr *)&pc->ep->addr, pc->ep->addrlen) < 0) {
        /* EAGAIN on a unix socket is a full listen queue, not a connect in progress */
        if (errno != EINPROGRESS) {
            int e = errno;
            policy_client_close(pc);
            return pc_err(err, errlen, "connect to %s: %s", pc->ep->name, strerror(e));
        }
        int r = pc_wait(fd, POLLOUT, deadline);
        int soerr = 0;
        socklen_t slen = sizeof(soerr);
        if (r <= 0) {
            policy_client_close(pc);
            return pc_err(err, errlen, "connect to %s: %s", pc->ep->name,
                          r == 0 ? "timed out" : strerror(errno));
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0 || soerr != 0) {
            policy_client_close(pc);
            return pc_err(err, errlen, "connect to %s: %s", pc->ep->name,
                          strerror(soerr ? soerr : errno));
        }
    }
    pc_enter_state(pc, PC_SENDING);
    return 0;
}

/* pc_idle_is_dead - an idle connection with something to read was closed (or abused) by policyd */
static int pc_idle_is_dead(struct policy_client *pc)
{
    struct pollfd p = {.fd = pc->fd, .events = POLLIN};

    return poll(&p, 1, 0) != 0;
}

/* pc_append_attr - "name=value\n" into buf, value sanitised and bounded; new length or 0 */
static size_t pc_append_attr(char *buf, size_t len, size_t size, const struct policy_attr *a)
{
    size_t nlen = strlen(a->name);
    const char *v = a->value ? a->value : "";
    size_t vlen = strnlen(v, POLICY_CLIENT_MAX_VALUE);

    if (len + nlen + 1 + vlen + 1 >= size)
        return 0;
    memcpy(buf + len, a->name, nlen);
    len += nlen;
    buf[len++] = '=';
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        buf[len++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[len++] = '\n';
    return len;
}

/* pc_send - SENDING: write all of buf within deadline; reused tells a stale socket from a dead
 * policyd */
static int pc_send(struct policy_client *pc, const char *buf, size_t len, long long deadline,
                   char *err, size_t errlen)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(pc->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = pc_wait(pc->fd, POLLOUT, deadline);
            if (r == 0)
                return pc_err(err, errlen, "sending to %s: timed out", pc->ep->name);
            if (r < 0)
                return pc_err(err, errlen, "sending to %s: %s", pc->ep->name, strerror(errno));
            continue;
        }
        return pc_err(err, errlen, "sending to %s: %s", pc->ep->name,
                      n < 0 ? strerror(errno) : "short write");
    }
    pc_enter_state(pc, PC_READING);
    return 0;
}

/*
 * pc_read_answer - READING: read until the empty line that ends an answer.
 * Returns the answer length (terminator included), 0 when the connection
 * closed before the first byte (a stale connection), -1 on any other error.
 */
static long pc_read_answer(struct policy_client *pc, char *buf, size_t size, long long deadline,
                           char *err, size_t errlen)
{
    size_t len = 0;

    for (;;) {
        int r = pc_wait(pc->fd, POLLIN, deadline);
        if (r == 0)
            return pc_err(err, errlen, "no answer from %s within the deadline", pc->ep->name);
        if (r < 0)
            return pc_err(err, errlen, "waiting for %s: %s", pc->ep->name, strerror(errno));
        ssize_t n = recv(pc->fd, buf + len, size - len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return pc_err(err, errlen, "reading from %s: %s", pc->ep->name, strerror(errno));
        if (n == 0) {
            if (len == 0)
                return 0;
            return pc_err(err, errlen, "%s closed the connection in the middle of an answer",
                          pc->ep->name);
        }
        size_t from = len > 0 ? len - 1 : 0;
        len += (size_t)n;
        if (len == 1 && buf[0] == '\n')
            return pc_err(err, errlen, "empty answer from %s", pc->ep->name);
        for (size_t i = from; i + 1 < len; i++) {
            if (buf[i] == '\n' && buf[i + 1] == '\n') {
                if (i + 2 != len)
                    return pc_err(err, errlen, "unasked data after the answer from %s",
                                  pc->ep->name);
                return (long)len;
            }
        }
        if (len == size)
            return pc_err(err, errlen, "answer from %s longer than %zu bytes", pc->ep->name, size);
    }
}

/*
 * pc_parse_answer - the action= value of a complete answer (len bytes, ends
 * in "\n\n"). Every line must be name=value of printable characters;
 * exactly one action; other attributes are ignored (policyd sends none).
 */
static int pc_parse_answer(const char *buf, size_t len, char *action, size_t actsize, char *err,
                           size_t errlen)
{
    int nactions = 0;
    const char *p = buf, *end = buf + len - 1; /* the final empty line */

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t llen = (size_t)(nl - p);
        const char *eq = memchr(p, '=', llen);
        if (eq == NULL || eq == p)
            return pc_err(err, errlen, "answer line without name=value");
        for (size_t i = 0; i < llen; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c >= 0x7f)
                return pc_err(err, errlen, "control or non-ASCII byte in the answer");
        }
        if ((size_t)(eq - p) == 6 && memcmp(p, "action", 6) == 0) {
            size_t vlen = llen - 7;
            if (++nactions > 1)
                return pc_err(err, errlen, "more than one action in the answer");
            if (vlen == 0)
                return pc_err(err, errlen, "empty action in the answer");
            if (vlen >= actsize || vlen > POLICY_CLIENT_MAX_ACTION)
                return pc_err(err, errlen, "action longer than %d bytes", POLICY_CLIENT_MAX_ACTION);
            memcpy(action, eq + 1, vlen);
            action[vlen] = '\0';
        }
        p = nl + 1;
    }
    if (nactions == 0)
        return pc_err(err, errlen, "answer without an action");
    return 0;
}

int policy_client_query(struct policy_client *pc, const struct policy_attr *attrs, int nattrs,
                        int timeout_ms, char *action, size_t actsize, char *err, size_t errlen)
{
    /* request: at most MAX_ATTRS lines of a short name and a bounded value */
    char req[POLICY_CLIENT_MAX_ATTRS * (POLICY_CLIENT_MAX_VALUE + 64) + 2];
    char ans[POLICY_CLIENT_MAX_ANSWER];
    size_t rlen = 0;
    long long deadline = pc_now_ms() + timeout_ms;

    if (nattrs < 0 || nattrs > POLICY_CLIENT_MAX_ATTRS)
        return pc_err(err, errlen, "too many request attributes");
    for (int i = 0; i < nattrs; i++) {
        if (strlen(attrs[i].name) > 60 || strpbrk(attrs[i].name, "=\n") != NULL)
            return pc_err(err, errlen, "bad attribute name");
        rlen = pc_append_attr(req, rlen, sizeof(req) - 1, &attrs[i]);
        if (rlen == 0)
            return pc_err(err, errlen, "request too long");
    }
    req[rlen++] = '\n';

    for (int attempt = 0; attempt < 2; attempt++) {
        int reused = pc->state == PC_IDLE;
        if (reused && pc_idle_is_dead(pc)) {
            policy_client_close(pc);
            reused = 0;
        }
        if (pc->state == PC_IDLE)
            pc_enter_state(pc, PC_SENDING);
        else if (pc_connect(pc, deadline, err, errlen) < 0)
            return -1;
        if (pc_send(pc, req, rlen, deadline, err, errlen) < 0) {
            policy_client_close(pc);
            if (reused)
                continue; /* policyd closed the idle connection under us: once more */
            return -1;
        }
        long n = pc_read_answer(pc, ans, sizeof(ans), deadline, err, errlen);
        if (n == 0) {
            policy_client_close(pc);
            if (reused)
                continue;
            return pc_err(err, errlen, "%s closed the connection without an answer", pc->ep->name);
        }
        if (n < 0 || pc_parse_answer(ans, (size_t)n, action, actsize, err, errlen) < 0) {
            policy_client_close(pc);
            return -1;
        }
        pc_enter_state(pc, PC_IDLE);
        return 0;
    }
    return -1; /* err holds the second attempt's reason */
}
