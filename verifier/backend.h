/*
 * backend.h - the one small interface every verification backend sits behind
 * (the shape of OpenDKIM's dkimf_db_*): open, lookup, cancel, close.
 *
 * A backend instance is opened per route (cdb:PATH, smtp:..., ldap:NAME).
 * lookup either answers at once (local tables: returns BACKEND_DONE with the
 * verdict filled in) or starts asynchronous work on the event loop and
 * returns BACKEND_PENDING with a request handle; cb then runs exactly once,
 * later, from the event loop, unless the request is cancelled first.
 */
#ifndef CALLAHEAD_BACKEND_H
#define CALLAHEAD_BACKEND_H

#include <stddef.h>

#include "address.h"
#include "route.h"
#include "value_parse.h"
#include "verdict.h"

struct event_base;
struct backend_req; /* opaque, owned by the backend */
struct dns;         /* dns.h */

/* backend_env - what the verifier gives every backend at open; outlives the backend */
struct backend_env {
    struct event_base *base;
    const char *recipient_delimiter; /* e.g. "+", "" for none */
    /*
     * the shared resolver for smtp:mx and next hops given by name; NULL: a
     * backend that needs one opens its own from /etc/resolv.conf
     */
    struct dns *dns;
};

/* backend_cb - the verdict of a pending lookup; v is valid only during the call */
typedef void (*backend_cb)(const struct verdict *v, void *arg);

enum backend_status {
    BACKEND_ERROR = -1, /* could not even start: verdict filled in as tempfail */
    BACKEND_DONE = 0,   /* answered synchronously: verdict filled in */
    BACKEND_PENDING = 1 /* *req set; cb will run later */
};

struct backend_ops {
    const char *name;
    /* open - per-route state from the route (its arg and options); NULL + err on failure */
    void *(*open)(const struct backend_env *env, const struct route *r, char *err, size_t errlen);
    /* lookup - see enum backend_status; addr is the normalised, routed address */
    enum backend_status (*lookup)(void *state, const struct address *addr, struct verdict *out,
                                  backend_cb cb, void *arg, struct backend_req **req);
    /* cancel - cb will not run for req; req is freed. NULL for synchronous backends. */
    void (*cancel)(struct backend_req *req);
    /* close - free the state; pending requests must have been cancelled or finished */
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
};

#endif
