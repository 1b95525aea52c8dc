/*
 * ldap_tls.c - LDAP TLS handshakes on two worker threads (see ldap_tls.h
 * for why and for who owns what). A job goes:
 *
 *   loop: ldap_tls_start --queue--> worker: ldap_init_fd, TLS options,
 *   handshake, socket back to non-blocking --one byte on the job's pipe-->
 *   loop: job_on_result: done(ld or why), or (abandoned) unbind and free.
 *
 * Fields under "worker" are written by the worker only, before it writes
 * the byte, and read by the loop only after it has read the byte (the pipe
 * orders them). abandoned and the event belong to the loop only.
 *
 * The hard bound: libldap 2.5 does not keep LDAP_OPT_NETWORK_TIMEOUT in
 * every case (GnuTLS builds retry a read that SO_RCVTIMEO ended), so when
 * the connection gives up at its deadline, ldap_tls_abandon shuts the
 * socket down (shutdown(2), under fd_mu, never after the worker closed
 * it): any read or poll of the worker returns at once and it fails. The queue
 * is under the mutex. A hung handshake holds its worker for at most its
 * timeout; at most two run at once, the others wait in the queue (within
 * their own connection's connect_timeout, after which the loop abandons
 * them and the worker skips them).
 */
#include "ldap_tls.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openldap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LDAP_TLS_WORKERS 2

struct ldap_tls_job {
    /* set by the loop before queueing, then read-only */
    int fd;
    char uri[300];
    enum ldap_tls_mode mode;
    char ca_file[4096];
    int require_cert;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    int pipe_r, pipe_w;
    /* the socket while the worker may block on it: the loop shuts it down on abandon */
    pthread_mutex_t fd_mu;
    int fd_closed; /* under fd_mu: the worker closed fd (its number may be reused) */
    /* worker */
    LDAP *ld;
    char why[1024];
    /* loop */
    struct event *ev;
    int abandoned;
    ldap_tls_done_fn done;
    void *arg;
    struct ldap_tls_job *next; /* queue, under the mutex */
};

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct ldap_tls_job *q_head, *q_tail;
static int nworkers;

/* remaining_ms - time left before j's deadline, at least 1 */
static long remaining_ms(const struct ldap_tls_job *j)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (j->deadline.tv_sec - now.tv_sec) * 1000 + (j->deadline.tv_nsec - now.tv_nsec) / 1000000;
    return ms < 1 ? 1 : ms;
}

/*
 * diag - libldap's reason for rc on ld, with its diagnostic. libldap built
 * with GnuTLS reports a certificate that does not verify as "(unknown error
 * code)": with tls_require_cert on, say what was required instead.
 */
static void diag(struct ldap_tls_job *j, const char *what, int rc)
{
    char *msg = NULL, host[300];
    if (j->ld != NULL)
        ldap_get_option(j->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg);
    int useless = msg == NULL || *msg == '\0' || strcmp(msg, "(unknown error code)") == 0;
    if (useless && j->require_cert) {
        /* the host of "ldaps://HOST:PORT" or "ldap://[V6]:PORT" */
        const char *h = strstr(j->uri, "://");
        snprintf(host, sizeof(host), "%s", h != NULL ? h + 3 : j->uri);
        char *end = host[0] == '[' ? strchr(host, ']') : strrchr(host, ':');
        if (end != NULL)
            *(host[0] == '[' ? end + 1 : end) = '\0';
        snprintf(
            j->why, sizeof(j->why),
            "%.150s: %s: %s: certificate verify failed or TLS refused (tls_require_cert = yes: "
            "the server's certificate must chain to %.150s and name %.100s)",
            j->uri, what, ldap_err2string(rc),
            j->ca_file[0] != '\0' ? j->ca_file : "the system's CA store", host);
    } else {
        snprintf(j->why, sizeof(j->why), "%.150s: %s: %s%s%.250s", j->uri, what,
                 ldap_err2string(rc), useless ? "" : ": ", useless ? "" : msg);
    }
    ldap_memfree(msg);
}

/* close_fd - the worker closes the socket (through ld when set), so that abandon no longer shuts it
 */
static void close_fd(struct ldap_tls_job *j, LDAP *ld)
{
    pthread_mutex_lock(&j->fd_mu);
    if (ld != NULL)
        ldap_unbind_ext(ld, NULL, NULL);
    else
        close(j->fd);
    j->fd_closed = 1;
    j->ld = NULL;
    pthread_mutex_unlock(&j->fd_mu);
}

/*
 * handshake - the worker's whole job, bounded by j->deadline; sets j->ld,
 * or j->why with the socket closed
 */
static void handshake(struct ldap_tls_job *j)
{
    long ms = remaining_ms(j);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int rc, flags = fcntl(j->fd, F_GETFL);

    /* blocking for libldap's synchronous calls, with a hard bound on each read and write */
    fcntl(j->fd, F_SETFL, flags & ~O_NONBLOCK);
    setsockopt(j->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(j->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    rc = ldap_init_fd(j->fd, LDAP_PROTO_TCP, j->uri, &j->ld);
    if (rc != LDAP_SUCCESS) {
        snprintf(j->why, sizeof(j->why), "%.150s: ldap_init_fd: %s", j->uri, ldap_err2string(rc));
        close_fd(j, NULL);
        return;
    }
    int version = LDAP_VERSION3, zero = 0;
    int req = j->require_cert ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
    ldap_set_option(j->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(j->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(j->ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(j->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &req);
    if (j->ca_file[0] != '\0')
        ldap_set_option(j->ld, LDAP_OPT_X_TLS_CACERTFILE, j->ca_file);
    rc = ldap_set_option(j->ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
    if (rc != LDAP_OPT_SUCCESS) {
        diag(j, "TLS context", rc);
    } else if (j->mode == LDAP_TLS_STARTTLS) {
        rc = ldap_start_tls_s(j->ld, NULL, NULL);
        if (rc != LDAP_SUCCESS)
            diag(j, "StartTLS", rc);
    } else {
        rc = ldap_install_tls(j->ld);
        if (rc != LDAP_SUCCESS)
            diag(j, "TLS handshake", rc);
    }
    if (rc != LDAP_SUCCESS) {
        close_fd(j, j->ld); /* unbinding closes the socket */
        return;
    }
    /* the loop's timeouts from here on: no socket-level ones, non-blocking again */
    struct timeval none = {0, 0};
    setsockopt(j->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    setsockopt(j->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    fcntl(j->fd, F_SETFL, flags | O_NONBLOCK);
}

/* worker - take jobs from the queue forever */
static void *worker(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&q_mu);
        while (q_head == NULL)
            pthread_cond_wait(&q_cv, &q_mu);
        struct ldap_tls_job *j = q_head;
        q_head = j->next;
        if (q_head == NULL)
            q_tail = NULL;
        pthread_mutex_unlock(&q_mu);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > j->deadline.tv_sec ||
            (now.tv_sec == j->deadline.tv_sec && now.tv_nsec >= j->deadline.tv_nsec)) {
            snprintf(j->why, sizeof(j->why), "%.150s: TLS handshake: no worker free in time",
                     j->uri);
            close_fd(j, NULL);
        } else {
            handshake(j);
        }
        char one = 1;
        int pw = j->pipe_w;
        /* after this write the job belongs to the loop: j is not touched again */
        while (write(pw, &one, 1) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

/* job_free - on the loop, once the worker has answered */
static void job_free(struct ldap_tls_job *j)
{
    event_free(j->ev);
    pthread_mutex_destroy(&j->fd_mu);
    close(j->pipe_r);
    close(j->pipe_w);
    free(j);
}

/* job_on_result - the worker finished j: hand the result over, or clean up */
static void job_on_result(evutil_socket_t fd, short what, void *arg)
{
    struct ldap_tls_job *j = arg;
    char b;
    (void)what;

    if (read(fd, &b, 1) != 1)
        return; /* spurious: the byte comes */
    if (j->abandoned) {
        if (j->ld != NULL)
            ldap_unbind_ext(j->ld, NULL, NULL);
        job_free(j);
        return;
    }
    LDAP *ld = j->ld;
    char why[sizeof(j->why)];
    snprintf(why, sizeof(why), "%s", j->why);
    ldap_tls_done_fn done = j->done;
    void *darg = j->arg;
    job_free(j);
    done(ld, why, darg);
}

/* start_workers - the threads, once; 0 when at least one runs */
static int start_workers(void)
{
    int ok = 0;
    pthread_mutex_lock(&q_mu);
    while (nworkers < LDAP_TLS_WORKERS) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, worker, NULL);
        pthread_attr_destroy(&a);
        if (rc != 0)
            break;
        nworkers++;
    }
    ok = nworkers > 0 ? 0 : -1;
    pthread_mutex_unlock(&q_mu);
    return ok;
}

struct ldap_tls_job *ldap_tls_start(struct event_base *base, int fd, const char *uri,
                                    enum ldap_tls_mode mode, const char *ca_file, int require_cert,
                                    int timeout_ms, ldap_tls_done_fn done, void *arg)
{
    struct ldap_tls_job *j = calloc(1, sizeof(*j));
    int p[2];
    int debug = 0;

    /* libldap's global initialisation happens here, on the loop, not in two threads at once */
    ldap_get_option(NULL, LDAP_OPT_DEBUG_LEVEL, &debug);
    if (j == NULL || start_workers() < 0 || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(j);
        close(fd);
        return NULL;
    }
    j->fd = fd;
    pthread_mutex_init(&j->fd_mu, NULL);
    snprintf(j->uri, sizeof(j->uri), "%s", uri);
    j->mode = mode;
    snprintf(j->ca_file, sizeof(j->ca_file), "%s", ca_file != NULL ? ca_file : "");
    j->require_cert = require_cert;
    clock_gettime(CLOCK_MONOTONIC, &j->deadline);
    j->deadline.tv_sec += timeout_ms / 1000;
    j->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (j->deadline.tv_nsec >= 1000000000) {
        j->deadline.tv_sec++;
        j->deadline.tv_nsec -= 1000000000;
    }
    j->pipe_r = p[0];
    j->pipe_w = p[1];
    j->done = done;
    j->arg = arg;
    j->ev = event_new(base, p[0], EV_READ | EV_PERSIST, job_on_result, j);
    if (j->ev == NULL || event_add(j->ev, NULL) < 0) {
        if (j->ev != NULL)
            event_free(j->ev);
        pthread_mutex_destroy(&j->fd_mu);
        close(p[0]);
        close(p[1]);
        close(fd);
        free(j);
        return NULL;
    }
    pthread_mutex_lock(&q_mu);
    if (q_tail != NULL)
        q_tail->next = j;
    else
        q_head = j;
    q_tail = j;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
    return j;
}

void ldap_tls_abandon(struct ldap_tls_job *j)
{
    if (j == NULL)
        return;
    j->abandoned = 1;
    /* wake a worker blocked on the socket; it fails and answers, and the loop cleans up */
    pthread_mutex_lock(&j->fd_mu);
    if (!j->fd_closed)
        shutdown(j->fd, SHUT_RDWR);
    pthread_mutex_unlock(&j->fd_mu);
}
