/*
 * reply_action.c - the access(5) action grammar (see reply_action.h): check
 * and expand the templates that turn a verdict into an action, and parse an
 * action line back into its parts.
 *
 * Templates are checked once, when the configuration is read, so a typo
 * ("550x", "%q") stops the daemon at start-up instead of sending Postfix a
 * reply it rejects with a "bad action" warning at every RCPT. Expansion
 * sanitises every value it inserts: the address comes from the SMTP client
 * and the reason from a next hop, and neither may add a line to the reply.
 * The parser reads what another process sent (the milter gets policyd's
 * action over a socket), so it trusts no length and refuses what it does
 * not fully understand rather than guessing at a reply code.
 */
#include "reply_action.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* access(5) actions that make sense as a policy reply */
static const char *const reply_action_keywords[] = {
    "OK",   "DUNNO",   "REJECT", "DEFER",   "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "WARN",
    "HOLD", "DISCARD", "INFO",   "PREPEND", "FILTER",          "REDIRECT",        "BCC",
};

/* reply_action_err - format err if there is room for it */
static int reply_action_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

/* reply_action_head_len - length of the leading action word, 0 if it is not one */
static size_t reply_action_head_len(const char *tmpl)
{
    size_t n = strcspn(tmpl, " ");

    /* "4NN" or "5NN": Postfix uses the code as given, so 2xx/3xx make no sense */
    if (n == 3 && (tmpl[0] == '4' || tmpl[0] == '5') && isdigit((unsigned char)tmpl[1]) &&
        isdigit((unsigned char)tmpl[2]))
        return n;
    /* Postfix compares action keywords case-insensitively */
    for (size_t i = 0; i < sizeof(reply_action_keywords) / sizeof(reply_action_keywords[0]); i++)
        if (strlen(reply_action_keywords[i]) == n &&
            strncasecmp(tmpl, reply_action_keywords[i], n) == 0)
            return n;
    return 0;
}

int reply_action_check(const char *tmpl, char *err, size_t errlen)
{
    if (tmpl == NULL || *tmpl == '\0')
        return reply_action_err(err, errlen, "empty action");
    for (const char *p = tmpl; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return reply_action_err(err, errlen, "action contains a non-printable character");
        if (*p == '%') {
            p++;
            if (*p == '\0')
                return reply_action_err(err, errlen, "action ends in a lone %");
            if (strchr("arsc%", *p) == NULL)
                return reply_action_err(err, errlen,
                                        "action uses an unknown % escape (known: %a %r %s %c %%)");
        }
    }
    if (reply_action_head_len(tmpl) == 0)
        return reply_action_err(err, errlen,
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
 * reply_action_expand) and a next hop's own "<addr>: Recipient address
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
 * reply_action_reason - the text for %r, without what the template already
 * says (skip_reason_prefix). A verdict without text (a table simply has no entry) still gets a
 * readable reason in the SMTP reply.
 */
static const char *reply_action_reason(const struct verdict *v)
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

/* reply_action_put - append up to len bytes of src, sanitised, at buf[*pos] */
static void reply_action_put(char *buf, size_t size, size_t *pos, const char *src, size_t len)
{
    if (*pos + 1 >= size)
        return;
    *pos += verdict_sanitize(buf + *pos, size - *pos, src, len);
}

size_t reply_action_expand(const char *tmpl, const struct verdict *v, const char *addr, char *buf,
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
    size_t head = reply_action_head_len(tmpl);
    if (vstatus_len > 0 && head > 0 && tmpl[head] == ' ' &&
        (tstatus_len = enhanced_status_len(tmpl + head + 1)) > 0 && tmpl[head + 1] == v->text[0])
        tstatus = tmpl + head + 1;
    for (const char *p = tmpl; *p && pos + 1 < size; p++) {
        const char *val = NULL;
        if (p == tstatus) {
            reply_action_put(buf, size, &pos, v->text, vstatus_len);
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
            val = reply_action_reason(v);
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
            /* a lone trailing '%' (reply_action_check refuses it): drop it */
            continue;
        default:
            /* unknown escape (refused by reply_action_check): drop it whole */
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
        reply_action_put(buf, size, &pos, val, vlen);
    }
    return pos;
}

/* keyword_classes - every access(5) keyword a policy reply may carry, and what it does */
static const struct {
    const char *word;
    enum reply_class cls;
    int code; /* Postfix's default (access_map_reject_code, access_map_defer_code) */
} keyword_classes[] = {
    {"OK", REPLY_CLASS_ACCEPT, 0},
    {"DUNNO", REPLY_CLASS_CONTINUE, 0},
    {"REJECT", REPLY_CLASS_REJECT, 554},
    {"DEFER", REPLY_CLASS_TEMPFAIL, 450},
    {"DEFER_IF_PERMIT", REPLY_CLASS_TEMPFAIL, 450},
    {"DEFER_IF_REJECT", REPLY_CLASS_TEMPFAIL, 450},
    {"DISCARD", REPLY_CLASS_DISCARD, 0},
    {"WARN", REPLY_CLASS_OTHER, 0},
    {"HOLD", REPLY_CLASS_OTHER, 0},
    {"INFO", REPLY_CLASS_OTHER, 0},
    {"PREPEND", REPLY_CLASS_OTHER, 0},
    {"FILTER", REPLY_CLASS_OTHER, 0},
    {"REDIRECT", REPLY_CLASS_OTHER, 0},
    {"BCC", REPLY_CLASS_OTHER, 0},
};

const char *reply_class_name(enum reply_class cls)
{
    static const char *const names[] = {"continue", "accept",  "reject",
                                        "tempfail", "discard", "other"};

    return (unsigned)cls < sizeof(names) / sizeof(names[0]) ? names[cls] : "?";
}

/*
 * status_len - length of an RFC 3463 status at p (n bytes left) that ends at
 * a space or at the end, or 0: class digit, '.', 1-3 digits, '.', 1-3 digits.
 */
static size_t status_len(const char *p, size_t n)
{
    size_t i = 0;

    if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t digits = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 3)
            i++, digits++;
        if (digits == 0)
            return 0;
        if (part == 0) {
            if (i >= n || p[i] != '.')
                return 0;
            i++;
        }
    }
    return (i == n || p[i] == ' ') ? i : 0;
}

/*
 * reply_action_parse - see reply_action.h. The parts are collected in a
 * small struct and the text is copied straight into out at the end, so an
 * answer costs no clearing and copying of the 1 KiB text buffer beyond the
 * text itself.
 */
int reply_action_parse(const char *line, size_t len, struct reply_action *out)
{
    struct {
        enum reply_class cls;
        char keyword[sizeof(out->keyword)];
        int code;
        char dsn[sizeof(out->dsn)];
    } r;
    size_t head, i;

    if (line == NULL || len == 0)
        return -1;
    for (i = 0; i < len; i++)
        if (line[i] < 0x20 || line[i] > 0x7e)
            return -1;
    memset(&r, 0, sizeof(r));
    for (head = 0; head < len && line[head] != ' '; head++)
        ;
    if (head == 3 && (line[0] == '4' || line[0] == '5') && isdigit((unsigned char)line[1]) &&
        isdigit((unsigned char)line[2])) {
        r.cls = line[0] == '5' ? REPLY_CLASS_REJECT : REPLY_CLASS_TEMPFAIL;
        r.code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    } else {
        size_t k, nk = sizeof(keyword_classes) / sizeof(keyword_classes[0]);
        for (k = 0; k < nk; k++)
            if (strlen(keyword_classes[k].word) == head &&
                strncasecmp(line, keyword_classes[k].word, head) == 0)
                break;
        if (k == nk)
            return -1;
        r.cls = keyword_classes[k].cls;
        r.code = keyword_classes[k].code;
        memcpy(r.keyword, keyword_classes[k].word, head + 1);
    }
    /* the rest: spaces, then (for a refusal or deferral) a status of the code's class */
    for (i = head; i < len && line[i] == ' '; i++)
        ;
    if (r.cls == REPLY_CLASS_REJECT || r.cls == REPLY_CLASS_TEMPFAIL) {
        size_t n = status_len(line + i, len - i);
        /* a status of another class than the code's is text, as Postfix reads it */
        if (n > 0 && n < sizeof(r.dsn) && line[i] == '0' + r.code / 100) {
            memcpy(r.dsn, line + i, n);
            for (i += n; i < len && line[i] == ' '; i++)
                ;
        }
    }
    if (len - i >= sizeof(out->text))
        return -1;
    out->cls = r.cls;
    memcpy(out->keyword, r.keyword, sizeof(out->keyword));
    out->code = r.code;
    memcpy(out->dsn, r.dsn, sizeof(out->dsn));
    memmove(out->text, line + i, len - i); /* line may be out's own text */
    out->text[len - i] = '\0';
    return 0;
}
