/*
 * fuzz_reply_action.c - libFuzzer harness for the action grammar: the parser
 * the milter runs on policyd's action lines, and template check + expansion.
 * Inputs are hostile; every result is checked against reply_action.h's
 * promises, so a wrong answer is a finding as much as a crash.
 *
 * The first byte chooses: even, the rest is an action line to parse; odd,
 * the rest is split at the first NUL into a template and a verdict text,
 * and a template the checker accepts is expanded and must parse back when
 * the template itself parses.
 *
 * Run with tests/fuzz/run.sh (FUZZ_ONLY=reply_action).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply_action.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* printable - NUL-terminated within size and printable ASCII only */
static void printable(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            abort();
}

static void check_parsed(const struct reply_action *a)
{
    printable(a->keyword, sizeof(a->keyword));
    printable(a->dsn, sizeof(a->dsn));
    printable(a->text, sizeof(a->text));
    switch (a->cls) {
    case REPLY_CLASS_REJECT:
        if (a->code < 500 || a->code > 599)
            abort();
        break;
    case REPLY_CLASS_TEMPFAIL:
        if (a->code < 400 || a->code > 499)
            abort();
        break;
    case REPLY_CLASS_CONTINUE:
    case REPLY_CLASS_ACCEPT:
    case REPLY_CLASS_DISCARD:
    case REPLY_CLASS_OTHER:
        if (a->code != 0 || a->dsn[0] != '\0')
            abort();
        break;
    default:
        abort();
    }
    if (a->dsn[0] != '\0' && a->dsn[0] != '0' + a->code / 100)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reply_action a;

    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        if (reply_action_parse((const char *)data + 1, size - 1, &a) == 0)
            check_parsed(&a);
        return 0;
    }

    /* template NUL text */
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(rest, '\0', n);
    size_t tlen = nul ? (size_t)(nul - rest) : n;
    char *tmpl = malloc(tlen + 1);
    if (tmpl == NULL)
        return 0;
    memcpy(tmpl, rest, tlen);
    tmpl[tlen] = '\0';
    if (reply_action_check(tmpl, NULL, 0) == 0) {
        struct verdict v;
        char buf[REPLY_ACTION_MAX];
        const char *text = nul ? nul + 1 : "";
        size_t textlen = nul ? n - tlen - 1 : 0;
        char tbuf[VERDICT_TEXT_MAX * 2];
        if (textlen >= sizeof(tbuf))
            textlen = sizeof(tbuf) - 1;
        memcpy(tbuf, text, textlen);
        tbuf[textlen] = '\0';
        verdict_set(&v, (enum verdict_kind)(data[0] >> 1) % VERDICT_KIND_COUNT, 550, "smtp:[x]:25",
                    tbuf);
        size_t len = reply_action_expand(tmpl, &v, tbuf, buf, sizeof(buf));
        if (len != strlen(buf))
            abort();
        printable(buf, sizeof(buf));
        struct reply_action t;
        int own =
            reply_action_parse(tmpl, tlen, &t); /* the template as an action, escapes and all */
        if (own == 0 && reply_action_parse(buf, len, &a) != 0)
            abort();
        if (own == 0)
            check_parsed(&a);
    }
    free(tmpl);
    return 0;
}
