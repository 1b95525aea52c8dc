/*
 * test_milter_reply.c - policyd's action line to a milter verdict and reply:
 * the Postfix-compatible text, the rules libmilter enforces (code class
 * matches the status, enhanced status class matches the code, '%' doubled,
 * no CR/LF) and hostile actions and recipients.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "milter_reply.h"

/* one_line_and_escaped - no control byte, every '%' doubled, bounded */
static void one_line_and_escaped(const struct milter_reply *r)
{
    size_t len = strlen(r->text);

    cr_assert_leq(len, MILTER_REPLY_MAX_TEXT);
    for (size_t i = 0; i < len; i++) {
        cr_assert((unsigned char)r->text[i] >= 0x20 && (unsigned char)r->text[i] < 0x7f,
                  "byte %zu of the reply is 0x%02x", i, (unsigned char)r->text[i]);
        if (r->text[i] == '%') {
            cr_assert(i + 1 < len && r->text[i + 1] == '%', "lone %% at %zu in [%s]", i, r->text);
            i++;
        }
    }
}

Test(milter_reply, reject_with_policyd_code_and_text)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("550 5.1.1 User unknown", "bob@example.test", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_REJECT);
    cr_assert_str_eq(r.rcode, "550");
    cr_assert_str_eq(r.xcode, "5.1.1");
    /* what Postfix's check_policy_service path shows the client */
    cr_assert_str_eq(r.text, "<bob@example.test>: Recipient address rejected: User unknown");
}

/* Sendmail writes "<bob@example.test>... " before a 5xx itself (not before a 4xx) */
Test(milter_reply, sendmail_names_the_address_itself)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("550 5.1.1 User unknown", "bob@b", 1, &r), 0);
    cr_assert_str_eq(r.text, "Recipient address rejected: User unknown");
    cr_assert_eq(milter_reply_from_action("DEFER_IF_PERMIT 4.1.1 later", "bob@b", 1, &r), 0);
    cr_assert_str_eq(r.text, "<bob@b>: Recipient address rejected: later");
}

Test(milter_reply, continue_keywords)
{
    const char *cont[] = {
        "DUNNO", "OK", "dunno", "DEFER_IF_REJECT 4.1.1 maybe", "WARN text", "PREPEND X-Foo: bar",
        "INFO x"};
    struct milter_reply r;

    for (size_t i = 0; i < sizeof(cont) / sizeof(cont[0]); i++) {
        cr_assert_eq(milter_reply_from_action(cont[i], "a@b", 0, &r), 0, "%s", cont[i]);
        cr_assert_eq(r.verdict, MILTER_CONTINUE, "%s", cont[i]);
        cr_assert_str_eq(r.rcode, "", "%s", cont[i]);
    }
}

Test(milter_reply, tempfail_forms)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("DEFER_IF_PERMIT 4.1.1 Recipient address verification "
                                          "failed: try again later",
                                          "x@broken.test", 0, &r),
                 0);
    cr_assert_eq(r.verdict, MILTER_TEMPFAIL);
    cr_assert_str_eq(r.rcode, "450");
    cr_assert_str_eq(r.xcode, "4.1.1");
    cr_assert_str_eq(r.text, "<x@broken.test>: Recipient address rejected: Recipient address "
                             "verification failed: try again later");

    cr_assert_eq(milter_reply_from_action("DEFER", "a@b", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_TEMPFAIL);
    cr_assert_str_eq(r.rcode, "450");
    cr_assert_str_eq(r.xcode, "4.7.1");
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: Service unavailable");

    cr_assert_eq(milter_reply_from_action("421 4.3.2 shutting down", "a@b", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_TEMPFAIL);
    cr_assert_str_eq(r.rcode, "421");
}

Test(milter_reply, bare_reject_as_postfix)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("REJECT", "a@b", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_REJECT);
    cr_assert_str_eq(r.rcode, "554");
    cr_assert_str_eq(r.xcode, "5.7.1");
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: Access denied");
    cr_assert_eq(milter_reply_from_action("reject  go away ", "a@b", 0, &r), 0);
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: go away");
}

/*
 * libmilter drops a reply whose enhanced status class differs from the code's:
 * such a status is text (as Postfix reads it) and the class's default is used
 */
Test(milter_reply, wrong_class_enhanced_status_is_text)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("550 4.1.1 odd", "a@b", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_REJECT);
    cr_assert_str_eq(r.xcode, "5.7.1");
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: 4.1.1 odd");
    cr_assert_eq(milter_reply_from_action("451 5.7.1 odd", "a@b", 0, &r), 0);
    cr_assert_eq(r.verdict, MILTER_TEMPFAIL);
    cr_assert_str_eq(r.xcode, "4.7.1");
    cr_assert_eq(milter_reply_from_action("DEFER_IF_PERMIT 5.1.1 odd", "a@b", 0, &r), 0);
    cr_assert_str_eq(r.rcode, "450");
    cr_assert_eq(r.xcode[0], '4');
    cr_assert_eq(milter_reply_from_action("REJECT 2.0.0 odd", "a@b", 0, &r), 0);
    cr_assert_eq(r.xcode[0], '5');
    /* not an enhanced status: part of the text, and the default status is used */
    cr_assert_eq(milter_reply_from_action("550 5.1 short", "a@b", 0, &r), 0);
    cr_assert_str_eq(r.xcode, "5.7.1");
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: 5.1 short");
}

Test(milter_reply, garbage_is_an_error)
{
    const char *bad[] = {"",          "   ",       "hello world", "250 2.0.0 ok", "354 go",
                         "5500 x",    "55 x",      "5x0 x",       "REJECTED x",   "DEFERX",
                         "action=OK", "\r\n550 x", "OKAY"};
    struct milter_reply r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(milter_reply_from_action(bad[i], "a@b", 0, &r), -1, "[%s]", bad[i]);
}

Test(milter_reply, percent_is_doubled)
{
    struct milter_reply r;

    cr_assert_eq(milter_reply_from_action("550 5.1.1 100% gone %s %n", "a%b@x", 0, &r), 0);
    cr_assert_str_eq(r.text, "<a%%b@x>: Recipient address rejected: 100%% gone %%s %%n");
    one_line_and_escaped(&r);
}

Test(milter_reply, no_cr_lf_or_control_bytes)
{
    struct milter_reply r;

    /* an action that would split the reply is refused as a whole */
    cr_assert_eq(milter_reply_from_action("550 5.1.1 a\r\n250 fake", "a@b", 0, &r), -1);
    cr_assert_eq(milter_reply_from_action("550 5.1.1 a\x01\xff", "a@b", 0, &r), -1);
    /* the recipient comes from the MTA: cleaned, never refused */
    cr_assert_eq(milter_reply_from_action("550 5.1.1 gone", "x\r\ny\x01@z\xff", 0, &r), 0);
    cr_assert_null(strpbrk(r.text, "\r\n"));
    one_line_and_escaped(&r);
}

Test(milter_reply, oversized_text_is_cut_without_a_lone_percent)
{
    static char action[1000], rcpt[4096];
    struct milter_reply r;

    memcpy(action, "550 5.1.1 ", 10);
    memset(action + 10, '%', sizeof(action) - 11);
    memset(rcpt, 'r', sizeof(rcpt) - 1);
    cr_assert_eq(milter_reply_from_action(action, rcpt, 0, &r), 0);
    one_line_and_escaped(&r);
    /* the recipient is cut at 256 bytes, so policyd's text still shows */
    cr_assert_not_null(strstr(r.text, ": Recipient address rejected: %%"));
}

Test(milter_reply, tempfail_helper)
{
    struct milter_reply r;

    milter_reply_tempfail(&r, "a@b", "50% unavailable");
    cr_assert_eq(r.verdict, MILTER_TEMPFAIL);
    cr_assert_str_eq(r.rcode, "451");
    cr_assert_str_eq(r.xcode, "4.3.0");
    cr_assert_str_eq(r.text, "<a@b>: Recipient address rejected: 50%% unavailable");
}
