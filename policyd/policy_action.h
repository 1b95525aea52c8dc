/*
 * policy_action.h - turn a verdict into a Postfix access(5) action.
 *
 * Each verdict kind has a configurable action template, for example
 * "550 5.1.1 %r" (Postfix adds "<address>: Recipient address rejected: "). Expansions: %a the
 * recipient address, %r the verdict's reason text, %s its source, %c its
 * SMTP code, %% a percent sign. Everything expanded is sanitised (printable
 * ASCII only, no CR/LF), so a next hop's text or a hostile address can never
 * split the reply line.
 */
#ifndef CALLAHEAD_POLICY_ACTION_H
#define CALLAHEAD_POLICY_ACTION_H

#include <stddef.h>

#include "verdict.h"

/*
 * policy_action_check - is tmpl a usable action template? It must start with
 * an access(5) action keyword (OK, DUNNO, REJECT, DEFER, DEFER_IF_PERMIT,
 * DEFER_IF_REJECT, WARN, HOLD, DISCARD, INFO, PREPEND, FILTER, REDIRECT,
 * BCC) or a 4xx/5xx code followed by a space or the end, contain only
 * printable ASCII, and use only known % escapes. 0 ok, -1 + err otherwise.
 */
int policy_action_check(const char *tmpl, char *err, size_t errlen);

/*
 * policy_action_expand - expand tmpl for verdict v about addr into buf
 * (size bytes; the result is truncated to fit, never split mid-escape).
 * Returns the length written.
 */
size_t policy_action_expand(const char *tmpl, const struct verdict *v, const char *addr, char *buf,
                            size_t size);

#endif
