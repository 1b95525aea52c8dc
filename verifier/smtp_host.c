/*
 * smtp_host.c - one callout destination (host name or address, and port):
 * its connection limit, its FIFO of lookups waiting for a slot and its pool
 * of idle sessions.
 *
 * Limits and pools belong to the next hop, not to the recipient's domain:
 * for smtp:mx every domain an MX host serves shares that host's sessions.
 * Idle sessions count against max_connections; a lookup waiting for a slot
 * is handed an idle session before it would wait.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "smtp_int.h"

/* smtp_host_new - a destination on rt; NULL on out of memory */
struct smtp_host *smtp_host_new(struct smtp_route *rt, const char *name, unsigned port)
{
    struct smtp_host *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->route = rt;
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->port = port;
    snprintf(h->source, sizeof(h->source), "smtp:[%s]:%u", name, port);
    TAILQ_INIT(&h->sessions);
    TAILQ_INIT(&h->idle);
    TAILQ_INIT(&h->queue);
    TAILQ_INSERT_TAIL(&rt->hosts, h, link);
    return h;
}

/* smtp_host_get - the destination (name, rt->port), made on first use; NULL on out of memory */
struct smtp_host *smtp_host_get(struct smtp_route *rt, const char *name)
{
    struct smtp_host *h;

    TAILQ_FOREACH(h, &rt->hosts, link)
    {
        if (strcasecmp(h->name, name) == 0 && h->port == rt->port)
            return h;
    }
    return smtp_host_new(rt, name, rt->port);
}

/* smtp_host_free - free a destination and its sessions, without callbacks; QUIT idle ones */
void smtp_host_free(struct smtp_host *h)
{
    struct smtp_session *s;

    while ((s = TAILQ_FIRST(&h->sessions)) != NULL) {
        if (s->state == SESSION_IDLE && s->bev != NULL) {
            /*
             * a polite goodbye, best effort, never waited for: the output
             * evbuffer of a bufferevent cannot be drained by hand, and an idle
             * session has nothing queued, so write to the socket directly
             */
            ssize_t n = send(bufferevent_getfd(s->bev), "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;
        }
        smtp_session_free(s);
    }
    TAILQ_REMOVE(&h->route->hosts, h, link);
    free(h);
}

/* smtp_host_maybe_free - forget an MX host nobody uses: no lookups, sessions or queue */
void smtp_host_maybe_free(struct smtp_host *h)
{
    if (h->permanent || h->refs > 0 || h->route->closing || !TAILQ_EMPTY(&h->sessions) ||
        !TAILQ_EMPTY(&h->queue))
        return;
    smtp_host_free(h);
}

/*
 * smtp_host_acquire - get req a session at its host: a pooled one (RSET), a new
 * connection while under max_connections, else a place in the FIFO.
 */
void smtp_host_acquire(struct backend_req *req)
{
    struct smtp_host *h = req->host;
    struct smtp_route *rt = h->route;
    struct smtp_session *s = TAILQ_FIRST(&h->idle);

    if (s != NULL && !req->want_fresh) {
        smtp_session_take(s, req);
        return;
    }
    if (s != NULL && h->nconn >= rt->opts.max_connections) {
        /* a fresh connection is wanted and only pooled ones hold the slots: drop one */
        smtp_session_shut(s);
    }
    if (h->nconn < rt->opts.max_connections && TAILQ_EMPTY(&h->queue)) {
        smtp_session_open(req);
        return;
    }
    TAILQ_INSERT_TAIL(&h->queue, req, qlink);
    req->state = REQ_QUEUED;
    evtimer_add(req->timer, &rt->opts.queue_timeout);
    log_debug("callout %p rcpt=<%s> %s: queued, %d connections open", (void *)req, req->rcpt,
              h->source, h->nconn);
}

/* smtp_host_dispatch - serve queued lookups: pooled sessions first, then free slots */
void smtp_host_dispatch(struct smtp_host *h)
{
    struct smtp_route *rt = h->route;
    struct backend_req *req;

    while (!rt->closing && (req = TAILQ_FIRST(&h->queue)) != NULL) {
        struct smtp_session *s = TAILQ_FIRST(&h->idle);

        if (s != NULL && !req->want_fresh) {
            smtp_req_unqueue(req);
            smtp_session_take(s, req);
        } else if (h->nconn < rt->opts.max_connections) {
            smtp_req_unqueue(req);
            smtp_session_open(req);
        } else if (s != NULL) {
            smtp_session_shut(s); /* wants a fresh connection: a pooled one yields its slot */
        } else {
            break;
        }
    }
}

/* now_ms - CLOCK_MONOTONIC in milliseconds: a window must not move with the wall clock */
static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1; /* never 0 */
}

/* accept_find - h's entry in its route's table, or NULL */
static struct smtp_accept *accept_find(struct smtp_route *rt, const struct smtp_host *h)
{
    for (int i = 0; i < SMTP_ACCEPTS_MAX; i++) {
        struct smtp_accept *a = &rt->accepts[i];
        if (a->when_ms != 0 && a->port == h->port && strcasecmp(a->name, h->name) == 0)
            return a;
    }
    return NULL;
}

void smtp_host_note_accept(struct smtp_host *h)
{
    struct smtp_route *rt = h->route;
    struct smtp_accept *a = accept_find(rt, h);

    if (a == NULL) {
        a = &rt->accepts[0];
        for (int i = 1; i < SMTP_ACCEPTS_MAX; i++)
            if (rt->accepts[i].when_ms < a->when_ms)
                a = &rt->accepts[i];
        snprintf(a->name, sizeof(a->name), "%s", h->name);
        a->port = h->port;
    }
    a->when_ms = now_ms();
}

int smtp_host_accepted_within(const struct smtp_host *h, long long ms)
{
    const struct smtp_accept *a = accept_find(h->route, h);

    return a != NULL && now_ms() - a->when_ms <= ms;
}
