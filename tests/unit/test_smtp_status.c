/*
 * test_smtp_status.c - what a RCPT reply means: every class of RFC 3463
 * status, replies without one, malformed ones, multi-line replies that
 * disagree, and the invalid_status= grammar. Replies go through the real
 * reply parser first, as they do in a callout.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"
#include "smtp_status.h"

static unsigned char all_5xx[100];
static struct smtp_status_set def;

static void setup(void)
{
    memset(all_5xx, 1, sizeof(all_5xx));
    cr_assert_eq(smtp_status_set_parse(SMTP_INVALID_STATUS_DEFAULT, &def), 0);
}

TestSuite(smtp_status, .init = setup);

/* classify_with - parse the raw reply text (CRLFs included) and classify it */
static enum smtp_rcpt_class classify_with(const char *raw, const unsigned char codes[100],
                                          const struct smtp_status_set *set)
{
    struct smtp_reply_parser *p = smtp_reply_parser_new();
    struct smtp_reply r;
    size_t used = 0;
    char err[128] = "";
    enum smtp_reply_status st;

    cr_assert_not_null(p);
    memset(&r, 0, sizeof(r));
    st = smtp_reply_parse(p, raw, strlen(raw), &used, &r, err, sizeof(err));
    smtp_reply_parser_free(p);
    cr_assert_eq(st, SMTP_REPLY_DONE, "reply %s did not parse: %s", raw, err);
    return smtp_rcpt_classify(&r, codes, set);
}

static enum smtp_rcpt_class classify(const char *raw)
{
    return classify_with(raw, all_5xx, &def);
}

#define assert_class(raw, want)                                                                    \
    do {                                                                                           \
        enum smtp_rcpt_class got_ = classify(raw);                                                 \
        cr_assert_eq(got_, (want), "%s: got %s, want %s", (raw), smtp_rcpt_class_name(got_),       \
                     smtp_rcpt_class_name(want));                                                  \
    } while (0)

Test(smtp_status, accepted)
{
    assert_class("250 2.1.5 Ok\r\n", SMTP_RCPT_ACCEPTED);
    assert_class("251 2.1.5 will forward\r\n", SMTP_RCPT_ACCEPTED);
    assert_class("250\r\n", SMTP_RCPT_ACCEPTED);
}

Test(smtp_status, recipient_does_not_exist)
{
    /* Postfix's genuine unknown user, and each default status */
    assert_class("550 5.1.1 <bob@dept.test>: Recipient address rejected: User unknown in local "
                 "recipient table\r\n",
                 SMTP_RCPT_NO_MAILBOX);
    assert_class("550 5.1.0 Address rejected\r\n", SMTP_RCPT_NO_MAILBOX);
    assert_class("550 5.1.2 bad destination system\r\n", SMTP_RCPT_NO_MAILBOX);
    assert_class("553 5.1.3 bad destination mailbox syntax\r\n", SMTP_RCPT_NO_MAILBOX);
    assert_class("551 5.1.6 mailbox has moved\r\n", SMTP_RCPT_NO_MAILBOX);
    assert_class("556 5.1.10 Recipient address has null MX\r\n", SMTP_RCPT_NO_MAILBOX);
    /* one multi-line reply repeating the same status is still clear */
    assert_class("550-5.1.1 The email account that you tried to reach does not exist.\r\n"
                 "550 5.1.1 https://support.example/ - gsmtp\r\n",
                 SMTP_RCPT_NO_MAILBOX);
}

Test(smtp_status, refusals_of_us_are_not_about_the_address)
{
    assert_class("554 5.7.1 <x@dept.test>: Relay access denied\r\n", SMTP_RCPT_REFUSED);
    assert_class("550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org\r\n",
                 SMTP_RCPT_REFUSED);
    assert_class("554 5.7.1 <probe.example>: Helo command rejected: Host not found\r\n",
                 SMTP_RCPT_REFUSED);
    /* the sender, not the recipient (X.1.7, X.1.8) */
    assert_class("553 5.1.8 <a@nx.example>: Sender address rejected: Domain not found\r\n",
                 SMTP_RCPT_REFUSED);
    assert_class("550 5.1.7 bad sender mailbox syntax\r\n", SMTP_RCPT_REFUSED);
    /* mail system, network/routing, protocol, content */
    assert_class("500 5.3.0 Error: command failed\r\n", SMTP_RCPT_REFUSED);
    assert_class("552 5.3.4 message too big for system\r\n", SMTP_RCPT_REFUSED);
    assert_class("554 5.4.6 routing loop detected\r\n", SMTP_RCPT_REFUSED);
    assert_class("552 5.5.3 too many recipients\r\n", SMTP_RCPT_REFUSED);
    assert_class("554 5.6.0 content rejected\r\n", SMTP_RCPT_REFUSED);
    assert_class("550 5.7.26 unauthenticated mail is prohibited\r\n", SMTP_RCPT_REFUSED);
}

Test(smtp_status, mailbox_exists_but_cannot_take_mail)
{
    assert_class("552 5.2.2 mailbox full\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("550 5.2.1 mailbox disabled\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("550 5.1.4 ambiguous address\r\n", SMTP_RCPT_NOT_NOW);
}

Test(smtp_status, temporary_replies_are_never_more)
{
    assert_class("450 4.1.1 <x>: Recipient address rejected: unverified address\r\n",
                 SMTP_RCPT_NOT_NOW);
    assert_class("451 4.7.1 greylisted, try again later\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("452 4.5.3 too many recipients\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("450\r\n", SMTP_RCPT_NOT_NOW);
}

Test(smtp_status, no_readable_status_is_bare)
{
    assert_class("550 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550\r\n", SMTP_RCPT_BARE);
    assert_class("554 <x@dept.test>: Relay access denied\r\n", SMTP_RCPT_BARE);
    /* malformed statuses are no status */
    assert_class("550 5.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.1. User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5..1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.1.1.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.1.1000 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.0001.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.1.1User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 +5.1.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.1.x User unknown\r\n", SMTP_RCPT_BARE);
    /* a status of another class than the code is not believed */
    assert_class("550 4.1.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 2.1.1 User unknown\r\n", SMTP_RCPT_BARE);
    /* well-formed but undefined: subject 0 ("other") or above 7 */
    assert_class("550 5.0.0 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.999.1 User unknown\r\n", SMTP_RCPT_BARE);
    assert_class("550 5.8.1 User unknown\r\n", SMTP_RCPT_BARE);
}

Test(smtp_status, lines_that_disagree_are_no_clear_answer)
{
    assert_class("550-5.1.1 User unknown\r\n550 5.7.1 and you are blocked\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("550-5.7.1 blocked\r\n550 5.1.1 User unknown\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("550-5.1.1 a\r\n550-5.1.1 b\r\n550 5.1.10 c\r\n", SMTP_RCPT_NOT_NOW);
    /* a status appearing only on a later line */
    assert_class("550-User unknown\r\n550 5.1.1 User unknown\r\n", SMTP_RCPT_NOT_NOW);
    assert_class("550-Go away\r\n550 5.7.1 blocked\r\n", SMTP_RCPT_NOT_NOW);
    /* a continuation without a status adds text only */
    assert_class("550-5.7.1 blocked\r\n550 see https://example/\r\n", SMTP_RCPT_REFUSED);
}

Test(smtp_status, codes_outside_invalid_codes)
{
    unsigned char only_550[100] = {0};

    only_550[50] = 1;
    cr_assert_eq(classify_with("553 5.1.3 bad syntax\r\n", only_550, &def), SMTP_RCPT_NOT_NOW);
    cr_assert_eq(classify_with("554 User unknown\r\n", only_550, &def), SMTP_RCPT_NOT_NOW);
    cr_assert_eq(classify_with("550 5.1.1 no such user\r\n", only_550, &def), SMTP_RCPT_NO_MAILBOX);
    /* a refusal stays a refusal whatever invalid_codes says */
    cr_assert_eq(classify_with("554 5.7.1 Relay access denied\r\n", only_550, &def),
                 SMTP_RCPT_REFUSED);
}

Test(smtp_status, unexpected_codes)
{
    assert_class("354 go ahead\r\n", SMTP_RCPT_UNEXPECTED);
    assert_class("220 hello again\r\n", SMTP_RCPT_UNEXPECTED);
    assert_class("252 cannot verify\r\n", SMTP_RCPT_UNEXPECTED);
}

Test(smtp_status, configured_sets)
{
    struct smtp_status_set set;

    /* only 5.1.1 means invalid: 5.1.0 is then a not-now */
    cr_assert_eq(smtp_status_set_parse("5.1.1", &set), 0);
    cr_assert_eq(classify_with("550 5.1.1 unknown\r\n", all_5xx, &set), SMTP_RCPT_NO_MAILBOX);
    cr_assert_eq(classify_with("550 5.1.0 unknown\r\n", all_5xx, &set), SMTP_RCPT_NOT_NOW);
    /* wildcards; an operator may even decide that 5.2.1 (disabled) is invalid */
    cr_assert_eq(smtp_status_set_parse("5.1.x,5.2.1", &set), 0);
    cr_assert_eq(set.n, 2);
    cr_assert_eq(classify_with("550 5.1.4 ambiguous\r\n", all_5xx, &set), SMTP_RCPT_NO_MAILBOX);
    cr_assert_eq(classify_with("550 5.2.1 disabled\r\n", all_5xx, &set), SMTP_RCPT_NO_MAILBOX);
    cr_assert_eq(classify_with("552 5.2.2 full\r\n", all_5xx, &set), SMTP_RCPT_NOT_NOW);
    cr_assert_eq(smtp_status_set_parse("5.x.x", &set), 0);
    cr_assert_eq(classify_with("554 5.7.1 denied\r\n", all_5xx, &set), SMTP_RCPT_NO_MAILBOX,
                 "what the operator asked for");
}

Test(smtp_status, set_grammar_is_strict)
{
    static const char *const bad[] = {
        "",       "5.1",      "5.1.",     "5.1.1,",  ",5.1.1", "5.1.1,,5.1.2", "4.1.1",
        "2.1.5",  "5.1.1000", "5.1000.1", "5.1.1 ",  " 5.1.1", "5.1.-1",       "5.1.1x",
        "5.xx.1", "5.1.y",    "x.1.1",    "5.1.1.1", "5;1;1",  "55.1.1",       "5.1.1\n",
    };
    struct smtp_status_set set;
    char many[512] = "";

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(smtp_status_set_parse(bad[i], &set), -1, "accepted \"%s\"", bad[i]);
    for (int i = 0; i <= SMTP_STATUS_SET_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s5.1.%d", i ? "," : "", i);
    cr_assert_eq(smtp_status_set_parse(many, &set), -1, "more than %d items", SMTP_STATUS_SET_MAX);
    cr_assert_eq(smtp_status_set_parse(SMTP_INVALID_STATUS_DEFAULT, &set), 0);
    cr_assert_eq(set.n, 6);
}

Test(smtp_status, status_parse_is_strict)
{
    struct smtp_status st = {0, 0, 0};

    cr_assert_eq(smtp_status_parse("5.1.10", &st), 0);
    cr_assert_eq(st.cls, 5);
    cr_assert_eq(st.subject, 1);
    cr_assert_eq(st.detail, 10);
    cr_assert_eq(smtp_status_parse("4.999.999", &st), 0);
    cr_assert_eq(smtp_status_parse("3.1.1", &st), -1);
    cr_assert_eq(smtp_status_parse("5.1", &st), -1);
    cr_assert_eq(smtp_status_parse("5.1.1 ", &st), -1);
    cr_assert_eq(smtp_status_parse("", &st), -1);
    cr_assert_eq(smtp_status_parse(NULL, &st), -1);
}

Test(smtp_status, class_names)
{
    cr_assert_str_eq(smtp_rcpt_class_name(SMTP_RCPT_REFUSED), "refused");
    cr_assert_str_eq(smtp_rcpt_class_name((enum smtp_rcpt_class)99), "invalid");
}
