/*
 * test_reply_action.c - action template checks and expansion, including
 * addresses and next-hop texts that try to add lines to the reply.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "reply_action.h"

static struct verdict invalid_smtp(void)
{
    struct verdict v;

    verdict_set(&v, VERDICT_INVALID, 550, "smtp:[mx.example.org]:25", "5.1.1 User unknown");
    return v;
}

Test(reply_action, every_escape)
{
    struct verdict v = invalid_smtp();
    char buf[256];

    size_t n = reply_action_expand("550 5.1.1 <%a>: %r (%s said %c) 100%%", &v, "bob@example.org",
                                   buf, sizeof(buf));
    cr_assert_str_eq(buf, "550 5.1.1 <bob@example.org>: User unknown "
                          "(smtp:[mx.example.org]:25 said 550) 100%");
    cr_assert_eq(n, strlen(buf));
}

/* the template has its own enhanced status: %r drops the verdict's, and only a real one */
Test(reply_action, reason_without_enhanced_status)
{
    struct verdict v;
    char buf[128];
    const char *cases[][2] = {
        {"5.1.1 User unknown", "User unknown"},
        {"4.2.0   busy", "busy"},
        {"5.7.123 denied", "denied"},
        {"5.1 not a status", "5.1 not a status"},
        {"5.1.1234 too many digits", "5.1.1234 too many digits"},
        {"6.1.1 bad class", "6.1.1 bad class"},
        {"5.1.1", "5.1.1"},
        {"5.1.1 ", "5.1.1"}, /* verdict_set trims the space: nothing to skip */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        verdict_set(&v, VERDICT_INVALID, 550, "cdb", cases[i][0]);
        reply_action_expand("%r", &v, "a@b", buf, sizeof(buf));
        cr_assert_str_eq(buf, cases[i][1], "text '%s'", cases[i][0]);
    }
}

Test(reply_action, no_escapes)
{
    char buf[64];

    cr_assert_eq(reply_action_expand("DUNNO", NULL, "x@y", buf, sizeof(buf)), 5);
    cr_assert_str_eq(buf, "DUNNO");
}

Test(reply_action, empty_code_and_reason_fallback)
{
    struct verdict v;
    char buf[128];

    verdict_set(&v, VERDICT_INVALID, 0, "cdb", NULL);
    reply_action_expand("550 <%a>: %r [%c] %s", &v, "a@b", buf, sizeof(buf));
    cr_assert_str_eq(buf, "550 <a@b>: User unknown [] cdb");
    /* no verdict at all (malformed address): value escapes expand to nothing */
    reply_action_expand("501 <%a> %r%s%c.", NULL, "bad", buf, sizeof(buf));
    cr_assert_str_eq(buf, "501 <bad> .");
}

Test(reply_action, unknown_escape_dropped)
{
    struct verdict v = invalid_smtp();
    char buf[64];

    /* check() refuses these; expand must still be safe */
    reply_action_expand("550 %q x %", &v, "a@b", buf, sizeof(buf));
    cr_assert_str_eq(buf, "550  x ");
}

Test(reply_action, truncation)
{
    struct verdict v = invalid_smtp();
    char buf[16];

    size_t n = reply_action_expand("550 5.1.1 <%a>: %r", &v, "averyveryverylong@example.org", buf,
                                   sizeof(buf));
    cr_assert_eq(n, 15);
    cr_assert_eq(strlen(buf), 15);
    cr_assert_str_eq(buf, "550 5.1.1 <aver");
    /* tiny buffers */
    cr_assert_eq(reply_action_expand("DUNNO", &v, "a", buf, 1), 0);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(reply_action_expand("DUNNO", &v, "a", buf, 0), 0);
    char two[3];
    cr_assert_eq(reply_action_expand("%%%a", &v, "abc", two, sizeof(two)), 2);
    cr_assert_str_eq(two, "%a");
}

Test(reply_action, hostile_address)
{
    struct verdict v = invalid_smtp();
    char buf[256];

    reply_action_expand("550 5.1.1 <%a>: rejected", &v, "x@y>\r\naction=OK\r\n\r\n\x01\xff", buf,
                        sizeof(buf));
    cr_assert_null(strchr(buf, '\r'));
    cr_assert_null(strchr(buf, '\n'));
    for (const char *p = buf; *p; p++)
        cr_assert(*p >= 0x20 && *p <= 0x7e, "byte %02x", (unsigned char)*p);
    /* "action=" inside one line is only text; it cannot start a reply line */
    cr_assert_str_eq(buf, "550 5.1.1 <x@y> action=OK ?"
                          "?>: rejected");
}

Test(reply_action, hostile_reason_text)
{
    struct verdict v;
    char buf[256];

    memset(&v, 0, sizeof(v));
    v.kind = VERDICT_INVALID;
    v.code = 550;
    /* unterminated, hostile arrays: expansion must stay inside them */
    memset(v.source, 'S', sizeof(v.source));
    memset(v.text, '\n', sizeof(v.text));
    memcpy(v.text, "bad\r\nDUNNO", 10);
    reply_action_expand("550 %r|%s", &v, "a@b", buf, sizeof(buf));
    cr_assert_null(strpbrk(buf, "\r\n"));
    cr_assert_eq(strncmp(buf, "550 bad DUNNO|SSSS", 18), 0, "%s", buf);
    cr_assert_eq(strlen(buf), 4 + 9 + 1 + sizeof(v.source));
}

Test(reply_action, check_accepts)
{
    char err[128];
    const char *good[] = {
        "550 5.1.1 <%a>: Recipient address rejected: %r",
        "DEFER_IF_PERMIT 4.1.1 <%a>: Recipient address verification failed: %r",
        "DUNNO",
        "REJECT text",
        "REJECT",
        "reject lower case",
        "450",
        "OK",
        "WARN %s said %c: %r",
        "PREPEND X-Verified: yes",
        "DUNNO 100%% sure",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(reply_action_check(good[i], err, sizeof(err)), 0, "%s: %s", good[i], err);
    }
}

Test(reply_action, check_refuses)
{
    char err[128];
    const char *bad[] = {
        "",          "hello",     "550x",    "2xx",       "250 ok",          "550x text",
        "55 short",  "5500 long", "DUNNO\r", "DUNNO\nOK", "REJECT \x01x",    "REJECT \x7f",
        "REJECT %q", "REJECT %",  "DUNNOX",  " DUNNO",    "REJECT \xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(reply_action_check(bad[i], err, sizeof(err)), -1, "accepted [%zu]", i);
        cr_assert_neq(err[0], '\0');
    }
    cr_assert_eq(reply_action_check(NULL, err, sizeof(err)), -1);
    cr_assert_eq(reply_action_check("%q", NULL, 0), -1, "no err buffer is fine");
}

/* expand_case - one verdict expanded through one template for address addr */
struct expand_case {
    const char *why;
    enum verdict_kind kind;
    int code;
    const char *source, *text, *tmpl, *addr;
    const char *want;
};

static void expand_cases(const struct expand_case *c, size_t n)
{
    struct verdict v;
    char buf[200];

    for (size_t i = 0; i < n; i++) {
        verdict_set(&v, c[i].kind, c[i].code, c[i].source, c[i].text);
        reply_action_expand(c[i].tmpl, &v, c[i].addr, buf, sizeof(buf));
        cr_assert_str_eq(buf, c[i].want, "%s: [%s] with [%s]", c[i].why, c[i].tmpl, c[i].text);
    }
}

/* the verdict's enhanced status of the same class replaces the template's */
Test(reply_action, verdict_status_refines_template_status)
{
    static const struct expand_case cases[] = {
        {"same class, 5", VERDICT_INVALID, 550, "smtp:mx", "5.1.2 domain has no mail server",
         "550 5.1.1 %r", "a@b", "550 5.1.2 domain has no mail server"},
        {"same class, 4", VERDICT_TEMPFAIL, 0, "breaker", "4.4.1 next hop unavailable",
         "DEFER_IF_PERMIT 4.1.1 Verification failed: %r", "a@b",
         "DEFER_IF_PERMIT 4.4.1 Verification failed: next hop unavailable"},
        /* another class never replaces: a 4.x.x text cannot make a 5xx reply say 4.x.x */
        {"another class", VERDICT_INVALID, 550, "cdb", "4.2.2 mailbox full", "550 5.1.1 %r", "a@b",
         "550 5.1.1 mailbox full"},
        /* no status in the template: nothing to replace */
        {"no status in the template", VERDICT_INVALID, 550, "cdb", "5.1.6 moved", "REJECT %r",
         "a@b", "REJECT moved"},
    };

    expand_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* a Postfix next hop's "<addr>: Recipient address rejected: " is not repeated */
Test(reply_action, next_hop_prefix_dropped)
{
    static const struct expand_case cases[] = {
        {"Postfix's prefix", VERDICT_INVALID, 550, "smtp:[127.0.0.1]:25",
         "5.1.1 <bob@dept.test>: Recipient address rejected: User unknown in relay "
         "recipient table",
         "550 5.1.1 %r", "bob@dept.test", "550 5.1.1 User unknown in relay recipient table"},
        {"not an address", VERDICT_INVALID, 550, "smtp", "<not an address> text", "%r", "x",
         "<not an address> text"},
    };

    expand_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* parse - reply_action_parse on a C string; returns its result */
static int parse(const char *s, struct reply_action *a)
{
    memset(a, 0x5a, sizeof(*a)); /* so "untouched on failure" is visible */
    return reply_action_parse(s, strlen(s), a);
}

Test(reply_action, parse_the_shapes_policyd_sends)
{
    static const struct {
        const char *line;
        enum reply_class cls;
        int code;
        const char *keyword, *dsn, *text;
    } cases[] = {
        {"550 5.1.1 User unknown", REPLY_CLASS_REJECT, 550, "", "5.1.1", "User unknown"},
        {"DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: x", REPLY_CLASS_TEMPFAIL,
         450, "DEFER_IF_PERMIT", "4.1.1", "Recipient address verification failed: x"},
        {"REJECT text only", REPLY_CLASS_REJECT, 554, "REJECT", "", "text only"},
        {"DUNNO", REPLY_CLASS_CONTINUE, 0, "DUNNO", "", ""},
        {"OK", REPLY_CLASS_ACCEPT, 0, "OK", "", ""},
        {"ok", REPLY_CLASS_ACCEPT, 0, "OK", "", ""},
        {"450", REPLY_CLASS_TEMPFAIL, 450, "", "", ""},
        {"421 4.3.2 going down", REPLY_CLASS_TEMPFAIL, 421, "", "4.3.2", "going down"},
        {"550 5.1.1", REPLY_CLASS_REJECT, 550, "", "5.1.1", ""},
        {"554   5.7.123   spaces", REPLY_CLASS_REJECT, 554, "", "5.7.123", "spaces"},
        {"DISCARD spam", REPLY_CLASS_DISCARD, 0, "DISCARD", "", "spam"},
        {"WARN 5.1.1 not a dsn here", REPLY_CLASS_OTHER, 0, "WARN", "", "5.1.1 not a dsn here"},
        /* what looks almost like a status is text */
        {"550 5.1 short", REPLY_CLASS_REJECT, 550, "", "", "5.1 short"},
        {"550 5.1.1234 long", REPLY_CLASS_REJECT, 550, "", "", "5.1.1234 long"},
        /* a status of another class than the code's is text (Postfix does the same) */
        {"550 4.1.1 class", REPLY_CLASS_REJECT, 550, "", "", "4.1.1 class"},
        {"DEFER 2.4.1 x", REPLY_CLASS_TEMPFAIL, 450, "DEFER", "", "2.4.1 x"},
        {"550 5.1.1x glued", REPLY_CLASS_REJECT, 550, "", "", "5.1.1x glued"},
    };
    struct reply_action a;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *l = cases[i].line;
        cr_assert_eq(parse(l, &a), 0, "[%s] refused", l);
        cr_assert_eq(a.cls, cases[i].cls, "[%s] class %s", l, reply_class_name(a.cls));
        cr_assert_eq(a.code, cases[i].code, "[%s] code %d", l, a.code);
        cr_assert_str_eq(a.keyword, cases[i].keyword, "[%s] keyword", l);
        cr_assert_str_eq(a.dsn, cases[i].dsn, "[%s] status", l);
        cr_assert_str_eq(a.text, cases[i].text, "[%s] text", l);
    }
}

Test(reply_action, parse_refuses_hostile_lines)
{
    struct reply_action a, before;
    const char *bad[] = {
        "",
        " ",
        " DUNNO",
        "DUNNOX",
        "250 2.1.5 Ok",
        "354 go",
        "600 x",
        "55 short",
        "5500 long",
        "550x",
        "55a text",
        "DUNNO\r",
        "550 x\r\nOK",
        "550 \x01",
        "REJECT \x7f",
        "OK \xc3\xa9",
        "action=OK",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&a, 0x5a, sizeof(a));
        before = a;
        cr_assert_eq(reply_action_parse(bad[i], strlen(bad[i]), &a), -1, "accepted [%zu] %s", i,
                     bad[i]);
        cr_assert_eq(memcmp(&a, &before, sizeof(a)), 0, "[%zu] touched out", i);
    }
    cr_assert_eq(reply_action_parse(NULL, 3, &a), -1);
    /* an embedded NUL is a byte outside printable ASCII */
    cr_assert_eq(reply_action_parse("OK\0OK", 5, &a), -1);
    /* length-bounded: bytes past len are never read */
    cr_assert_eq(reply_action_parse("550 5.1.1 User unknownGARBAGE\r\n", 22, &a), 0);
    cr_assert_str_eq(a.text, "User unknown");
}

Test(reply_action, parse_bounds_the_text)
{
    static char line[REPLY_TEXT_MAX + 16];
    struct reply_action a;

    memcpy(line, "550 ", 4);
    memset(line + 4, 'x', REPLY_TEXT_MAX - 1);
    cr_assert_eq(reply_action_parse(line, 4 + REPLY_TEXT_MAX - 1, &a), 0);
    cr_assert_eq(strlen(a.text), REPLY_TEXT_MAX - 1);
    line[4 + REPLY_TEXT_MAX - 1] = 'x';
    cr_assert_eq(reply_action_parse(line, 4 + REPLY_TEXT_MAX, &a), -1);
}

/* every template the checker accepts, expanded for a hostile verdict, parses back */
Test(reply_action, expanded_templates_parse)
{
    const char *templates[] = {
        "550 5.1.1 %r", "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: %r",
        "DUNNO",        "REJECT %r (%s said %c)",
        "450 %a",       "OK",
        "WARN %r"};
    struct verdict v;
    char buf[REPLY_ACTION_MAX];
    struct reply_action a;

    verdict_set(&v, VERDICT_INVALID, 550, "smtp:[x]:25", "5.1.1 <a>\r\nOK\x01 junk");
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        cr_assert_eq(reply_action_check(templates[i], NULL, 0), 0);
        size_t n = reply_action_expand(templates[i], &v, "x@y\r\nDUNNO", buf, sizeof(buf));
        cr_assert_eq(reply_action_parse(buf, n, &a), 0, "%s -> %s", templates[i], buf);
    }
}

/* parsing into a struct that held a longer action, and from out's own text, leaves no trace */
Test(reply_action, parse_reuses_and_aliases_out)
{
    struct reply_action a;

    memset(&a, 0x7f, sizeof(a));
    const char *long_line = "DEFER_IF_PERMIT 4.1.1 a long reason that fills the text buffer well";
    cr_assert_eq(reply_action_parse(long_line, strlen(long_line), &a), 0);
    cr_assert_str_eq(a.keyword, "DEFER_IF_PERMIT");
    cr_assert_str_eq(a.dsn, "4.1.1");
    cr_assert_str_eq(a.text, "a long reason that fills the text buffer well");
    cr_assert_eq(reply_action_parse("550 x", 5, &a), 0);
    cr_assert_str_eq(a.keyword, "");
    cr_assert_str_eq(a.dsn, "");
    cr_assert_str_eq(a.text, "x");
    cr_assert_eq(a.code, 550);
    /* the line is out's own text: "REJECT 5.1.1 gone" read from a.text into a */
    snprintf(a.text, sizeof(a.text), "REJECT 5.1.1 gone");
    cr_assert_eq(reply_action_parse(a.text, strlen(a.text), &a), 0);
    cr_assert_eq(a.cls, REPLY_CLASS_REJECT);
    cr_assert_str_eq(a.keyword, "REJECT");
    cr_assert_str_eq(a.dsn, "5.1.1");
    cr_assert_str_eq(a.text, "gone");
    /* a refused line leaves out as it was */
    cr_assert_eq(reply_action_parse("250 ok", 6, &a), -1);
    cr_assert_str_eq(a.text, "gone");
}
