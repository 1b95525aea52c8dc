/*
 * test_address.c - RFC 5321 mailbox parsing: what is accepted, how it is
 * normalised, and that hostile input is refused with a reason.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "address.h"

static char err[128];

/* parse - address_parse on a C string; err gets the reason */
static int parse(const char *s, struct address *a)
{
    err[0] = '\0';
    return address_parse(s, strlen(s), a, err, sizeof(err));
}

/* fmt - parse s and return its formatted form (static buffer), or "ERR: reason" */
static const char *fmt(const char *s)
{
    static char buf[ADDRESS_MAX + 64];
    struct address a;
    if (parse(s, &a) < 0) {
        snprintf(buf, sizeof(buf), "ERR: %s", err);
        return buf;
    }
    cr_assert_geq(address_format(&a, buf, sizeof(buf)), 0);
    return buf;
}

/* expect_err - s must be rejected with a reason containing want */
static void expect_err(const char *s, size_t len, const char *want)
{
    struct address a;
    memset(&a, 0x77, sizeof(a));
    err[0] = '\0';
    cr_assert_eq(address_parse(s, len, &a, err, sizeof(err)), -1, "accepted \"%.*s\"", (int)len, s);
    cr_assert(strstr(err, want) != NULL, "\"%.*s\": reason \"%s\", wanted \"%s\"", (int)len, s, err,
              want);
    cr_assert_eq(((unsigned char *)&a)[0], 0x77, "out touched on error");
}

#define EXPECT_ERR(s, want) expect_err((s), strlen(s), (want))

Test(address, plain_and_brackets)
{
    struct address a;
    cr_assert_eq(parse("User.Name+tag@Example.ORG", &a), 0);
    cr_assert_not(a.is_null);
    cr_assert_str_eq(a.local, "User.Name+tag");
    cr_assert_str_eq(a.domain, "example.org");
    cr_assert_str_eq(fmt("<john@EXAMPLE.com>"), "john@example.com");
    cr_assert_str_eq(fmt("john@example.com."), "john@example.com");
    cr_assert_str_eq(fmt("!#$%&'*+-/=?^_`{|}~@x"), "!#$%&'*+-/=?^_`{|}~@x");
    cr_assert_str_eq(fmt("a@localhost"), "a@localhost");
}

Test(address, null_path)
{
    struct address a;
    char buf[8];
    cr_assert_eq(parse("<>", &a), 0);
    cr_assert(a.is_null);
    cr_assert_str_eq(a.local, "");
    cr_assert_str_eq(a.domain, "");
    cr_assert_eq(address_format(&a, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(address_key(&a, true, buf, sizeof(buf)), 0);
    EXPECT_ERR("", "empty address");
    EXPECT_ERR("<", "angle bracket");
    EXPECT_ERR(">", "angle bracket");
    EXPECT_ERR("<<>>", "angle bracket");
    EXPECT_ERR("<a@b", "angle bracket");
    EXPECT_ERR("a@b>", "angle bracket");
    EXPECT_ERR("a<x>@b", "angle bracket");
}

Test(address, not_nul_terminated)
{
    struct address a;
    const char buf[] = "bob@example.orgJUNK";
    cr_assert_eq(address_parse(buf, 15, &a, err, sizeof(err)), 0);
    cr_assert_str_eq(a.domain, "example.org");
    cr_assert_eq(address_parse(buf, 3, &a, err, sizeof(err)), -1);
    /* a NULL err is fine */
    cr_assert_eq(address_parse("x", 1, &a, NULL, 0), -1);
}

Test(address, quoted_local_parts)
{
    struct address a;
    /* unnecessary quotes go (RFC 5321 4.1.2: equivalent) */
    cr_assert_str_eq(fmt("\"john\"@example.org"), "john@example.org");
    cr_assert_str_eq(fmt("\"jo\\hn.doe\"@example.org"), "john.doe@example.org");
    /* necessary quotes stay, in canonical form */
    cr_assert_str_eq(fmt("\"john doe\"@example.org"), "\"john doe\"@example.org");
    cr_assert_str_eq(fmt("\"a\\ b\"@x"), "\"a b\"@x");
    cr_assert_str_eq(fmt("\"a\\\"b\"@x"), "\"a\\\"b\"@x");
    cr_assert_str_eq(fmt("\"a\\\\b\"@x"), "\"a\\\\b\"@x");
    cr_assert_str_eq(fmt("\"a@b\"@x"), "\"a@b\"@x");
    cr_assert_str_eq(fmt("\"a..b\"@x"), "\"a..b\"@x");
    cr_assert_str_eq(fmt("\".a\"@x"), "\".a\"@x");
    cr_assert_eq(parse("<\"x y\"@EXAMPLE.org>", &a), 0);
    cr_assert_str_eq(a.local, "\"x y\"");
    cr_assert_str_eq(a.domain, "example.org");
    EXPECT_ERR("\"\"@x", "empty local part");
    EXPECT_ERR("\"abc@x", "unbalanced quote");
    EXPECT_ERR("\"abc\\\"@x", "unbalanced quote");
    EXPECT_ERR("\"abc\"x@y", "after quoted local part");
    EXPECT_ERR("\"abc\"", "missing @");
    EXPECT_ERR("ab\"c\"@x", "quote");
}

Test(address, quoted_length_limits)
{
    char in[200], out[200];
    struct address a;
    /* 64 bytes of content that need quoting: fits (66 with the quotes) */
    memset(out, 0, sizeof(out));
    in[0] = '"';
    memset(in + 1, ' ', 64);
    snprintf(in + 65, sizeof(in) - 65, "\"@x");
    cr_assert_eq(parse(in, &a), 0, "%s", err);
    cr_assert_eq(strlen(a.local), 66);
    /* 65 bytes: too long */
    in[0] = '"';
    memset(in + 1, ' ', 65);
    snprintf(in + 66, sizeof(in) - 66, "\"@x");
    EXPECT_ERR(in, "local part too long");
    /* 40 escaped quotes: content 40, canonical form 82: too long for the buffer */
    size_t n = 0;
    in[n++] = '"';
    for (int i = 0; i < 40; i++) {
        in[n++] = '\\';
        in[n++] = '"';
    }
    snprintf(in + n, sizeof(in) - n, "\"@x");
    EXPECT_ERR(in, "local part too long");
    (void)out;
}

Test(address, local_part_rules)
{
    char in[200];
    memset(in, 'a', 64);
    snprintf(in + 64, sizeof(in) - 64, "@x");
    cr_assert_eq(strncmp(fmt(in), "aaaa", 4), 0);
    memset(in, 'a', 65);
    snprintf(in + 65, sizeof(in) - 65, "@x");
    EXPECT_ERR(in, "local part too long");
    EXPECT_ERR("@example.org", "");
    EXPECT_ERR("a..b@x", "consecutive dots");
    EXPECT_ERR(".ab@x", "starts with a dot");
    EXPECT_ERR("ab.@x", "ends with a dot");
    EXPECT_ERR("a b@x", "space outside quotes");
    EXPECT_ERR("a b", "space outside quotes");
    EXPECT_ERR("ab", "missing @");
    EXPECT_ERR("a(b)@x", "invalid character");
    EXPECT_ERR("a,b@x", "invalid character");
    EXPECT_ERR("a@b@c", "more than one @");
}

Test(address, domain_rules)
{
    char in[400];
    cr_assert_str_eq(fmt("a@MiXeD-Case.Example.ORG."), "a@mixed-case.example.org");
    cr_assert_str_eq(fmt("a@123.example"), "a@123.example");
    EXPECT_ERR("a@", "empty domain");
    EXPECT_ERR("a@.", "empty domain");
    EXPECT_ERR("a@example..org", "empty label");
    EXPECT_ERR("a@.example.org", "empty label");
    EXPECT_ERR("a@example.org..", "empty label");
    EXPECT_ERR("a@-example.org", "starts with a hyphen");
    EXPECT_ERR("a@example-.org", "ends with a hyphen");
    EXPECT_ERR("a@example.org-", "ends with a hyphen");
    EXPECT_ERR("a@exa_mple.org", "invalid character");
    EXPECT_ERR("a@exa mple.org", "space outside quotes");
    EXPECT_ERR("a@example.org]", "bracket");

    /* label of 63 is fine, 64 is not */
    memcpy(in, "a@", 2);
    memset(in + 2, 'l', 63);
    snprintf(in + 65, sizeof(in) - 65, ".org");
    cr_assert_eq(strncmp(fmt(in), "a@lll", 5), 0, "%s", fmt(in));
    memset(in + 2, 'l', 64);
    snprintf(in + 66, sizeof(in) - 66, ".org");
    EXPECT_ERR(in, "label too long");

    /* total 255 is fine (plus a trailing dot), 256 is not */
    size_t n = 2;
    for (int i = 0; i < 4; i++) {
        memset(in + n, 'd', 63);
        n += 63;
        in[n++] = '.';
    }
    n--; /* 4*63 + 3 dots = 255 */
    in[n] = '\0';
    struct address a;
    cr_assert_eq(parse(in, &a), 0, "%s", err);
    cr_assert_eq(strlen(a.domain), 255);
    in[n] = '.';
    in[n + 1] = '\0';
    cr_assert_eq(parse(in, &a), 0, "%s", err);
    in[n] = 'x';
    EXPECT_ERR(in, "too long");
}

Test(address, address_literals)
{
    cr_assert_str_eq(fmt("postmaster@[192.0.2.1]"), "postmaster@[192.0.2.1]");
    cr_assert_str_eq(fmt("a@[IPv6:2001:DB8:0:0::1]"), "a@[IPv6:2001:db8::1]");
    cr_assert_str_eq(fmt("a@[ipv6:::1]"), "a@[IPv6:::1]");
    EXPECT_ERR("a@[192.0.2.256]", "invalid IPv4");
    EXPECT_ERR("a@[192.0.2]", "invalid IPv4");
    EXPECT_ERR("a@[IPv6:zz::1]", "invalid IPv6");
    EXPECT_ERR("a@[2001:db8::1]", "unsupported address literal");
    EXPECT_ERR("a@[x-tag:foo]", "unsupported address literal");
    EXPECT_ERR("a@[192.0.2.1", "bracket");
    EXPECT_ERR("a@[]", "empty address literal");
    EXPECT_ERR("a@[[1.2.3.4]]", "bracket");
    EXPECT_ERR("a@[", "bracket");
}

Test(address, source_routes_are_stripped)
{
    cr_assert_str_eq(fmt("<@relay.example,@b.example:User@Example.org>"), "User@example.org");
    cr_assert_str_eq(fmt("@relay.example:u@x"), "u@x");
    EXPECT_ERR("<@relay.example>", "source route");
    EXPECT_ERR("<@relay..example:u@x>", "empty label");
    EXPECT_ERR("<@a,b:u@x>", "source route");
    EXPECT_ERR("<@a:>", "empty address after source route");
}

Test(address, hostile_bytes)
{
    EXPECT_ERR("a\r\nRCPT TO:<b@x>@y", "CR or LF");
    EXPECT_ERR("a@x\n", "CR or LF");
    EXPECT_ERR("a\x01@x", "control character");
    EXPECT_ERR("a@x\x7f", "control character");
    EXPECT_ERR("\"a\tb\"@x", "control character");
    expect_err("a\0b@x", 5, "NUL");
    expect_err("a@x\0", 4, "NUL");
    expect_err("\"a\0\"@x", 6, "NUL");
}

Test(address, strip_subaddress)
{
    struct address a;
    cr_assert_eq(parse("user+ext+more@x", &a), 0);
    cr_assert(address_strip_subaddress(&a, "+"));
    cr_assert_str_eq(a.local, "user");
    cr_assert_not(address_strip_subaddress(&a, "+"));

    cr_assert_eq(parse("user-ext@x", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, "+"));
    cr_assert(address_strip_subaddress(&a, "+-"));
    cr_assert_str_eq(a.local, "user");

    cr_assert_eq(parse("user+@x", &a), 0);
    cr_assert(address_strip_subaddress(&a, "+"));
    cr_assert_str_eq(a.local, "user");

    /* never empties the local part, never leaves a trailing dot */
    cr_assert_eq(parse("+foo@x", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, "+"));
    cr_assert_str_eq(a.local, "+foo");
    cr_assert_eq(parse("a.+foo@x", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, "+"));

    /* quoted, empty delims, null path: untouched */
    cr_assert_eq(parse("\"a b+c\"@x", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, "+"));
    cr_assert_eq(parse("a+b@x", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, ""));
    cr_assert_not(address_strip_subaddress(&a, NULL));
    cr_assert_str_eq(a.local, "a+b");
    cr_assert_eq(parse("<>", &a), 0);
    cr_assert_not(address_strip_subaddress(&a, "+"));
}

Test(address, key_and_format)
{
    struct address a;
    char buf[ADDRESS_MAX + 1];
    cr_assert_eq(parse("John.Doe@Example.ORG", &a), 0);
    cr_assert_eq(address_key(&a, true, buf, sizeof(buf)), 20);
    cr_assert_str_eq(buf, "john.doe@example.org");
    cr_assert_eq(address_key(&a, false, buf, sizeof(buf)), 20);
    cr_assert_str_eq(buf, "John.Doe@example.org");
    cr_assert_str_eq(a.local, "John.Doe"); /* key does not change the address */

    char small[20];
    cr_assert_eq(address_format(&a, small, sizeof(small)), -1);
    cr_assert_eq(address_key(&a, true, small, sizeof(small)), -1);
    char exact[21];
    cr_assert_eq(address_format(&a, exact, sizeof(exact)), 20);

    /* the longest address fits ADDRESS_MAX + 1 */
    char in[400];
    size_t n = 0;
    memset(in, 'L', 64);
    n = 64;
    in[n++] = '@';
    for (int i = 0; i < 4; i++) {
        memset(in + n, 'd', 63);
        n += 63;
        in[n++] = '.';
    }
    in[n - 1] = '\0';
    cr_assert_eq(parse(in, &a), 0, "%s", err);
    cr_assert_eq(address_key(&a, true, buf, sizeof(buf)), ADDRESS_MAX);
    cr_assert_eq(buf[0], 'l');
}

/* RFC 6531: UTF-8 local parts are kept as given and flagged for SMTPUTF8 */
Test(address, utf8_local_parts)
{
    struct address a;

    cr_assert_eq(parse("<j\xc3\xb6rg@example.org>", &a), 0, "%s", err);
    cr_assert_str_eq(a.local, "j\xc3\xb6rg");
    cr_assert(a.local_utf8);
    cr_assert_str_eq(a.domain, "example.org");
    cr_assert_str_eq(a.domain_utf8, "example.org");
    cr_assert_eq(parse("\"\xe7\x94\xb0 \xe4\xb8\xad\"@example.org", &a), 0, "%s", err);
    cr_assert_str_eq(a.local, "\"\xe7\x94\xb0 \xe4\xb8\xad\"");
    cr_assert(a.local_utf8);
    cr_assert_eq(parse("\xf0\x9f\x93\xa7@example.org", &a), 0, "%s", err); /* U+1F4E7 */
    cr_assert(a.local_utf8);
    cr_assert_eq(parse("john@example.org", &a), 0);
    cr_assert(!a.local_utf8);
    /* 64 octets, not 64 characters: 33 two-byte characters are too long */
    char big[80] = "";
    for (int i = 0; i < 33; i++)
        strcat(big, "\xc3\xa9");
    strcat(big, "@x");
    EXPECT_ERR(big, "too long");
}

/* the U-label and the A-label form of one address share one key */
Test(address, idn_domains_share_one_key)
{
    struct address u, a;
    char ku[ADDRESS_MAX + 1], ka[ADDRESS_MAX + 1], k8[ADDRESS_UTF8_MAX + 1];

    cr_assert_eq(parse("Info@B\xc3\xbc"
                       "CHER.example.",
                       &u),
                 0, "%s", err);
    cr_assert_eq(parse("info@XN--BCHER-KVA.example", &a), 0, "%s", err);
    cr_assert_str_eq(u.domain, "xn--bcher-kva.example");
    cr_assert_str_eq(a.domain, "xn--bcher-kva.example");
    cr_assert_str_eq(u.domain_utf8, "b\xc3\xbc"
                                    "cher.example");
    cr_assert_str_eq(a.domain_utf8, "b\xc3\xbc"
                                    "cher.example");
    cr_assert_gt(address_key(&u, true, ku, sizeof(ku)), 0);
    cr_assert_gt(address_key(&a, true, ka, sizeof(ka)), 0);
    cr_assert_str_eq(ku, ka);
    cr_assert_str_eq(ku, "info@xn--bcher-kva.example");
    cr_assert_gt(address_key_utf8(&a, true, k8, sizeof(k8)), 0);
    cr_assert_str_eq(k8, "info@b\xc3\xbc"
                         "cher.example");
    cr_assert_gt(address_key_utf8(&u, false, k8, sizeof(k8)), 0);
    cr_assert_str_eq(k8, "Info@b\xc3\xbc"
                         "cher.example");
    /* UTS#46 non-transitional: German sharp s stays (not "ss") */
    cr_assert_str_eq(fmt("x@fa\xc3\x9f.de"), "x@xn--fa-hia.de");
    /* NFC: "u" + combining diaeresis is the same name as U+00FC */
    cr_assert_str_eq(fmt("x@bu\xcc\x88"
                         "cher.example"),
                     "x@xn--bcher-kva.example");
    /* ideographic full stop separates labels (UTS#46 mapping) */
    cr_assert_str_eq(fmt("x@\xe4\xbe\x8b\xe3\x80\x82"
                         "example"),
                     "x@xn--fsq.example");
    /* an ASCII domain has the same key as before */
    cr_assert_eq(parse("x@Example.ORG", &a), 0);
    cr_assert_str_eq(a.domain_utf8, "example.org");
    cr_assert_eq(address_key_utf8(&a, true, k8, 5), -1);
}

Test(address, hostile_idn_domains)
{
    EXPECT_ERR("x@xn--zz.example", "A-label");        /* not punycode of anything valid */
    EXPECT_ERR("x@xn--bcher-KVA-.example", "hyphen"); /* LDH first */
    EXPECT_ERR("x@b\xc3\xbc_cher.example", "invalid character");
    EXPECT_ERR("x@\xe2\x80\x8b.example", "empty label"); /* zero width space */
    EXPECT_ERR("x@b\xc3\xbc"
               "cher..example",
               "");
    EXPECT_ERR("x@a\xc3\xbc b.example", "space");
    /* a U-label whose A-label is over 63 bytes */
    char big[400] = "x@";
    for (int i = 0; i < 60; i++)
        strcat(big, "\xc3\xbc");
    strcat(big, ".example");
    EXPECT_ERR(big, "");
}

/* strict UTF-8: anything RFC 3629 forbids, and C1 controls */
Test(address, hostile_utf8)
{
    EXPECT_ERR("a\xc0\xaf@x", "overlong");         /* "/" as two bytes */
    EXPECT_ERR("a\xe0\x80\xaf@x", "overlong");     /* three bytes */
    EXPECT_ERR("a\xf0\x80\x80\xaf@x", "overlong"); /* four bytes */
    EXPECT_ERR("a\xc1\xbf@x", "overlong");
    EXPECT_ERR("a\xed\xa0\x80@x", "surrogate");
    EXPECT_ERR("a\xed\xbf\xbf@x", "surrogate");
    EXPECT_ERR("a\xf4\x90\x80\x80@x", "above U+10FFFF");
    EXPECT_ERR("a\xf5\x80\x80\x80@x", "invalid UTF-8");
    EXPECT_ERR("a\xff@x", "invalid UTF-8");
    EXPECT_ERR("a\x80@x", "invalid UTF-8"); /* stray continuation byte */
    EXPECT_ERR("a\xc3@x", "truncated");
    EXPECT_ERR("a@x\xc3", "truncated");
    EXPECT_ERR("a\xe4\xb8@x", "truncated");
    EXPECT_ERR("a\xc2\x80@x", "control character");     /* U+0080 */
    EXPECT_ERR("a\xc2\x9b[2J@x", "control character");  /* CSI */
    EXPECT_ERR("\"a\xc2\x85\"@x", "control character"); /* NEL */
    expect_err("a\xc3\0@x", 5, "NUL");
}

/* address_format copies: the same bytes and lengths as "%s@%s", also where it does not fit */
Test(address, format_matches_printf)
{
    static const char *const in[] = {"a@b.c", "John.Doe@Example.ORG", "\"x y\"@example.org",
                                     "user+ext@sub.example.net"};
    char got[64], want[64];

    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct address a;
        cr_assert_eq(parse(in[i], &a), 0, "%s", in[i]);
        int wn = snprintf(want, sizeof(want), "%s@%s", a.local, a.domain);
        for (size_t size = 1; size <= (size_t)wn + 2; size++) {
            memset(got, 'Z', sizeof(got));
            int n = address_format(&a, got, size);
            if ((size_t)wn < size) {
                cr_assert_eq(n, wn, "%s in %zu", in[i], size);
                cr_assert_str_eq(got, want);
            } else {
                cr_assert_eq(n, -1, "%s in %zu", in[i], size);
                cr_assert_eq(strlen(got), size - 1, "cut like snprintf");
                cr_assert_eq(strncmp(got, want, size - 1), 0);
            }
        }
    }
    struct address null;
    cr_assert_eq(parse("<>", &null), 0);
    if (null.is_null) {
        strcpy(got, "junk");
        cr_assert_eq(address_format(&null, got, 1), 0);
        cr_assert_str_eq(got, "");
    }
    cr_assert_eq(address_format(&null, got, 0), -1);
}
