/*
 * address.c - RFC 5321 Mailbox parsing and normalisation (see address.h).
 *
 * The input is whatever the MTA passed on, so it is treated as hostile: it is
 * read as len bytes with no terminator, every byte is checked, and every
 * limit is enforced before a copy. The grammar accepted (RFC 5321 4.1.2):
 *
 *   input      = "<>" / "<" path ">" / path
 *   path       = [ source-route ":" ] mailbox
 *   source-rt  = "@" domain *( "," "@" domain )   ; accepted and dropped,
 *                                                  ; RFC 5321 4.1.1.3 / C
 *   mailbox    = local-part "@" ( domain / address-literal )
 *   local-part = dot-string / quoted-string
 *
 * Decisions a postmaster may want to know:
 * - UTF-8 (RFC 6531) is accepted in local parts and domains, strictly: an
 *   invalid byte, a truncated sequence, an overlong form, a surrogate, a code
 *   point above U+10FFFF or a C1 control (U+0080..U+009F) is an error, like
 *   a C0 control. Local parts stay as given (octets, <= 64).
 * - A domain with non-ASCII goes through libidn2 (IDNA2008, UTS#46
 *   non-transitional mapping, NFC) to A-labels; its ASCII must be LDH; an ASCII domain
 *   with an "xn--" label must decode and map back to itself. Both forms are
 *   kept: A-labels for routing, DNS and the cache key, U-labels for tables.
 * - A quoted local part whose content is a valid dot-atom is unquoted
 *   ("\"john\""@x == john@x); otherwise it is kept quoted in canonical form:
 *   only '"' and '\' are backslash-escaped. An empty quoted string is rejected.
 * - Domains: LDH labels (no leading/trailing hyphen), lower-cased, one
 *   trailing dot removed, labels <= 63, total <= 255. Address literals:
 *   "[a.b.c.d]" and "[IPv6:...]" (rewritten as "[IPv6:" + the canonical
 *   inet_ntop form + "]"); other tagged literals are rejected.
 * - The empty string is an error, not the null path: only "<>" is null.
 */
#include "address.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* set_err - write a reason to err (when the caller gave room) and return -1 */
static int set_err(char *err, size_t errlen, const char *reason)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", reason);
    return -1;
}

/* is_atext - RFC 5321 atext: ALPHA / DIGIT / "!#$%&'*+-/=?^_`{|}~" */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int is_let_dig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/*
 * utf8_check - is p[0..len) strictly valid UTF-8 without controls? Returns
 * NULL if so, else the reason. ASCII controls are refused by the caller; this
 * refuses everything RFC 3629 forbids plus the C1 controls, which no
 * mailbox may contain and which some terminals and log viewers obey.
 */
static const char *utf8_check(const unsigned char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        unsigned long cp, min;
        size_t need;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else if (c == 0xc0 || c == 0xc1) {
            return "overlong UTF-8 sequence in address";
        } else {
            return "invalid UTF-8 byte in address";
        }
        if (need >= len - i)
            return "truncated UTF-8 sequence in address";
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return "truncated UTF-8 sequence in address";
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min)
            return "overlong UTF-8 sequence in address";
        if (cp >= 0xd800 && cp <= 0xdfff)
            return "UTF-16 surrogate in address";
        if (cp > 0x10ffff)
            return "UTF-8 code point above U+10FFFF in address";
        if (cp <= 0x9f)
            return "control character in address";
        i += need + 1;
    }
    return NULL;
}

/*
 * check_dot_atom - is p[0..len) a dot-string? Returns NULL if so, else the
 * reason it is not (for the unquoted case, where the reason is reported).
 */
static const char *check_dot_atom(const char *p, size_t len)
{
    if (len == 0)
        return "empty local part";
    if (p[0] == '.')
        return "local part starts with a dot";
    if (p[len - 1] == '.')
        return "local part ends with a dot";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (p[i + 1] == '.') /* i + 1 < len: p[len - 1] is not a dot */
                return "consecutive dots in local part";
        } else if (c == ' ') {
            return "space outside quotes";
        } else if (c == '"') {
            return "misplaced quote in local part";
        } else if (c < 0x80 && !is_atext(c)) {
            /* RFC 6531 3.3: atext =/ UTF8-non-ascii (validated already) */
            return "invalid character in local part";
        }
    }
    return NULL;
}

static const char *parse_ldh(const char *p, size_t len, char *out);

/*
 * idn_to_ascii - the A-label form of the NUL-terminated UTF-8 domain in,
 * checked again as LDH, into out (ADDRESS_DOMAIN_MAX + 1 bytes).
 */
static const char *idn_to_ascii(const char *in, char *out)
{
    uint8_t *a = NULL;
    const char *reason;

    if (idn2_lookup_u8((const uint8_t *)in, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK ||
        a == NULL) {
        idn2_free(a);
        return "invalid internationalized domain name";
    }
    reason = parse_ldh((const char *)a, strlen((const char *)a), out);
    idn2_free(a);
    return reason;
}

/*
 * idn_to_unicode - the U-label form of the A-label domain in (LDH, lower
 * case) into out (ADDRESS_DOMAIN_UTF8_MAX + 1 bytes). Unless it has an
 * "xn--" label, that is in itself. An A-label must decode to valid UTF-8 that
 * maps back to exactly the same A-label: otherwise two spellings of one
 * name could get two cache keys, or a garbage label a U-label form.
 */
static const char *idn_to_unicode(const char *in, char *out)
{
    char *u = NULL;
    char back[ADDRESS_DOMAIN_MAX + 1];
    size_t n = strlen(in);

    if (strncmp(in, "xn--", 4) != 0 && strstr(in, ".xn--") == NULL) {
        memcpy(out, in, n + 1);
        return NULL;
    }
    if (idn2_to_unicode_8z8z(in, &u, 0) != IDN2_OK || u == NULL) {
        idn2_free(u);
        return "invalid A-label in domain";
    }
    n = strlen(u);
    if (n > ADDRESS_DOMAIN_UTF8_MAX || utf8_check((const unsigned char *)u, n) != NULL ||
        idn_to_ascii(u, back) != NULL || strcmp(back, in) != 0) {
        idn2_free(u);
        return "invalid A-label in domain";
    }
    memcpy(out, u, n + 1);
    idn2_free(u);
    return NULL;
}

/*
 * parse_domain - validate and normalise an RFC 5321 Domain or address
 * literal at p[0..len) into out (ADDRESS_DOMAIN_MAX + 1 bytes, A-labels) and,
 * when out_utf8 is not NULL, its U-label form (ADDRESS_DOMAIN_UTF8_MAX + 1
 * bytes). The bytes were checked as UTF-8 already. Returns NULL on success,
 * else the reason.
 */
static const char *parse_domain(const char *p, size_t len, char *out, char *out_utf8)
{
    char scratch[ADDRESS_DOMAIN_UTF8_MAX + 1];
    const char *reason;

    if (len == 0)
        return "empty domain";
    if (p[0] != '[') {
        if (memchr(p, ' ', len) != NULL)
            return "space outside quotes";
        /*
         * ASCII in a U-label domain must already be LDH or a dot: UTS#46
         * with STD3 rules would drop some characters ("_") silently, and
         * without them let others through; both would alias names.
         */
        bool ascii = true, ldh = true;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c >= 0x80)
                ascii = false;
            else if (c != '.' && c != '-' && !is_let_dig(c))
                ldh = false;
        }
        if (!ascii && !ldh)
            return "invalid character in domain";
        if (ascii) {
            reason = parse_ldh(p, len, out);
        } else {
            if (len > ADDRESS_DOMAIN_UTF8_MAX)
                return "domain too long";
            memcpy(scratch, p, len);
            scratch[len] = '\0';
            if (len > 1 && scratch[len - 1] == '.')
                scratch[len - 1] = '\0'; /* the root, as for ASCII */
            reason = idn_to_ascii(scratch, out);
        }
        if (reason != NULL)
            return reason;
        return idn_to_unicode(out, out_utf8 != NULL ? out_utf8 : scratch);
    }
    reason = parse_ldh(p, len, out); /* the address literal */
    if (reason == NULL && out_utf8 != NULL)
        snprintf(out_utf8, ADDRESS_DOMAIN_UTF8_MAX + 1, "%s", out);
    return reason;
}

/*
 * parse_ldh - an ASCII Domain (LDH labels) or address literal at p[0..len)
 * into out (ADDRESS_DOMAIN_MAX + 1 bytes), lower-cased.
 */
static const char *parse_ldh(const char *p, size_t len, char *out)
{
    if (len == 0)
        return "empty domain";

    if (p[0] == '[') {
        char lit[ADDRESS_DOMAIN_MAX + 1];
        unsigned char bin[16];

        if (p[len - 1] != ']')
            return "unbalanced bracket in address literal";
        const char *in = p + 1;
        size_t ilen = len - 2;
        if (len < 2 || ilen == 0)
            return "empty address literal";
        if (ilen >= sizeof(lit))
            return "address literal too long";
        if (memchr(in, '[', ilen) != NULL || memchr(in, ']', ilen) != NULL)
            return "unbalanced bracket in address literal";
        memcpy(lit, in, ilen);
        lit[ilen] = '\0';
        if (ilen > 5 && strncasecmp(lit, "IPv6:", 5) == 0) {
            char canon[INET6_ADDRSTRLEN];
            if (inet_pton(AF_INET6, lit + 5, bin) != 1)
                return "invalid IPv6 address literal";
            if (inet_ntop(AF_INET6, bin, canon, sizeof(canon)) == NULL)
                return "invalid IPv6 address literal";
            snprintf(out, ADDRESS_DOMAIN_MAX + 1, "[IPv6:%s]", canon);
            return NULL;
        }
        if (memchr(lit, ':', ilen) != NULL)
            return "unsupported address literal";
        if (inet_pton(AF_INET, lit, bin) != 1)
            return "invalid IPv4 address literal";
        memcpy(out, p, len);
        out[len] = '\0';
        return NULL;
    }

    /* one trailing dot is the root: drop it ("example.org." == "example.org") */
    if (p[len - 1] == '.')
        len--;
    if (len == 0)
        return "empty domain";
    if (len > ADDRESS_DOMAIN_MAX)
        return "domain too long";

    size_t label = 0; /* length of the current label */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (label == 0)
                return "empty label in domain";
            if (p[i - 1] == '-')
                return "domain label ends with a hyphen";
            label = 0;
        } else if (c == '-') {
            if (label == 0)
                return "domain label starts with a hyphen";
            label++;
        } else if (is_let_dig(c)) {
            label++;
        } else if (c == ' ') {
            return "space outside quotes";
        } else if (c == '[' || c == ']') {
            return "unbalanced bracket in domain";
        } else {
            return "invalid character in domain";
        }
        if (label > 63)
            return "domain label too long";
        out[i] = (char)to_lower(c);
    }
    if (label == 0) /* "example.org.." less one root dot */
        return "empty label in domain";
    if (p[len - 1] == '-')
        return "domain label ends with a hyphen";
    out[len] = '\0';
    return NULL;
}

/*
 * skip_source_route - p[0..len) starts with '@': check "@d1,@d2:" and return
 * the offset just past the ':', or 0 with *reason set.
 */
static size_t skip_source_route(const char *p, size_t len, const char **reason)
{
    char scratch[ADDRESS_DOMAIN_MAX + 1];
    size_t pos = 0;

    for (;;) {
        if (pos >= len || p[pos] != '@') {
            *reason = "malformed source route";
            return 0;
        }
        pos++;
        size_t start = pos;
        while (pos < len && p[pos] != ',' && p[pos] != ':')
            pos++;
        if (pos >= len) {
            *reason = "malformed source route";
            return 0;
        }
        if ((*reason = parse_domain(p + start, pos - start, scratch, NULL)) != NULL)
            return 0;
        if (p[pos] == ':')
            return pos + 1;
        pos++; /* ',' */
    }
}

/*
 * parse_quoted - p[0..len) starts with '"'. Decodes the quoted string into
 * content (ADDRESS_LOCAL_MAX + 1 bytes). Returns the offset just past the
 * closing quote, or 0 with *reason set.
 */
static size_t parse_quoted(const char *p, size_t len, char *content, size_t *clen,
                           const char **reason)
{
    size_t n = 0;

    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"') {
            *clen = n;
            return i + 1;
        }
        if (c == '\\') {
            if (++i >= len)
                break;
            c = (unsigned char)p[i];
        }
        /* qtextSMTP and quoted-pairSMTP: %d32-126 (controls were refused already) */
        if (n >= ADDRESS_LOCAL_MAX) {
            *reason = "local part too long";
            return 0;
        }
        content[n++] = (char)c;
    }
    *reason = "unbalanced quote in local part";
    return 0;
}

/* address_parse - see address.h and the grammar at the top of this file */
int address_parse(const char *in, size_t len, struct address *out, char *err, size_t errlen)
{
    struct address a;
    const char *reason;

    if (in == NULL || out == NULL)
        return set_err(err, errlen, "no address");
    memset(&a, 0, sizeof(a));

    /* byte-level checks first: nothing below has to think about them again */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\0')
            return set_err(err, errlen, "NUL byte in address");
        if (c == '\r' || c == '\n')
            return set_err(err, errlen, "CR or LF in address");
        if (c < 0x20 || c == 0x7f)
            return set_err(err, errlen, "control character in address");
    }
    if ((reason = utf8_check((const unsigned char *)in, len)) != NULL)
        return set_err(err, errlen, reason);
    if (len == 0)
        return set_err(err, errlen, "empty address");

    /* optional angle brackets */
    if (in[0] == '<') {
        if (in[len - 1] != '>' || len < 2)
            return set_err(err, errlen, "unbalanced angle bracket");
        in++;
        len -= 2;
        if (len == 0) {
            a.is_null = true;
            *out = a;
            return 0;
        }
    } else if (in[len - 1] == '>') {
        return set_err(err, errlen, "unbalanced angle bracket");
    }
    if (memchr(in, '<', len) != NULL || memchr(in, '>', len) != NULL)
        return set_err(err, errlen, "misplaced angle bracket");

    /* "@a,@b:user@dom": the source route is checked, then ignored */
    if (in[0] == '@') {
        size_t skip = skip_source_route(in, len, &reason);
        if (skip == 0)
            return set_err(err, errlen, reason);
        in += skip;
        len -= skip;
        if (len == 0)
            return set_err(err, errlen, "empty address after source route");
    }

    /* local part: where it ends is decided by its kind */
    size_t at;
    if (in[0] == '"') {
        char content[ADDRESS_LOCAL_MAX + 1];
        size_t clen = 0;

        at = parse_quoted(in, len, content, &clen, &reason);
        if (at == 0)
            return set_err(err, errlen, reason);
        if (at >= len || in[at] != '@')
            return set_err(err, errlen, at >= len ? "missing @" : "text after quoted local part");
        if (clen == 0)
            return set_err(err, errlen, "empty local part");
        if (check_dot_atom(content, clen) == NULL) {
            memcpy(a.local, content, clen);
            a.local[clen] = '\0';
        } else {
            /* canonical quoted form: escape only what must be escaped */
            size_t n = 0;
            a.local[n++] = '"';
            for (size_t i = 0; i < clen; i++) {
                size_t need = (content[i] == '"' || content[i] == '\\') ? 2 : 1;
                if (n + need + 2 > sizeof(a.local)) /* + closing quote + NUL */
                    return set_err(err, errlen, "local part too long");
                if (need == 2)
                    a.local[n++] = '\\';
                a.local[n++] = content[i];
            }
            a.local[n++] = '"';
            a.local[n] = '\0';
        }
    } else {
        const char *p = memchr(in, '@', len);
        if (p == NULL) {
            if (memchr(in, ' ', len) != NULL)
                return set_err(err, errlen, "space outside quotes");
            return set_err(err, errlen, "missing @");
        }
        at = (size_t)(p - in);
        if ((reason = check_dot_atom(in, at)) != NULL)
            return set_err(err, errlen, reason);
        if (at > ADDRESS_LOCAL_MAX)
            return set_err(err, errlen, "local part too long");
        memcpy(a.local, in, at);
        a.local[at] = '\0';
    }

    /* domain: everything after the '@' */
    const char *dom = in + at + 1;
    size_t dlen = len - at - 1;
    if (dlen > 0 && memchr(dom, '@', dlen) != NULL)
        return set_err(err, errlen, "more than one @");
    if ((reason = parse_domain(dom, dlen, a.domain, a.domain_utf8)) != NULL)
        return set_err(err, errlen, reason);
    for (const char *l = a.local; *l != '\0'; l++)
        if ((unsigned char)*l >= 0x80)
            a.local_utf8 = true;

    *out = a;
    return 0;
}

/*
 * address_format - "local@domain", "" for the null path; length or -1 if too
 * small. Copied, not printed: every lookup makes its cache key here. When
 * it does not fit, buf gets what snprintf would have left there.
 */
int address_format(const struct address *a, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return -1;
    if (a->is_null) {
        buf[0] = '\0';
        return 0;
    }
    size_t llen = strnlen(a->local, sizeof(a->local)), dlen = strnlen(a->domain, sizeof(a->domain));
    if (llen == sizeof(a->local) || dlen == sizeof(a->domain) || llen + 1 + dlen >= size) {
        /* unterminated fields cannot come from address_parse; too long for buf */
        snprintf(buf, size, "%.*s@%.*s", (int)llen, a->local, (int)dlen, a->domain);
        return -1;
    }
    memcpy(buf, a->local, llen);
    buf[llen] = '@';
    memcpy(buf + llen + 1, a->domain, dlen);
    buf[llen + 1 + dlen] = '\0';
    return (int)(llen + 1 + dlen);
}

/*
 * address_strip_subaddress - drop "+ext" from an unquoted local part. The
 * first character is never taken as a delimiter (as in Postfix: "+foo" stays
 * "+foo"), and a cut that would leave a trailing dot is not made, so the
 * result is always a valid address.
 */
bool address_strip_subaddress(struct address *a, const char *delims)
{
    if (a == NULL || a->is_null || delims == NULL || delims[0] == '\0' || a->local[0] == '"' ||
        a->local[0] == '\0')
        return false;
    size_t cut = 1 + strcspn(a->local + 1, delims);
    if (a->local[cut] == '\0')
        return false;
    if (a->local[cut - 1] == '.')
        return false;
    a->local[cut] = '\0';
    return true;
}

/* address_key - "local@domain", local lower-cased when fold_local; length or -1 */
int address_key(const struct address *a, bool fold_local, char *buf, size_t size)
{
    int n = address_format(a, buf, size);

    if (n < 0 || !fold_local || a->is_null)
        return n;
    size_t llen = strnlen(a->local, sizeof(a->local));
    for (size_t i = 0; i < llen && i < (size_t)n; i++)
        buf[i] = (char)to_lower((unsigned char)buf[i]);
    return n;
}

/* address_key_utf8 - "local@domain_utf8", local lower-cased (ASCII only) when fold_local */
int address_key_utf8(const struct address *a, bool fold_local, char *buf, size_t size)
{
    struct address u;

    if (a == NULL)
        return -1;
    if (a->is_null)
        return address_key(a, fold_local, buf, size);
    u = *a;
    snprintf(u.domain, sizeof(u.domain), "%s", "");
    int n = address_key(&u, fold_local, buf, size); /* "local@" */
    if (n < 0)
        return -1;
    int m = snprintf(buf + n, size - (size_t)n, "%s", a->domain_utf8);
    if (m < 0 || (size_t)m >= size - (size_t)n)
        return -1;
    return n + m;
}
