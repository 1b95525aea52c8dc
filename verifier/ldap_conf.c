/*
 * ldap_conf.c - the parameters of a named LDAP source: their table, and
 * the checks that turn "name = value" pairs into a struct ldap_conf (see
 * ldap_conf.h). Everything a value can get wrong is found here, at start-up,
 * reload or "callahead-policyd -t", never at lookup time.
 */
#include "ldap_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "ldap_filter.h"
#include "value_parse.h"

#define LDAP_CONF_PW_MAX 1024 /* longest password a bind_pw_file may hold */

const struct ldap_conf_param ldap_conf_params[] = {
    {"server_host", "ldap://127.0.0.1:389",
     "Directory servers, tried in order (the next one when a connection fails): a list of "
     "ldap://ADDRESS[:PORT], ldap://[IPV6][:PORT], ldapi://PATH (the path %2F-encoded, as "
     "in Postfix) or a bare ADDRESS[:PORT]. ADDRESS is a numeric address or a host name; "
     "names are resolved (A, then AAAA) with the daemon's own asynchronous resolver "
     "(dns_servers) each time a connection is opened, and the addresses tried in order. "
     "ldaps://... (TLS from the first byte, port 636 by default) as ldap://. The TLS "
     "handshake runs off the event loop (see start_tls)."},
    {"server_port", "389", "Port for server_host entries that give none."},
    {"search_base", "", "Base DN of the search, e.g. dc=example,dc=com."},
    {"scope", "sub", "Search scope: base, one or sub."},
    {"query_filter", "(mail=%s)",
     "Search filter; %s is the whole address, %u the local part, %d the domain, %% a "
     "percent sign. Each substituted value is escaped as RFC 4515 says, so an address can "
     "never add to the filter. Postfix's other expansions (%S, %U, %1, ...) are refused."},
    {"domain", "",
     "Only addresses in these domains (a list) are looked up; others get no answer from the "
     "source (unknown: the MTA decides), as with Postfix's domain parameter. Empty: all "
     "domains. Only a literal list; Postfix's map references are refused."},
    {"result_attribute", "",
     "When set (a list of attribute names), an entry counts only if it has one of these "
     "attributes; empty: any entry found makes the address valid. Postfix's default "
     "maildrop does not apply."},
    {"bind", "no", "yes: bind with bind_dn and bind_pw before searching; no: anonymous."},
    {"bind_dn", "", "DN to bind as when bind = yes."},
    {"bind_pw", "",
     "Password for bind_dn (\"callahead-policyd -n\" does not show it). Prefer bind_pw_file: "
     "callahead.conf is often readable by all."},
    {"bind_pw_file", "",
     "File holding the password for bind_dn (its first line), readable by its owner only; "
     "read when the route table is loaded."},
    {"timeout", "10s",
     "Deadline for one search (and for a bind), counted from the lookup, waiting for a "
     "connection included; the search is abandoned after it and the answer is tempfail."},
    {"size_limit", "0",
     "Most entries a search may return (0: the server's limit); more is a tempfail, since "
     "a recipient filter should match one entry."},
    {"dereference", "0", "Alias dereferencing: 0 never, 1 searching, 2 finding, 3 always."},
    {"chase_referrals", "no",
     "Must be no: libldap chases referrals synchronously, which would stop every lookup "
     "(and Active Directory's referrals to other domains hang); a referral is a tempfail."},
    {"start_tls", "no",
     "yes: send StartTLS on each ldap:// connection and refuse to go on in plaintext "
     "(ldaps:// servers use TLS anyway; ldapi:// never). libldap 2.5 does TLS handshakes "
     "with blocking calls, so the handshake (with StartTLS) runs on one of two worker "
     "threads, bounded by what is left of connect_timeout; a failed handshake is a connect "
     "failure (the next server is tried)."},
    {"tls_ca_cert_file", "",
     "Absolute path of a PEM file of trusted CAs for ldaps:// and start_tls (a private CA); "
     "empty: the system's CA store. Checked when the route table is loaded."},
    {"tls_require_cert", "no",
     "yes: the server's certificate must chain to a trusted CA and name the server_host "
     "(an IP address in it for a numeric address), else the connection fails with the "
     "certificate problem logged; no: encrypted but not checked."},
    {"version", "3", "LDAP protocol version; only 3 (Postfix's default is 2)."},
    {"pool_size", "4",
     "Most connections to the directory at once; lookups beyond what they carry wait "
     "(within their timeout) for a free slot."},
    {"max_inflight", "32",
     "Most searches outstanding on one connection at once. Keep it under the server's own "
     "limit: OpenLDAP's slapd closes a connection with more pending requests than "
     "conn_max_pending (100 anonymous) or conn_max_pending_auth (1000 after a bind)."},
    {"connect_timeout", "3s", "Deadline to connect to one server before trying the next."},
    {"idle_timeout", "60s",
     "Close a connection idle this long and open a fresh one when needed, before a "
     "firewall or the server's own idletimeout drops it silently (TCP keepalive is on "
     "too)."},
    {"disabled_attribute", "",
     "With disabled_value: an entry whose attribute has this value (case-insensitive) is "
     "a mailbox that exists but must be refused (invalid, with its own text), e.g. "
     "accountStatus = disabled."},
    {"disabled_value", "", "The value of disabled_attribute that means disabled."},
};
const size_t ldap_conf_nparams = sizeof(ldap_conf_params) / sizeof(ldap_conf_params[0]);

const struct ldap_conf_param *ldap_conf_param_split(const char *name, size_t len, const char **src,
                                                    size_t *srclen)
{
    const struct ldap_conf_param *best = NULL;
    size_t bestlen = 0;

    if (len < 5 || memcmp(name, "ldap_", 5) != 0)
        return NULL;
    for (size_t i = 0; i < ldap_conf_nparams; i++) {
        size_t plen = strlen(ldap_conf_params[i].name);
        /* "ldap_" + at least one character + "_" + the parameter */
        if (len < 5 + 1 + 1 + plen || plen <= bestlen)
            continue;
        if (name[len - plen - 1] != '_' ||
            memcmp(name + len - plen, ldap_conf_params[i].name, plen) != 0)
            continue;
        best = &ldap_conf_params[i];
        bestlen = plen;
    }
    if (best != NULL) {
        *src = name + 5;
        *srclen = len - 5 - bestlen - 1;
    }
    return best;
}

/* dupstr - strdup that the caller checks */
static char *dupstr(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* next_item - the next word of a space/comma list at *p (len in *n), or NULL at the end */
static const char *next_item(const char **p, size_t *n)
{
    const char *s = *p + strspn(*p, " \t,");
    if (*s == '\0')
        return NULL;
    *n = strcspn(s, " \t,");
    *p = s + *n;
    return s;
}

/* pct_decode - ldapi paths are %-encoded; -1 on a bad escape or a NUL */
static int pct_decode(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            c = (char)strtol(hex, NULL, 16);
            if (c == '\0')
                return -1;
            i += 2;
        }
        if (o + 1 >= size)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return o > 0 ? 0 : -1;
}

/*
 * host_name_ok - a DNS host name the resolver will take: labels of
 * letters, digits, '-' and '_', 1..63 bytes, at most 253 bytes in all,
 * not ending in a dot, no label starting with '-'
 */
static int host_name_ok(const char *h)
{
    size_t n = strlen(h), label = 0;

    if (n == 0 || n > LDAP_URI_HOST_MAX || h[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (isalnum((unsigned char)h[i]) || h[i] == '_' || (h[i] == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* parse_uri - one server_host item into u; -1 and a reason */
static int parse_uri(const char *s, size_t len, int defport, struct ldap_uri *u, char *why,
                     size_t whylen)
{
    memset(u, 0, sizeof(*u));
    int tls = 0;
    if (len >= 8 && strncasecmp(s, "ldapi://", 8) == 0) {
        size_t plen = len - 8;
        if (plen > 0 && s[8 + plen - 1] == '/')
            plen--;
        if (pct_decode(s + 8, plen, u->path, sizeof(u->path)) < 0 || u->path[0] != '/') {
            snprintf(why, whylen, "ldapi:// needs an absolute, %%2F-encoded socket path");
            return -1;
        }
        u->kind = LDAP_URI_IPC;
        snprintf(u->text, sizeof(u->text), "%.*s", (int)len, s);
        return 0;
    }
    if (len >= 8 && strncasecmp(s, "ldaps://", 8) == 0) {
        s += 8;
        len -= 8;
        tls = 1;
        defport = 636;
        if (len > 0 && s[len - 1] == '/')
            len--;
    } else if (len >= 7 && strncasecmp(s, "ldap://", 7) == 0) {
        s += 7;
        len -= 7;
        if (len > 0 && s[len - 1] == '/')
            len--;
    } else if (memchr(s, '/', len) != NULL) {
        snprintf(why, whylen, "not an ldap:// or ldapi:// URI nor ADDRESS[:PORT]");
        return -1;
    }
    char host[VALUE_HOST_MAX];
    int port = defport;
    if (len == 0 || value_parse_hostport(s, len, 0, host, sizeof(host), &port) != VALUE_OK ||
        port <= 0) {
        snprintf(why, whylen, "not ADDRESS[:PORT] or [IPV6][:PORT]");
        return -1;
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) == 1) {
        u->kind = LDAP_URI_TCP4;
    } else if (inet_pton(AF_INET6, host, buf) == 1) {
        u->kind = LDAP_URI_TCP6;
    } else if (host_name_ok(host)) {
        u->kind = LDAP_URI_NAME;
    } else {
        snprintf(why, whylen, "%.64s: neither a numeric address nor a host name", host);
        return -1;
    }
    snprintf(u->host, sizeof(u->host), "%s", host); /* host_name_ok bounds it */
    u->port = port;
    u->tls = tls;
    if (u->kind == LDAP_URI_TCP6)
        snprintf(u->text, sizeof(u->text), "%s://[%s]:%d", tls ? "ldaps" : "ldap", host, port);
    else
        snprintf(u->text, sizeof(u->text), "%s://%s:%d", tls ? "ldaps" : "ldap", host, port);
    return 0;
}

/* attr_ok - an attribute description: letters, digits, '-', ';', '.' */
static int attr_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != ';' && s[i] != '.')
            return 0;
    return 1;
}

/* read_pw_file - the first line of path, which only its owner may read */
static int read_pw_file(const char *path, char **out, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    char buf[LDAP_CONF_PW_MAX + 1];

    if (fd < 0) {
        snprintf(why, whylen, "%.200s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%.200s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, whylen, "%.200s: readable by others (mode %03o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        snprintf(why, whylen, "%.200s: %s", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    size_t l = strcspn(buf, "\r\n");
    if (l == (size_t)n && n == (ssize_t)sizeof(buf) - 1) {
        snprintf(why, whylen, "%.200s: password too long", path);
        return -1;
    }
    buf[l] = '\0';
    if (l == 0 || memchr(buf, '\0', l) != NULL) {
        snprintf(why, whylen, "%.200s: empty password", path);
        return -1;
    }
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out != NULL ? 0 : -1;
}

/* apply - one parameter value into c; -1 and a reason */
static int apply(struct ldap_conf *c, const char *name, const char *v, char *why, size_t whylen,
                 int *defport, const char **hosts, const char **pwfile)
{
    long long n;
    int b;

#define DURATION(field, lo, hi)                                                                    \
    do {                                                                                           \
        if (value_parse_duration(v, VALUE_SECONDS, lo, hi, &n) != VALUE_OK) {                      \
            snprintf(why, whylen, "a duration from %lldms to %llds", (long long)(lo),              \
                     (long long)(hi) / 1000);                                                      \
            return -1;                                                                             \
        }                                                                                          \
        c->field = (int)n;                                                                         \
        return 0;                                                                                  \
    } while (0)
#define COUNT(field, lo, hi)                                                                       \
    do {                                                                                           \
        if (value_parse_count(v, lo, hi, &n) != VALUE_OK) {                                        \
            snprintf(why, whylen, "a number from %lld to %lld", (long long)(lo), (long long)(hi)); \
            return -1;                                                                             \
        }                                                                                          \
        c->field = (int)n;                                                                         \
        return 0;                                                                                  \
    } while (0)
#define STRING(field)                                                                              \
    do {                                                                                           \
        free(c->field);                                                                            \
        c->field = dupstr(v);                                                                      \
        return c->field != NULL ? 0 : -1;                                                          \
    } while (0)

    if (strcmp(name, "server_host") == 0) {
        *hosts = v;
        return 0;
    }
    if (strcmp(name, "server_port") == 0) {
        if (value_parse_count(v, 1, 65535, &n) != VALUE_OK) {
            snprintf(why, whylen, "a port from 1 to 65535");
            return -1;
        }
        *defport = (int)n;
        return 0;
    }
    if (strcmp(name, "search_base") == 0)
        STRING(search_base);
    if (strcmp(name, "scope") == 0) {
        if (strcasecmp(v, "base") == 0)
            c->scope = LDAP_CONF_SCOPE_BASE;
        else if (strcasecmp(v, "one") == 0)
            c->scope = LDAP_CONF_SCOPE_ONE;
        else if (strcasecmp(v, "sub") == 0)
            c->scope = LDAP_CONF_SCOPE_SUB;
        else {
            snprintf(why, whylen, "base, one or sub");
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "query_filter") == 0) {
        if (ldap_filter_check(v, why, whylen) < 0)
            return -1;
        STRING(query_filter);
    }
    if (strcmp(name, "domain") == 0) {
        const char *p = v, *s;
        size_t len;
        for (int i = 0; i < c->ndomains; i++) {
            free(c->domains[i]);
            c->domains[i] = NULL;
        }
        c->ndomains = 0;
        while ((s = next_item(&p, &len)) != NULL) {
            if (c->ndomains == LDAP_CONF_MAX_DOMAINS) {
                snprintf(why, whylen, "at most %d domains", LDAP_CONF_MAX_DOMAINS);
                return -1;
            }
            if (len > 0 && s[len - 1] == '.')
                len--;
            for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_') {
                    snprintf(why, whylen, "a list of domain names (no map references)");
                    return -1;
                }
            if (len == 0 || len > 253) {
                snprintf(why, whylen, "a list of domain names");
                return -1;
            }
            char *d = strndup(s, len);
            if (d == NULL)
                return -1;
            for (char *q = d; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            c->domains[c->ndomains++] = d;
        }
        return 0;
    }
    if (strcmp(name, "result_attribute") == 0) {
        const char *p = v, *s;
        size_t len;
        for (int i = 0; i < c->nresult_attrs; i++) {
            free(c->attrs[i]);
            c->attrs[i] = NULL;
        }
        c->nresult_attrs = 0;
        while ((s = next_item(&p, &len)) != NULL) {
            if (c->nresult_attrs == LDAP_CONF_MAX_ATTRS || !attr_ok(s, len)) {
                snprintf(why, whylen, "at most %d attribute names", LDAP_CONF_MAX_ATTRS);
                return -1;
            }
            if ((c->attrs[c->nresult_attrs] = strndup(s, len)) == NULL)
                return -1;
            c->nresult_attrs++;
        }
        return 0;
    }
    if (strcmp(name, "bind") == 0) {
        if (value_parse_bool(v, &b) != VALUE_OK) {
            snprintf(why, whylen, "yes or no (SASL binds are not supported)");
            return -1;
        }
        c->bind = b;
        return 0;
    }
    if (strcmp(name, "bind_dn") == 0)
        STRING(bind_dn);
    if (strcmp(name, "bind_pw") == 0)
        STRING(bind_pw);
    if (strcmp(name, "bind_pw_file") == 0) {
        *pwfile = v;
        return 0;
    }
    if (strcmp(name, "timeout") == 0)
        DURATION(timeout_ms, 10, 300000);
    if (strcmp(name, "connect_timeout") == 0)
        DURATION(connect_timeout_ms, 10, 60000);
    if (strcmp(name, "idle_timeout") == 0)
        DURATION(idle_timeout_ms, 1000, 86400000);
    if (strcmp(name, "size_limit") == 0)
        COUNT(size_limit, 0, 1000000);
    if (strcmp(name, "dereference") == 0)
        COUNT(deref, 0, 3);
    if (strcmp(name, "pool_size") == 0)
        COUNT(pool_size, 1, 64);
    if (strcmp(name, "max_inflight") == 0)
        COUNT(max_inflight, 1, 1000);
    if (strcmp(name, "version") == 0) {
        if (strcmp(v, "3") != 0) {
            snprintf(why, whylen, "only 3 is supported");
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "chase_referrals") == 0) {
        if (value_parse_bool(v, &b) != VALUE_OK || b) {
            snprintf(why, whylen, "must be no: libldap would chase referrals with blocking calls");
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "start_tls") == 0 || strcmp(name, "tls_require_cert") == 0) {
        if (value_parse_bool(v, &b) != VALUE_OK) {
            snprintf(why, whylen, "yes or no");
            return -1;
        }
        if (strcmp(name, "start_tls") == 0)
            c->start_tls = b;
        else
            c->tls_require_cert = b;
        return 0;
    }
    if (strcmp(name, "tls_ca_cert_file") == 0) {
        if (*v != '\0') {
            struct stat st;
            if (*v != '/') {
                snprintf(why, whylen, "an absolute path");
                return -1;
            }
            if (stat(v, &st) < 0 || !S_ISREG(st.st_mode) || access(v, R_OK) < 0) {
                snprintf(why, whylen, "%.200s: not a readable file", v);
                return -1;
            }
        }
        STRING(tls_ca_cert_file);
    }
    if (strcmp(name, "disabled_attribute") == 0) {
        if (*v != '\0' && !attr_ok(v, strlen(v))) {
            snprintf(why, whylen, "an attribute name");
            return -1;
        }
        STRING(disabled_attribute);
    }
    if (strcmp(name, "disabled_value") == 0)
        STRING(disabled_value);
    snprintf(why, whylen, "unknown parameter");
    return -1;
#undef DURATION
#undef COUNT
#undef STRING
}

/*
 * finish - the checks that need several parameters; -1 and a reason, with
 * *which set to "server_host" or "bind_pw_file" when the error is in that
 * value (the caller then names its file and line).
 */
static int finish(struct ldap_conf *c, const char *hosts, int defport, const char *pwfile,
                  char *why, size_t whylen, const char **which)
{
    const char *p = hosts, *s;
    size_t len;

    while ((s = next_item(&p, &len)) != NULL) {
        char uwhy[160];
        *which = "server_host";
        if (c->nuris == LDAP_CONF_MAX_URIS) {
            snprintf(why, whylen, "at most %d servers", LDAP_CONF_MAX_URIS);
            return -1;
        }
        if (parse_uri(s, len, defport, &c->uris[c->nuris], uwhy, sizeof(uwhy)) < 0) {
            snprintf(why, whylen, "%s", uwhy);
            return -1;
        }
        c->nuris++;
    }
    if (c->nuris == 0) {
        snprintf(why, whylen, "no server");
        return -1;
    }
    *which = NULL;
    if (pwfile != NULL && *pwfile != '\0') {
        if (c->bind_pw != NULL && *c->bind_pw != '\0') {
            snprintf(why, whylen, "bind_pw and bind_pw_file: set only one");
            return -1;
        }
        free(c->bind_pw);
        c->bind_pw = NULL;
        if (read_pw_file(pwfile, &c->bind_pw, why, whylen) < 0) {
            *which = "bind_pw_file";
            return -1;
        }
    }
    if (c->bind && (c->bind_dn == NULL || *c->bind_dn == '\0')) {
        snprintf(why, whylen, "bind = yes needs bind_dn");
        return -1;
    }
    if (c->bind && (c->bind_pw == NULL || *c->bind_pw == '\0')) {
        snprintf(why, whylen, "bind = yes needs bind_pw or bind_pw_file");
        return -1;
    }
    int da = c->disabled_attribute != NULL && *c->disabled_attribute != '\0';
    int dv = c->disabled_value != NULL && *c->disabled_value != '\0';
    if (da != dv) {
        snprintf(why, whylen, "disabled_attribute and disabled_value go together");
        return -1;
    }
    if (!da) {
        free(c->disabled_attribute);
        free(c->disabled_value);
        c->disabled_attribute = c->disabled_value = NULL;
    }
    /* attributes to ask for: the result attributes, the disabled one, or none ("1.1") */
    int na = c->nresult_attrs;
    if (da)
        c->attrs[na++] = dupstr(c->disabled_attribute);
    if (na == 0)
        c->attrs[na++] = dupstr("1.1");
    for (int i = c->nresult_attrs; i < na; i++)
        if (c->attrs[i] == NULL)
            return -1;
    c->attrs[na] = NULL;
    return 0;
}

int ldap_conf_parse(const struct backend_source *src, struct ldap_conf *c, char *err, size_t errlen)
{
    const char *hosts = NULL, *pwfile = NULL;
    int defport = 389;
    char why[320];

    memset(c, 0, sizeof(*c));
    c->name = dupstr(src->name);
    c->search_base = dupstr("");
    c->query_filter = dupstr("(mail=%s)");
    c->scope = LDAP_CONF_SCOPE_SUB;
    c->timeout_ms = 10000;
    c->connect_timeout_ms = 3000;
    c->idle_timeout_ms = 60000;
    c->pool_size = 4;
    c->max_inflight = 32;
    if (c->name == NULL || c->search_base == NULL || c->query_filter == NULL) {
        snprintf(err, errlen, "out of memory");
        ldap_conf_free(c);
        return -1;
    }
    for (size_t i = 0; i < src->nparams; i++) {
        const struct backend_param *bp = &src->params[i];
        if (apply(c, bp->name, bp->value, why, sizeof(why), &defport, &hosts, &pwfile) < 0) {
            snprintf(err, errlen, "%s:%d: ldap_%s_%s: %s", bp->file != NULL ? bp->file : "?",
                     bp->line, src->name, bp->name, why);
            ldap_conf_free(c);
            return -1;
        }
    }
    const char *which = NULL;
    if (finish(c, hosts != NULL ? hosts : "ldap://127.0.0.1:389", defport, pwfile, why, sizeof(why),
               &which) < 0) {
        const struct backend_param *bp = NULL;
        for (size_t i = 0; which != NULL && i < src->nparams; i++)
            if (strcmp(src->params[i].name, which) == 0)
                bp = &src->params[i];
        if (bp != NULL)
            snprintf(err, errlen, "%s:%d: ldap_%s_%s: %s", bp->file != NULL ? bp->file : "?",
                     bp->line, src->name, bp->name, why);
        else
            snprintf(err, errlen, "ldap source %s: %s%s%s", src->name, which ? which : "",
                     which ? ": " : "", why);
        ldap_conf_free(c);
        return -1;
    }
    return 0;
}

void ldap_conf_free(struct ldap_conf *c)
{
    free(c->name);
    free(c->search_base);
    free(c->query_filter);
    for (int i = 0; i < c->ndomains; i++)
        free(c->domains[i]);
    for (int i = 0; i < LDAP_CONF_MAX_ATTRS + 2 && c->attrs[i] != NULL; i++)
        free(c->attrs[i]);
    free(c->bind_dn);
    if (c->bind_pw != NULL) {
        explicit_bzero(c->bind_pw, strlen(c->bind_pw));
        free(c->bind_pw);
    }
    free(c->disabled_attribute);
    free(c->disabled_value);
    free(c->tls_ca_cert_file);
    memset(c, 0, sizeof(*c));
}

int ldap_conf_serves(const struct ldap_conf *c, const char *domain)
{
    if (c->ndomains == 0)
        return 1;
    for (int i = 0; i < c->ndomains; i++)
        if (strcasecmp(c->domains[i], domain) == 0)
            return 1;
    return 0;
}
