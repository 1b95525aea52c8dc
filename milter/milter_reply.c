/*
 * milter_reply.c - policyd's action line to a milter verdict and reply (see
 * milter_reply.h).
 *
 * XXX milter_reply_parse_action below is a stop-gap: the shared reply
 * policy module of the verifier library will parse action lines for every
 * front end; once it exists, milter_reply_parse_action becomes a call to it
 * and the code below it stays as it is.
 */
#include "milter_reply.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* a parsed action: what kind, the code and enhanced status it gave (maybe none), its text */
enum action_class { ACT_CONTINUE, ACT_REJECT, ACT_TEMPFAIL, ACT_BAD };

struct parsed_action {
    enum action_class cls;
    char code[4];     /* "550" or "" */
    char dsn[16];     /* "5.1.1" or "" */
    const char *text; /* into the action; may be "" */
};

/* is_dsn - "D.DDD.DDD" (RFC 3463), s of len bytes, class digit 2, 4 or 5 */
static int is_dsn(const char *s, size_t len)
{
    size_t i = 0, n;

    if (len < 5 || len > 11 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        for (n = 0; i < len && isdigit((unsigned char)s[i]); i++)
            n++;
        if (n < 1 || n > 3)
            return 0;
        if (part == 0 && (i >= len || s[i++] != '.'))
            return 0;
    }
    return i == len;
}

/* take_dsn - if *p starts with an enhanced status code and a blank or the end, copy it and skip it
 */
static void take_dsn(const char **p, char *dsn, size_t size)
{
    size_t len = strcspn(*p, " \t");

    if (is_dsn(*p, len) && len < size) {
        memcpy(dsn, *p, len);
        dsn[len] = '\0';
        *p += len;
        *p += strspn(*p, " \t");
    }
}

/*
 * milter_reply_parse_action - the access(5) grammar policyd answers in:
 * "NNN [X.Y.Z] text" or "KEYWORD [X.Y.Z] [text]". XXX stop-gap, see top.
 */
static void milter_reply_parse_action(const char *action, struct parsed_action *pa)
{
    static const char *const cont[] = {"OK",   "DUNNO",   "DEFER_IF_REJECT", "WARN",
                                       "INFO", "PREPEND", "FILTER",          "REDIRECT",
                                       "BCC",  "HOLD",    "DISCARD"};
    const char *p = action + strspn(action, " \t");
    size_t wlen = strcspn(p, " \t");

    memset(pa, 0, sizeof(*pa));
    pa->cls = ACT_BAD;
    pa->text = "";
    if (wlen == 3 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[2])) {
        if (p[0] == '4')
            pa->cls = ACT_TEMPFAIL;
        else if (p[0] == '5')
            pa->cls = ACT_REJECT;
        else
            return; /* 2xx/3xx: not an access(5) reply code */
        memcpy(pa->code, p, 3);
    } else if (wlen == 6 && strncasecmp(p, "REJECT", 6) == 0) {
        pa->cls = ACT_REJECT;
    } else if ((wlen == 5 && strncasecmp(p, "DEFER", 5) == 0) ||
               (wlen == 15 && strncasecmp(p, "DEFER_IF_PERMIT", 15) == 0)) {
        pa->cls = ACT_TEMPFAIL;
    } else {
        for (size_t i = 0; i < sizeof(cont) / sizeof(cont[0]); i++)
            if (strlen(cont[i]) == wlen && strncasecmp(p, cont[i], wlen) == 0)
                pa->cls = ACT_CONTINUE;
        return;
    }
    p += wlen;
    p += strspn(p, " \t");
    take_dsn(&p, pa->dsn, sizeof(pa->dsn));
    pa->text = p;
}

/*
 * put_text - append s to the escaped text (at *len of MILTER_REPLY_MAX_TEXT):
 * '%' doubled, control and non-ASCII bytes become '?', never a split "%%"
 */
static void put_text(char *text, size_t *len, const char *s, size_t max_in)
{
    for (size_t i = 0; s[i] != '\0' && i < max_in; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (*len + 2 > MILTER_REPLY_MAX_TEXT)
                break;
            text[(*len)++] = '%';
            text[(*len)++] = '%';
            continue;
        }
        if (*len + 1 > MILTER_REPLY_MAX_TEXT)
            break;
        text[(*len)++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    text[*len] = '\0';
}

/*
 * set_text - "<rcpt>: Recipient address rejected: why" as Postfix writes it
 * for a policy action; without "<rcpt>: " when rcpt is NULL, for Sendmail,
 * which puts "<rcpt>... " before a milter's 5xx RCPT reply itself
 */
static void set_text(struct milter_reply *r, const char *rcpt, const char *why)
{
    size_t len = 0;

    if (rcpt != NULL) {
        put_text(r->text, &len, "<", 1);
        put_text(r->text, &len, rcpt, 256);
        put_text(r->text, &len, ">: ", 3);
    }
    put_text(r->text, &len, "Recipient address rejected: ", 64);
    put_text(r->text, &len, why, MILTER_REPLY_MAX_TEXT);
    /* trailing blanks would be invisible in the reply; drop them */
    while (len > 0 && r->text[len - 1] == ' ')
        r->text[--len] = '\0';
}

int milter_reply_from_action(const char *action, const char *rcpt, int mta_names_5xx,
                             struct milter_reply *r)
{
    struct parsed_action pa;

    memset(r, 0, sizeof(*r));
    r->verdict = MILTER_CONTINUE;
    milter_reply_parse_action(action, &pa);
    switch (pa.cls) {
    case ACT_BAD:
        return -1;
    case ACT_CONTINUE:
        return 0;
    case ACT_REJECT:
        r->verdict = MILTER_REJECT;
        snprintf(r->rcode, sizeof(r->rcode), "%s", pa.code[0] ? pa.code : "554");
        snprintf(r->xcode, sizeof(r->xcode), "%s", pa.dsn[0] ? pa.dsn : "5.7.1");
        r->xcode[0] = '5'; /* the class must match the code, or the MTA drops the reply */
        set_text(r, mta_names_5xx ? NULL : rcpt, *pa.text ? pa.text : "Access denied");
        return 0;
    case ACT_TEMPFAIL:
        r->verdict = MILTER_TEMPFAIL;
        snprintf(r->rcode, sizeof(r->rcode), "%s", pa.code[0] ? pa.code : "450");
        snprintf(r->xcode, sizeof(r->xcode), "%s", pa.dsn[0] ? pa.dsn : "4.7.1");
        r->xcode[0] = '4';
        set_text(r, rcpt, *pa.text ? pa.text : "Service unavailable");
        return 0;
    }
    return -1;
}

void milter_reply_tempfail(struct milter_reply *r, const char *rcpt, const char *text)
{
    memset(r, 0, sizeof(*r));
    r->verdict = MILTER_TEMPFAIL;
    memcpy(r->rcode, "451", 4);
    memcpy(r->xcode, "4.3.0", 6);
    set_text(r, rcpt, text);
}
