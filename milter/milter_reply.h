/*
 * milter_reply.h - turn policyd's action line into what a milter may say at
 * RCPT: continue, reject with a reply, or tempfail with a reply.
 *
 * The SMTP client of a Sendmail (or Postfix milter) site must see the same
 * text as a client of Postfix's check_policy_service path. Postfix writes
 * "<address>: Recipient address rejected: " before the text of a policy
 * action, and picks 554 5.7.1 for a bare REJECT and 450 4.7.1 for DEFER;
 * this module does the same. (Sendmail puts "<address>... " before a
 * milter's 5xx RCPT text itself, not before a 4xx: there the address is
 * left out of 5xx texts, so a Sendmail client reads "550 5.1.1
 * <address>... Recipient address rejected: text".) libmilter rules are
 * enforced here, not left to chance: the reply code class must match the return value (a 5xx with
 * SMFIS_REJECT, a 4xx with SMFIS_TEMPFAIL) or libmilter drops the text, the
 * enhanced status must have the same class, '%' is doubled (smfi_setreply
 * treats the text as a format), and CR, LF and other control characters
 * never reach the MTA.
 */
#ifndef CALLAHEAD_MILTER_REPLY_H
#define CALLAHEAD_MILTER_REPLY_H

#include <stddef.h>

#define MILTER_REPLY_MAX_TEXT 900 /* below Sendmail's and RFC 5321's reply line limits */

enum milter_verdict {
    MILTER_CONTINUE, /* SMFIS_CONTINUE: the MTA's own checks decide */
    MILTER_REJECT,   /* SMFIS_REJECT with rcode 5xx */
    MILTER_TEMPFAIL, /* SMFIS_TEMPFAIL with rcode 4xx */
};

struct milter_reply {
    enum milter_verdict verdict;
    char rcode[4];                        /* "550"; empty for MILTER_CONTINUE */
    char xcode[16];                       /* "5.1.1" */
    char text[MILTER_REPLY_MAX_TEXT + 1]; /* escaped for smfi_setreply, one line */
};

/*
 * milter_reply_from_action - map policyd's action (the value after
 * "action=") for recipient rcpt (as the client wrote it, without <>; may be
 * hostile) into r. The action is parsed by reply_action_parse, the grammar
 * policyd answers in; an enhanced status of another class than the code's
 * is text, as Postfix reads it. 5xx and REJECT reject; 4xx, DEFER and
 * DEFER_IF_PERMIT tempfail (a milter cannot know what later checks say);
 * DUNNO, OK, DEFER_IF_REJECT and every other keyword continue.
 * mta_names_5xx set leaves the address out of a 5xx text, for an MTA that
 * names it itself (Sendmail writes "<rcpt>... "). Returns 0, or -1 for an
 * action that does not parse (the caller applies milter_default_action).
 */
int milter_reply_from_action(const char *action, const char *rcpt, int mta_names_5xx,
                             struct milter_reply *r);

/*
 * milter_reply_tempfail - r becomes a 451 4.3.0 tempfail with text (plain
 * text, escaped here) after the recipient prefix; for
 * policyd unreachable and the in-flight cap.
 */
void milter_reply_tempfail(struct milter_reply *r, const char *rcpt, const char *text);

#endif
