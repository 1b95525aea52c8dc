/*
 * test_ldap_filter.c - query_filter templates and RFC 4515 escaping: the
 * address is only ever a value, whatever bytes it holds.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "ldap_filter.h"

static const char *expand(const char *tmpl, const char *local, const char *domain)
{
    static char out[LDAP_FILTER_MAX];
    cr_assert_geq(ldap_filter_expand(tmpl, local, domain, out, sizeof(out)), 0, "%s", tmpl);
    return out;
}

Test(ldap_filter, expansions)
{
    cr_assert_str_eq(expand("(mail=%s)", "alice", "example.test"), "(mail=alice@example.test)");
    cr_assert_str_eq(expand("(&(uid=%u)(o=%d))", "bob", "example.test"),
                     "(&(uid=bob)(o=example.test))");
    cr_assert_str_eq(expand("(proxyAddresses=smtp:%s)", "Ann", "ad.test"),
                     "(proxyAddresses=smtp:Ann@ad.test)");
    cr_assert_str_eq(expand("(x=100%%-%u)", "a", "b"), "(x=100%-a)");
}

Test(ldap_filter, injection_is_escaped)
{
    cr_assert_str_eq(expand("(mail=%s)", "*", "example.test"), "(mail=\\2a@example.test)");
    cr_assert_str_eq(expand("(mail=%s)", "*)(uid=*", "example.test"),
                     "(mail=\\2a\\29\\28uid=\\2a@example.test)");
    cr_assert_str_eq(expand("(mail=%s)", "*)(|(mail=*", "example.test"),
                     "(mail=\\2a\\29\\28|\\28mail=\\2a@example.test)");
    cr_assert_str_eq(expand("(mail=%s)", "a*", "dom"), "(mail=a\\2a@dom)");
    cr_assert_str_eq(expand("(mail=%s)", "\\00", "dom"), "(mail=\\5c00@dom)");
    cr_assert_str_eq(expand("(uid=%u)", "\"quoted user\"", "x"), "(uid=\"quoted user\")");
    /* bytes outside printable ASCII are escaped too (RFC 4515 allows it for any octet) */
    cr_assert_str_eq(expand("(mail=%s)", "j\xc3\xb6rg", "x"), "(mail=j\\c3\\b6rg@x)");
    cr_assert_str_eq(expand("(mail=%s)", "a\r\nb", "x"), "(mail=a\\0d\\0ab@x)");
}

Test(ldap_filter, escape_embedded_nul)
{
    char out[64];
    size_t pos = 0;
    cr_assert_eq(ldap_filter_escape("a\0b", 3, out, sizeof(out), &pos), 0);
    cr_assert_str_eq(out, "a\\00b");
    cr_assert_eq(pos, 5);
    /* an empty value still leaves a terminated string */
    char out2[4] = "xyz";
    pos = 0;
    cr_assert_eq(ldap_filter_escape("", 0, out2, sizeof(out2), &pos), 0);
    cr_assert_str_eq(out2, "");
}

Test(ldap_filter, no_room)
{
    char out[16];
    size_t pos = 0;
    cr_assert_eq(ldap_filter_escape("****", 4, out, 12, &pos), -1, "12 bytes needed + NUL");
    cr_assert_eq(ldap_filter_expand("(mail=%s)", "someone", "example.test", out, sizeof(out)), -1);
    cr_assert_eq(ldap_filter_expand("(mail=%s)", "someone", "example.test", out, 0), -1);
}

Test(ldap_filter, worst_case_address_fits)
{
    char local[65], domain[256];
    memset(local, '*', 64);
    local[64] = '\0';
    memset(domain, '(', 255);
    domain[255] = '\0';
    char tmpl[LDAP_FILTER_TMPL_MAX];
    memset(tmpl, 'x', sizeof(tmpl));
    memcpy(tmpl, "(|(a=%s)(b=%s)(c=%u)(d=%d)(e=", 29);
    tmpl[sizeof(tmpl) - 3] = ')';
    tmpl[sizeof(tmpl) - 2] = ')';
    tmpl[sizeof(tmpl) - 1] = '\0';
    char why[128];
    cr_assert_eq(ldap_filter_check(tmpl, why, sizeof(why)), 0, "%s", why);
    char out[LDAP_FILTER_MAX];
    cr_assert_gt(ldap_filter_expand(tmpl, local, domain, out, sizeof(out)), 0);
}

Test(ldap_filter, bad_templates)
{
    char why[128];
    const char *bad[] = {
        "",
        "mail=%s",
        "(mail=%s",
        "(mail=%s))",
        "(mail=%s)(uid=%u)", /* two filters, not one */
        "(mail=x)",          /* does not use the address */
        "(mail=%S)",         /* Postfix's other expansions are refused, not literal */
        "(mail=%1)",
        "(mail=%",
        "(mail=%s\n)",
        "(|(a=%s)(b=%s)(c=%s)(d=%s)(e=%s))", /* too many expansions */
        ")(mail=%s(",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        cr_assert_eq(ldap_filter_check(bad[i], why, sizeof(why)), -1, "accepted: %s", bad[i]);
        cr_assert_neq(why[0], '\0');
        char out[256];
        cr_assert_eq(ldap_filter_expand(bad[i], "a", "b", out, sizeof(out)), -1);
    }
    cr_assert_eq(ldap_filter_check("(|(mail=%s)(mailLocalAddress=%s))", why, sizeof(why)), 0);
}
