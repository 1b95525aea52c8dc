/*
 * ldap_conf.h - the parameters of one named LDAP source ("ldap:NAME" in
 * the route table; "ldap_NAME_PARAM = value" in callahead.conf), with
 * Postfix ldap_table(5) names where they fit, checked and turned into a
 * struct ldap_conf when the route table is opened.
 *
 * One table (ldap_conf_params) lists every parameter with its default and
 * the sentence that documents it: the front end's parser asks it whether
 * a name is an LDAP parameter, the man page prints it, and ldap_conf_parse
 * applies it. It needs no libldap, so a build without LDAP still checks a
 * configuration and can say which part it cannot run.
 */
#ifndef CALLAHEAD_LDAP_CONF_H
#define CALLAHEAD_LDAP_CONF_H

#include <stddef.h>

struct backend_source; /* backend.h */

#define LDAP_CONF_MAX_URIS 8
#define LDAP_CONF_MAX_ATTRS 8
#define LDAP_CONF_MAX_DOMAINS 64

/* ldap_conf_param - one parameter: name, default, documentation */
struct ldap_conf_param {
    const char *name;
    const char *def;
    const char *doc;
};
extern const struct ldap_conf_param ldap_conf_params[];
extern const size_t ldap_conf_nparams;

/*
 * ldap_conf_param_split - split a callahead.conf name (len bytes) of the
 * form "ldap_NAME_PARAM" into the source name (*src, *srclen) and the
 * parameter's table entry; NULL when name does not end in a known
 * parameter after a non-empty source name. The longest parameter wins.
 */
const struct ldap_conf_param *ldap_conf_param_split(const char *name, size_t len, const char **src,
                                                    size_t *srclen);

/* LDAP_URI_NAME: a host name, resolved asynchronously at each connect (ldap_pool.h) */
enum ldap_uri_kind { LDAP_URI_TCP4, LDAP_URI_TCP6, LDAP_URI_IPC, LDAP_URI_NAME };

#define LDAP_URI_HOST_MAX 253 /* longest host name (a DNS name without its trailing dot) */

/* ldap_uri - one server_host entry, resolved to what connect() needs */
struct ldap_uri {
    enum ldap_uri_kind kind;
    char host[LDAP_URI_HOST_MAX + 1]; /* numeric IPv4 or IPv6 address, or host name (TCP) */
    int port;                         /* TCP */
    int tls;                          /* ldaps:// */
    char path[108];                   /* ldapi:// socket path */
    char text[300]; /* for logs and for ldap_init_fd: "ldap://127.0.0.1:389" or "ldaps://..." */
};

enum ldap_scope_kind { LDAP_CONF_SCOPE_BASE = 0, LDAP_CONF_SCOPE_ONE = 1, LDAP_CONF_SCOPE_SUB = 2 };

/* ldap_conf - a parsed, checked source; every string owned by it */
struct ldap_conf {
    char *name;
    struct ldap_uri uris[LDAP_CONF_MAX_URIS];
    int nuris;
    char *search_base;
    int scope; /* enum ldap_scope_kind, the values of LDAP_SCOPE_* */
    char *query_filter;
    char *domains[LDAP_CONF_MAX_DOMAINS]; /* lower case; none = every domain */
    int ndomains;
    char *attrs[LDAP_CONF_MAX_ATTRS + 2]; /* result_attribute + disabled_attribute, NULL-ended */
    int nresult_attrs;                    /* how many of attrs are result attributes */
    int bind;
    char *bind_dn;
    char *bind_pw;
    int timeout_ms, connect_timeout_ms, idle_timeout_ms;
    int size_limit;
    int deref; /* 0 never, 1 searching, 2 finding, 3 always: LDAP_DEREF_* */
    int pool_size, max_inflight;
    char *disabled_attribute; /* NULL: no disabled rule */
    char *disabled_value;
    int start_tls;          /* StartTLS on ldap:// connections */
    char *tls_ca_cert_file; /* "" or NULL: the system's CA store */
    int tls_require_cert;   /* the certificate must check (chain and name) */
};

/*
 * ldap_conf_parse - the source's parameters over the defaults into c.
 * Every value is checked; an error is "file:line: NAME_PARAM: reason" for
 * a bad value, or a reason naming the source for a missing one. Returns 0,
 * or -1 with c freed. bind_pw_file is read here (at open, not on the
 * loop) and must not be readable by group or others.
 */
int ldap_conf_parse(const struct backend_source *src, struct ldap_conf *c, char *err,
                    size_t errlen);

/* ldap_conf_free - free what c owns; c may be zeroed or half-filled */
void ldap_conf_free(struct ldap_conf *c);

/* ldap_conf_serves - does c look up addresses in domain (lower case)? */
int ldap_conf_serves(const struct ldap_conf *c, const char *domain);

#endif
