/*
 * reply_policy.c - choose, word and expand the answer to a verdict (see
 * reply_policy.h). One function per rule, so the milter and policyd cannot
 * drift apart: they call reply_policy_decide and only format its result.
 */
#include "reply_policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * reply_text_is_public - see reply_policy.h. The origin comes from the
 * verdict's flags (verdict.h), set by the backend or the verifier that
 * wrote the text: nothing here reads the source string.
 */
bool reply_text_is_public(const struct verdict *v, bool next_hop_text, bool *next_hop)
{
    bool remote = (v->flags & VERDICT_REMOTE_TEXT) != 0;

    if (next_hop != NULL)
        *next_hop = remote;
    if (remote)
        return next_hop_text;
    return v->kind != VERDICT_TEMPFAIL || (v->flags & VERDICT_OWN_TEXT) != 0;
}

/*
 * public_verdict - v as the SMTP client may see it: v itself, or copy with
 * generic words in place of what is for the log only.
 */
static const struct verdict *public_verdict(const struct reply_policy *p, const struct verdict *v,
                                            struct verdict *copy)
{
    bool from_next_hop;

    if (reply_text_is_public(v, p->next_hop_text, &from_next_hop))
        return v;
    *copy = *v;
    if (from_next_hop)
        copy->source[strcspn(copy->source, ":")] = '\0'; /* the method: "smtp" of "smtp:[a]:25" */
    switch (v->kind) {
    case VERDICT_INVALID:
        snprintf(copy->text, sizeof(copy->text), "User unknown");
        break;
    case VERDICT_TEMPFAIL:
        snprintf(copy->text, sizeof(copy->text), "try again later");
        break;
    default:
        snprintf(copy->text, sizeof(copy->text), "%s", verdict_kind_name(v->kind));
        break;
    }
    return copy;
}

/* choose_template - the template for v under p */
static const char *choose_template(const struct reply_policy *p, const struct verdict *v,
                                   bool malformed)
{
    if (malformed || v == NULL)
        return p->action_malformed;
    if (v->kind == VERDICT_TEMPFAIL && p->fail_open)
        return p->action[VERDICT_VALID];
    if ((unsigned)v->kind >= VERDICT_KIND_COUNT)
        return p->action[VERDICT_TEMPFAIL]; /* cannot happen; never answer a stray kind as valid */
    return p->action[v->kind];
}

/*
 * finish - take out->decided apart, fill in rejects, and take out->action
 * apart into out->parsed. The two are the same line unless dry_run replaced
 * the action, so the line is parsed once in the usual case (this runs for
 * every answer). An action that does not parse (a template whose status
 * has another class than its code passes the configuration check) is
 * judged by its first word, as before there was a parser.
 */
static void finish(struct reply *out)
{
    const char *decided = out->decided;
    bool ok = reply_action_parse(decided, strlen(decided), &out->parsed) == 0;

    if (ok)
        out->rejects =
            out->parsed.cls == REPLY_CLASS_REJECT || out->parsed.cls == REPLY_CLASS_TEMPFAIL;
    else
        out->rejects = decided[0] == '4' || decided[0] == '5' ||
                       strncasecmp(decided, "REJECT", 6) == 0 ||
                       strncasecmp(decided, "DEFER", 5) == 0;
    if (strcmp(out->action, decided) != 0)
        ok = reply_action_parse(out->action, strlen(out->action), &out->parsed) == 0;
    if (!ok) {
        memset(&out->parsed, 0, sizeof(out->parsed));
        out->parsed.cls = out->rejects ? REPLY_CLASS_TEMPFAIL : REPLY_CLASS_CONTINUE;
        out->parsed.code = out->rejects ? 450 : 0;
        snprintf(out->parsed.text, sizeof(out->parsed.text), "%s", out->action);
    }
}

/* reply_start - an empty decision: no memset of the whole struct (4 KiB, per answer) */
static void reply_start(struct reply *out)
{
    out->action[0] = '\0';
    out->decided[0] = '\0';
    out->rejects = false;
    out->dry_run = false;
}

void reply_policy_decide(const struct reply_policy *p, const struct verdict *v, bool malformed,
                         const char *addr, struct reply *out)
{
    struct verdict copy;
    const char *tmpl = choose_template(p, v, malformed);

    reply_start(out);
    reply_action_expand(tmpl ? tmpl : "DUNNO", v ? public_verdict(p, v, &copy) : NULL, addr,
                        out->decided, sizeof(out->decided));
    memcpy(out->action, out->decided, strlen(out->decided) + 1);
    finish(out);
    if (p->dry_run && out->rejects) {
        snprintf(out->action, sizeof(out->action), "DUNNO");
        out->dry_run = true;
        finish(out);
    }
}

void reply_policy_internal_error(const struct reply_policy *p, struct reply *out)
{
    reply_start(out);
    snprintf(out->decided, sizeof(out->decided), "%s",
             p->fail_open && p->action[VERDICT_VALID]
                 ? p->action[VERDICT_VALID]
                 : "DEFER_IF_PERMIT 4.3.0 Server out of memory");
    snprintf(out->action, sizeof(out->action), "%s", out->decided);
    finish(out);
}
