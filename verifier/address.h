/*
 * address.h - RFC 5321 recipient address parsing and normalisation.
 *
 * Input is whatever the MTA put in the policy request's recipient attribute
 * (or a milter's RCPT argument): possibly with angle brackets, possibly a
 * quoted local part, possibly UTF-8 (RFC 6531), possibly hostile. Output is a
 * normalised address whose domain is case-folded without a trailing dot and,
 * for an internationalised domain, in A-labels (IDNA2008 with UTS#46
 * non-transitional mapping), so "user@b\xc3\xbccher.example" and
 * "user@xn--bcher-kva.example" are one address with one cache key. Local
 * parts are kept as given (a callout must pass them unchanged);
 * address_key() builds the routing/cache form, address_key_utf8() the form
 * table lookups (CDB, LDAP) use.
 */
#ifndef CALLAHEAD_ADDRESS_H
#define CALLAHEAD_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDRESS_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define ADDRESS_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDRESS_MAX (ADDRESS_LOCAL_MAX + 1 + ADDRESS_DOMAIN_MAX)
/* the U-label form of a domain whose A-label form fits ADDRESS_DOMAIN_MAX (bytes, bounded) */
#define ADDRESS_DOMAIN_UTF8_MAX 1020
#define ADDRESS_UTF8_MAX (ADDRESS_LOCAL_MAX + 1 + ADDRESS_DOMAIN_UTF8_MAX)

struct address {
    bool is_null;    /* "<>" (null reverse-path); local/domain empty */
    bool local_utf8; /* the local part has non-ASCII (UTF-8): a callout needs SMTPUTF8 */
    /* as given (UTF-8 allowed, octets <= 64), quotes kept when they are needed */
    char local[ADDRESS_LOCAL_MAX + 3];
    /* ASCII: lower case, A-labels, no trailing dot; "[1.2.3.4]" kept. Routing, DNS, cache. */
    char domain[ADDRESS_DOMAIN_MAX + 1];
    /* the same domain in U-labels (NFC, lower case); equal to domain when it has no IDN label */
    char domain_utf8[ADDRESS_DOMAIN_UTF8_MAX + 1];
};

/*
 * address_parse - parse len bytes at in (need not be NUL-terminated).
 * Accepts "user@dom", "<user@dom>", "\"quoted user\"@dom", "<>", domain
 * literals, UTF-8 local parts and domains (RFC 6531; strictly valid UTF-8
 * only). A quoted local part whose quotes are unnecessary is unquoted
 * (RFC 5321 4.1.2 says they are equivalent). Returns 0 and fills out, or -1
 * and writes a short reason to err (errlen bytes) for malformed input.
 */
int address_parse(const char *in, size_t len, struct address *out, char *err, size_t errlen);

/*
 * address_format - "local@domain" (or "" for <>) into buf, domain in A-labels:
 * the form for a callout's RCPT TO and for logs. Returns length or -1 if too small.
 */
int address_format(const struct address *a, char *buf, size_t size);

/*
 * address_strip_subaddress - remove a sub-address extension from the local
 * part: the first character of local that is in delims, and everything after
 * it, go ("user+ext" -> "user"). Quoted local parts and an empty delims are
 * left alone. Returns true if something was removed.
 */
bool address_strip_subaddress(struct address *a, const char *delims);

/*
 * address_key - the lookup/cache key: "local@domain" with the local part
 * lower-cased when fold_local is set. Returns length or -1 if too small.
 */
int address_key(const struct address *a, bool fold_local, char *buf, size_t size);

/*
 * address_key_utf8 - as address_key with the domain in U-labels
 * (domain_utf8): the key CDB and LDAP lookups use, so a table can be written
 * in the form users know. Identical to address_key for an all-ASCII address.
 * buf should hold ADDRESS_UTF8_MAX + 1 bytes.
 */
int address_key_utf8(const struct address *a, bool fold_local, char *buf, size_t size);

#endif
