/*
 * test_verdict.c - verdict names, sanitising, and the cache text form, with
 * the hostile inputs Redis could hand back (anyone can SET a key).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "verdict.h"

/* parse_str - verdict_parse on a C string literal (length without the NUL) */
static int parse_str(const char *s, struct verdict *v)
{
    return verdict_parse(s, strlen(s), v);
}

Test(verdict, kind_names_round_trip)
{
    for (int i = 0; i < VERDICT_KIND_COUNT; i++) {
        const char *name = verdict_kind_name((enum verdict_kind)i);
        enum verdict_kind k = VERDICT_KIND_COUNT;
        cr_assert_eq(verdict_kind_parse(name, strlen(name), &k), 0, "%s", name);
        cr_assert_eq((int)k, i);
    }
    cr_assert_str_eq(verdict_kind_name(VERDICT_INVALID), "invalid");
    cr_assert_str_eq(verdict_kind_name((enum verdict_kind)42), "?");
}

Test(verdict, kind_parse_rejects_near_misses)
{
    enum verdict_kind k = VERDICT_VALID;
    cr_assert_eq(verdict_kind_parse("Valid", 5, &k), -1);
    cr_assert_eq(verdict_kind_parse("valid", 4, &k), -1);
    cr_assert_eq(verdict_kind_parse("validx", 6, &k), -1);
    cr_assert_eq(verdict_kind_parse("", 0, &k), -1);
    cr_assert_eq(verdict_kind_parse("valid\0", 6, &k), -1);
    cr_assert_eq(verdict_kind_parse("invalid", 7, &k), 0);
    cr_assert_eq(k, VERDICT_INVALID);
}

Test(verdict, sanitize_replaces_and_collapses)
{
    char out[64];
    const char in[] = "  5.1.1\r\n  User\x01unknown\t\t\xff end  ";
    size_t n = verdict_sanitize(out, sizeof(out), in, sizeof(in) - 1);
    cr_assert_str_eq(out, "5.1.1 User?unknown ? end");
    cr_assert_eq(n, strlen(out));
}

Test(verdict, sanitize_bounded_and_nul_inside)
{
    char out[8];
    const char in[] = "abc\0def ghijkl";
    size_t n = verdict_sanitize(out, sizeof(out), in, sizeof(in) - 1);
    cr_assert_eq(n, 7);
    cr_assert_str_eq(out, "abc?def");

    /* a cut right after a space leaves no trailing space */
    char small[5];
    verdict_sanitize(small, sizeof(small), "abc defg", 8);
    cr_assert_str_eq(small, "abc");
    cr_assert_eq(verdict_sanitize(small, 0, "abc", 3), 0);
}

Test(verdict, set_sanitises_and_stamps)
{
    struct verdict v;
    time_t before = time(NULL);
    verdict_set(&v, VERDICT_INVALID, 550, "smtp:[mx example]:25", "5.1.1 no\r\nRSET");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    cr_assert_str_eq(v.source, "smtp:[mx_example]:25");
    cr_assert_str_eq(v.text, "5.1.1 no RSET");
    cr_assert_geq(v.when, before);

    verdict_set(&v, VERDICT_VALID, 0, NULL, NULL);
    cr_assert_str_eq(v.source, "-");
    cr_assert_str_eq(v.text, "");

    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    verdict_set(&v, VERDICT_VALID, 0, big, big);
    cr_assert_eq(strlen(v.source), VERDICT_SOURCE_MAX - 1);
    cr_assert_eq(strlen(v.text), VERDICT_TEXT_MAX - 1);
}

Test(verdict, format_example)
{
    struct verdict v;
    char buf[512];
    verdict_set(&v, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");
    v.when = 1732458000;
    int n = verdict_format(&v, buf, sizeof(buf));
    cr_assert_str_eq(buf, "invalid 550 1732458000 cdb 5.1.1 User unknown");
    cr_assert_eq(n, (int)strlen(buf));

    verdict_set(&v, VERDICT_VALID, 0, "cache-l1", "");
    v.when = 0;
    verdict_format(&v, buf, sizeof(buf));
    cr_assert_str_eq(buf, "valid 0 0 cache-l1");
}

Test(verdict, format_too_small_and_bad_kind)
{
    struct verdict v;
    char buf[10];
    verdict_set(&v, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");
    cr_assert_eq(verdict_format(&v, buf, sizeof(buf)), -1);
    v.kind = (enum verdict_kind)9;
    char big[512];
    cr_assert_eq(verdict_format(&v, big, sizeof(big)), -1);
}

Test(verdict, format_fixes_hand_filled_struct)
{
    struct verdict v;
    char buf[1024];
    memset(&v, 'A', sizeof(v)); /* no NUL anywhere in source or text */
    v.kind = VERDICT_TEMPFAIL;
    v.code = 99999;
    v.when = -5;
    v.source[3] = ' ';
    int n = verdict_format(&v, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    struct verdict back;
    cr_assert_eq(verdict_parse(buf, (size_t)n, &back), 0, "%s", buf);
    cr_assert_eq(back.code, 0);
    cr_assert_eq(back.when, 0);
    cr_assert_eq(back.source[3], '_');
}

Test(verdict, round_trip_every_kind)
{
    for (int k = 0; k < VERDICT_KIND_COUNT; k++) {
        struct verdict v, back;
        char buf[512];
        verdict_set(&v, (enum verdict_kind)k, k == 2 ? 550 : (k == 3 ? 451 : 0),
                    "smtp:[mx.example.org]:25", k == 0 ? NULL : "4.4.1 some  text\there");
        int n = verdict_format(&v, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        memset(&back, 0x55, sizeof(back));
        cr_assert_eq(verdict_parse(buf, (size_t)n, &back), 0, "%s", buf);
        cr_assert_eq(back.kind, v.kind);
        cr_assert_eq(back.code, v.code);
        cr_assert_eq(back.when, v.when);
        cr_assert_str_eq(back.source, v.source);
        cr_assert_str_eq(back.text, v.text);
    }
}

Test(verdict, round_trip_max_lengths)
{
    struct verdict v, back;
    char buf[1024];
    char src[VERDICT_SOURCE_MAX + 10], txt[VERDICT_TEXT_MAX + 10];
    memset(src, 's', sizeof(src) - 1);
    src[sizeof(src) - 1] = '\0';
    memset(txt, 't', sizeof(txt) - 1);
    txt[sizeof(txt) - 1] = '\0';
    verdict_set(&v, VERDICT_TEMPFAIL, 599, src, txt);
    int n = verdict_format(&v, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq(verdict_parse(buf, (size_t)n, &back), 0);
    cr_assert_str_eq(back.source, v.source);
    cr_assert_str_eq(back.text, v.text);
}

Test(verdict, parse_good)
{
    struct verdict v;
    cr_assert_eq(parse_str("invalid 550 1732458000 cdb 5.1.1 User unknown", &v), 0);
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    cr_assert_eq(v.when, 1732458000);
    cr_assert_str_eq(v.source, "cdb");
    cr_assert_str_eq(v.text, "5.1.1 User unknown");

    cr_assert_eq(parse_str("valid 0 0 cache-redis", &v), 0);
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "");
    cr_assert_eq(parse_str("tempfail 200 1 x ", &v), 0);
    cr_assert_eq(parse_str("unknown 599 9223372036854775807 x y", &v), 0);
    cr_assert_eq(v.when, (time_t)9223372036854775807LL);
}

Test(verdict, parse_not_nul_terminated)
{
    struct verdict v;
    /* the buffer continues past len with junk: it must not be read */
    const char buf[] = "valid 0 17 cdb OKGARBAGE\x01\x02";
    cr_assert_eq(verdict_parse(buf, 16, &v), 0);
    cr_assert_str_eq(v.text, "O");
    cr_assert_eq(verdict_parse(buf, 5, &v), -1);
}

Test(verdict, parse_hostile_leaves_out_untouched)
{
    static const char *const bad[] = {
        "",
        "valid",
        "valid ",
        "valid 0",
        "valid 0 ",
        "valid 0 0",
        "valid 0 0 ",
        "Valid 0 0 cdb",
        "bogus 0 0 cdb",
        "valid  0 0 cdb",
        "valid 00 0 cdb",
        "valid 100 0 cdb",
        "valid 199 0 cdb",
        "valid 600 0 cdb",
        "valid 5500 0 cdb",
        "valid -550 0 cdb",
        "valid +550 0 cdb",
        "valid 55a 0 cdb",
        "valid 550 -1 cdb",
        "valid 550 01 cdb",
        "valid 550 99999999999999999999 cdb",
        "valid 550 9223372036854775808 cdb",
        "valid 550 184467440737095516160 cdb",
        "valid 550 1e9 cdb",
        "valid 550 0x10 cdb",
        "valid 550 12 cdb\ttext",
        "valid 550 12 cdb text\r\nSET x y",
        "valid 550 12 cdb text\x7f",
        "valid 550 12 cdb text\xc3\xa9",
        " valid 0 0 cdb",
        "valid\t0 0 cdb",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct verdict v;
        memset(&v, 0x5a, sizeof(v));
        cr_assert_eq(parse_str(bad[i], &v), -1, "accepted: \"%s\"", bad[i]);
        for (size_t j = 0; j < sizeof(v); j++)
            cr_assert_eq(((unsigned char *)&v)[j], 0x5a, "out touched by \"%s\"", bad[i]);
    }
}

Test(verdict, parse_nul_inside)
{
    struct verdict v;
    const char a[] = "valid 0 0 cdb te\0xt";
    cr_assert_eq(verdict_parse(a, sizeof(a) - 1, &v), -1);
    const char b[] = "valid 0 0 c\0db";
    cr_assert_eq(verdict_parse(b, sizeof(b) - 1, &v), -1);
    const char c[] = "valid 0\0 0 cdb";
    cr_assert_eq(verdict_parse(c, sizeof(c) - 1, &v), -1);
}

Test(verdict, parse_oversized_fields)
{
    struct verdict v;
    char buf[2048];
    int n = snprintf(buf, sizeof(buf), "valid 0 0 ");
    memset(buf + n, 's', VERDICT_SOURCE_MAX);
    cr_assert_eq(verdict_parse(buf, (size_t)n + VERDICT_SOURCE_MAX, &v), -1);
    cr_assert_eq(verdict_parse(buf, (size_t)n + VERDICT_SOURCE_MAX - 1, &v), 0);

    n = snprintf(buf, sizeof(buf), "valid 0 0 cdb ");
    memset(buf + n, 't', VERDICT_TEXT_MAX);
    cr_assert_eq(verdict_parse(buf, (size_t)n + VERDICT_TEXT_MAX, &v), -1);
    cr_assert_eq(verdict_parse(buf, (size_t)n + VERDICT_TEXT_MAX - 1, &v), 0);
    cr_assert_eq(strlen(v.text), VERDICT_TEXT_MAX - 1);

    cr_assert_eq(verdict_parse(NULL, 5, &v), -1);
}

/* flags travel through the cache form; entries without them parse as before */
Test(verdict, flags_round_trip_and_old_entries_parse)
{
    struct verdict v, back;
    char buf[512];

    verdict_set(&v, VERDICT_INVALID, 550, "smtp:[10.1.2.3]:25", "5.1.1 User unknown");
    v.when = 1732458000;
    v.flags = VERDICT_REMOTE_TEXT;
    int n = verdict_format(&v, buf, sizeof(buf));
    cr_assert_str_eq(buf, "invalid 550/r 1732458000 smtp:[10.1.2.3]:25 5.1.1 User unknown");
    cr_assert_eq(verdict_parse(buf, (size_t)n, &back), 0);
    cr_assert_eq(back.flags, VERDICT_REMOTE_TEXT);
    cr_assert_eq(back.code, 550);

    v.kind = VERDICT_TEMPFAIL;
    v.code = 0;
    v.flags = VERDICT_OWN_TEXT | VERDICT_DEST_FAILURE;
    n = verdict_format(&v, buf, sizeof(buf));
    cr_assert_eq(strncmp(buf, "tempfail 0/od ", 14), 0, "%s", buf);
    cr_assert_eq(verdict_parse(buf, (size_t)n, &back), 0);
    cr_assert_eq(back.flags, VERDICT_OWN_TEXT | VERDICT_DEST_FAILURE);

    /* no flags: the old form exactly, and old entries parse with no flags */
    v.flags = 0;
    verdict_format(&v, buf, sizeof(buf));
    cr_assert_eq(strncmp(buf, "tempfail 0 1732458000 ", 22), 0, "%s", buf);
    cr_assert_eq(parse_str("invalid 550 1732458000 cdb 5.1.1 User unknown", &back), 0);
    cr_assert_eq(back.flags, 0);

    /* flags of a later version are ignored; anything else in the field is malformed */
    cr_assert_eq(parse_str("valid 250/rz 1732458000 smtp ok", &back), 0);
    cr_assert_eq(back.flags, VERDICT_REMOTE_TEXT);
    cr_assert_eq(parse_str("valid 250/ 1732458000 smtp ok", &back), -1);
    cr_assert_eq(parse_str("valid 250/R 1732458000 smtp ok", &back), -1);
    cr_assert_eq(parse_str("valid 250/r/r 1732458000 smtp ok", &back), -1);
    cr_assert_eq(parse_str("valid 250/abcdefghi 1732458000 smtp ok", &back), -1);
    cr_assert_eq(parse_str("valid /r 1732458000 smtp ok", &back), -1);
}
