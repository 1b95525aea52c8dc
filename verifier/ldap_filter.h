/*
 * ldap_filter.h - the search filter of one LDAP lookup: a query_filter
 * template from callahead.conf (Postfix ldap_table(5) style, "(mail=%s)")
 * with the recipient substituted into it, every substituted byte escaped as
 * RFC 4515 says, so that an address can only ever be a value: "*)(uid=*"
 * or "a*@dom" match nothing but themselves.
 *
 * The template is checked once when the source is opened
 * (ldap_filter_check), so that a lookup can only fail for lack of room.
 * Expansions (the subset of Postfix's that a recipient check needs):
 *   %s  the whole address, local@domain
 *   %u  the local part
 *   %d  the domain
 *   %%  a literal '%'
 * Any other '%' sequence is an error at open, not a silent literal.
 */
#ifndef CALLAHEAD_LDAP_FILTER_H
#define CALLAHEAD_LDAP_FILTER_H

#include <stddef.h>

#define LDAP_FILTER_MAX 8192      /* an expanded filter, with its NUL */
#define LDAP_FILTER_TMPL_MAX 1024 /* a template, with its NUL */
#define LDAP_FILTER_EXPANSIONS 4  /* most %s, %u, %d in one template */
/*
 * With these bounds an address of RFC 5321 size (a 64-byte local part, a
 * 255-byte domain) always fits: 1023 + 4 * 3 * (66 + 1 + 255) < 8192.
 */

/*
 * ldap_filter_check - 0 when tmpl is a usable template: balanced
 * parentheses around the whole, only the expansions above, one to
 * LDAP_FILTER_EXPANSIONS of %s %u %d, shorter than LDAP_FILTER_TMPL_MAX,
 * no control characters. Else -1 and a reason in why.
 */
int ldap_filter_check(const char *tmpl, char *why, size_t whylen);

/*
 * ldap_filter_escape - append the RFC 4515 escaped form of len bytes at
 * in to out (size bytes, always NUL-terminated on success) starting at
 * *pos. '*', '(', ')', '\', NUL and every byte outside printable ASCII
 * become "\XX". Returns 0, or -1 when it does not fit (out then holds a
 * truncated but terminated prefix and must not be used).
 */
int ldap_filter_escape(const char *in, size_t len, char *out, size_t size, size_t *pos);

/*
 * ldap_filter_expand - tmpl with local and domain substituted (each
 * escaped) into out (size bytes). Returns the length, or -1 when tmpl is
 * not a valid template or the result does not fit.
 */
int ldap_filter_expand(const char *tmpl, const char *local, const char *domain, char *out,
                       size_t size);

#endif
