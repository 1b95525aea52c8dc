/*
 * route.h - the route table: "routing is verification".
 *
 * One line per route, first match wins:
 *     pattern   method[:argument]   [option=value ...]   # comment
 * pattern: "example.org" (exact domain), ".example.org" (any subdomain of
 * example.org, not example.org itself, as in Postfix), "*" (everything), or
 * "/regex/" (POSIX extended, case-insensitive, matched against the whole
 * address "local@domain").
 * methods: dunno, accept, reject, cdb:PATH, smtp:..., ldap:NAME,
 * rewrite:TEMPLATE ($1..$9 are the regex groups, $0 or $& the whole
 * address; only after a /regex/ pattern). A rewrite replaces the address and
 * the table is searched again from the top, at most ROUTE_MAX_REWRITES times.
 */
#ifndef CALLAHEAD_ROUTE_H
#define CALLAHEAD_ROUTE_H

#include <stddef.h>

#include "address.h"
#include "value_parse.h"

#define ROUTE_MAX_REWRITES 8
#define ROUTE_MAX_OPTIONS 16
#define ROUTE_LINE_MAX 4096

enum route_method {
    ROUTE_DUNNO = 0, /* verdict unknown: the MTA decides */
    ROUTE_ACCEPT,    /* static valid */
    ROUTE_REJECT,    /* static invalid */
    ROUTE_CDB,       /* argument: path of a tinycdb file */
    ROUTE_SMTP,      /* argument: "mx" or "[host]:port" / "host:port" */
    ROUTE_LDAP,      /* argument: name of an LDAP source in callahead.conf */
    ROUTE_REWRITE,   /* argument: replacement template */
};

struct route_option {
    char *name;
    char *value;
};

struct route {
    int lineno;    /* line in the table file, for log messages */
    char *pattern; /* as written */
    enum route_method method;
    char *arg; /* method argument, NULL if none */
    struct route_option options[ROUTE_MAX_OPTIONS];
    int noptions;
    /* private to route.c */
    int kind;
    void *regex;
};

struct route_table; /* opaque */

/*
 * route_table_parse - parse a route table from memory (len bytes, need not be
 * NUL-terminated). fname is used in error messages only. Returns NULL and
 * writes "fname:line: reason" to err for any error: a bad pattern, an unknown
 * method, a rewrite without a regex, a line too long, or no route at all
 * (an empty or comments-only table would silently verify nothing; "* dunno"
 * says so on purpose). The whole table is
 * rejected on the first error so a typo never half-loads.
 */
struct route_table *route_table_parse(const char *text, size_t len, const char *fname, char *err,
                                      size_t errlen);

/* route_table_load - read the file at path and route_table_parse it */
struct route_table *route_table_load(const char *path, char *err, size_t errlen);

void route_table_free(struct route_table *t);

/* route_table_count / route_table_get - iterate the routes (for opening backends) */
int route_table_count(const struct route_table *t);
const struct route *route_table_get(const struct route_table *t, int i);

/* route_match - first route matching addr (rewrites are NOT followed), or NULL */
const struct route *route_match(const struct route_table *t, const struct address *addr);

/*
 * route_resolve - follow rewrites: match addr, and while the match is a
 * rewrite, substitute and match again. On success returns the final
 * non-rewrite route (or NULL when nothing matches) and leaves the rewritten
 * address in addr. Returns NULL and writes to err when a rewrite produces a
 * malformed address or the rewrite limit is reached; *failed is then set.
 */
const struct route *route_resolve(const struct route_table *t, struct address *addr, int *failed,
                                  char *err, size_t errlen);

/* route_option - value of option name on route r, or def if absent */
const char *route_option(const struct route *r, const char *name, const char *def);

/*
 * route_options_check - check r's options against the declared ones: the
 * NULL-terminated tables (ntables of them: the verifier's generic options,
 * the backend's own) in that order. An option no table claims is an error
 * naming it, with the closest declared name when it looks like a typo; a
 * value not of the declared type is an error naming option and value.
 * 0, or -1 and the reason (without file and line) in why.
 */
int route_options_check(const struct route *r, const struct value_decl *const *tables,
                        size_t ntables, char *why, size_t whylen);

/* route_method_name - "cdb", "smtp", ... */
const char *route_method_name(enum route_method m);

#endif
