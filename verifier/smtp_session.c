/*
 * smtp_session.c - one SMTP client connection to a next hop: the callout's
 * state machine.
 *
 * connect -> greeting -> EHLO (HELO if EHLO is refused) [-> STARTTLS ->
 * TLS handshake -> EHLO] -> MAIL FROM -> RCPT TO, then idle in its destination's pool with the mail
 * transaction still open: the next lookup sends only RCPT TO, one round trip instead of a session
 * (RSET -> MAIL -> RCPT only when a new transaction is needed, all three in one write when the next
 * hop offers PIPELINING, RFC 2920), and QUIT at the end, after max_rcpts_per_session RCPTs or
 * max_rejects_per_session error replies: a next hop that counts errors per session (Postfix's
 * smtpd_soft_error_limit) must never start to slow us down. Every state has a deadline (one timer,
 * re-armed by session_enter_state, the one place the state changes). The RCPT reply decides the
 * lookup's verdict; anything else that goes wrong says nothing about the address and becomes a
 * tempfail or a retry at the next address. A session is never freed under a caller's feet: closing
 * drops the connection at once and the struct is reaped from its timer on the next loop pass. A
 * session that saw a 421, a timeout, garbage or a disconnect is never reused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "smtp_int.h"
#include "smtp_tls.h"

static const char *const session_state_names[SESSION_STATE_COUNT] = {
    "connect", "greeting", "ehlo", "helo", "starttls", "tls",
    "mail",    "rcpt",     "rset", "idle", "quit",     "closed",
};

/* what the step is called in a reason text */
static const char *const session_step_names[SESSION_STATE_COUNT] = {
    "connect",   "greeting", "EHLO", "HELO", "STARTTLS", "TLS handshake",
    "MAIL FROM", "RCPT TO",  "RSET", "idle", "QUIT",     "nothing",
};

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_mail(struct smtp_session *s, int rset);
static struct backend_req *session_detach(struct smtp_session *s);

/*
 * TLS trouble is logged as a warning at most once a minute per kind (a next
 * hop with a broken TLS would otherwise log at every lookup); the verdict's
 * own log line keeps the reason of each lookup.
 */
static struct log_limit tls_fallback_limit;   /* tls=may: handshake failed, plaintext now */
static struct log_limit tls_encrypt_limit;    /* tls=encrypt: handshake failed */
static struct log_limit tls_nostarttls_limit; /* tls=encrypt: STARTTLS not offered */

static const struct timeval zero_tv = {0, 0};

/* session_deadline - how long state st may last (CLOSED: the reaper runs on the next pass) */
static const struct timeval *session_deadline(const struct smtp_route *rt, enum session_state st)
{
    const struct smtp_options *o = &rt->opts;

    switch (st) {
    case SESSION_CONNECT:
        return &o->connect_timeout;
    case SESSION_GREETING:
        return &o->greeting_timeout;
    case SESSION_EHLO:
    case SESSION_HELO:
    case SESSION_STARTTLS:
        return &o->ehlo_timeout;
    case SESSION_TLS:
        return &o->tls_timeout;
    case SESSION_MAIL:
        return &o->mail_timeout;
    case SESSION_RCPT:
        return &o->rcpt_timeout;
    case SESSION_RSET:
        return &o->rset_timeout;
    case SESSION_IDLE:
        return &o->idle_timeout;
    case SESSION_QUIT:
        return &o->quit_timeout;
    case SESSION_CLOSED:
    default:
        return &zero_tv;
    }
}

/* req_addr - the address req connects to next, with the port set */
static socklen_t req_addr(const struct backend_req *req, struct sockaddr_storage *ss)
{
    const struct dns_target *t = &req->targets[req->ti];

    *ss = t->addrs[req->ai];
    if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)req->host->port);
        return sizeof(struct sockaddr_in6);
    }
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)req->host->port);
    return sizeof(struct sockaddr_in);
}

/* session_state_name - name of a state for logs */
static const char *session_state_name(enum session_state s)
{
    if ((int)s < 0 || s >= SESSION_STATE_COUNT)
        return "invalid";
    return session_state_names[s];
}

/*
 * session_enter_state - the one place the state changes: log it and re-arm
 * the step's deadline (for CLOSED: the reaper, on the next loop pass).
 */
static void session_enter_state(struct smtp_session *s, enum session_state st)
{
    struct smtp_route *rt = s->host->route;

    if ((int)st < 0 || st >= SESSION_STATE_COUNT) {
        log_err("smtp callout: bad session state %d", (int)st);
        st = SESSION_CLOSED;
    }
    log_debug("session %p %s rcpt=<%s>: %s -> %s", (void *)s, s->host->source,
              s->req != NULL ? s->req->rcpt : "", session_state_name(s->state),
              session_state_name(st));
    s->state = st;
    evtimer_add(s->timer, session_deadline(rt, st));
}

/* session_send - queue one command line (CRLF added) on the connection */
static void session_send(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void session_send(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    struct evbuffer *out = bufferevent_get_output(s->bev);

    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

/* session_unpool - out of the idle pool */
static void session_unpool(struct smtp_session *s)
{
    if (s->in_pool) {
        TAILQ_REMOVE(&s->host->idle, s, ilink);
        s->in_pool = 0;
    }
}

/*
 * smtp_session_shut - drop the connection and its slot now and reap the struct on
 * the next loop pass (callers up the stack may still hold s). The caller has
 * detached s->req.
 */
void smtp_session_shut(struct smtp_session *s)
{
    struct smtp_host *h = s->host;

    if (s->state == SESSION_CLOSED)
        return;
    session_unpool(s);
    if (s->bev != NULL) {
        bufferevent_free(s->bev);
        s->bev = NULL;
        h->nconn--;
    }
    session_enter_state(s, SESSION_CLOSED);
}

/* smtp_session_close - smtp_session_shut, then let a queued lookup have the slot */
void smtp_session_close(struct smtp_session *s)
{
    smtp_session_shut(s);
    smtp_host_dispatch(s->host);
}

/* smtp_session_free - the reaper: unlink and free a closed session */
void smtp_session_free(struct smtp_session *s)
{
    struct smtp_host *h = s->host;

    session_unpool(s);
    if (s->bev != NULL) {
        bufferevent_free(s->bev);
        h->nconn--;
    }
    TAILQ_REMOVE(&h->sessions, s, link);
    event_free(s->timer);
    smtp_reply_parser_free(s->parser);
    free(s);
}

/* session_quit - say QUIT and wait (briefly) for the reply or the close */
static void session_quit(struct smtp_session *s)
{
    session_unpool(s);
    session_send(s, "QUIT");
    session_enter_state(s, SESSION_QUIT);
}

/*
 * session_setup_req - the lookup that has waited longest on a connection still
 * being set up (connect, greeting, EHLO, STARTTLS), or NULL. A lookup whose
 * pooled session failed (fresh_retried) keeps its fresh connection.
 */
static struct smtp_session *session_setup_req(struct smtp_host *h)
{
    struct smtp_session *t;

    TAILQ_FOREACH(t, &h->sessions, link)
    { /* oldest first; at most max_connections */
        if (t->req != NULL && t->state < SESSION_MAIL && !t->req->fresh_retried)
            return t;
    }
    return NULL;
}

/*
 * session_available - s is in sync with no lookup. The lookup that has waited
 * longest gets it: one waiting on a new connection's set-up (it came before
 * anything still queued: a new connection is opened only for the head of an
 * empty queue), since a RCPT on s is one round trip where the greeting, EHLO
 * and MAIL still to come are three or more, and a loaded next hop answers those
 * slowest (they made the p99 of callouts at 50 concurrent lookups); that
 * connection goes on without a lookup and, when ready, serves the next one.
 * Else a queued lookup gets s at once (idle sessions count against
 * max_connections, so a waiting lookup is served by one rather than wait for a
 * slot), else s waits in the pool.
 */
static void session_available(struct smtp_session *s)
{
    struct smtp_host *h = s->host;
    struct backend_req *req;
    struct smtp_session *t = h->route->closing ? NULL : session_setup_req(h);

    if (t != NULL) {
        req = session_detach(t);
        log_debug("callout %p rcpt=<%s> %s: session %p is free before its new connection %p is "
                  "set up: taking it",
                  (void *)req, req->rcpt, h->source, (void *)s, (void *)t);
        smtp_session_take(s, req);
        return;
    }
    req = TAILQ_FIRST(&h->queue);
    if (req != NULL && !req->want_fresh) {
        smtp_req_unqueue(req);
        smtp_session_take(s, req);
        return;
    }
    if (req != NULL) {
        /* the first in line wants a new connection: give it this one's slot */
        smtp_session_close(s);
        return;
    }
    TAILQ_INSERT_HEAD(&h->idle, s, ilink);
    s->in_pool = 1;
    session_enter_state(s, SESSION_IDLE);
}

/* session_release - s has no lookup any more: pool it, QUIT it or drop it */
static void session_release(struct smtp_session *s, enum session_end how)
{
    struct smtp_route *rt = s->host->route;

    if (s->bev == NULL || how == END_DROP) {
        smtp_session_close(s);
    } else if (how == END_KEEP && rt->opts.reuse && s->nrcpt < rt->opts.max_rcpts &&
               s->nreject < rt->opts.max_rejects && !rt->closing) {
        session_available(s);
    } else {
        session_quit(s);
    }
}

/* session_detach - take the lookup off the session; returns it (or NULL) */
static struct backend_req *session_detach(struct smtp_session *s)
{
    struct backend_req *req = s->req;

    s->req = NULL;
    if (req != NULL)
        req->session = NULL;
    return req;
}

/*
 * session_retry_for - what a failure of s in its current step lets the lookup
 * try: the greeting refuses this address of the next hop (the next one); the
 * first command on a pooled session (RSET, or RCPT in the open transaction)
 * may have met a connection the next hop dropped while it was idle (a new
 * one); anywhere else, nothing.
 */
static enum session_retry session_retry_for(const struct smtp_session *s)
{
    if (s->state == SESSION_GREETING)
        return RETRY_NEXT;
    if (s->state == SESSION_RSET || (s->state == SESSION_RCPT && s->resumed))
        return RETRY_FRESH;
    return RETRY_NONE;
}

/* session_verdict - the RCPT reply decided: answer the lookup, then release s */
static void session_verdict(struct smtp_session *s, enum verdict_kind kind, int code,
                            enum session_end how, const char *text)
{
    struct backend_req *req = session_detach(s);

    if (req != NULL)
        smtp_req_conclude(req, kind, code, s->host->source, "%s", text);
    session_release(s, how);
}

/*
 * session_fail - s cannot go on for its lookup, for a reason that says
 * nothing about the address. Release s as told, then let the lookup try the
 * next address or MX host, or a fresh connection, or answer tempfail.
 */
static void session_fail(struct smtp_session *s, enum session_retry retry, enum session_end how,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void session_fail(struct smtp_session *s, enum session_retry retry, enum session_end how,
                         const char *fmt, ...)
{
    struct backend_req *req = session_detach(s);
    char text[VERDICT_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (req == NULL) {
        /* a connection set up for a lookup that took a pooled session meanwhile */
        log_debug("callout %s: session %p (no lookup waiting on it) failed: %s", s->host->source,
                  (void *)s, text);
        session_release(s, how == END_KEEP ? END_QUIT : how);
        return;
    }
    if (retry == RETRY_FRESH && s->reused && !req->fresh_retried) {
        log_debug("callout %p rcpt=<%s> %s: pooled session failed (%s): new connection",
                  (void *)req, req->rcpt, s->host->source, text);
        req->fresh_retried = 1;
        req->want_fresh = 1;
        session_release(s, how == END_KEEP ? END_QUIT : how);
        smtp_req_try(req);
        return;
    }
    if (retry == RETRY_PLAIN) {
        /* the same address again, on a new connection that does not try STARTTLS */
        req->tls_plain = 1;
        req->want_fresh = 1;
        session_release(s, how == END_KEEP ? END_QUIT : how);
        smtp_req_try(req);
        return;
    }
    if (retry == RETRY_NEXT) {
        log_debug("callout %p rcpt=<%s> %s: %s: trying the next address", (void *)req, req->rcpt,
                  s->host->source, text);
        snprintf(req->last_error, sizeof(req->last_error), "%s", text);
        session_release(s, how == END_KEEP ? END_QUIT : how);
        if (++req->ai >= req->targets[req->ti].naddrs) {
            req->ti++;
            req->ai = 0;
        }
        smtp_req_try(req);
        return;
    }
    smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, s->host->source, "%s", text);
    session_release(s, how == END_KEEP ? END_QUIT : how);
}

/*
 * session_rcpt_reply - the reply to RCPT TO decides the lookup (smtp_status.h
 * says what each class means; docs/CALLOUTS.md says why):
 *   accepted     valid (and remembered: it confirms later bare 5xx replies)
 *   no-mailbox   invalid
 *   bare         per bare_5xx=: invalid, or tempfail with the reply's code
 *   refused      the next hop refuses us, not the address: tempfail with
 *                code 0, like any other failure of the session, so the
 *                circuit breaker counts it and nothing is cached as invalid
 *   not-now      tempfail with the reply's code
 * keep says whether the session is still in sync for the pool.
 */
static void session_rcpt_reply(struct smtp_session *s, const struct smtp_reply *r,
                               enum session_end keep)
{
    const struct smtp_options *o = &s->host->route->opts;
    enum smtp_rcpt_class c = smtp_rcpt_classify(r, o->invalid, &o->invalid_status);
    const char *rcpt = s->req->rcpt;

    log_debug("session %p %s rcpt=<%s>: RCPT reply %d [%s%s] is %s", (void *)s, s->host->source,
              rcpt, r->code, r->enhanced, r->enhanced_mixed ? " mixed" : "",
              smtp_rcpt_class_name(c));
    /*
     * a refusal, or 452 "too many recipients" (RFC 5321 4.5.3.1.10), of a RCPT
     * that shared its transaction with earlier ones may be about the sharing
     * (a recipient limit, Postfix's reject_multi_recipient_bounce): ask once
     * more in a transaction of its own, on the same session
     */
    if ((c == SMTP_RCPT_REFUSED || r->code == 452) && s->txn_rcpts > 1 && keep == END_KEEP &&
        !s->req->txn_retried) {
        log_debug("session %p %s rcpt=<%s>: %d after %d RCPTs in the transaction: once more in "
                  "a new one",
                  (void *)s, s->host->source, rcpt, r->code, s->txn_rcpts - 1);
        s->req->txn_retried = 1;
        session_mail(s, 1);
        return;
    }
    switch (c) {
    case SMTP_RCPT_ACCEPTED:
        smtp_host_note_accept(s->host);
        session_verdict(s, VERDICT_VALID, r->code, keep, r->text);
        return;
    case SMTP_RCPT_NO_MAILBOX:
        session_verdict(s, VERDICT_INVALID, r->code, keep, r->text);
        return;
    case SMTP_RCPT_BARE:
        if (o->bare_5xx == SMTP_BARE_INVALID ||
            (o->bare_5xx == SMTP_BARE_CONFIRM &&
             smtp_host_accepted_within(s->host, o->confirm_window_ms))) {
            session_verdict(s, VERDICT_INVALID, r->code, keep, r->text);
            return;
        }
        log_info("callout rcpt=<%s> %s: %d without an enhanced status code, and the next hop "
                 "accepted no RCPT of ours in the last %lds: tempfail, not invalid (bare_5xx=%s): "
                 "%s",
                 rcpt, s->host->source, r->code, (long)(o->confirm_window_ms / 1000),
                 o->bare_5xx == SMTP_BARE_CONFIRM ? "confirm" : "tempfail", r->text);
        session_verdict(s, VERDICT_TEMPFAIL, r->code, keep, r->text);
        return;
    case SMTP_RCPT_REFUSED:
        log_warn("callout rcpt=<%s> %s: next hop refuses us (policy or system), not the address: "
                 "%d %s",
                 rcpt, s->host->source, r->code, r->text);
        session_fail(s, RETRY_NONE, keep == END_DROP ? END_DROP : END_QUIT,
                     "next hop refused us at RCPT TO (not the address): %d %s", r->code, r->text);
        return;
    case SMTP_RCPT_NOT_NOW:
        session_verdict(s, VERDICT_TEMPFAIL, r->code, keep, r->text);
        return;
    case SMTP_RCPT_UNEXPECTED:
    default:
        session_fail(s, RETRY_NONE, END_QUIT, "unexpected reply to RCPT TO: %d %s", r->code,
                     r->text);
        return;
    }
}

/* session_send_rcpt - RCPT TO for the session's lookup, counted */
static void session_send_rcpt(struct smtp_session *s)
{
    session_send(s, "RCPT TO:<%s>", s->req->rcpt);
    s->nrcpt++;
    s->txn_rcpts++;
}

/*
 * session_mail - a new mail transaction for the session's lookup (after RSET
 * when rset is set: a pooled session), unless tls=encrypt and
 * it is still in plaintext: the next hop did not offer STARTTLS (or refused
 * it), so RCPT must not be sent. That is the destination's failure, not the
 * address's: the next address or MX host, else a tempfail the circuit
 * breaker counts.
 *
 * MAIL FROM carries the SMTPUTF8 parameter when the recipient's local part
 * is UTF-8 (RFC 6531 3.4). A next hop that did not offer SMTPUTF8 cannot be
 * asked about such a recipient at all (RFC 6531 3.2: it would refuse the
 * RCPT whatever the mailbox): the answer is unknown, never invalid, and the
 * session stays in sync for the next lookup.
 *
 * When the next hop offers PIPELINING (and pipelining=yes), RSET, MAIL and
 * RCPT go out in one write and their replies are read in order (RFC 2920
 * 3.1: RCPT may be the last command of a group); otherwise each waits for the
 * reply before it.
 */
static void session_mail(struct smtp_session *s, int rset)
{
    struct smtp_route *rt = s->host->route;

    if (s->req == NULL) {
        /* set up for a lookup that took a pooled session meanwhile: to the pool, no MAIL yet */
        s->in_txn = 0;
        s->txn_rcpts = 0;
        session_release(s, rt->opts.tls == SMTP_TLS_ENCRYPT && !s->tls ? END_QUIT : END_KEEP);
        return;
    }
    if (rt->opts.tls == SMTP_TLS_ENCRYPT && !s->tls) {
        log_limited(&tls_nostarttls_limit, 60000, LOG_WARNING,
                    "callout rcpt=<%s> %s: next hop does not offer STARTTLS, and tls=encrypt: "
                    "no RCPT in plaintext",
                    s->req->rcpt, s->host->source);
        session_fail(s, RETRY_NEXT, END_QUIT, "next hop does not offer STARTTLS (tls=encrypt)");
        return;
    }
    if (s->req->smtputf8 && !(s->ehlo & SMTP_EHLO_SMTPUTF8)) {
        log_info("callout rcpt=<%s> %s: UTF-8 local part, and the next hop does not offer "
                 "SMTPUTF8: not verified",
                 s->req->rcpt, s->host->source);
        session_verdict(s, VERDICT_UNKNOWN, 0, END_KEEP,
                        "UTF-8 local part: next hop does not offer SMTPUTF8, not verified");
        return;
    }
    s->in_txn = 0;
    s->txn_rcpts = 0;
    s->resumed = 0;
    s->pipelined = rt->opts.pipelining && (s->ehlo & SMTP_EHLO_PIPELINING) != 0;
    if (rset) {
        session_send(s, "RSET");
        if (!s->pipelined) {
            session_enter_state(s, SESSION_RSET);
            return;
        }
    }
    if (s->req->smtputf8)
        session_send(s, "MAIL FROM:<%s> SMTPUTF8", rt->opts.sender);
    else
        session_send(s, "MAIL FROM:<%s>", rt->opts.sender);
    if (s->pipelined)
        session_send_rcpt(s);
    session_enter_state(s, rset ? SESSION_RSET : SESSION_MAIL);
}

/*
 * session_tls_failed - the handshake failed or timed out. tls=encrypt: the
 * destination failed (the next address, else tempfail). tls=may: logged,
 * then the same address again in plaintext (the connection is unusable: the
 * next hop is somewhere inside a TLS handshake). The fallback is what "may"
 * means: it protects against passive listening, not against anyone on the
 * path who can break the handshake (docs/CALLOUTS.md).
 */
static void session_tls_failed(struct smtp_session *s, const char *why)
{
    struct smtp_route *rt = s->host->route;

    if (rt->opts.tls == SMTP_TLS_ENCRYPT) {
        log_limited(&tls_encrypt_limit, 60000, LOG_WARNING,
                    "callout %s: TLS handshake failed (tls=encrypt): %s", s->host->source, why);
        session_fail(s, RETRY_NEXT, END_DROP, "TLS handshake with next hop failed: %s", why);
        return;
    }
    log_limited(&tls_fallback_limit, 60000, LOG_WARNING,
                "callout %s: TLS handshake failed, retrying in plaintext (tls=may): %s",
                s->host->source, why);
    session_fail(s, RETRY_PLAIN, END_DROP, "TLS handshake with next hop failed: %s", why);
}

/*
 * session_starttls_reply - the reply to STARTTLS. On 220 the input must be
 * empty: anything the next hop (or someone on the path) sent after it would
 * be read as if it came over TLS (the STARTTLS command injection of
 * CVE-2011-0411), so such a session is dropped. Otherwise the connection is
 * moved to a TLS bufferevent and the handshake runs until BEV_EVENT_CONNECTED
 * (session_event_cb) or the tls_timeout.
 */
static void session_starttls_reply(struct smtp_session *s, const struct smtp_reply *r)
{
    struct smtp_route *rt = s->host->route;
    struct bufferevent *tb;
    char err[128];

    if (r->code != 220) {
        /* "454 TLS not available": still in sync, in plaintext */
        log_debug("session %p %s: STARTTLS refused: %d %s", (void *)s, s->host->source, r->code,
                  r->text);
        session_mail(s, 0);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        session_tls_failed(s, "data after the 220 reply to STARTTLS");
        return;
    }
    tb = smtp_tls_start(rt->base, s->bev, rt->tls_ctx, &rt->opts, s->host->name, err, sizeof(err));
    if (tb == NULL) {
        session_fail(s, RETRY_NONE, END_DROP, "%s", err);
        return;
    }
    s->bev = tb;
    bufferevent_setcb(s->bev, session_read_cb, NULL, session_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_READ_HIGHWATER);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    session_enter_state(s, SESSION_TLS);
}

/* session_reply - act on one complete reply */
static void session_reply(struct smtp_session *s, const struct smtp_reply *r)
{
    struct smtp_route *rt = s->host->route;
    const char *step = session_step_names[s->state];

    switch (s->state) {
    case SESSION_QUIT:
        smtp_session_close(s);
        return;
    case SESSION_IDLE:
        /* e.g. "421 timeout" before the next hop hangs up: never reuse it */
        log_debug("session %p %s: reply while idle: %d %s", (void *)s, s->host->source, r->code,
                  r->text);
        smtp_session_close(s);
        return;
    case SESSION_CONNECT:
    case SESSION_CLOSED:
        smtp_session_close(s);
        return;
    default:
        break;
    }
    if (s->req == NULL && s->state >= SESSION_MAIL) { /* cannot happen: busy states have one */
        smtp_session_close(s);
        return;
    }
    if (r->code >= 400)
        s->nreject++;
    if (r->code == 421) {
        session_fail(s, session_retry_for(s), END_DROP,
                     "next hop closing the session at %s: 421 %s", step, r->text);
        return;
    }
    switch (s->state) {
    case SESSION_GREETING:
        if (r->code != 220) {
            /* RFC 5321 3.1/5.1: a 4xx or 5xx greeting refuses the session, not the address */
            session_fail(s, RETRY_NEXT, END_QUIT, "next hop refused the session: %d %s", r->code,
                         r->text);
            return;
        }
        session_send(s, "EHLO %s", rt->opts.helo);
        session_enter_state(s, SESSION_EHLO);
        return;
    case SESSION_EHLO:
        if (r->code / 100 == 5) {
            /* an old or minimal server: RFC 5321 4.1.4 says try HELO */
            session_send(s, "HELO %s", rt->opts.helo);
            session_enter_state(s, SESSION_HELO);
            return;
        }
        /* after STARTTLS this is the second EHLO: only its keywords count (RFC 3207 4.2) */
        s->ehlo = r->code == 250 ? r->ehlo : 0;
        /* fall through */
    case SESSION_HELO:
        if (r->code != 250) {
            session_fail(s, RETRY_NONE, END_QUIT, "next hop refused %s: %d %s", step, r->code,
                         r->text);
            return;
        }
        if (!s->tls && !s->plain && rt->opts.tls != SMTP_TLS_NONE && s->state == SESSION_EHLO &&
            (s->ehlo & SMTP_EHLO_STARTTLS) != 0) {
            session_send(s, "STARTTLS");
            session_enter_state(s, SESSION_STARTTLS);
            return;
        }
        session_mail(s, 0);
        return;
    case SESSION_STARTTLS:
        session_starttls_reply(s, r);
        return;
    case SESSION_RSET:
        if (r->code != 250) {
            /* pipelined: the replies to MAIL and RCPT are still to come, and QUIT reads one */
            session_fail(s, RETRY_FRESH, END_QUIT, "next hop refused RSET: %d %s", r->code,
                         r->text);
            return;
        }
        if (s->pipelined)
            session_enter_state(s, SESSION_MAIL);
        else
            session_mail(s, 0);
        return;
    case SESSION_MAIL:
        if (r->code != 250) {
            session_fail(s, RETRY_NONE, END_QUIT, "next hop refused MAIL FROM:<%s>: %d %s",
                         rt->opts.sender, r->code, r->text);
            return;
        }
        s->in_txn = 1;
        s->txn_utf8 = s->req->smtputf8;
        if (!s->pipelined)
            session_send_rcpt(s);
        session_enter_state(s, SESSION_RCPT);
        return;
    case SESSION_RCPT: {
        /*
         * bytes after the RCPT reply were never asked for: pooled, they would
         * be read as the next lookup's replies. Such a session is not kept.
         */
        enum session_end keep =
            evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 ? END_DROP : END_KEEP;
        session_rcpt_reply(s, r, keep);
        return;
    }
    default:
        session_fail(s, RETRY_NONE, END_DROP, "unexpected reply from next hop in state %s",
                     session_state_name(s->state));
        return;
    }
}

/* session_read_cb - parse what arrived; one reply at a time */
static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;

    /* s stays allocated until the loop runs again; s->bev says if it is still open */
    while (s->bev == bev && (n = evbuffer_get_length(in)) > 0) {
        struct smtp_reply reply;
        char err[128];
        size_t used = 0;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        enum smtp_reply_status st;

        if (data == NULL) {
            session_fail(s, RETRY_NONE, END_DROP, "out of memory reading from next hop");
            return;
        }
        st = smtp_reply_parse(s->parser, data, n, &used, &reply, err, sizeof(err));
        evbuffer_drain(in, used);
        if (st == SMTP_REPLY_NEED_MORE)
            return;
        if (st == SMTP_REPLY_ERROR) {
            session_fail(s, session_retry_for(s), END_DROP, "garbage reply from next hop at %s: %s",
                         session_step_names[s->state], err);
            return;
        }
        session_reply(s, &reply);
    }
}

/* session_event_cb - connected, or the connection ended */
static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    const char *step = session_step_names[s->state];

    if ((what & BEV_EVENT_CONNECTED) && s->state == SESSION_TLS) {
        char desc[128];
        s->tls = 1;
        smtp_tls_describe(bev, desc, sizeof(desc));
        log_debug("session %p %s: TLS established: %s", (void *)s, s->host->source, desc);
        session_send(s, "EHLO %s", s->host->route->opts.helo);
        session_enter_state(s, SESSION_EHLO);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        session_enter_state(s, SESSION_GREETING);
        return;
    }
    if (s->state == SESSION_TLS) {
        char why[300];
        smtp_tls_error(bev, why, sizeof(why));
        session_tls_failed(s, why);
        return;
    }
    switch (s->state) {
    case SESSION_QUIT:
    case SESSION_CLOSED:
        smtp_session_close(s);
        return;
    case SESSION_IDLE:
        log_debug("session %p %s: next hop closed the idle session", (void *)s, s->host->source);
        smtp_session_close(s);
        return;
    case SESSION_CONNECT:
        session_fail(s, RETRY_NEXT, END_DROP, "cannot connect to next hop: %s",
                     evutil_socket_error_to_string(err));
        return;
    default:
        break;
    }
    if (what & BEV_EVENT_EOF)
        session_fail(s, session_retry_for(s), END_DROP,
                     "next hop closed the connection before the %s reply", step);
    else {
        char why[300];
        /* over TLS the socket error says nothing: OpenSSL's does */
        if (s->tls)
            smtp_tls_error(bev, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(err));
        session_fail(s, session_retry_for(s), END_DROP, "error talking to next hop at %s: %s", step,
                     why);
    }
}

/* session_timer_cb - the current step's deadline passed (or: reap, report a failed connect) */
static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    long ms = smtp_tv_ms(session_deadline(s->host->route, s->state));

    (void)fd;
    (void)what;
    switch (s->state) {
    case SESSION_CLOSED: {
        struct smtp_host *h = s->host;
        smtp_session_free(s);
        smtp_host_maybe_free(h);
        return;
    }
    case SESSION_QUIT:
        smtp_session_close(s);
        return;
    case SESSION_IDLE:
        log_debug("session %p %s: idle for %ldms: QUIT", (void *)s, s->host->source, ms);
        session_quit(s);
        return;
    case SESSION_TLS: {
        char why[64];
        snprintf(why, sizeof(why), "no handshake within %ldms", ms);
        session_tls_failed(s, why);
        return;
    }
    case SESSION_CONNECT:
        if (s->connect_errno != 0)
            session_fail(s, RETRY_NEXT, END_DROP, "cannot connect to next hop: %s",
                         evutil_socket_error_to_string(s->connect_errno));
        else
            session_fail(s, RETRY_NEXT, END_DROP, "timeout after %ldms connecting to next hop", ms);
        return;
    default:
        session_fail(s, session_retry_for(s), END_DROP,
                     "timeout after %ldms waiting for the %s reply from next hop", ms,
                     session_step_names[s->state]);
        return;
    }
}

/*
 * smtp_session_take - a pooled session starts work for req: RCPT TO in the open
 * transaction, or RSET, MAIL, RCPT when there is none (or it lacks the
 * SMTPUTF8 that req needs).
 */
void smtp_session_take(struct smtp_session *s, struct backend_req *req)
{
    session_unpool(s);
    s->req = req;
    s->reused = 1;
    req->session = s;
    req->state = REQ_ACTIVE;
    log_debug("callout %p rcpt=<%s> %s: reusing session %p (%d RCPTs, %d rejected so far)",
              (void *)req, req->rcpt, s->host->source, (void *)s, s->nrcpt, s->nreject);
    if (s->in_txn && (s->txn_utf8 || !req->smtputf8)) {
        s->resumed = 1;
        s->pipelined = 0;
        session_send_rcpt(s);
        session_enter_state(s, SESSION_RCPT);
        return;
    }
    session_mail(s, 1);
}

/*
 * smtp_session_open - a new connection for req to its current address, taking a
 * slot at req->host. A connect that fails at once is reported from the timer,
 * like any other failure, so nothing recurses here.
 */
void smtp_session_open(struct backend_req *req)
{
    struct smtp_host *h = req->host;
    struct smtp_route *rt = h->route;
    struct smtp_session *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sslen;

    req->want_fresh = 0;
    req->attempts++;
    if (s == NULL || (s->timer = evtimer_new(rt->base, session_timer_cb, s)) == NULL ||
        (s->parser = smtp_reply_parser_new()) == NULL ||
        (s->bev = bufferevent_socket_new(rt->base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        if (s != NULL) {
            if (s->timer != NULL)
                event_free(s->timer);
            smtp_reply_parser_free(s->parser);
            free(s);
        }
        smtp_req_conclude(req, VERDICT_TEMPFAIL, 0, h->source,
                          "cannot create a connection to next hop");
        return;
    }
    s->host = h;
    s->state = SESSION_CONNECT;
    s->plain = req->tls_plain;
    TAILQ_INSERT_TAIL(&h->sessions, s, link);
    h->nconn++;
    s->req = req;
    req->session = s;
    req->state = REQ_ACTIVE;
    bufferevent_setcb(s->bev, session_read_cb, NULL, session_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_READ_HIGHWATER);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    sslen = req_addr(req, &ss);
    if (log_debug_enabled) {
        char text[INET6_ADDRSTRLEN];
        const void *a = ss.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        inet_ntop(ss.ss_family, a, text, sizeof(text));
        log_debug("callout %p rcpt=<%s> %s: connecting to %s (session %p)", (void *)req, req->rcpt,
                  h->source, text, (void *)s);
    }
    session_enter_state(s, SESSION_CONNECT);
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        s->connect_errno = EVUTIL_SOCKET_ERROR();
        if (s->connect_errno == 0)
            s->connect_errno = ECONNREFUSED;
        evtimer_add(s->timer, &zero_tv);
    }
}
