/*
 * reply_policy.h - how a verdict is answered, the same for every front end
 * (policyd now, the milter later).
 *
 * Given a verdict and the reply options (one action template per verdict
 * kind and for a malformed address, fail_open, dry_run, reply_next_hop_text),
 * reply_policy_decide chooses the template, hides what the SMTP client must
 * not see, expands it (reply_action.h) and applies dry_run. The result is the
 * action line to send (the Postfix policy answer) and the same taken apart
 * into class, code, enhanced status and text (for smfi_setreply). Nothing
 * here knows a protocol beyond the action grammar; nothing here logs.
 *
 * The rules, in order:
 *   - the recipient is not an address: the malformed template;
 *   - tempfail with fail_open: the valid template (the mail gets through);
 *   - otherwise the template of the verdict's kind;
 *   - a next hop's text and name (host, banner) are replaced by generic
 *     words unless next_hop_text is set, and so is any locally caused
 *     tempfail's text (a table's path, a resolver's error): those are for
 *     the log. Texts worded for clients (a table's REJECT text, the answer
 *     budget, an open breaker: VERDICT_OWN_TEXT) pass through
 *     (reply_text_is_public);
 *   - dry_run: an action that refuses or defers the recipient becomes
 *     DUNNO; the action it replaced is kept for the log.
 */
#ifndef CALLAHEAD_REPLY_POLICY_H
#define CALLAHEAD_REPLY_POLICY_H

#include <stdbool.h>

#include "reply_action.h"
#include "verdict.h"

/* reply_policy - the reply options; the strings are owned by the caller and outlive the call */
struct reply_policy {
    const char *action[VERDICT_KIND_COUNT]; /* templates by enum verdict_kind */
    const char *action_malformed;           /* template for a recipient that is no address */
    bool fail_open;                         /* tempfail answers action[VERDICT_VALID] */
    bool dry_run;                           /* refusals and deferrals answer DUNNO */
    bool next_hop_text;                     /* a next hop's text and name may reach the client */
};

/* reply - one decision */
struct reply {
    char action[REPLY_ACTION_MAX];  /* the action to answer */
    char decided[REPLY_ACTION_MAX]; /* the action before dry_run: the one to log */
    bool rejects;                   /* decided refuses or defers the recipient */
    bool dry_run;                   /* action is DUNNO only because of dry_run */
    struct reply_action parsed;     /* action taken apart (class, code, dsn, text) */
};

/*
 * reply_policy_decide - answer verdict v about addr (as normalised, or as the
 * client wrote it when it did not parse; it is sanitised) under policy p;
 * malformed says the recipient did not parse as an address (v, if not NULL,
 * then says why, for %r). Fills out completely.
 */
void reply_policy_decide(const struct reply_policy *p, const struct verdict *v, bool malformed,
                         const char *addr, struct reply *out);

/*
 * reply_policy_internal_error - the answer when the front end cannot even
 * ask (out of memory): the valid template with fail_open, else
 * "DEFER_IF_PERMIT 4.3.0 Server out of memory" (never subject to dry_run:
 * nothing was decided about the recipient).
 */
void reply_policy_internal_error(const struct reply_policy *p, struct reply *out);

/*
 * reply_text_is_public - may the SMTP client see v's text and source as they
 * are? *next_hop (may be NULL) says whether they came from a remote party
 * (VERDICT_REMOTE_TEXT: a next hop; its source is then shortened to the
 * method, e.g. "smtp", when hidden). Texts we word for clients carry
 * VERDICT_OWN_TEXT. The origin is read from the flags only, never from the
 * source string.
 */
bool reply_text_is_public(const struct verdict *v, bool next_hop_text, bool *next_hop);

#endif
