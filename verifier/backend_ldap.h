/*
 * backend_ldap.h - route method ldap:NAME: a recipient is valid when the
 * directory of the named source (callahead.conf, ldap_conf.h) has an entry
 * for it. Asynchronous (BACKEND_ASYNC), pooled per route (ldap_pool.h).
 *
 * Verdicts:
 *   - an entry found (with a result_attribute when one is set): valid.
 *   - the search succeeded without one: invalid, 550 5.1.1 (the route
 *     makes the directory authoritative for the domain).
 *   - only disabled entries (disabled_attribute = disabled_value): invalid,
 *     550 5.2.1 "mailbox disabled".
 *   - an empty local part: invalid without a search; a domain the source
 *     does not serve (its domain list): unknown without a search.
 *   - the directory unreachable, a bind refused, a deadline passed:
 *     tempfail with VERDICT_DEST_FAILURE (counts for the route's breaker);
 *     a size limit, a referral, any other error result: tempfail.
 * Verdict texts are our own; the server's words go to the log only.
 *
 * Built without libldap (configure --without-ldap, or no libldap-dev),
 * open fails with a message that says so, so that "callahead-policyd -t"
 * and start-up refuse a route table with an ldap: route.
 */
#ifndef CALLAHEAD_BACKEND_LDAP_H
#define CALLAHEAD_BACKEND_LDAP_H

#include "backend.h"

extern const struct backend_ops backend_ldap_ops;

/* backend_ldap_pool_stats - the counters of a route's pool (built with LDAP only) */
struct ldap_pool_stats;
void backend_ldap_pool_stats(void *state, struct ldap_pool_stats *out);

#endif
