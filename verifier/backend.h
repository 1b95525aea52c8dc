/*
 * backend.h - the contract every verification backend implements (the
 * shape of OpenDKIM's dkimf_db_*): open, lookup, cancel, close. A new
 * backend is written from this header alone.
 *
 * WHAT A BACKEND IS
 *   One instance is opened per route that names its method (cdb:PATH,
 *   smtp:..., ldap:NAME), when a route table is loaded (start-up, reload).
 *   It answers one question: what is the verdict on this address? Caching,
 *   sharing one request between concurrent lookups of an address, queueing
 *   and per-destination fairness, the circuit breaker, the answer budget and
 *   the cross-host lock are the verifier's job, not the backend's.
 *
 * SYNCHRONOUS OR ASYNCHRONOUS (ops->flags & BACKEND_ASYNC)
 *   - Synchronous (no BACKEND_ASYNC): a local lookup that costs less than a
 *     cache round trip (an mmap'd table). lookup always returns BACKEND_DONE
 *     or BACKEND_ERROR with *out filled in, never BACKEND_PENDING; cb, arg
 *     and req are NULL. The verifier asks it on every lookup (no cache read)
 *     and writes changed verdicts through to the cache. cancel may be NULL.
 *     It must not block: no network, no disk beyond a mapped file.
 *   - Asynchronous (BACKEND_ASYNC): anything that waits (network, a
 *     directory). lookup returns BACKEND_PENDING with *req set and then
 *     calls cb exactly once, later, from the event loop (never from inside
 *     lookup: defer it with event_active), unless cancel(req) comes first;
 *     after cancel, cb never runs and req is freed. lookup may also answer
 *     at once with BACKEND_DONE or BACKEND_ERROR (cb then never runs). The
 *     verifier consults the cache first and runs lookups through flights
 *     (flight.h). cancel is required.
 *
 * TIME
 *   A backend bounds its own time: every wait (connect, each command, DNS,
 *   a pool slot) has a deadline, and when it passes cb runs with a tempfail.
 *   The verifier's flight deadline (flight_timeout, 60 s by default) is only
 *   a backstop: it cancels the request and counts a destination failure.
 *   The lookup's answer budget (a few seconds) does not cancel anything: the
 *   request goes on and fills the cache.
 *
 * VERDICTS (verdict.h)
 *   - kind: valid or invalid only for a definitive answer about the address
 *     (an entry found, a mailbox refused as unknown); tempfail for anything
 *     else; unknown when the backend has no opinion.
 *   - source is the origin for the log: who decided, one token, e.g.
 *     "cdb", "smtp:[10.1.2.3]:25", "ldap:corp". The generic layers never
 *     interpret it.
 *   - code: the remote party's reply code where there was one, else 0.
 *     Only the backend interprets it; generic layers never test it.
 *   - flags: VERDICT_DEST_FAILURE on a tempfail that says the destination
 *     failed (refused, timed out, closed, garbled, refused us by policy),
 *     not the address: it counts for the destination's circuit breaker. A
 *     tempfail without it (e.g. a 4xx about the mailbox) is an answer about
 *     the address: it proves the destination alive. VERDICT_REMOTE_TEXT
 *     marks text written by a remote party (a next hop's reply); a backend
 *     whose every verdict is that sets BACKEND_REMOTE_TEXT in ops->flags
 *     instead, and the verifier marks its verdicts (cached ones included).
 *     The front ends hide remote text from clients unless told otherwise.
 *
 * DESTINATIONS
 *   The verifier keys its circuit breaker and its per-destination probe
 *   queue by a destination name. ops->destination gives it (e.g. one per
 *   static next hop, or one per recipient domain for MX routing); when NULL
 *   the destination is the route itself ("METHOD:ARG").
 *
 * CLOSE
 *   close(state) is never called while a request of that state is pending:
 *   the verifier cancels or finishes them first. The verifier defers every
 *   close to a later turn of the event loop, so close never runs inside the
 *   backend's own callback or lookup (a reload while a request finishes is
 *   the usual case); a backend need not guard against that itself.
 *
 * CONFIGURATION
 *   - Route options (key=value after the method): the backend declares the
 *     ones it claims in ops->options (name, value type, bounds); the
 *     verifier rejects any option nobody claims, or a value of the wrong
 *     type, with file:line before open. open reads them with route_option()
 *     and value_parse.h and fails with a message for what a type cannot say.
 *   - Named sources: a route "ldap:corp" names a source whose parameters are
 *     set in callahead.conf. The front end parses them into struct
 *     backend_source entries (type "ldap", name "corp", name = value
 *     parameters) and the verifier hands them over in env->sources; open
 *     finds its own with backend_source_find(env, "ldap", r->arg). They are
 *     valid only during open: copy what you keep.
 *   - env->base, env->dns and env->recipient_delimiter outlive the backend.
 */
#ifndef CALLAHEAD_BACKEND_H
#define CALLAHEAD_BACKEND_H

#include <stddef.h>
#include <string.h>

#include "address.h"
#include "route.h"
#include "value_parse.h"
#include "verdict.h"

struct event_base;
struct backend_req;   /* opaque, owned by the backend */
struct dns;           /* dns.h */
struct verifier_pool; /* verifier.h */

/* backend_param - one "name = value" of a named source, with where it was set */
struct backend_param {
    const char *name;
    const char *value;
    const char *file; /* for error messages: "file:line: ..." */
    int line;
};

/* backend_source - a named source from callahead.conf, e.g. type "ldap", name "corp" */
struct backend_source {
    const char *type;
    const char *name;
    const struct backend_param *params;
    size_t nparams;
};

/* backend_env - what the verifier gives every backend at open */
struct backend_env {
    struct event_base *base;
    const char *recipient_delimiter; /* e.g. "+", "" for none */
    /*
     * the shared resolver for smtp:mx and next hops given by name; NULL: a
     * backend that needs one opens its own from /etc/resolv.conf
     */
    struct dns *dns;
    /* named sources (see CONFIGURATION above); valid only during open */
    const struct backend_source *sources;
    size_t nsources;
};

/* backend_source_find - the source of type and name in env, or NULL */
static inline const struct backend_source *backend_source_find(const struct backend_env *env,
                                                               const char *type, const char *name)
{
    for (size_t i = 0; env != NULL && name != NULL && i < env->nsources; i++)
        if (strcmp(env->sources[i].type, type) == 0 && strcmp(env->sources[i].name, name) == 0)
            return &env->sources[i];
    return NULL;
}

/* backend_cb - the verdict of a pending lookup; v is valid only during the call */
typedef void (*backend_cb)(const struct verdict *v, void *arg);

enum backend_status {
    BACKEND_ERROR = -1, /* could not even start: verdict filled in as tempfail */
    BACKEND_DONE = 0,   /* answered synchronously: verdict filled in */
    BACKEND_PENDING = 1 /* *req set; cb will run later */
};

/* ops->flags */
#define BACKEND_ASYNC 0x1       /* lookups may return BACKEND_PENDING (see above) */
#define BACKEND_REMOTE_TEXT 0x2 /* every verdict's text comes from a remote party */

struct backend_ops {
    const char *name;
    unsigned flags; /* BACKEND_* */
    /* open - per-route state from the route (its arg and options); NULL + err on failure */
    void *(*open)(const struct backend_env *env, const struct route *r, char *err, size_t errlen);
    /* lookup - see enum backend_status; addr is the normalised, routed address */
    enum backend_status (*lookup)(void *state, const struct address *addr, struct verdict *out,
                                  backend_cb cb, void *arg, struct backend_req **req);
    /* cancel - cb will not run for req; req is freed. Required with BACKEND_ASYNC. */
    void (*cancel)(struct backend_req *req);
    /* close - free the state; no request is pending; never called from inside a callback */
    void (*close)(void *state);
    /*
     * options - the route options this backend claims, each with its value
     * type and bounds, ended by {NULL}; NULL for none. Before open() the
     * verifier checks every option of the route against its own generic
     * table (fold_local, breaker_*, ...) and this one: an option neither
     * claims, or a value not of the declared type, rejects the route table
     * with file:line, at start-up, on reload and in "callahead-policyd -t"
     * alike. open() then parses the values (with value_parse.h) and checks
     * whatever a type cannot say (VALUE_TEXT syntax, combinations).
     */
    const struct value_decl *options;
    /*
     * destination - the name of the destination a lookup of addr goes to
     * (breaker and queue key), into buf; NULL: the route ("METHOD:ARG").
     */
    void (*destination)(void *state, const struct address *addr, char *buf, size_t size);
    /*
     * pool_stats - the connection pool of this route's state, for the
     * operator (verifier_pools); NULL for a backend without one. Fills in
     * everything but route_line; read-only, cheap, never blocks.
     */
    void (*pool_stats)(void *state, struct verifier_pool *out);
};

#endif
