/*
 * test_reply_policy.c - the answer to each verdict under each reply option:
 * template choice, fail_open, dry_run, what a next hop's text may show, and
 * the decomposed reply a milter would send.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "reply_policy.h"

/* the shipped defaults (policyd/config.c) */
static struct reply_policy defaults(void)
{
    struct reply_policy p;

    memset(&p, 0, sizeof(p));
    p.action[VERDICT_VALID] = "DUNNO";
    p.action[VERDICT_INVALID] = "550 5.1.1 %r";
    p.action[VERDICT_TEMPFAIL] = "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: %r";
    p.action[VERDICT_UNKNOWN] = "DUNNO";
    p.action_malformed = "DUNNO";
    return p;
}

/*
 * flags_of - the flags the verifier and the backends give verdicts of these
 * sources: a callout's are a remote party's words, the verifier's and the
 * breaker's are worded for clients (reply_policy reads only the flags)
 */
static unsigned flags_of(const char *source)
{
    if (strncmp(source, "smtp", 4) == 0)
        return VERDICT_REMOTE_TEXT;
    if (strcmp(source, "verifier") == 0 || strcmp(source, "breaker") == 0)
        return VERDICT_OWN_TEXT;
    return 0;
}

static struct reply decide(const struct reply_policy *p, enum verdict_kind kind, int code,
                           const char *source, const char *text)
{
    struct verdict v;
    struct reply r;

    verdict_set(&v, kind, code, source, text);
    v.flags = flags_of(source);
    reply_policy_decide(p, &v, false, "bob@example.test", &r);
    return r;
}

Test(reply_policy, each_kind_has_its_template)
{
    struct reply_policy p = defaults();
    struct reply r = decide(&p, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");

    cr_assert_str_eq(r.action, "550 5.1.1 User unknown");
    cr_assert_str_eq(r.decided, r.action);
    cr_assert(r.rejects);
    cr_assert(!r.dry_run);
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_REJECT);
    cr_assert_eq(r.parsed.code, 550);
    cr_assert_str_eq(r.parsed.dsn, "5.1.1");
    cr_assert_str_eq(r.parsed.text, "User unknown");

    r = decide(&p, VERDICT_VALID, 0, "cdb", "OK");
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert(!r.rejects);
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_CONTINUE);

    r = decide(&p, VERDICT_UNKNOWN, 0, "route", "no route");
    cr_assert_str_eq(r.action, "DUNNO");

    r = decide(&p, VERDICT_TEMPFAIL, 0, "verifier", "verification in progress, try again later");
    cr_assert_str_eq(r.action, "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: "
                               "verification in progress, try again later");
    cr_assert(r.rejects);
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_TEMPFAIL);
    cr_assert_eq(r.parsed.code, 450);
    cr_assert_str_eq(r.parsed.keyword, "DEFER_IF_PERMIT");
    cr_assert_str_eq(r.parsed.dsn, "4.1.1");
}

Test(reply_policy, malformed_has_its_own_template)
{
    struct reply_policy p = defaults();
    struct verdict v;
    struct reply r;

    p.action_malformed = "501 5.1.3 <%a>: %r";
    verdict_set(&v, VERDICT_UNKNOWN, 0, "verifier", "5.1.3 bad address syntax");
    reply_policy_decide(&p, &v, true, "not an address", &r);
    cr_assert_str_eq(r.action, "501 5.1.3 <not an address>: bad address syntax");
    cr_assert_eq(r.parsed.code, 501);
    reply_policy_decide(&p, NULL, true, "x\r\ny", &r);
    cr_assert_str_eq(r.action, "501 5.1.3 <x y>: ");
}

Test(reply_policy, fail_open_answers_tempfail_as_valid)
{
    struct reply_policy p = defaults();
    p.fail_open = true;
    struct reply r = decide(&p, VERDICT_TEMPFAIL, 0, "smtp:[mx.example.test]:25", "connect failed");
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert(!r.rejects);
    /* fail_open is about "cannot tell": an unknown address is still refused */
    r = decide(&p, VERDICT_INVALID, 550, "smtp:[mx.example.test]:25", "5.1.1 no such user");
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_REJECT);
    p.action[VERDICT_VALID] = "OK";
    r = decide(&p, VERDICT_TEMPFAIL, 0, "breaker", "4.4.1 next hop unavailable");
    cr_assert_str_eq(r.action, "OK");
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_ACCEPT);
}

Test(reply_policy, dry_run_answers_dunno_and_keeps_the_decision)
{
    struct reply_policy p = defaults();
    p.dry_run = true;
    struct reply r = decide(&p, VERDICT_INVALID, 550, "cdb", "5.1.1 User unknown");
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert_str_eq(r.decided, "550 5.1.1 User unknown");
    cr_assert(r.rejects);
    cr_assert(r.dry_run);
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_CONTINUE);

    r = decide(&p, VERDICT_TEMPFAIL, 0, "verifier", "try again");
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert(r.dry_run);

    /* nothing refused: nothing for dry_run to change */
    r = decide(&p, VERDICT_VALID, 0, "cdb", "OK");
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert(!r.dry_run);
    p.action[VERDICT_VALID] = "PREPEND X-Verified: yes";
    r = decide(&p, VERDICT_VALID, 0, "cdb", "OK");
    cr_assert_str_eq(r.action, "PREPEND X-Verified: yes");
    cr_assert(!r.dry_run);

    /* any refusal spelling counts: keywords are case-insensitive, as Postfix reads them */
    const char *refusals[] = {
        "REJECT %r",         "reject %r",    "DEFER try later", "defer_if_permit x",
        "DEFER_IF_REJECT x", "554 5.7.1 %r", "450 %r"};
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        p.action[VERDICT_INVALID] = refusals[i];
        r = decide(&p, VERDICT_INVALID, 550, "cdb", "no");
        cr_assert_str_eq(r.action, "DUNNO", "%s", refusals[i]);
        cr_assert(r.dry_run, "%s", refusals[i]);
    }
}

Test(reply_policy, next_hop_text_is_hidden_by_default)
{
    struct reply_policy p = defaults();
    p.action[VERDICT_INVALID] = "550 5.1.1 %r (%s)";
    struct reply r =
        decide(&p, VERDICT_INVALID, 550, "smtp:[10.1.2.3]:25", "5.1.1 mx7.internal says no");
    cr_assert_str_eq(r.action, "550 5.1.1 User unknown (smtp)");
    p.next_hop_text = true;
    r = decide(&p, VERDICT_INVALID, 550, "smtp:[10.1.2.3]:25", "5.1.1 mx7.internal says no");
    cr_assert_str_eq(r.action, "550 5.1.1 mx7.internal says no (smtp:[10.1.2.3]:25)");

    /* a local failure's text (a path) is for the log; a table's own REJECT text is not */
    p.next_hop_text = false;
    r = decide(&p, VERDICT_TEMPFAIL, 0, "cdb", "/etc/callahead/x.cdb: No such file");
    cr_assert_str_eq(r.action, "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: "
                               "try again later");
    r = decide(&p, VERDICT_INVALID, 550, "cdb", "5.2.1 Mailbox disabled");
    cr_assert_str_eq(r.action, "550 5.2.1 Mailbox disabled (cdb)");
    r = decide(&p, VERDICT_TEMPFAIL, 0, "breaker", "4.4.1 next hop unavailable");
    cr_assert_str_eq(r.action,
                     "DEFER_IF_PERMIT 4.4.1 Recipient address verification failed: next hop "
                     "unavailable");
}

Test(reply_policy, text_is_public)
{
    struct verdict v;
    bool hop = false;

    verdict_set(&v, VERDICT_INVALID, 550, "smtp:mx", "x");
    v.flags = VERDICT_REMOTE_TEXT;
    cr_assert(!reply_text_is_public(&v, false, &hop));
    cr_assert(hop);
    cr_assert(reply_text_is_public(&v, true, NULL));
    verdict_set(&v, VERDICT_TEMPFAIL, 0, "cdb", "x");
    cr_assert(!reply_text_is_public(&v, true, &hop));
    cr_assert(!hop);
    verdict_set(&v, VERDICT_TEMPFAIL, 0, "verifier", "x");
    v.flags = VERDICT_OWN_TEXT;
    cr_assert(reply_text_is_public(&v, false, NULL));
    verdict_set(&v, VERDICT_VALID, 0, "cache-redis", "x");
    cr_assert(reply_text_is_public(&v, false, NULL));
}

Test(reply_policy, internal_error)
{
    struct reply_policy p = defaults();
    struct reply r;

    reply_policy_internal_error(&p, &r);
    cr_assert_str_eq(r.action, "DEFER_IF_PERMIT 4.3.0 Server out of memory");
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_TEMPFAIL);
    p.fail_open = true;
    p.dry_run = true;
    reply_policy_internal_error(&p, &r);
    cr_assert_str_eq(r.action, "DUNNO");
}

/* the decision follows the flags, whatever the source string says */
Test(reply_policy, origin_comes_from_flags_not_source)
{
    struct reply_policy p = defaults();
    struct verdict v;
    struct reply r;
    bool hop = true;

    p.action[VERDICT_INVALID] = "550 5.1.1 %r (%s)";
    /* a directory's answer that is a remote party's words: hidden, source cut to the method */
    verdict_set(&v, VERDICT_INVALID, 0, "ldap:corp", "5.1.1 dn=uid=x,ou=people says no");
    v.flags = VERDICT_REMOTE_TEXT;
    reply_policy_decide(&p, &v, false, "bob@example.test", &r);
    cr_assert_str_eq(r.action, "550 5.1.1 User unknown (ldap)");
    /* a source named smtp whose text is not marked remote is not hidden */
    verdict_set(&v, VERDICT_INVALID, 550, "smtp:[10.1.2.3]:25", "5.1.1 moved away");
    cr_assert(reply_text_is_public(&v, false, &hop));
    cr_assert(!hop);
    /* a tempfail we worded, from any source, is shown; unmarked, it is not */
    verdict_set(&v, VERDICT_TEMPFAIL, 0, "route", "4.3.2 too many verifications in progress");
    cr_assert(!reply_text_is_public(&v, false, NULL));
    v.flags = VERDICT_OWN_TEXT;
    cr_assert(reply_text_is_public(&v, false, NULL));
}

/* a struct reply reused for the next answer (as callers' stack slots are) carries nothing over */
Test(reply_policy, reused_reply_carries_nothing_over)
{
    struct reply_policy p = defaults();
    struct reply r;
    struct verdict v;

    memset(&r, 0x5a, sizeof(r));
    verdict_set(&v, VERDICT_INVALID, 550, "cdb", "5.1.2 no such domain");
    reply_policy_decide(&p, &v, false, "bob@example.test", &r);
    cr_assert_str_eq(r.action, "550 5.1.2 no such domain");
    cr_assert_str_eq(r.parsed.dsn, "5.1.2");
    cr_assert(r.rejects && !r.dry_run);
    verdict_set(&v, VERDICT_VALID, 250, "cdb", "");
    reply_policy_decide(&p, &v, false, "bob@example.test", &r);
    cr_assert_str_eq(r.action, "DUNNO");
    cr_assert_str_eq(r.decided, "DUNNO");
    cr_assert_eq(r.parsed.cls, REPLY_CLASS_CONTINUE);
    cr_assert_str_eq(r.parsed.keyword, "DUNNO");
    cr_assert_str_eq(r.parsed.dsn, "");
    cr_assert_str_eq(r.parsed.text, "");
    cr_assert(!r.rejects && !r.dry_run);
    reply_policy_internal_error(&p, &r);
    cr_assert_str_eq(r.action, "DEFER_IF_PERMIT 4.3.0 Server out of memory");
    cr_assert(r.rejects && !r.dry_run);
    cr_assert_str_eq(r.parsed.dsn, "4.3.0");
}
