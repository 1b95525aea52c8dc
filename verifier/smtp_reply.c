/*
 * smtp_reply.c - incremental parser for SMTP server replies.
 *
 * Bytes go into a bounded line buffer; each complete line is checked
 * (three-digit code 2xx-5xx, '-' or ' ' separator, same code on every line)
 * and its text appended to the reply being built. Every limit is a named
 * constant in smtp_reply.h so that a next hop sending an endless line, an
 * endless multi-line reply or a stream of junk costs us bounded memory and
 * ends in a parse error the callout turns into a tempfail.
 */
#include "smtp_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "verdict.h"

struct smtp_reply_parser {
    char line[SMTP_REPLY_LINE_MAX + 1]; /* current line, a trailing CR included */
    size_t line_len;
    int code;     /* code of the first line, 0 before it */
    int nlines;   /* complete lines of this reply */
    size_t bytes; /* bytes of this reply so far */
    char enhanced[SMTP_REPLY_ENH_MAX];
    int enhanced_mixed;
    unsigned ehlo;                  /* SMTP_EHLO_* keywords seen on lines after the first */
    char text[SMTP_REPLY_TEXT_MAX]; /* raw joined text, sanitised when the reply ends */
    size_t text_len;
    int failed;
    char error[128];
};

/* parser_fail - enter the sticky error state with a reason */
static enum smtp_reply_status parser_fail(struct smtp_reply_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum smtp_reply_status parser_fail(struct smtp_reply_parser *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    p->failed = 1;
    return SMTP_REPLY_ERROR;
}

/* reply_start - forget the reply being built, keep the error state */
static void reply_start(struct smtp_reply_parser *p)
{
    p->line_len = 0;
    p->code = 0;
    p->nlines = 0;
    p->bytes = 0;
    p->enhanced[0] = '\0';
    p->enhanced_mixed = 0;
    p->ehlo = 0;
    p->text_len = 0;
}

/*
 * ehlo_keyword - the SMTP_EHLO_* flag of an EHLO reply line's text (RFC 5321
 * 4.1.1.1: "ehlo-keyword *( SP ehlo-param )"), or 0. Only lines after the
 * first are extension lines: the first is the server's name and greeting,
 * whose free text must not be read as a capability.
 */
static unsigned ehlo_keyword(const char *text, size_t len)
{
    static const struct {
        const char *kw;
        unsigned flag;
    } kws[] = {
        {"SMTPUTF8", SMTP_EHLO_SMTPUTF8},
        {"STARTTLS", SMTP_EHLO_STARTTLS},
        {"PIPELINING", SMTP_EHLO_PIPELINING},
    };
    size_t n = 0;

    while (n < len && text[n] != ' ' && text[n] != '\r')
        n++;
    for (size_t i = 0; i < sizeof(kws) / sizeof(kws[0]); i++)
        if (strlen(kws[i].kw) == n && strncasecmp(text, kws[i].kw, n) == 0)
            return kws[i].flag;
    return 0;
}

struct smtp_reply_parser *smtp_reply_parser_new(void)
{
    struct smtp_reply_parser *p = calloc(1, sizeof(*p));

    if (p != NULL)
        smtp_reply_parser_reset(p);
    return p;
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
    free(p);
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
    reply_start(p);
    p->failed = 0;
    p->error[0] = '\0';
}

/*
 * enhanced_len - length of an RFC 3463 status code "c.sss.ddd" at the start of
 * s (len bytes), followed by a space or the end, whose class c matches cls;
 * 0 if there is none.
 */
static size_t enhanced_len(const char *s, size_t len, int cls)
{
    size_t i = 0;

    if (len < 5 || s[0] != '0' + cls || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;

        while (i < len && i - start < 4 && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 3)
            return 0;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < len && s[i] != ' ')
        return 0;
    return i;
}

/* text_append - append len bytes to the joined text, a space first unless empty */
static void text_append(struct smtp_reply_parser *p, const char *s, size_t len)
{
    size_t room;

    if (len == 0)
        return;
    if (p->text_len > 0 && p->text_len + 1 < sizeof(p->text))
        p->text[p->text_len++] = ' ';
    room = sizeof(p->text) - 1 - p->text_len;
    if (len > room)
        len = room; /* truncation is fine: the text is informational */
    memcpy(p->text + p->text_len, s, len);
    p->text_len += len;
}

/*
 * line_done - check one complete line (CRLF removed) and add it to the reply.
 * Returns SMTP_REPLY_DONE if it was the last line, NEED_MORE if more lines
 * follow, ERROR if it is malformed.
 */
static enum smtp_reply_status line_done(struct smtp_reply_parser *p, const char *line, size_t len)
{
    int code;
    int last;
    const char *text;
    size_t tlen, elen;

    if (len < 3)
        return parser_fail(p, "reply line too short");
    if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
        line[2] > '9')
        return parser_fail(p, "reply line does not start with a code 200-599");
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (p->nlines > 0 && code != p->code)
        return parser_fail(p, "reply code changes from %d to %d within a reply", p->code, code);
    if (len == 3) {
        last = 1; /* "Reply-code [ SP textstring ] CRLF" */
    } else if (line[3] == ' ') {
        last = 1;
    } else if (line[3] == '-') {
        last = 0;
    } else {
        return parser_fail(p, "no separator after reply code");
    }
    if (++p->nlines > SMTP_REPLY_LINES_MAX)
        return parser_fail(p, "more than %d lines in a reply", SMTP_REPLY_LINES_MAX);
    p->code = code;

    text = len > 4 ? line + 4 : line + len;
    tlen = len > 4 ? len - 4 : 0;
    if (p->nlines > 1 && code == 250)
        p->ehlo |= ehlo_keyword(text, tlen);
    elen = enhanced_len(text, tlen, code / 100);
    if (p->nlines == 1) {
        if (elen > 0 && elen < sizeof(p->enhanced)) {
            memcpy(p->enhanced, text, elen);
            p->enhanced[elen] = '\0';
        }
    } else if (elen > 0 && strlen(p->enhanced) == elen && memcmp(p->enhanced, text, elen) == 0) {
        /* a repeated enhanced status on a continuation line says nothing new */
        text += elen;
        tlen -= elen;
    } else if (elen > 0) {
        p->enhanced_mixed = 1; /* "550-5.1.1 ..." then "550 5.7.1 ...": which is it? */
    }
    text_append(p, text, tlen);
    return last ? SMTP_REPLY_DONE : SMTP_REPLY_NEED_MORE;
}

enum smtp_reply_status smtp_reply_parse(struct smtp_reply_parser *p, const char *buf, size_t len,
                                        size_t *consumed, struct smtp_reply *out, char *err,
                                        size_t errlen)
{
    size_t i;

    *consumed = 0;
    if (p->failed)
        goto fail;
    for (i = 0; i < len; i++) {
        char c = buf[i];
        enum smtp_reply_status st;
        size_t l;

        if (++p->bytes > SMTP_REPLY_BYTES_MAX) {
            parser_fail(p, "reply longer than %d bytes", SMTP_REPLY_BYTES_MAX);
            *consumed = i + 1;
            goto fail;
        }
        if (c != '\n') {
            /* one extra byte for the CR that may precede the LF */
            if (p->line_len >= sizeof(p->line)) {
                parser_fail(p, "reply line longer than %d bytes", SMTP_REPLY_LINE_MAX);
                *consumed = i + 1;
                goto fail;
            }
            p->line[p->line_len++] = c;
            continue;
        }
        /* LF ends the line; CRLF is the rule, a bare LF is tolerated */
        l = p->line_len;
        if (l > 0 && p->line[l - 1] == '\r')
            l--;
        if (l > SMTP_REPLY_LINE_MAX) {
            parser_fail(p, "reply line longer than %d bytes", SMTP_REPLY_LINE_MAX);
            *consumed = i + 1;
            goto fail;
        }
        st = line_done(p, p->line, l);
        p->line_len = 0;
        if (st == SMTP_REPLY_ERROR) {
            *consumed = i + 1;
            goto fail;
        }
        if (st == SMTP_REPLY_DONE) {
            out->code = p->code;
            out->nlines = p->nlines;
            memcpy(out->enhanced, p->enhanced, sizeof(out->enhanced));
            out->enhanced_mixed = p->enhanced_mixed;
            out->ehlo = p->ehlo;
            verdict_sanitize(out->text, sizeof(out->text), p->text, p->text_len);
            reply_start(p);
            *consumed = i + 1;
            return SMTP_REPLY_DONE;
        }
    }
    *consumed = len;
    return SMTP_REPLY_NEED_MORE;

fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", p->error);
    return SMTP_REPLY_ERROR;
}
