/*
 * smtp_status.h - what a next hop's reply to RCPT TO says, from its reply
 * code and its RFC 3463 enhanced status code.
 *
 * A 5xx at RCPT is not always about the recipient. A next hop with delayed
 * rejects (Postfix's smtpd_delay_reject = yes, the default) reports a
 * refusal of the client, its HELO or its sender at RCPT:
 *   554 5.7.1 <x@example.org>: Relay access denied
 *   550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org
 * Caching those as "user unknown" would reject every real address of the
 * domain for days. The enhanced status code tells them apart (RFC 3463):
 *   X.1.x  addressing: the recipient (X.1.0, .1, .2, .3, .6, .10), but
 *          X.1.7 and X.1.8 are about the SENDER
 *   X.2.x  the mailbox exists but cannot take mail now (disabled, full)
 *   X.3.x  mail system, X.4.x network and routing, X.5.x protocol,
 *   X.6.x  content, X.7.x security and policy: about us, not the address
 * Which statuses mean "this mailbox does not exist" is a per-route set
 * (invalid_status=, docs/ROUTES.md); the rest of the table is fixed.
 */
#ifndef CALLAHEAD_SMTP_STATUS_H
#define CALLAHEAD_SMTP_STATUS_H

#include "smtp_reply.h"

#define SMTP_STATUS_SET_MAX 32 /* patterns in one invalid_status= list */
#define SMTP_INVALID_STATUS_DEFAULT "5.1.0,5.1.1,5.1.2,5.1.3,5.1.6,5.1.10"

/* smtp_status - a parsed enhanced status code "class.subject.detail" */
struct smtp_status {
    int cls;     /* 2, 4 or 5 */
    int subject; /* 0..999 */
    int detail;  /* 0..999 */
};

/* smtp_status_set - statuses that mean "no such mailbox"; -1 in a part matches any value */
struct smtp_status_set {
    int n;
    struct {
        int subject;
        int detail;
    } p[SMTP_STATUS_SET_MAX];
};

/* what a RCPT reply means for the lookup */
enum smtp_rcpt_class {
    SMTP_RCPT_ACCEPTED,   /* 250, 251: the address is valid */
    SMTP_RCPT_NO_MAILBOX, /* 5xx, a status in the invalid set, a code in invalid_codes */
    SMTP_RCPT_BARE,       /* 5xx in invalid_codes without a status we can read (see below) */
    SMTP_RCPT_REFUSED,    /* 5xx refusing us (policy, system, sender), not the address */
    SMTP_RCPT_NOT_NOW,    /* 4xx, or a 5xx about the address that is not "no such mailbox" */
    SMTP_RCPT_UNEXPECTED, /* any other code: not an answer to RCPT */
};
#define SMTP_RCPT_CLASS_COUNT 6

/* smtp_rcpt_class_name - "accepted", "no-mailbox", "bare", "refused", "not-now", "unexpected" */
const char *smtp_rcpt_class_name(enum smtp_rcpt_class c);

/*
 * smtp_status_parse - s (NUL-terminated) is exactly "c.sss.ddd": class 2, 4
 * or 5, subject and detail 1 to 3 digits each. Returns 0 with *st filled, or
 * -1 for anything else ("5.1", "5.1.1.1", "5.1.x", "").
 */
int smtp_status_parse(const char *s, struct smtp_status *st);

/*
 * smtp_status_set_parse - an invalid_status= value: a comma list of
 * "5.S.D" where S and D are numbers (0..999) or "x" (any), e.g.
 * "5.1.1,5.1.10" or "5.1.x". Only class 5: a 4xx is never permanent.
 * Returns 0, or -1 (set untouched is not promised) on any malformed item,
 * an empty item or more than SMTP_STATUS_SET_MAX items.
 */
int smtp_status_set_parse(const char *s, struct smtp_status_set *set);

/*
 * smtp_rcpt_classify - the meaning of reply r to RCPT TO. invalid_codes is
 * the route's invalid_codes= table (invalid_codes[code - 500] set for a 5xx
 * code that may mean invalid), invalid the route's invalid_status= set.
 * A 5xx whose status we cannot read is BARE (if its code is in
 * invalid_codes, else NOT_NOW): no status, a malformed one (the parser
 * keeps only "c.sss.ddd" of the code's class), subject 0 ("other or
 * undefined") or above 7 (none defined). The caller decides what BARE
 * means (route option bare_5xx=). A reply whose lines disagree about the
 * status says two things at once: NOT_NOW, never invalid, never a refusal.
 */
enum smtp_rcpt_class smtp_rcpt_classify(const struct smtp_reply *r,
                                        const unsigned char invalid_codes[100],
                                        const struct smtp_status_set *invalid);

#endif
