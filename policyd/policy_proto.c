/*
 * policy_proto.c - parse Postfix SMTPD access policy requests, one line at a
 * time, and format the one-line reply (see policy_proto.h).
 *
 * The connection code hands us each line without its LF; we never see the
 * socket. Everything is bounded by struct policy_limits, so a client that
 * sends a 64 KiB line, NUL bytes or ten thousand attributes gets a protocol
 * error instead of our memory. Attributes we do not use are counted and
 * ignored, as SMTPD_POLICY_README asks (Postfix adds attributes over time).
 */
#include "policy_proto.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * the attributes we keep, and where in struct policy_request they go. Every
 * line of every request is looked up here (about 30 per request, two thirds
 * of them names we ignore), so the lookup is cheap before it is exact: a
 * name whose length no kept name has is ignored at once (POLICY_ATTR_LENS),
 * and within the table the stored length and the first byte are compared
 * before the whole name.
 */
#define POLICY_ATTRS(X)                                                                            \
    X("request", request)                                                                          \
    X("protocol_state", protocol_state)                                                            \
    X("protocol_name", protocol_name)                                                              \
    X("recipient", recipient)                                                                      \
    X("sender", sender)                                                                            \
    X("client_address", client_address)                                                            \
    X("client_name", client_name)                                                                  \
    X("helo_name", helo_name)                                                                      \
    X("queue_id", queue_id)                                                                        \
    X("sasl_username", sasl_username)                                                              \
    X("instance", instance)
#define POLICY_ATTR_ENTRY(name, field)                                                             \
    {name, sizeof(name) - 1, offsetof(struct policy_request, field)},
#define POLICY_ATTR_LEN_BIT(name, field) | (UINT64_C(1) << (sizeof(name) - 1))
/* bit n set: some kept name is n bytes long (all are shorter than 64) */
#define POLICY_ATTR_LENS (0 POLICY_ATTRS(POLICY_ATTR_LEN_BIT))

static const struct {
    const char *name;
    size_t len;
    size_t offset;
} policy_attrs[] = {POLICY_ATTRS(POLICY_ATTR_ENTRY)};
#define POLICY_NATTRS (sizeof(policy_attrs) / sizeof(policy_attrs[0]))

/* first block for a request's values: what Postfix sends for the kept attributes fits */
#define POLICY_VALUES_MIN 512

/* policy_attr_slot - the field for one of our attributes */
static char **policy_attr_slot(struct policy_request *r, size_t i)
{
    return (char **)((char *)r + policy_attrs[i].offset);
}

void policy_request_init(struct policy_request *r)
{
    memset(r, 0, sizeof(*r));
}

void policy_request_reset(struct policy_request *r)
{
    for (size_t i = 0; i < POLICY_NATTRS; i++)
        *policy_attr_slot(r, i) = NULL;
    free(r->values);
    r->values = NULL;
    r->values_used = 0;
    r->values_size = 0;
    r->nattributes = 0;
    r->size = 0;
}

/*
 * policy_store_value - copy vlen bytes and a NUL into the request's value
 * block and return the copy, or NULL when out of memory. One block per
 * request instead of one allocation per attribute; when it grows, the
 * fields already set are moved along with it. Its size is bounded by the
 * request's, which the caller has already checked against max_request.
 */
static char *policy_store_value(struct policy_request *r, const char *val, size_t vlen)
{
    size_t need = r->values_used + vlen + 1;

    if (need > r->values_size) {
        size_t size = r->values_size ? r->values_size : POLICY_VALUES_MIN;
        while (size < need)
            size *= 2;
        /* offsets, not old pointers: those may not be used once realloc has moved the block */
        size_t offset[POLICY_NATTRS];
        for (size_t i = 0; i < POLICY_NATTRS; i++) {
            char *slot = *policy_attr_slot(r, i);
            offset[i] = slot != NULL ? (size_t)(slot - r->values) : SIZE_MAX;
        }
        char *grown = realloc(r->values, size);
        if (grown == NULL)
            return NULL;
        for (size_t i = 0; i < POLICY_NATTRS; i++)
            if (offset[i] != SIZE_MAX)
                *policy_attr_slot(r, i) = grown + offset[i];
        r->values = grown;
        r->values_size = size;
    }
    char *copy = r->values + r->values_used;
    memcpy(copy, val, vlen);
    copy[vlen] = '\0';
    r->values_used = need;
    return copy;
}

/*
 * policy_error - format err. Only our own words and numbers go in, never
 * bytes from the request, so the message is safe to log as it is.
 */
static enum policy_line_status policy_error(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return POLICY_LINE_ERROR;
}

enum policy_line_status policy_request_add_line(struct policy_request *r, const char *line,
                                                size_t len, const struct policy_limits *lim,
                                                char *err, size_t errlen)
{
    size_t rawlen = len;

    /* Postfix sends LF only; tolerate one CR from hand-typed or foreign clients */
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > lim->max_line)
        return policy_error(err, errlen, "line too long");
    /* the whole request is bounded, counting the LF we were not shown */
    if (rawlen >= lim->max_request || r->size + rawlen + 1 > lim->max_request)
        return policy_error(err, errlen, "request too large");
    r->size += rawlen + 1;
    if (len > 0 && memchr(line, '\0', len) != NULL)
        return policy_error(err, errlen, "NUL byte in request");

    if (len == 0) {
        if (r->nattributes == 0)
            return policy_error(err, errlen, "empty request");
        return POLICY_LINE_END;
    }

    const char *eq = memchr(line, '=', len);
    if (eq == NULL)
        return policy_error(err, errlen, "attribute without '='");
    size_t namelen = (size_t)(eq - line);
    if (namelen == 0)
        return policy_error(err, errlen, "attribute with empty name");

    if (r->nattributes >= lim->max_attributes)
        return policy_error(err, errlen, "too many attributes");
    r->nattributes++;

    if (namelen >= 64 || !(POLICY_ATTR_LENS & (UINT64_C(1) << namelen)))
        return POLICY_LINE_MORE; /* no kept name is this long: counted and ignored */
    for (size_t i = 0; i < POLICY_NATTRS; i++) {
        if (policy_attrs[i].len != namelen || policy_attrs[i].name[0] != line[0] ||
            memcmp(policy_attrs[i].name, line, namelen) != 0)
            continue;
        char **slot = policy_attr_slot(r, i);
        if (*slot != NULL) {
            /* the name is one of ours, so it is safe to put in the message */
            if (err && errlen)
                snprintf(err, errlen, "duplicate attribute %s", policy_attrs[i].name);
            return POLICY_LINE_ERROR;
        }
        char *copy = policy_store_value(r, eq + 1, len - namelen - 1);
        if (copy == NULL)
            return policy_error(err, errlen, "out of memory");
        *slot = copy;
        break;
    }
    return POLICY_LINE_MORE;
}

/* policy_format_reply - copied, not printed: it runs for every answer (see policy_proto.h) */
int policy_format_reply(const char *action, char *buf, size_t size)
{
    static const char head[] = "action=";
    size_t hlen = sizeof(head) - 1;

    if (action == NULL || strpbrk(action, "\r\n") != NULL)
        return -1;
    size_t alen = strlen(action), n = hlen + alen + 2;
    if (n >= size || n > INT_MAX)
        return -1;
    memcpy(buf, head, hlen);
    memcpy(buf + hlen, action, alen);
    buf[n - 2] = '\n';
    buf[n - 1] = '\n';
    buf[n] = '\0';
    return (int)n;
}
