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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the attributes we keep, and where in struct policy_request they go */
static const struct {
    const char *name;
    size_t offset;
} policy_attrs[] = {
    {"request", offsetof(struct policy_request, request)},
    {"protocol_state", offsetof(struct policy_request, protocol_state)},
    {"protocol_name", offsetof(struct policy_request, protocol_name)},
    {"recipient", offsetof(struct policy_request, recipient)},
    {"sender", offsetof(struct policy_request, sender)},
    {"client_address", offsetof(struct policy_request, client_address)},
    {"client_name", offsetof(struct policy_request, client_name)},
    {"helo_name", offsetof(struct policy_request, helo_name)},
    {"queue_id", offsetof(struct policy_request, queue_id)},
    {"sasl_username", offsetof(struct policy_request, sasl_username)},
    {"instance", offsetof(struct policy_request, instance)},
};
#define POLICY_NATTRS (sizeof(policy_attrs) / sizeof(policy_attrs[0]))

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
    for (size_t i = 0; i < POLICY_NATTRS; i++) {
        char **slot = policy_attr_slot(r, i);
        free(*slot);
        *slot = NULL;
    }
    r->nattributes = 0;
    r->size = 0;
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

    for (size_t i = 0; i < POLICY_NATTRS; i++) {
        if (strlen(policy_attrs[i].name) != namelen ||
            memcmp(policy_attrs[i].name, line, namelen) != 0)
            continue;
        char **slot = policy_attr_slot(r, i);
        if (*slot != NULL) {
            /* the name is one of ours, so it is safe to put in the message */
            if (err && errlen)
                snprintf(err, errlen, "duplicate attribute %s", policy_attrs[i].name);
            return POLICY_LINE_ERROR;
        }
        const char *val = eq + 1;
        size_t vlen = len - namelen - 1;
        char *copy = malloc(vlen + 1);
        if (copy == NULL)
            return policy_error(err, errlen, "out of memory");
        memcpy(copy, val, vlen);
        copy[vlen] = '\0';
        *slot = copy;
        break;
    }
    return POLICY_LINE_MORE;
}

int policy_format_reply(const char *action, char *buf, size_t size)
{
    if (action == NULL || strpbrk(action, "\r\n") != NULL)
        return -1;
    int n = snprintf(buf, size, "action=%s\n\n", action);
    if (n < 0 || (size_t)n >= size)
        return -1;
    return n;
}
