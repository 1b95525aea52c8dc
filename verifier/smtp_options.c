/*
 * smtp_options.c - an smtp: route's options into struct smtp_options.
 *
 * Each option is parsed with the shared grammars of route.h (durations,
 * counts) and checked against its limit here, once, when the route is
 * opened; a bad value stops the route with a message naming the option.
 */
#include "smtp_options.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns.h"

#define SMTP_MAX_ADDRESSES_LIMIT (DNS_MAX_TARGETS * DNS_MAX_ADDRS)

/*
 * smtp_option_decls - the options smtp_options_parse reads (docs/ROUTES.md),
 * for the verifier's check of every route before open; durations in ms
 */
const struct value_decl smtp_option_decls[] = {
    {"connect_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"greeting_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"command_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"ehlo_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"mail_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"rcpt_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"rset_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"idle_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"quit_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"queue_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"max_connections", VALUE_COUNT, 1, SMTP_MAX_CONNECTIONS_LIMIT},
    {"max_rcpts_per_session", VALUE_COUNT, 1, SMTP_MAX_RCPTS_LIMIT},
    {"max_rejects_per_session", VALUE_COUNT, 1, SMTP_MAX_RCPTS_LIMIT},
    {"max_addresses", VALUE_COUNT, 1, SMTP_MAX_ADDRESSES_LIMIT},
    {"reuse", VALUE_BOOL, 0, 1},
    {"pipelining", VALUE_BOOL, 0, 1},
    {"port", VALUE_COUNT, 1, 65535},
    {"sender", VALUE_TEXT, 0, 0},
    {"helo_name", VALUE_TEXT, 0, 0},
    {"invalid_codes", VALUE_TEXT, 0, 0},
    {"invalid_status", VALUE_TEXT, 0, 0},
    {"bare_5xx", VALUE_TEXT, 0, 0},
    {"confirm_window", VALUE_DURATION, 1, SMTP_CONFIRM_WINDOW_LIMIT_MS},
    {"tls", VALUE_TEXT, 0, 0},
    {"tls_timeout", VALUE_DURATION, 1, SMTP_TIMEOUT_LIMIT_MS},
    {"tls_verify", VALUE_TEXT, 0, 0},
    {"tls_ca_file", VALUE_TEXT, 0, 0},
    {NULL, 0, 0, 0},
};

/* parse_duration - a route option's duration (value_parse_duration, at most an hour) into tv */
static int parse_duration(const char *s, struct timeval *tv)
{
    long long ms;

    if (value_parse_duration(s, VALUE_SECONDS, 1, SMTP_TIMEOUT_LIMIT_MS, &ms) != VALUE_OK)
        return -1;
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return 0;
}

/* parse_invalid_codes - "550,551,553", "55x", "5xx" into the invalid[] table */
static int parse_invalid_codes(const char *s, unsigned char invalid[100])
{
    const char *p = s;

    memset(invalid, 0, 100);
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        const char *q = p;
        size_t len;

        while (*q != '\0' && *q != ',')
            q++;
        len = (size_t)(q - p);
        /* only 5xx can mean invalid: a 4xx must never become a permanent reject */
        if (len != 3 || p[0] != '5' || !((p[1] >= '0' && p[1] <= '9') || p[1] == 'x') ||
            !((p[2] >= '0' && p[2] <= '9') || p[2] == 'x'))
            return -1;
        for (int code = 0; code < 100; code++) {
            if ((p[1] == 'x' || code / 10 == p[1] - '0') &&
                (p[2] == 'x' || code % 10 == p[2] - '0'))
                invalid[code] = 1;
        }
        p = *q == ',' ? q + 1 : q;
        if (*q == ',' && *p == '\0')
            return -1;
    }
    return 0;
}

/* parse_sender - sender= value: "", "<>", "user@dom", "<user@dom>"; no spaces or controls */
static int parse_sender(const char *s, char *out, size_t size)
{
    size_t len = strlen(s);

    if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
        s++;
        len -= 2;
    }
    if (len > ADDRESS_MAX || len >= size)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '>')
            return -1;
    }
    if (len > 0 && memchr(s, '@', len) == NULL)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* valid_helo - a host name or an address literal, nothing that could break the command line */
static int valid_helo(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > SMTP_HELO_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == '[' || ch == ']' || ch == ':'))
            return 0;
    }
    return 1;
}

/*
 * parse_tls - tls=, tls_verify=, tls_ca_file=. Certificate checks belong to
 * tls=encrypt only: a tls=may session that failed them would go on in
 * plaintext, which protects nothing, so asking for them there is refused
 * rather than silently weaker than it reads.
 */
static int parse_tls(const struct route *r, struct smtp_options *o, char *err, size_t errlen)
{
    const char *v = route_option(r, "tls", "may");
    const char *ca = route_option(r, "tls_ca_file", NULL);
    const char *vf;

    if (strcmp(v, "none") == 0) {
        o->tls = SMTP_TLS_NONE;
    } else if (strcmp(v, "may") == 0) {
        o->tls = SMTP_TLS_MAY;
    } else if (strcmp(v, "encrypt") == 0) {
        o->tls = SMTP_TLS_ENCRYPT;
    } else {
        snprintf(err, errlen, "tls=%s: expected none, may or encrypt", v);
        return -1;
    }
    if (ca != NULL) {
        if (ca[0] != '/' || strlen(ca) > SMTP_TLS_CA_FILE_MAX) {
            snprintf(err, errlen, "tls_ca_file=%s: expected an absolute path", ca);
            return -1;
        }
        snprintf(o->tls_ca_file, sizeof(o->tls_ca_file), "%s", ca);
    }
    vf = route_option(r, "tls_verify", ca != NULL ? "name" : "none");
    if (strcmp(vf, "none") == 0) {
        o->tls_verify = SMTP_TLS_VERIFY_NONE;
    } else if (strcmp(vf, "ca") == 0) {
        o->tls_verify = SMTP_TLS_VERIFY_CA;
    } else if (strcmp(vf, "name") == 0) {
        o->tls_verify = SMTP_TLS_VERIFY_NAME;
    } else {
        snprintf(err, errlen, "tls_verify=%s: expected none, ca or name", vf);
        return -1;
    }
    if (o->tls != SMTP_TLS_ENCRYPT && (ca != NULL || o->tls_verify != SMTP_TLS_VERIFY_NONE)) {
        snprintf(err, errlen,
                 "tls_verify and tls_ca_file need tls=encrypt: with tls=%s a failed check "
                 "would only mean plaintext",
                 v);
        return -1;
    }
    if (ca != NULL && o->tls_verify == SMTP_TLS_VERIFY_NONE) {
        snprintf(err, errlen, "tls_ca_file=%s with tls_verify=none: the file would not be used",
                 ca);
        return -1;
    }
    return 0;
}

int smtp_options_parse(const struct route *r, int is_mx, struct smtp_options *o, char *err,
                       size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
        const char *def; /* NULL: command_timeout */
    } timeouts[] = {
        {"connect_timeout", offsetof(struct smtp_options, connect_timeout), "5s"},
        {"greeting_timeout", offsetof(struct smtp_options, greeting_timeout), "10s"},
        {"ehlo_timeout", offsetof(struct smtp_options, ehlo_timeout), NULL},
        {"mail_timeout", offsetof(struct smtp_options, mail_timeout), NULL},
        {"rcpt_timeout", offsetof(struct smtp_options, rcpt_timeout), NULL},
        {"rset_timeout", offsetof(struct smtp_options, rset_timeout), NULL},
        {"idle_timeout", offsetof(struct smtp_options, idle_timeout), "5s"},
        {"quit_timeout", offsetof(struct smtp_options, quit_timeout), "2s"},
        {"tls_timeout", offsetof(struct smtp_options, tls_timeout), NULL},
    };
    static const struct {
        const char *name;
        const char *def;
        int max;
        size_t off;
    } counts[] = {
        {"max_connections", "20", SMTP_MAX_CONNECTIONS_LIMIT,
         offsetof(struct smtp_options, max_connections)},
        /* 100: the recipients RFC 5321 4.5.3.1.8 says a server must take in one transaction */
        {"max_rcpts_per_session", "100", SMTP_MAX_RCPTS_LIMIT,
         offsetof(struct smtp_options, max_rcpts)},
        /* 8: below Postfix's smtpd_soft_error_limit (10), past which a next hop that is
         * Postfix delays every reply by a second once our probes were rejected */
        {"max_rejects_per_session", "8", SMTP_MAX_RCPTS_LIMIT,
         offsetof(struct smtp_options, max_rejects)},
        {"max_addresses", "5", SMTP_MAX_ADDRESSES_LIMIT,
         offsetof(struct smtp_options, max_addresses)},
    };
    struct timeval tv;
    const char *v;
    const char *command_timeout = route_option(r, "command_timeout", "10s");

    memset(o, 0, sizeof(*o));
    if (parse_duration(command_timeout, &tv) < 0) {
        snprintf(err, errlen, "command_timeout=%s: expected seconds, e.g. 10s or 500ms",
                 command_timeout);
        return -1;
    }
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        v = route_option(r, timeouts[i].name, timeouts[i].def ? timeouts[i].def : command_timeout);
        if (parse_duration(v, (struct timeval *)((char *)o + timeouts[i].off)) < 0) {
            snprintf(err, errlen, "%s=%s: expected seconds, e.g. 10s or 500ms", timeouts[i].name,
                     v);
            return -1;
        }
    }
    v = route_option(r, "queue_timeout", "10s");
    if (parse_duration(v, &o->queue_timeout) < 0) {
        snprintf(err, errlen, "queue_timeout=%s: expected seconds, e.g. 10s or 500ms", v);
        return -1;
    }
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        v = route_option(r, counts[i].name, counts[i].def);
        long long n;
        if (value_parse_count(v, 1, counts[i].max, &n) != VALUE_OK) {
            snprintf(err, errlen, "%s=%s: expected 1..%d", counts[i].name, v, counts[i].max);
            return -1;
        }
        *(int *)((char *)o + counts[i].off) = (int)n;
    }
    v = route_option(r, "reuse", "yes");
    if (value_parse_bool(v, &o->reuse) != VALUE_OK) {
        snprintf(err, errlen, "reuse=%s: expected yes or no", v);
        return -1;
    }
    v = route_option(r, "pipelining", "yes");
    if (value_parse_bool(v, &o->pipelining) != VALUE_OK) {
        snprintf(err, errlen, "pipelining=%s: expected yes or no", v);
        return -1;
    }
    v = route_option(r, "port", NULL);
    if (v != NULL) {
        long long port;
        if (!is_mx) {
            snprintf(err, errlen, "port=%s: only for smtp:mx; write smtp:[host]:port", v);
            return -1;
        }
        if (value_parse_count(v, 1, 65535, &port) != VALUE_OK) {
            snprintf(err, errlen, "port=%s: expected 1..65535", v);
            return -1;
        }
        o->port = (unsigned)port;
    }
    v = route_option(r, "sender", "");
    if (parse_sender(v, o->sender, sizeof(o->sender)) < 0) {
        snprintf(err, errlen,
                 "sender=%s: expected an address like postmaster@example.org, or empty", v);
        return -1;
    }
    v = route_option(r, "helo_name", NULL);
    if (v == NULL) {
        if (gethostname(o->helo, sizeof(o->helo)) < 0 ||
            (o->helo[sizeof(o->helo) - 1] = '\0', !valid_helo(o->helo)))
            snprintf(o->helo, sizeof(o->helo), "localhost");
    } else if (!valid_helo(v)) {
        snprintf(err, errlen, "helo_name=%s: expected a host name", v);
        return -1;
    } else {
        snprintf(o->helo, sizeof(o->helo), "%s", v);
    }
    v = route_option(r, "invalid_codes", "5xx");
    if (parse_invalid_codes(v, o->invalid) < 0) {
        snprintf(err, errlen, "invalid_codes=%s: expected 5xx codes like 550,551,553 or 55x", v);
        return -1;
    }
    v = route_option(r, "invalid_status", SMTP_INVALID_STATUS_DEFAULT);
    if (smtp_status_set_parse(v, &o->invalid_status) < 0) {
        snprintf(err, errlen,
                 "invalid_status=%s: expected at most %d enhanced status codes like "
                 "5.1.1,5.1.10 or 5.1.x",
                 v, SMTP_STATUS_SET_MAX);
        return -1;
    }
    v = route_option(r, "bare_5xx", "confirm");
    if (strcmp(v, "confirm") == 0) {
        o->bare_5xx = SMTP_BARE_CONFIRM;
    } else if (strcmp(v, "invalid") == 0) {
        o->bare_5xx = SMTP_BARE_INVALID;
    } else if (strcmp(v, "tempfail") == 0) {
        o->bare_5xx = SMTP_BARE_TEMPFAIL;
    } else {
        snprintf(err, errlen, "bare_5xx=%s: expected confirm, invalid or tempfail", v);
        return -1;
    }
    v = route_option(r, "confirm_window", "10m");
    if (value_parse_duration(v, VALUE_SECONDS, 1, SMTP_CONFIRM_WINDOW_LIMIT_MS,
                             &o->confirm_window_ms) != VALUE_OK) {
        snprintf(err, errlen, "confirm_window=%s: expected a duration up to 1d, e.g. 10m", v);
        return -1;
    }
    return parse_tls(r, o, err, errlen);
}
