/*
 * reply_action.h - the action grammar both front ends share: access(5)
 * actions as Postfix's policy protocol carries them ("550 5.1.1 text",
 * "DEFER_IF_PERMIT 4.1.1 text", "REJECT text", "DUNNO", "OK", ...).
 *
 * Three jobs: check an action template (at configuration time), expand it
 * for a verdict (policyd answers with the result), and parse an action line
 * back into class, code, enhanced status and text (the milter receives
 * policyd's action and turns it into smfi_setreply and an SMFIS_* status).
 * The choice of template for a verdict is reply_policy.h's.
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
 * reply_action_check - is tmpl a usable action template? It must start with
 * an access(5) action keyword (OK, DUNNO, REJECT, DEFER, DEFER_IF_PERMIT,
 * DEFER_IF_REJECT, WARN, HOLD, DISCARD, INFO, PREPEND, FILTER, REDIRECT,
 * BCC) or a 4xx/5xx code followed by a space or the end, contain only
 * printable ASCII, and use only known % escapes. 0 ok, -1 + err otherwise.
 */
int reply_action_check(const char *tmpl, char *err, size_t errlen);

/*
 * reply_action_expand - expand tmpl for verdict v about addr into buf
 * (size bytes; the result is truncated to fit, never split mid-escape).
 * Returns the length written.
 */
size_t reply_action_expand(const char *tmpl, const struct verdict *v, const char *addr, char *buf,
                           size_t size);

#define REPLY_ACTION_MAX 1024           /* one action line, without "action=" and the line end */
#define REPLY_TEXT_MAX REPLY_ACTION_MAX /* so any action that fits parses */

/* reply_class - what an action does to the recipient */
enum reply_class {
    REPLY_CLASS_CONTINUE = 0, /* DUNNO: no decision here, later restrictions apply */
    REPLY_CLASS_ACCEPT,       /* OK */
    REPLY_CLASS_REJECT,       /* REJECT, 5xx: refuse the recipient */
    REPLY_CLASS_TEMPFAIL,     /* DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT, 4xx: try again later */
    REPLY_CLASS_DISCARD,      /* DISCARD: accept and drop the message */
    REPLY_CLASS_OTHER,        /* WARN, INFO, HOLD, PREPEND, FILTER, REDIRECT, BCC: no verdict */
};

/* reply_class_name - "continue", "accept", "reject", "tempfail", "discard", "other" */
const char *reply_class_name(enum reply_class cls);

/* reply_action - one action line taken apart */
struct reply_action {
    enum reply_class cls;
    char keyword[16];          /* upper-cased ("DEFER_IF_PERMIT"); "" for a numeric action */
    int code;                  /* SMTP code: as given, else Postfix's default for the keyword
                                  (554 REJECT, 450 DEFER*); 0 for the other classes */
    char dsn[16];              /* enhanced status ("5.1.1") when the action has one, else "" */
    char text[REPLY_TEXT_MAX]; /* the rest, printable ASCII; may be empty */
};

/*
 * reply_action_parse - take apart one action line: line (len bytes, need not
 * be NUL-terminated, without "action=" and without the line end) is untrusted.
 * An action is a keyword (case-insensitive, as Postfix reads them) or a 4xx/5xx
 * code, then, after a space, optional text; a REJECT, DEFER* or numeric action's
 * text may start with an enhanced status (RFC 3463: "5.1.1", each of the last
 * two parts 1-3 digits); one of another class than the code's stays text, as
 * Postfix reads it. Returns 0 and fills out, or -1 (out untouched) for
 * anything else: an unknown keyword, a 2xx/3xx code, an empty line, a byte
 * outside printable ASCII (a CR or LF would split the reply), or text longer
 * than REPLY_TEXT_MAX - 1. Filling out writes its fields and the text up to
 * its NUL, not the unused rest of the text buffer. line may point into out.
 */
int reply_action_parse(const char *line, size_t len, struct reply_action *out);

#endif
