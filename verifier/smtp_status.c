/*
 * smtp_status.c - classify a RCPT reply by its reply code and RFC 3463
 * enhanced status code (the table is in smtp_status.h).
 *
 * Everything here reads text a next hop sent: the status is parsed again
 * strictly (fixed digit counts, no sign, no trailing bytes) rather than
 * trusted from the reply parser, and anything unexpected falls to the
 * classes that can never become a cached "invalid" on their own.
 */
#include "smtp_status.h"

#include <string.h>

static const char *const class_names[SMTP_RCPT_CLASS_COUNT] = {
    "accepted", "no-mailbox", "bare", "refused", "not-now", "unexpected",
};

const char *smtp_rcpt_class_name(enum smtp_rcpt_class c)
{
    if ((int)c < 0 || c >= SMTP_RCPT_CLASS_COUNT)
        return "invalid";
    return class_names[c];
}

/*
 * parse_part - 1..3 digits at *s, or "x" when wild is set (value -1),
 * followed by the byte stop; advances *s past the part (not past stop).
 * Returns 0 with *out set, or -1.
 */
static int parse_part(const char **s, char stop, int wild, int *out)
{
    int v = 0, n = 0;

    if (wild && (**s == 'x' || **s == 'X') && (*s)[1] == stop) {
        (*s)++;
        *out = -1;
        return 0;
    }
    while (**s >= '0' && **s <= '9') {
        if (++n > 3)
            return -1;
        v = v * 10 + (**s - '0');
        (*s)++;
    }
    if (n == 0 || **s != stop)
        return -1;
    *out = v;
    return 0;
}

int smtp_status_parse(const char *s, struct smtp_status *st)
{
    struct smtp_status t;

    if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return -1;
    t.cls = s[0] - '0';
    s += 2;
    if (parse_part(&s, '.', 0, &t.subject) < 0)
        return -1;
    s++;
    if (parse_part(&s, '\0', 0, &t.detail) < 0)
        return -1;
    *st = t;
    return 0;
}

int smtp_status_set_parse(const char *s, struct smtp_status_set *set)
{
    const char *p = s;

    set->n = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (;;) {
        char item[16];
        const char *q = strchr(p, ',');
        size_t len = q != NULL ? (size_t)(q - p) : strlen(p);
        const char *c = item + 2;
        int subject, detail;

        if (len < 5 || len >= sizeof(item) || set->n >= SMTP_STATUS_SET_MAX)
            return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        /* only 5.x.x: a temporary status must never become a permanent reject */
        if (item[0] != '5' || item[1] != '.' || parse_part(&c, '.', 1, &subject) < 0)
            return -1;
        c++;
        if (parse_part(&c, '\0', 1, &detail) < 0)
            return -1;
        set->p[set->n].subject = subject;
        set->p[set->n].detail = detail;
        set->n++;
        if (q == NULL)
            return 0;
        p = q + 1;
    }
}

/* status_in_set - st matches one pattern of set */
static int status_in_set(const struct smtp_status *st, const struct smtp_status_set *set)
{
    for (int i = 0; i < set->n; i++) {
        if ((set->p[i].subject < 0 || set->p[i].subject == st->subject) &&
            (set->p[i].detail < 0 || set->p[i].detail == st->detail))
            return 1;
    }
    return 0;
}

enum smtp_rcpt_class smtp_rcpt_classify(const struct smtp_reply *r,
                                        const unsigned char invalid_codes[100],
                                        const struct smtp_status_set *invalid)
{
    struct smtp_status st;
    int listed;

    if (r->code == 250 || r->code == 251)
        return SMTP_RCPT_ACCEPTED;
    if (r->code >= 400 && r->code <= 499)
        return SMTP_RCPT_NOT_NOW;
    if (r->code < 500 || r->code > 599)
        return SMTP_RCPT_UNEXPECTED;
    listed = invalid_codes[r->code - 500] != 0;
    if (r->enhanced_mixed)
        return SMTP_RCPT_NOT_NOW; /* "5.1.1 User unknown" and "5.7.1 blocked": no clear answer */
    if (smtp_status_parse(r->enhanced, &st) < 0 || st.cls != 5 || st.subject == 0 || st.subject > 7)
        return listed ? SMTP_RCPT_BARE : SMTP_RCPT_NOT_NOW;
    if (status_in_set(&st, invalid))
        return listed ? SMTP_RCPT_NO_MAILBOX : SMTP_RCPT_NOT_NOW;
    switch (st.subject) {
    case 1:
        /* X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address */
        return st.detail == 7 || st.detail == 8 ? SMTP_RCPT_REFUSED : SMTP_RCPT_NOT_NOW;
    case 2:
        /* the mailbox exists: disabled, full, too long a message, list expansion */
        return SMTP_RCPT_NOT_NOW;
    default:
        /* 3 mail system, 4 network and routing, 5 protocol, 6 content, 7 security/policy */
        return SMTP_RCPT_REFUSED;
    }
}
