/*
 * milter_reply.c - policyd's action line to a milter verdict and reply (see
 * milter_reply.h). The action grammar is the shared one (reply_action.h,
 * the same parser policyd's templates are checked with); this file only
 * adds what a milter needs: the class-to-SMFIS mapping, Postfix's wording,
 * and libmilter's escaping.
 */
#include "milter_reply.h"

#include <stdio.h>
#include <string.h>

#include "reply_action.h"

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
    struct reply_action pa; /* about 1 KiB: fine on a libmilter thread's stack */
    char want;

    memset(r, 0, sizeof(*r));
    r->verdict = MILTER_CONTINUE;
    if (reply_action_parse(action, strlen(action), &pa) < 0)
        return -1;
    switch (pa.cls) {
    case REPLY_CLASS_REJECT:
        r->verdict = MILTER_REJECT;
        want = '5';
        break;
    case REPLY_CLASS_TEMPFAIL:
        /* DEFER_IF_REJECT defers only what later checks reject: a milter cannot know that */
        if (strcmp(pa.keyword, "DEFER_IF_REJECT") == 0)
            return 0;
        r->verdict = MILTER_TEMPFAIL;
        want = '4';
        break;
    default:
        return 0; /* DUNNO, OK, and actions that decide nothing about the recipient */
    }
    /* the class of the code must match the status, or libmilter drops the reply */
    if (pa.code < 400 || pa.code > 599 || '0' + pa.code / 100 != want)
        return -1;
    snprintf(r->rcode, sizeof(r->rcode), "%d", pa.code);
    snprintf(r->xcode, sizeof(r->xcode), "%s",
             pa.dsn[0]     ? pa.dsn
             : want == '5' ? "5.7.1"
                           : "4.7.1");
    r->xcode[0] = want;
    const char *text = pa.text + strspn(pa.text, " ");
    if (r->verdict == MILTER_REJECT)
        set_text(r, mta_names_5xx ? NULL : rcpt, *text ? text : "Access denied");
    else
        set_text(r, rcpt, *text ? text : "Service unavailable");
    return 0;
}

void milter_reply_tempfail(struct milter_reply *r, const char *rcpt, const char *text)
{
    memset(r, 0, sizeof(*r));
    r->verdict = MILTER_TEMPFAIL;
    memcpy(r->rcode, "451", 4);
    memcpy(r->xcode, "4.3.0", 6);
    set_text(r, rcpt, text);
}
