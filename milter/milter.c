/*
 * milter.c - libmilter callbacks: one session per SMTP connection, a policy
 * query at each RCPT (see milter.h).
 *
 * libmilter runs callbacks on a worker pool: one session may move between
 * threads from one callback to the next, but never runs two callbacks at
 * once. So everything per session (what the client said, the connection to
 * policyd) lives in the session struct kept with smfi_setpriv, and needs no
 * lock; what is shared across sessions (the in-flight counter, the
 * rate-limited error log) is atomic or behind one mutex.
 *
 * Everything the MTA hands us is hostile too: macro values and arguments
 * are copied bounded, and the policy client and the reply mapping clean
 * what they pass on.
 */
#include "milter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmilter/mfapi.h>

#include "log.h"
#include "milter_reply.h"

#define FIELD_MAX 256 /* longest address, host name or HELO we keep (longer is cut) */

/* where a session is in the SMTP dialogue; the RCPT step needs MAIL first */
enum sess_state { SESS_CONNECTED, SESS_HELO, SESS_MAIL, SESS_RCPT, SESS_STATE_COUNT };

static const char *const sess_state_names[SESS_STATE_COUNT] = {"connected", "helo", "mail", "rcpt"};

struct session {
    enum sess_state state;
    struct policy_client *pc; /* opened on the first RCPT, kept for the session */
    int skip_network;         /* client in milter_skip_networks */
    int skip_auth;            /* this message's sender authenticated */
    int mta_is_postfix;       /* macro v (at MAIL) says Postfix: 5xx texts name the recipient */
    char client_address[64];
    char client_name[FIELD_MAX];
    char helo[FIELD_MAX];
    char sender[FIELD_MAX];
};

static const struct milter_settings *settings;
static atomic_int inflight;

/* sess_enter_state - the one place a session changes state (debug-logged) */
static void sess_enter_state(struct session *s, enum sess_state next)
{
    if ((unsigned)next >= SESS_STATE_COUNT)
        next = SESS_CONNECTED;
    log_debug("milter session %p %s -> %s", (void *)s, sess_state_names[s->state],
              sess_state_names[next]);
    s->state = next;
}

/* copy_field - bounded copy of an MTA-supplied string; control bytes become '?' */
static void copy_field(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    if (src != NULL)
        for (; src[n] != '\0' && n + 1 < size; n++)
            dst[n] = ((unsigned char)src[n] < 0x20 || src[n] == 0x7f) ? '?' : src[n];
    dst[n] = '\0';
}

/* copy_address - like copy_field, without the <> around an envelope address */
static void copy_address(char *dst, size_t size, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    size_t len = strlen(src);
    if (len >= 2 && src[0] == '<' && src[len - 1] == '>') {
        char tmp[FIELD_MAX + 2];
        size_t n = len - 2 < sizeof(tmp) - 1 ? len - 2 : sizeof(tmp) - 1;
        memcpy(tmp, src + 1, n);
        tmp[n] = '\0';
        copy_field(dst, size, tmp);
        return;
    }
    copy_field(dst, size, src);
}

/* session_get - this connection's session, created when the MTA skipped connect */
static struct session *session_get(SMFICTX *ctx)
{
    struct session *s = smfi_getpriv(ctx);

    if (s != NULL)
        return s;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->state = SESS_CONNECTED;
    if (smfi_setpriv(ctx, s) != MI_SUCCESS) {
        free(s);
        return NULL;
    }
    return s;
}

/* session_reset_message - forget the envelope (a new MAIL, RSET or abort) */
static void session_reset_message(struct session *s)
{
    s->sender[0] = '\0';
    s->skip_auth = 0;
    if (s->state > SESS_HELO)
        sess_enter_state(s, s->helo[0] ? SESS_HELO : SESS_CONNECTED);
}

/*
 * Warnings that may come once per recipient (policyd down, the in-flight
 * cap) go through log_limited, at most one line per milter_error_log_interval
 * with a count of the others. log_limited keeps its state unlocked (policyd
 * has one thread); libmilter's threads take turns through limit_lock.
 */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_limit limit_policy, limit_inflight;

/* log_policy_failure - policyd could not be asked or answered nonsense (rate-limited) */
static void log_policy_failure(const char *why)
{
    pthread_mutex_lock(&limit_lock);
    log_limited(&limit_policy, settings->error_log_interval * 1000L, LOG_WARNING,
                "policy service %s: %s; answering %s", settings->policy.name, why,
                settings->default_tempfail ? "tempfail" : "continue");
    pthread_mutex_unlock(&limit_lock);
}

/*
 * cb_negotiate - ask only for the steps and macros we use: no headers, body
 * or DATA (we decide at RCPT), and through smfi_setsymlist, when the MTA
 * offers it, macros at MAIL only: i (queue id), v (MTA name and version,
 * which says how to word a reply) and {auth_authen}. No macros at connect,
 * HELO and RCPT, on purpose: Sendmail sends a macro packet and the command
 * in two writes without TCP_NODELAY, and the second waits for our delayed
 * ACK - about 40 ms per command over TCP (measured: RCPT p50 44 ms with
 * macros at RCPT, 0.12 ms without; docs/BENCHMARKS.md). libmilter still
 * finds MAIL's macros at RCPT. An MTA that offers no negotiation still
 * works: we take the macros it sends by default.
 */
static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    const unsigned long skip =
        SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;

    *pf0 = 0; /* no modifications of the message */
    *pf1 = f1 & skip;
    *pf2 = 0;
    *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        *pf0 |= SMFIF_SETSYMLIST;
        if (smfi_setsymlist(ctx, SMFIM_CONNECT, "") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_HELO, "") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVFROM, "i v {auth_authen}") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVRCPT, "") != MI_SUCCESS)
            log_debug("milter: smfi_setsymlist failed; using the MTA's default macros");
    }
    return SMFIS_CONTINUE;
}

/* cb_connect - remember the client; decide once whether its network is skipped */
static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct session *s = session_get(ctx);

    if (s == NULL)
        return SMFIS_CONTINUE; /* out of memory: cb_envrcpt applies milter_default_action */
    copy_field(s->client_name, sizeof(s->client_name), hostname);
    s->client_address[0] = '\0';
    if (hostaddr != NULL && hostaddr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)hostaddr)->sin_addr, s->client_address,
                  sizeof(s->client_address));
    else if (hostaddr != NULL && hostaddr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)hostaddr)->sin6_addr, s->client_address,
                  sizeof(s->client_address));
    s->skip_network = netlist_match(&settings->skip_networks, hostaddr);
    if (s->skip_network)
        log_debug("milter: client %s is in milter_skip_networks", s->client_address);
    sess_enter_state(s, SESS_CONNECTED);
    return SMFIS_CONTINUE;
}

static sfsistat cb_helo(SMFICTX *ctx, char *helo)
{
    struct session *s = session_get(ctx);

    if (s == NULL)
        return SMFIS_CONTINUE;
    copy_field(s->helo, sizeof(s->helo), helo);
    sess_enter_state(s, SESS_HELO);
    return SMFIS_CONTINUE;
}

/* cb_envfrom - a new envelope: the sender, and whether it authenticated */
static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct session *s = session_get(ctx);

    if (s == NULL)
        return SMFIS_CONTINUE;
    session_reset_message(s);
    copy_address(s->sender, sizeof(s->sender), argv ? argv[0] : NULL);
    const char *auth = smfi_getsymval(ctx, "{auth_authen}");
    /* Postfix's v is "Postfix 3.7.11", Sendmail's "8.17.1.9" */
    const char *v = smfi_getsymval(ctx, "v");
    s->mta_is_postfix = v != NULL && strncmp(v, "Postfix", 7) == 0;
    s->skip_auth = settings->skip_authenticated && auth != NULL && auth[0] != '\0';
    sess_enter_state(s, SESS_MAIL);
    return SMFIS_CONTINUE;
}

/* apply - hand r to libmilter: the reply first (class already matches), then the status */
static sfsistat apply(SMFICTX *ctx, const struct milter_reply *r)
{
    if (r->verdict == MILTER_CONTINUE)
        return SMFIS_CONTINUE;
    if (smfi_setreply(ctx, (char *)r->rcode, (char *)r->xcode, (char *)r->text) != MI_SUCCESS)
        log_warn("milter: smfi_setreply refused %s %s; the MTA uses its own text", r->rcode,
                 r->xcode);
    return r->verdict == MILTER_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

/* default_reply - milter_default_action when policyd cannot give a usable answer */
static void default_reply(struct milter_reply *r, const char *rcpt)
{
    if (settings->default_tempfail) {
        milter_reply_tempfail(r, rcpt, "Recipient address verification is unavailable");
    } else {
        memset(r, 0, sizeof(*r));
        r->verdict = MILTER_CONTINUE;
    }
}

/* query - one policy request for rcpt; 0 and the action, or -1 and the reason */
static int query(SMFICTX *ctx, struct session *s, const char *rcpt, char *action, size_t size,
                 char *err, size_t errlen)
{
    char queue_id[64];
    copy_field(queue_id, sizeof(queue_id), smfi_getsymval(ctx, "i"));
    const struct policy_attr attrs[] = {
        {"request", "smtpd_access_policy"},
        {"protocol_state", "RCPT"},
        {"protocol_name", "SMTP"},
        {"client_address", s->client_address},
        {"client_name", s->client_name},
        {"helo_name", s->helo},
        {"sender", s->sender},
        {"recipient", rcpt},
        {"queue_id", queue_id},
    };

    if (s->pc == NULL && (s->pc = policy_client_new(&settings->policy)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return policy_client_query(s->pc, attrs, (int)(sizeof(attrs) / sizeof(attrs[0])),
                               settings->timeout_ms, action, size, err, errlen);
}

/* now_ms - monotonic milliseconds, for the decision log */
static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * cb_envrcpt - the point of it all: skip, cap, ask policyd, map, reply.
 * Never SMFIS_ACCEPT: that would stop the checks of the other recipients.
 */
static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct session *s = session_get(ctx);
    char rcpt[FIELD_MAX], action[POLICY_CLIENT_MAX_ACTION + 1], err[256];
    struct milter_reply r;
    long long t0 = now_ms();
    const char *result;

    copy_address(rcpt, sizeof(rcpt), argv ? argv[0] : NULL);
    if (s == NULL) {
        default_reply(&r, rcpt);
        return apply(ctx, &r);
    }
    sess_enter_state(s, SESS_RCPT);
    if (rcpt[0] == '\0')
        return SMFIS_CONTINUE; /* nothing to verify; the MTA judges the syntax */
    if (s->skip_network || s->skip_auth) {
        log_debug("milter: recipient=<%s> not verified (%s)", rcpt,
                  s->skip_auth ? "authenticated sender" : "client in milter_skip_networks");
        return SMFIS_CONTINUE;
    }
    if (atomic_fetch_add(&inflight, 1) >= settings->max_inflight) {
        atomic_fetch_sub(&inflight, 1);
        pthread_mutex_lock(&limit_lock);
        log_limited(&limit_inflight, settings->error_log_interval * 1000L, LOG_WARNING,
                    "milter: recipient=<%s> more than milter_max_inflight=%d queries in progress: "
                    "answering 451",
                    rcpt, settings->max_inflight);
        pthread_mutex_unlock(&limit_lock);
        milter_reply_tempfail(&r, rcpt, "Too many recipient checks in progress, try again later");
        return apply(ctx, &r);
    }
    int rc = query(ctx, s, rcpt, action, sizeof(action), err, sizeof(err));
    atomic_fetch_sub(&inflight, 1);

    if (rc < 0) {
        log_policy_failure(err);
        default_reply(&r, rcpt);
        result = "policy-failure";
    } else if (milter_reply_from_action(action, rcpt, !s->mta_is_postfix, &r) < 0) {
        log_policy_failure("an action this milter does not understand");
        default_reply(&r, rcpt);
        result = "bad-action";
    } else {
        result = "answer";
    }
    const char *vname = r.verdict == MILTER_CONTINUE ? "continue"
                        : r.verdict == MILTER_REJECT ? "reject"
                                                     : "tempfail";
    log_info("milter: recipient=<%s> client=%s %s=\"%s\" reply=%s%s%s ms=%lld", rcpt,
             s->client_address[0] ? s->client_address : "unknown", result, rc < 0 ? "-" : action,
             vname, r.rcode[0] ? " " : "", r.rcode, now_ms() - t0);
    return apply(ctx, &r);
}

/* cb_abort - the message is gone (RSET, or the MTA gave up on it); the session goes on */
static sfsistat cb_abort(SMFICTX *ctx)
{
    struct session *s = smfi_getpriv(ctx);

    if (s != NULL)
        session_reset_message(s);
    return SMFIS_CONTINUE;
}

/* cb_close - the SMTP connection ended: free the session and its policyd connection */
static sfsistat cb_close(SMFICTX *ctx)
{
    struct session *s = smfi_getpriv(ctx);

    if (s != NULL) {
        smfi_setpriv(ctx, NULL);
        policy_client_free(s->pc);
        free(s);
    }
    return SMFIS_CONTINUE;
}

int milter_register(const struct milter_settings *s, char *err, size_t errlen)
{
    static struct smfiDesc desc = {
        .xxfi_name = "callahead",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = 0,
        .xxfi_connect = cb_connect,
        .xxfi_helo = cb_helo,
        .xxfi_envfrom = cb_envfrom,
        .xxfi_envrcpt = cb_envrcpt,
        .xxfi_abort = cb_abort,
        .xxfi_close = cb_close,
        .xxfi_negotiate = cb_negotiate,
    };

    settings = s;
    atomic_init(&inflight, 0);
    if (smfi_register(desc) == MI_FAILURE) {
        snprintf(err, errlen, "smfi_register failed");
        return -1;
    }
    return 0;
}
