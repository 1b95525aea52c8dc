/*
 * test_policy_proto.c - the policy request parser and reply formatter, with a
 * real Postfix 3.7 request and the hostile inputs a client can send.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_proto.h"

static const struct policy_limits lim = {
    .max_line = 4096, .max_attributes = 100, .max_request = 65536};

/* feed - add the LF-separated lines of text until END or ERROR; returns the last status */
static enum policy_line_status feed(struct policy_request *r, const char *text, size_t len,
                                    const struct policy_limits *l, char *err, size_t errlen)
{
    const char *p = text, *end = text + len;
    enum policy_line_status st = POLICY_LINE_MORE;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        st = policy_request_add_line(r, p, n, l, err, errlen);
        if (st != POLICY_LINE_MORE)
            return st;
        p = nl ? nl + 1 : end;
    }
    return st;
}

static enum policy_line_status feed_str(struct policy_request *r, const char *text, char *err,
                                        size_t errlen)
{
    return feed(r, text, strlen(text), &lim, err, errlen);
}

/* what Postfix 3.7 sends at RCPT TO (SMTPD_POLICY_README) */
static const char postfix37[] = "request=smtpd_access_policy\n"
                                "protocol_state=RCPT\n"
                                "protocol_name=ESMTP\n"
                                "client_address=192.0.2.10\n"
                                "client_name=mail.example.net\n"
                                "client_port=41234\n"
                                "reverse_client_name=mail.example.net\n"
                                "server_address=192.0.2.1\n"
                                "server_port=25\n"
                                "helo_name=mail.example.net\n"
                                "sender=alice@example.net\n"
                                "recipient=bob@example.org\n"
                                "recipient_count=0\n"
                                "queue_id=\n"
                                "instance=123.456.7\n"
                                "size=12345\n"
                                "etrn_domain=\n"
                                "stress=\n"
                                "sasl_method=\n"
                                "sasl_username=\n"
                                "sasl_sender=\n"
                                "ccert_subject=\n"
                                "ccert_issuer=\n"
                                "ccert_fingerprint=\n"
                                "ccert_pubkey_fingerprint=\n"
                                "encryption_protocol=TLSv1.3\n"
                                "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
                                "encryption_keysize=256\n"
                                "policy_context=\n"
                                "compatibility_level=3.6\n"
                                "mail_version=3.7.11\n"
                                "\n";

Test(policy_proto, postfix37_request)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, postfix37, err, sizeof(err)), POLICY_LINE_END, "%s", err);
    cr_assert_str_eq(r.request, "smtpd_access_policy");
    cr_assert_str_eq(r.protocol_state, "RCPT");
    cr_assert_str_eq(r.protocol_name, "ESMTP");
    cr_assert_str_eq(r.recipient, "bob@example.org");
    cr_assert_str_eq(r.sender, "alice@example.net");
    cr_assert_str_eq(r.client_address, "192.0.2.10");
    cr_assert_str_eq(r.client_name, "mail.example.net");
    cr_assert_str_eq(r.helo_name, "mail.example.net");
    cr_assert_str_eq(r.queue_id, "");
    cr_assert_str_eq(r.instance, "123.456.7");
    cr_assert_eq(r.nattributes, 31);
    cr_assert_eq(r.size, sizeof(postfix37) - 1);
    policy_request_reset(&r);
}

Test(policy_proto, crlf_lines)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(
        feed_str(&r, "request=smtpd_access_policy\r\nrecipient=a@b\r\n\r\n", err, sizeof(err)),
        POLICY_LINE_END, "%s", err);
    cr_assert_str_eq(r.request, "smtpd_access_policy");
    cr_assert_str_eq(r.recipient, "a@b");
    policy_request_reset(&r);
}

Test(policy_proto, long_line_is_error)
{
    struct policy_request r;
    char err[128] = "";
    size_t n = 64 * 1024;
    char *line = malloc(n);

    cr_assert_not_null(line);
    memset(line, 'x', n);
    memcpy(line, "recipient=", 10);
    policy_request_init(&r);
    cr_assert_eq(policy_request_add_line(&r, line, n, &lim, err, sizeof(err)), POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "line too long");
    cr_assert_null(strchr(err, 'x'), "no input bytes in the message: %s", err);
    /* exactly max_line is fine, one more is not */
    policy_request_reset(&r);
    cr_assert_eq(policy_request_add_line(&r, line, lim.max_line, &lim, err, sizeof(err)),
                 POLICY_LINE_MORE);
    policy_request_reset(&r);
    cr_assert_eq(policy_request_add_line(&r, line, lim.max_line + 1, &lim, err, sizeof(err)),
                 POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "line too long");
    policy_request_reset(&r);
    free(line);
}

Test(policy_proto, nul_byte_is_error)
{
    struct policy_request r;
    char err[128] = "";
    const char line[] = "recipient=a\0b@example.org";

    policy_request_init(&r);
    cr_assert_eq(policy_request_add_line(&r, line, sizeof(line) - 1, &lim, err, sizeof(err)),
                 POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "NUL byte in request");
    cr_assert_null(r.recipient);
    policy_request_reset(&r);
}

Test(policy_proto, too_many_attributes)
{
    struct policy_request r;
    char err[128] = "";
    char line[64];
    enum policy_line_status st = POLICY_LINE_MORE;
    int i;

    policy_request_init(&r);
    for (i = 0; i < 10000; i++) {
        int n = snprintf(line, sizeof(line), "x%d=y", i);
        st = policy_request_add_line(&r, line, (size_t)n, &lim, err, sizeof(err));
        if (st != POLICY_LINE_MORE)
            break;
    }
    cr_assert_eq(st, POLICY_LINE_ERROR);
    cr_assert_eq(i, lim.max_attributes, "failed at %d", i);
    cr_assert_str_eq(err, "too many attributes");
    policy_request_reset(&r);
}

Test(policy_proto, request_too_large)
{
    struct policy_request r;
    char err[128] = "";
    struct policy_limits small = {.max_line = 4096, .max_attributes = 1000, .max_request = 8192};
    char line[1001];
    enum policy_line_status st = POLICY_LINE_MORE;
    int i;

    memset(line, 'v', sizeof(line));
    line[0] = 'a';
    line[1] = '=';
    policy_request_init(&r);
    for (i = 0; i < 100; i++) {
        st = policy_request_add_line(&r, line, sizeof(line), &small, err, sizeof(err));
        if (st != POLICY_LINE_MORE)
            break;
    }
    cr_assert_eq(st, POLICY_LINE_ERROR);
    cr_assert_eq(i, 8, "8 lines of 1002 bytes fit in 8192, the 9th does not (i=%d)", i);
    cr_assert_str_eq(err, "request too large");
    cr_assert_leq(r.size, small.max_request);
    policy_request_reset(&r);
}

Test(policy_proto, missing_equals)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "recipient\n\n", err, sizeof(err)), POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "attribute without '='");
    policy_request_reset(&r);
}

Test(policy_proto, empty_name)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "=value\n\n", err, sizeof(err)), POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "attribute with empty name");
    policy_request_reset(&r);
}

Test(policy_proto, empty_line_first)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(policy_request_add_line(&r, "", 0, &lim, err, sizeof(err)), POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "empty request");
    policy_request_reset(&r);
    /* a bare CR is an empty line too */
    cr_assert_eq(policy_request_add_line(&r, "\r", 1, &lim, err, sizeof(err)), POLICY_LINE_ERROR);
    policy_request_reset(&r);
}

Test(policy_proto, duplicate_recipient)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "recipient=a@b\nrecipient=c@d\n\n", err, sizeof(err)),
                 POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "duplicate attribute recipient");
    cr_assert_str_eq(r.recipient, "a@b", "the first value is kept, the second not taken");
    policy_request_reset(&r);
    cr_assert_null(r.recipient);
}

Test(policy_proto, duplicate_unused_attribute_is_fine)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(
        feed_str(&r, "ccert_subject=a\nccert_subject=b\nrecipient=x@y\n\n", err, sizeof(err)),
        POLICY_LINE_END, "%s", err);
    cr_assert_eq(r.nattributes, 3);
    policy_request_reset(&r);
}

Test(policy_proto, value_with_equals)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "a=b=c\nrecipient=x=y@z\n\n", err, sizeof(err)), POLICY_LINE_END);
    cr_assert_str_eq(r.recipient, "x=y@z");
    policy_request_reset(&r);
    cr_assert_eq(feed_str(&r, "sender=b=c\n\n", err, sizeof(err)), POLICY_LINE_END);
    cr_assert_str_eq(r.sender, "b=c");
    policy_request_reset(&r);
}

Test(policy_proto, empty_values)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "sender=\nrecipient=\n\n", err, sizeof(err)), POLICY_LINE_END);
    cr_assert_not_null(r.sender);
    cr_assert_str_eq(r.sender, "");
    cr_assert_str_eq(r.recipient, "");
    cr_assert_null(r.helo_name, "not sent: stays NULL");
    policy_request_reset(&r);
}

Test(policy_proto, unknown_attributes_counted)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "future_thing=1\nrecipientx=a\nrecipient=b@c\n\n", err, sizeof(err)),
                 POLICY_LINE_END);
    cr_assert_eq(r.nattributes, 3);
    cr_assert_str_eq(r.recipient, "b@c");
    policy_request_reset(&r);
}

Test(policy_proto, hostile_bytes_in_value_kept_raw)
{
    struct policy_request r;
    char err[128] = "";
    const char line[] = "recipient=\x01\xff<action=REJECT>";

    policy_request_init(&r);
    cr_assert_eq(policy_request_add_line(&r, line, sizeof(line) - 1, &lim, err, sizeof(err)),
                 POLICY_LINE_MORE);
    cr_assert_eq(memcmp(r.recipient, line + 10, sizeof(line) - 11), 0);
    cr_assert_eq(strlen(r.recipient), sizeof(line) - 11);
    policy_request_reset(&r);
}

Test(policy_proto, reset_and_reuse)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "recipient=one@example.org\nsender=s@x\n\n", err, sizeof(err)),
                 POLICY_LINE_END);
    cr_assert_str_eq(r.recipient, "one@example.org");
    policy_request_reset(&r);
    cr_assert_eq(r.nattributes, 0);
    cr_assert_eq(r.size, 0);
    cr_assert_null(r.sender);
    cr_assert_eq(feed_str(&r, "recipient=two@example.org\n\n", err, sizeof(err)), POLICY_LINE_END,
                 "a second request on the same struct: %s", err);
    cr_assert_str_eq(r.recipient, "two@example.org");
    cr_assert_null(r.sender);
    cr_assert_eq(r.nattributes, 1);
    policy_request_reset(&r);
    policy_request_reset(&r); /* twice is harmless */
}

/* names one byte off a kept one (length, case, a prefix, a suffix) are ignored, never kept */
Test(policy_proto, near_miss_names_ignored)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(
        feed_str(&r,
                 "recipien=a@x\nrecipientt=b@x\nRecipient=c@x\nrecipient =d@x\n"
                 "senderrecipient=e@x\nsender_x=s@x\nqueue_i=Q\n"
                 "recipient_recipient_recipient_recipient_recipient_recipient_recipient=z\n"
                 "size=1\nr=1\n\n",
                 err, sizeof(err)),
        POLICY_LINE_END, "%s", err);
    cr_assert_null(r.recipient);
    cr_assert_null(r.sender);
    cr_assert_null(r.queue_id);
    cr_assert_eq(r.nattributes, 10);
    policy_request_reset(&r);
}

/*
 * Kept values that outgrow the first block of value storage: every value
 * set before the block moved must still read back whole, and a duplicate
 * found after the move is still refused.
 */
Test(policy_proto, values_survive_growth)
{
    static const char *const names[] = {"request",  "protocol_state", "protocol_name", "recipient",
                                        "sender",   "client_address", "client_name",   "helo_name",
                                        "queue_id", "sasl_username",  "instance"};
    struct policy_request r;
    char err[128] = "", line[4200], want[11][4100];

    policy_request_init(&r);
    for (int i = 0; i < 11; i++) {
        size_t vlen =
            100 + (size_t)i * 377; /* up to 3,870 bytes: the block doubles several times */
        for (size_t k = 0; k < vlen; k++)
            want[i][k] = (char)('a' + (k + (size_t)i) % 26);
        want[i][vlen] = '\0';
        int n = snprintf(line, sizeof(line), "%s=%s", names[i], want[i]);
        cr_assert_eq(policy_request_add_line(&r, line, (size_t)n, &lim, err, sizeof(err)),
                     POLICY_LINE_MORE, "%s: %s", names[i], err);
    }
    const char *got[11] = {r.request,  r.protocol_state, r.protocol_name, r.recipient,
                           r.sender,   r.client_address, r.client_name,   r.helo_name,
                           r.queue_id, r.sasl_username,  r.instance};
    for (int i = 0; i < 11; i++)
        cr_assert_str_eq(got[i], want[i], "%s changed when the block grew", names[i]);
    cr_assert_eq(policy_request_add_line(&r, "sender=again", 12, &lim, err, sizeof(err)),
                 POLICY_LINE_ERROR);
    cr_assert_str_eq(err, "duplicate attribute sender");
    policy_request_reset(&r);
    cr_assert_null(r.sender);
    cr_assert_eq(feed_str(&r, "recipient=after@example.org\n\n", err, sizeof(err)),
                 POLICY_LINE_END);
    cr_assert_str_eq(r.recipient, "after@example.org");
    policy_request_reset(&r);
}

/* an empty value is kept as "" (not NULL), also as the first thing in the block */
Test(policy_proto, empty_value_first_in_block)
{
    struct policy_request r;
    char err[128] = "";

    policy_request_init(&r);
    cr_assert_eq(feed_str(&r, "queue_id=\nrecipient=x@y\nsender=\n\n", err, sizeof(err)),
                 POLICY_LINE_END);
    cr_assert_not_null(r.queue_id);
    cr_assert_str_eq(r.queue_id, "");
    cr_assert_str_eq(r.sender, "");
    cr_assert_str_eq(r.recipient, "x@y");
    policy_request_reset(&r);
}

Test(policy_proto, format_reply)
{
    char buf[128];

    cr_assert_eq(policy_format_reply("DUNNO", buf, sizeof(buf)), 14);
    cr_assert_str_eq(buf, "action=DUNNO\n\n");
    int n = policy_format_reply("550 5.1.1 <a@b>: Recipient address rejected", buf, sizeof(buf));
    cr_assert_eq(n, (int)strlen(buf));
    cr_assert_str_eq(buf, "action=550 5.1.1 <a@b>: Recipient address rejected\n\n");
}

Test(policy_proto, format_reply_refuses_crlf_and_overflow)
{
    char buf[32];

    cr_assert_eq(policy_format_reply("DUNNO\naction=OK", buf, sizeof(buf)), -1);
    cr_assert_eq(policy_format_reply("DUNNO\r", buf, sizeof(buf)), -1);
    cr_assert_eq(policy_format_reply(NULL, buf, sizeof(buf)), -1);
    /* "action=" + 16 + "\n\n" = 25 bytes + NUL fits 32; 30 does not */
    cr_assert_eq(policy_format_reply("0123456789abcdef", buf, sizeof(buf)), 25);
    cr_assert_eq(policy_format_reply("0123456789abcdef0123456789abcd", buf, sizeof(buf)), -1);
    cr_assert_eq(policy_format_reply("x", buf, 10), -1, "exactly full (no room for NUL)");
    cr_assert_eq(policy_format_reply("x", buf, 11), 10);
    cr_assert_str_eq(buf, "action=x\n\n");
    cr_assert_eq(policy_format_reply("", buf, 10), 9);
    cr_assert_str_eq(buf, "action=\n\n");
    cr_assert_eq(policy_format_reply("", buf, 9), -1);
    cr_assert_eq(policy_format_reply("x", buf, 0), -1);
}
