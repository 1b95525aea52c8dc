/*
 * listener.c - bind the configured sockets and accept policy clients.
 *
 * Binding is separate from accepting so main.c can bind (as root, e.g. in
 * Postfix's private/ directory), then drop privileges and daemonize, and
 * only then start the event loop.
 *
 * When accept() fails (EMFILE/ENFILE: out of descriptors) the pending
 * connection stays in the kernel's queue and the socket stays readable, so
 * retrying at once spins the loop and floods the log. The listener is
 * disabled instead and re-enabled by a timer after LISTENER_BACKOFF_MS;
 * the failure is logged once per LISTENER_LOG_INTERVAL_MS with a count.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "policy_conn.h"

#define LISTENER_BACKOFF_MS 250        /* pause accepting after a failed accept() */
#define LISTENER_LOG_INTERVAL_MS 10000 /* one "accept failed" line per interval */

struct listener {
    struct evconnlistener *ev;
    struct event *backoff;      /* re-enables ev after an accept() failure */
    struct log_limit log_limit; /* accept() failures */
    struct policy_server *s;
    listener_accept_fn accept; /* NULL: policy connections */
    void *accept_arg;
    char name[160];
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t unix_dev; /* the socket file this instance created: only that one is unlinked */
    ino_t unix_ino;
};

/*
 * unix_in_use - does something accept connections on the socket file at
 * path? 1 yes (or full backlog: alive), 0 no (ECONNREFUSED: stale file),
 * -1 cannot tell (err set). The probe connection is closed at once; a
 * callahead-policyd on the other end sees a client that said nothing.
 */
static int unix_in_use(const struct sockaddr_un *sun, char *err, size_t errlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        snprintf(err, errlen, "unix:%s: socket: %s", sun->sun_path, strerror(errno));
        return -1;
    }
    int rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
        return 1;
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    snprintf(err, errlen, "unix:%s: cannot tell whether it is in use: %s", sun->sun_path,
             strerror(e));
    return -1;
}

/*
 * listener_set_perms - give the socket file path its owner, group and mode
 * (see listener.h). Owner first: chmod by a user who just gave the file
 * away would fail.
 */
int listener_set_perms(const char *path, int mode, const char *owner, const char *group, char *err,
                       size_t errlen)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;

    if (owner != NULL && owner[0] != '\0') {
        struct passwd *pw = getpwnam(owner);
        if (pw == NULL) {
            snprintf(err, errlen, "unix:%s: unknown user %s", path, owner);
            return -1;
        }
        uid = pw->pw_uid;
    }
    if (group != NULL && group[0] != '\0') {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            snprintf(err, errlen, "unix:%s: unknown group %s", path, group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0) {
        snprintf(err, errlen, "unix:%s: chown: %s", path, strerror(errno));
        return -1;
    }
    if (chmod(path, (mode_t)mode) < 0) {
        snprintf(err, errlen, "unix:%s: chmod: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * bind_unix - a UNIX socket with the given mode and owner. An existing
 * socket file is replaced only when nothing answers on it (left by a crash):
 * a live one belongs to another server, often a second callahead-policyd
 * started by mistake, and stealing it would cut that server off.
 */
static int bind_unix(const char *path, int mode, const char *owner, const char *group, char *err,
                     size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix:%s: path too long", path);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "unix:%s: exists and is not a socket", path);
            return -1;
        }
        switch (unix_in_use(&sun, err, errlen)) {
        case 1:
            snprintf(err, errlen,
                     "unix:%s: another server is listening on this socket (is callahead-policyd "
                     "already running?): not replacing it",
                     path);
            return -1;
        case 0:
            unlink(path); /* stale: nobody listens */
            break;
        default:
            return -1;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "unix:%s: socket: %s", path, strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        snprintf(err, errlen, "unix:%s: bind: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (listener_set_perms(path, mode, owner, group, err, errlen) < 0) {
        unlink(path); /* ours, just bound: nobody else can be using it */
        close(fd);
        return -1;
    }
    return fd;
}

/* bind_inet - "HOST:PORT" or "[IPV6]:PORT"; host must be numeric (no DNS at start-up) */
static int bind_inet(const char *hostport, char *err, size_t errlen)
{
    char host[128];
    const char *port;

    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - hostport - 1) >= sizeof(host)) {
            snprintf(err, errlen, "inet:%s: expected [IPV6]:PORT", hostport);
            return -1;
        }
        memcpy(host, hostport + 1, (size_t)(end - hostport - 1));
        host[end - hostport - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host)) {
            snprintf(err, errlen, "inet:%s: expected HOST:PORT", hostport);
            return -1;
        }
        memcpy(host, hostport, (size_t)(colon - hostport));
        host[colon - hostport] = '\0';
        port = colon + 1;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "inet:%s: %s (use a numeric address and port)", hostport,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "inet:%s: socket: %s", hostport, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        snprintf(err, errlen, "inet:%s: bind: %s", hostport, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int listener_bind(const char *spec, int mode, const char *owner, const char *group, char *err,
                  size_t errlen)
{
    int fd;

    if (strncmp(spec, "unix:", 5) == 0)
        fd = bind_unix(spec + 5, mode, owner, group, err, errlen);
    else if (strncmp(spec, "inet:", 5) == 0)
        fd = bind_inet(spec + 5, err, errlen);
    else {
        snprintf(err, errlen, "%s: listen must be inet:HOST:PORT or unix:PATH", spec);
        return -1;
    }
    return fd;
}

int listener_listen(int fd, char *err, size_t errlen)
{
    if (listen(fd, 1024) < 0) {
        char name[160];
        listener_describe(fd, name, sizeof(name));
        snprintf(err, errlen, "%s: listen: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

void listener_describe(int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(buf, size, "fd:%d", fd);
        return;
    }
    if (ss.ss_family == AF_UNIX) {
        snprintf(buf, size, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "inet:%s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "inet:[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, size, "fd:%d", fd);
    }
}

/* accept_cb - a new client: name it for the logs and hand it to policy_conn */
static void accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct listener *l = arg;
    char peer[64], host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
        snprintf(peer, sizeof(peer), "%s:%u", host, ntohs(((struct sockaddr_in *)sa)->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
        snprintf(peer, sizeof(peer), "[%s]:%u", host,
                 ntohs(((struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        snprintf(peer, sizeof(peer), "unix#%d", (int)fd);
    }
    if (l->accept != NULL)
        l->accept(l->accept_arg, fd, peer);
    else
        policy_conn_new(l->s, fd, peer);
}

void listener_set_accept(struct listener *l, listener_accept_fn fn, void *arg)
{
    l->accept = fn;
    l->accept_arg = arg;
}

/* backoff_cb - the pause after an accept() failure is over: accept again */
static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;

    evconnlistener_enable(l->ev);
}

/*
 * accept_error_cb - accept() failed with something other than "try again"
 * (libevent handles EAGAIN, EINTR and ECONNABORTED itself): typically EMFILE
 * or ENFILE while every descriptor is in use. Stop accepting for a moment
 * (the clients wait in the listen queue) rather than spin on a socket that
 * stays readable.
 */
static void accept_error_cb(struct evconnlistener *ev, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, LISTENER_BACKOFF_MS * 1000};

    evconnlistener_disable(l->ev);
    evtimer_add(l->backoff, &tv);
    log_limited(&l->log_limit, LISTENER_LOG_INTERVAL_MS, LOG_WARNING,
                "%s: accept: %s: not accepting for %d ms (%d policy connections open)", l->name,
                evutil_socket_error_to_string(e), LISTENER_BACKOFF_MS, l->s->nconns);
}

struct listener *listener_start(struct event_base *base, int fd, struct policy_server *s, char *err,
                                size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->s = s;
    listener_describe(fd, l->name, sizeof(l->name));
    if (strncmp(l->name, "unix:", 5) == 0) {
        struct stat st;
        snprintf(l->unix_path, sizeof(l->unix_path), "%s", l->name + 5);
        /* bound moments ago by this process: remember which file is ours */
        if (lstat(l->unix_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            l->unix_dev = st.st_dev;
            l->unix_ino = st.st_ino;
        } else {
            l->unix_path[0] = '\0'; /* already gone or replaced: never unlink it */
        }
    }
    evutil_make_socket_nonblocking(fd);
    l->ev = evconnlistener_new(base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                               -1, fd);
    if (l->ev == NULL) {
        snprintf(err, errlen, "%s: cannot listen", l->name);
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->ev, accept_error_cb);
    l->backoff = evtimer_new(base, backoff_cb, l);
    if (l->backoff == NULL) {
        snprintf(err, errlen, "%s: out of memory", l->name);
        evconnlistener_free(l->ev);
        free(l);
        return NULL;
    }
    return l;
}

void listener_free(struct listener *l)
{
    if (l == NULL)
        return;
    evconnlistener_free(l->ev);
    event_free(l->backoff);
    if (l->unix_path[0] != '\0') {
        /* unlink only the file this instance created, not one a later server bound there */
        struct stat st;
        if (lstat(l->unix_path, &st) == 0 && st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
            unlink(l->unix_path);
    }
    free(l);
}
