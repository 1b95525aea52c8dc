/*
 * policy_action.c - check and expand the action templates that turn a
 * verdict into a Postfix access(5) action (see policy_action.h).
 *
 * Templates are checked once, when the configuration is read, so a typo
 * ("550x", "%q") stops the daemon at start-up instead of sending Postfix a
 * reply it rejects with a "bad action" warning at every RCPT. Expansion
 * sanitises every value it inserts: the address comes from the SMTP client
 * and the reason from a next hop, and neither may add a line to the reply.
 */
#include "policy_action.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* access(5) actions that make sense as a policy reply */
static const char *const policy_action_keywords[] = {
    "OK",   "DUNNO",   "REJECT", "DEFER",   "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "WARN",
    "HOLD", "DISCARD", "INFO",   "PREPEND", "FILTER",          "REDIRECT",        "BCC",
};

/* policy_action_err - format err if there is room for it */
static int policy_action_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

/* policy_action_head_len - length of the leading action word, 0 if it is not one */
static size_t policy_action_head_len(const char *tmpl)
{
    size_t n = strcspn(tmpl, " ");

    /* "4NN" or "5NN": Postfix uses the code as given, so 2xx/3xx make no sense */
    if (n == 3 && (tmpl[0] == '4' || tmpl[0] == '5') && isdigit((unsigned char)tmpl[1]) &&
        isdigit((unsigned char)tmpl[2]))
        return n;
    /* Postfix compares action keywords case-insensitively */
    for (size_t i = 0; i < sizeof(policy_action_keywords) / sizeof(policy_action_keywords[0]); i++)
        if (strlen(policy_action_keywords[i]) == n &&
            strncasecmp(tmpl, policy_action_keywords[i], n) == 0)
            return n;
    return 0;
}

int policy_action_check(const char *tmpl, char *err, size_t errlen)
{
    if (tmpl == NULL || *tmpl == '\0')
        return policy_action_err(err, errlen, "empty action");
    for (const char *p = tmpl; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return policy_action_err(err, errlen, "action contains a non-printable character");
        if (*p == '%') {
            p++;
            if (*p == '\0')
                return policy_action_err(err, errlen, "action ends in a lone %");
            if (strchr("arsc%", *p) == NULL)
                return policy_action_err(err, errlen,
                                         "action uses an unknown % escape (known: %a %r %s %c %%)");
        }
    }
    if (policy_action_head_len(tmpl) == 0)
        return policy_action_err(err, errlen,
                                 "action must start with an access(5) keyword or a 4xx/5xx code");
    return 0;
}

/* enhanced_status_len - length of the RFC 3463 status ("5.1.2") at t followed by a space, or 0 */
static size_t enhanced_status_len(const char *t)
{
    const char *p = t;

    if ((p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
        return 0;
    p += 2;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 3)
            p++, digits++;
        if (digits == 0 || (part == 0 && *p != '.'))
            return 0;
        if (part == 0)
            p++;
    }
    return *p == ' ' ? (size_t)(p - t) : 0;
}

/*
 * skip_reason_prefix - past what the template already says: a leading
 * enhanced status ("5.1.1 ", which replaces the template's, see
 * policy_action_expand) and a next hop's own "<addr>: Recipient address
 * rejected: " (a Postfix next hop writes it, and the Postfix we answer adds
 * it again).
 */
static const char *skip_reason_prefix(const char *t)
{
    static const char rejected[] = ">: Recipient address rejected: ";
    size_t n = enhanced_status_len(t);

    if (n > 0)
        for (t += n; *t == ' '; t++)
            ;
    if (t[0] == '<') {
        const char *end = strstr(t, rejected);
        if (end != NULL && memchr(t, ' ', (size_t)(end - t)) == NULL)
            t = end + sizeof(rejected) - 1;
    }
    return t;
}

/*
 * policy_action_reason - the text for %r, without what the template already
 * says (skip_reason_prefix). A verdict without text (a table simply has no entry) still gets a
 * readable reason in the SMTP reply.
 */
static const char *policy_action_reason(const struct verdict *v)
{
    if (v == NULL)
        return "";
    const char *t = skip_reason_prefix(v->text);
    if (t[0] != '\0')
        return t;
    switch (v->kind) {
    case VERDICT_INVALID:
        return "User unknown";
    case VERDICT_TEMPFAIL:
        return "Try again later";
    default:
        return verdict_kind_name(v->kind);
    }
}

/* policy_action_put - append up to len bytes of src, sanitised, at buf[*pos] */
static void policy_action_put(char *buf, size_t size, size_t *pos, const char *src, size_t len)
{
    if (*pos + 1 >= size)
        return;
    *pos += verdict_sanitize(buf + *pos, size - *pos, src, len);
}

size_t policy_action_expand(const char *tmpl, const struct verdict *v, const char *addr, char *buf,
                            size_t size)
{
    size_t pos = 0;
    char num[16];

    if (size == 0)
        return 0;
    buf[0] = '\0';
    if (tmpl == NULL)
        return 0;
    if (addr == NULL)
        addr = "";
    /*
     * The verdict's enhanced status of the same class replaces the
     * template's: "550 5.1.1 %r" for "5.1.2 domain has no mail server"
     * answers 550 5.1.2, the more precise status.
     */
    const char *tstatus = NULL;
    size_t tstatus_len = 0, vstatus_len = v ? enhanced_status_len(v->text) : 0;
    size_t head = policy_action_head_len(tmpl);
    if (vstatus_len > 0 && head > 0 && tmpl[head] == ' ' &&
        (tstatus_len = enhanced_status_len(tmpl + head + 1)) > 0 && tmpl[head + 1] == v->text[0])
        tstatus = tmpl + head + 1;
    for (const char *p = tmpl; *p && pos + 1 < size; p++) {
        const char *val = NULL;
        if (p == tstatus) {
            policy_action_put(buf, size, &pos, v->text, vstatus_len);
            p += tstatus_len - 1;
            continue;
        }
        if (*p != '%') {
            /* the template is checked at config time; stay safe if it was not */
            buf[pos++] = (*p >= 0x20 && *p <= 0x7e) ? *p : '?';
            buf[pos] = '\0';
            continue;
        }
        switch (p[1]) {
        case 'a':
            val = addr;
            break;
        case 'r':
            val = policy_action_reason(v);
            break;
        case 's':
            val = v ? v->source : "";
            break;
        case 'c':
            /* "%c" is empty when no SMTP code was involved (e.g. a table lookup) */
            if (v && v->code > 0)
                snprintf(num, sizeof(num), "%d", v->code);
            else
                num[0] = '\0';
            val = num;
            break;
        case '%':
            val = "%";
            break;
        case '\0':
            /* a lone trailing '%' (policy_action_check refuses it): drop it */
            continue;
        default:
            /* unknown escape (refused by policy_action_check): drop it whole */
            p++;
            continue;
        }
        p++;
        /* a struct verdict's fields are bounded arrays: never read past them */
        size_t vlen;
        if (v && val == v->source)
            vlen = strnlen(val, sizeof(v->source));
        else if (v && val >= v->text && val < v->text + sizeof(v->text))
            vlen = strnlen(val, sizeof(v->text) - (size_t)(val - v->text));
        else
            vlen = strlen(val);
        policy_action_put(buf, size, &pos, val, vlen);
    }
    return pos;
}
