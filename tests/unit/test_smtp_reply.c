/*
 * test_smtp_reply.c - the SMTP reply parser against good, split and hostile
 * input: every limit in smtp_reply.h is hit from both sides.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

static struct smtp_reply_parser *p;

static void setup(void)
{
    p = smtp_reply_parser_new();
    cr_assert_not_null(p);
}

static void teardown(void)
{
    smtp_reply_parser_free(p);
}

TestSuite(smtp_reply, .init = setup, .fini = teardown);

/* parse_all - feed s in one go; returns the status and the bytes consumed */
static enum smtp_reply_status parse_all(const char *s, size_t len, struct smtp_reply *r,
                                        size_t *used)
{
    char err[128] = "";
    size_t u = 0;
    enum smtp_reply_status st = smtp_reply_parse(p, s, len, &u, r, err, sizeof(err));

    if (used != NULL)
        *used = u;
    if (st == SMTP_REPLY_ERROR)
        cr_assert(err[0] != '\0', "an error comes with a reason");
    return st;
}

static enum smtp_reply_status parse_str(const char *s, struct smtp_reply *r)
{
    return parse_all(s, strlen(s), r, NULL);
}

Test(smtp_reply, single_line)
{
    struct smtp_reply r;
    size_t used;

    cr_assert_eq(parse_all("250 Ok\r\n", 8, &r, &used), SMTP_REPLY_DONE);
    cr_assert_eq(used, 8);
    cr_assert_eq(r.code, 250);
    cr_assert_eq(r.nlines, 1);
    cr_assert_str_eq(r.text, "Ok");
    cr_assert_str_eq(r.enhanced, "");
}

Test(smtp_reply, enhanced_status)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("550 5.1.1 <bob@x>: User unknown\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.code, 550);
    cr_assert_str_eq(r.enhanced, "5.1.1");
    cr_assert_str_eq(r.text, "5.1.1 <bob@x>: User unknown");
}

Test(smtp_reply, enhanced_status_class_must_match)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("550 2.1.5 odd\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.enhanced, "");
    cr_assert_eq(parse_str("451 4.3.0\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.enhanced, "4.3.0");
    cr_assert_eq(parse_str("550 5.1234.1 x\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.enhanced, "");
}

Test(smtp_reply, code_only)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("221\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.code, 221);
    cr_assert_str_eq(r.text, "");
}

Test(smtp_reply, multi_line_ehlo)
{
    struct smtp_reply r;
    const char *s =
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n";

    cr_assert_eq(parse_str(s, &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.code, 250);
    cr_assert_eq(r.nlines, 4);
    cr_assert_str_eq(r.text, "mx.example.test PIPELINING SIZE 10240000 8BITMIME");
}

/* RFC 6531 / 3207 / 2920: capability keywords, one per extension line, never in the greeting */
Test(smtp_reply, ehlo_keywords)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("250-mx.example.test\r\n250-PIPELINING\r\n250-smtputf8\r\n"
                           "250 8BITMIME\r\n",
                           &r),
                 SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, SMTP_EHLO_SMTPUTF8 | SMTP_EHLO_PIPELINING);
    cr_assert_eq(parse_str("250-mx.example.test\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n", &r),
                 SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, SMTP_EHLO_SMTPUTF8 | SMTP_EHLO_STARTTLS);
    /* the greeting line is free text; a prefix or a parameter is not the keyword */
    cr_assert_eq(parse_str("250-SMTPUTF8 says hello\r\n250-SMTPUTF8X\r\n250-XSMTPUTF8\r\n"
                           "250 AUTH SMTPUTF8\r\n",
                           &r),
                 SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, 0);
    cr_assert_eq(parse_str("250 SMTPUTF8\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, 0);
    cr_assert_eq(parse_str("550-x\r\n550 SMTPUTF8\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, 0);
    /* a keyword with parameters still counts */
    cr_assert_eq(parse_str("250-x\r\n250 SMTPUTF8 \r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, SMTP_EHLO_SMTPUTF8);
    /* the next reply starts clean */
    cr_assert_eq(parse_str("250 ok\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.ehlo, 0);
}

Test(smtp_reply, multi_line_repeated_enhanced_status_is_dropped)
{
    struct smtp_reply r;
    const char *s = "550-5.1.1 The email account does not exist.\r\n"
                    "550-5.1.1 Please try double-checking\r\n"
                    "550 5.1.1 the address.\r\n";

    cr_assert_eq(parse_str(s, &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.nlines, 3);
    cr_assert_str_eq(r.text, "5.1.1 The email account does not exist. Please try "
                             "double-checking the address.");
}

Test(smtp_reply, enhanced_status_lines_that_disagree)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("550-5.1.1 User unknown\r\n550 5.7.1 blocked\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.enhanced, "5.1.1");
    cr_assert_eq(r.enhanced_mixed, 1);
    cr_assert_str_eq(r.text, "5.1.1 User unknown 5.7.1 blocked");
    /* a status only on a later line */
    cr_assert_eq(parse_str("550-User unknown\r\n550 5.1.1 really\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.enhanced, "");
    cr_assert_eq(r.enhanced_mixed, 1);
    /* repeated, or absent on later lines: not mixed; and the flag does not leak to the next reply
     */
    cr_assert_eq(parse_str("550-5.1.1 a\r\n550-b\r\n550 5.1.1 c\r\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.enhanced_mixed, 0);
    cr_assert_str_eq(r.text, "5.1.1 a b c");
}

Test(smtp_reply, split_at_every_byte_boundary)
{
    const char *s = "550-5.1.1 first\r\n550 5.1.1 second\r\n";
    size_t len = strlen(s);

    for (size_t cut = 0; cut <= len; cut++) {
        struct smtp_reply r;
        size_t used;

        smtp_reply_parser_reset(p);
        memset(&r, 0, sizeof(r));
        if (cut > 0) {
            enum smtp_reply_status st = parse_all(s, cut, &r, &used);
            cr_assert_eq(st, cut == len ? SMTP_REPLY_DONE : SMTP_REPLY_NEED_MORE, "cut %zu", cut);
            cr_assert_eq(used, cut);
        }
        if (cut < len) {
            cr_assert_eq(parse_all(s + cut, len - cut, &r, &used), SMTP_REPLY_DONE, "cut %zu", cut);
            cr_assert_eq(used, len - cut);
        }
        cr_assert_eq(r.code, 550);
        cr_assert_str_eq(r.text, "5.1.1 first second", "cut %zu", cut);
    }
}

Test(smtp_reply, one_byte_at_a_time)
{
    const char *s = "220-hello\r\n220 there ESMTP\r\n";
    struct smtp_reply r;
    size_t used;
    size_t len = strlen(s);

    for (size_t i = 0; i + 1 < len; i++)
        cr_assert_eq(parse_all(s + i, 1, &r, &used), SMTP_REPLY_NEED_MORE);
    cr_assert_eq(parse_all(s + len - 1, 1, &r, &used), SMTP_REPLY_DONE);
    cr_assert_str_eq(r.text, "hello there ESMTP");
}

Test(smtp_reply, bare_lf_is_tolerated)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("250-a\n250 b\n", &r), SMTP_REPLY_DONE);
    cr_assert_eq(r.nlines, 2);
    cr_assert_str_eq(r.text, "a b");
}

Test(smtp_reply, two_replies_in_one_buffer)
{
    const char *s = "250 first\r\n354 second\r\n";
    struct smtp_reply r;
    size_t used;

    cr_assert_eq(parse_all(s, strlen(s), &r, &used), SMTP_REPLY_DONE);
    cr_assert_eq(used, 11);
    cr_assert_eq(r.code, 250);
    cr_assert_eq(parse_all(s + used, strlen(s) - used, &r, &used), SMTP_REPLY_DONE);
    cr_assert_eq(r.code, 354);
    cr_assert_str_eq(r.text, "second");
}

Test(smtp_reply, mismatched_codes)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("250-a\r\n550 b\r\n", &r), SMTP_REPLY_ERROR);
}

Test(smtp_reply, bad_codes)
{
    static const char *const bad[] = {
        "25x ok\r\n",
        "x50 ok\r\n",
        "199 ok\r\n",
        "600 ok\r\n",
        "000 ok\r\n",
        "-250 ok\r\n",
        " 250 ok\r\n",
        "\r\n",
        "25\r\n",
        "\n",
        "HTTP/1.1 400 Bad Request\r\n",
        "250\xff ok\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct smtp_reply r;

        smtp_reply_parser_reset(p);
        cr_assert_eq(parse_str(bad[i], &r), SMTP_REPLY_ERROR, "input %zu", i);
    }
}

Test(smtp_reply, missing_separator)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("250Ok\r\n", &r), SMTP_REPLY_ERROR);
    smtp_reply_parser_reset(p);
    cr_assert_eq(parse_str("250\tOk\r\n", &r), SMTP_REPLY_ERROR);
}

Test(smtp_reply, error_is_sticky_until_reset)
{
    struct smtp_reply r;

    cr_assert_eq(parse_str("garbage\r\n", &r), SMTP_REPLY_ERROR);
    cr_assert_eq(parse_str("250 Ok\r\n", &r), SMTP_REPLY_ERROR);
    smtp_reply_parser_reset(p);
    cr_assert_eq(parse_str("250 Ok\r\n", &r), SMTP_REPLY_DONE);
}

Test(smtp_reply, line_at_the_limit_and_over)
{
    size_t n = SMTP_REPLY_LINE_MAX;
    char *s = malloc(n + 3);
    struct smtp_reply r;
    size_t used;

    memcpy(s, "250 ", 4);
    memset(s + 4, 'a', n - 4);
    memcpy(s + n, "\r\n", 2);
    cr_assert_eq(parse_all(s, n + 2, &r, &used), SMTP_REPLY_DONE, "exactly the limit is fine");
    cr_assert_eq(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1, "long text is truncated");

    /* one more byte, and no line end at all: fails without waiting for LF */
    s[n] = 'a';
    s[n + 1] = 'a';
    cr_assert_eq(parse_all(s, n + 2, &r, &used), SMTP_REPLY_ERROR);
    cr_assert_leq(used, n + 2);
    free(s);
}

Test(smtp_reply, cr_does_not_extend_the_limit)
{
    size_t n = SMTP_REPLY_LINE_MAX + 1;
    char *s = malloc(n + 2);
    struct smtp_reply r;

    memcpy(s, "250 ", 4);
    memset(s + 4, 'a', n - 4);
    s[n] = '\n'; /* 2049 bytes then a bare LF */
    cr_assert_eq(parse_all(s, n + 1, &r, NULL), SMTP_REPLY_ERROR);
    free(s);
}

Test(smtp_reply, too_many_lines)
{
    char line[16];
    struct smtp_reply r;
    int i;

    for (i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        cr_assert_eq(parse_str("250-x\r\n", &r), SMTP_REPLY_NEED_MORE);
    cr_assert_eq(parse_str("250 x\r\n", &r), SMTP_REPLY_DONE, "the limit itself is fine");
    cr_assert_eq(r.nlines, SMTP_REPLY_LINES_MAX);

    for (i = 0; i < SMTP_REPLY_LINES_MAX; i++)
        cr_assert_eq(parse_str("250-x\r\n", &r), SMTP_REPLY_NEED_MORE);
    snprintf(line, sizeof(line), "250-x\r\n");
    cr_assert_eq(parse_str(line, &r), SMTP_REPLY_ERROR);
}

Test(smtp_reply, too_many_bytes)
{
    char *line = malloc(2003);
    struct smtp_reply r;
    enum smtp_reply_status st = SMTP_REPLY_NEED_MORE;
    int i;

    memcpy(line, "250-", 4);
    memset(line + 4, 'b', 1996);
    memcpy(line + 2000, "\r\n", 2);
    for (i = 0; i < 50 && st == SMTP_REPLY_NEED_MORE; i++)
        st = parse_all(line, 2002, &r, NULL);
    cr_assert_eq(st, SMTP_REPLY_ERROR);
    cr_assert_leq(i * 2002, SMTP_REPLY_BYTES_MAX + 2002, "fails as the limit passes");
    free(line);
}

Test(smtp_reply, hostile_bytes_are_sanitised)
{
    static const char s[] = "550 5.1.1 evil\0nul\x1b[31m\rcr \xc3\xa9\t tab\r\n";
    struct smtp_reply r;

    cr_assert_eq(parse_all(s, sizeof(s) - 1, &r, NULL), SMTP_REPLY_DONE);
    cr_assert_eq(r.code, 550);
    for (const char *q = r.text; *q; q++)
        cr_assert(*q >= 0x20 && *q < 0x7f, "byte %d is printable", *q);
    cr_assert_null(strchr(r.text, '\r'));
    cr_assert(strncmp(r.text, "5.1.1 evil?nul?", 15) == 0, "got %s", r.text);
}

Test(smtp_reply, random_input_never_breaks_invariants)
{
    unsigned int seed = 12345;
    char buf[512];

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        size_t off = 0;

        for (size_t i = 0; i < len; i++) {
            /* mostly reply-like bytes so the parser gets deep */
            static const char alphabet[] = "2345 -\r\n0.1ab";
            buf[i] = rand_r(&seed) % 4 ? alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)]
                                       : (char)rand_r(&seed);
        }
        smtp_reply_parser_reset(p);
        while (off < len) {
            struct smtp_reply r;
            size_t used = 0;
            size_t chunk = 1 + (size_t)rand_r(&seed) % (len - off);
            enum smtp_reply_status st = parse_all(buf + off, chunk, &r, &used);

            cr_assert_leq(used, chunk);
            if (st == SMTP_REPLY_ERROR)
                break;
            if (st == SMTP_REPLY_DONE) {
                cr_assert(r.code >= 200 && r.code <= 599);
                cr_assert(r.nlines >= 1 && r.nlines <= SMTP_REPLY_LINES_MAX);
                cr_assert_lt(strlen(r.text), SMTP_REPLY_TEXT_MAX);
                for (const char *q = r.text; *q; q++)
                    cr_assert(*q >= 0x20 && *q < 0x7f);
            } else {
                cr_assert_eq(used, chunk);
            }
            off += used;
        }
    }
}
