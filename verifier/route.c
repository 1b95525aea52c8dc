/*
 * route.c - the route table: parse it, match addresses, follow rewrites.
 *
 * The table is a file a postmaster edits by hand, so a mistake must be
 * reported with its line and never half-load (route_table_parse rejects the
 * whole table on the first error). Syntax, beyond route.h:
 * - '#' starts a comment at the start of a line or after whitespace, so a
 *   '#' inside a regex or an argument is data ("/^a#b@/" works).
 * - A regex pattern is "/.../"; "\/" inside it stands for '/', it may contain
 *   spaces, and it must be followed by whitespace. Flags after the closing
 *   '/' are not supported: every regex is REG_EXTENDED | REG_ICASE.
 * - Options are name=value tokens after the method; names are
 *   [A-Za-z0-9_-]+, a name may appear once per line, the value may be empty.
 *   route.c stores them; the backends interpret them.
 * - Domain patterns ("example.org", ".example.org") are validated with the
 *   address parser's domain rules, case-folded and stripped of a trailing dot.
 * - Regexes that would make regcomp build a huge automaton (nested
 *   repetitions such as "((a+)+)+..." or "(a{200}){200}") and back-references
 *   are refused at load: the table must not be able to exhaust memory or
 *   make a match slow.
 * - In a rewrite template "$1".."$9" are the groups (empty if the group did
 *   not take part), "$0" and "$&" the whole match, "$$" a literal '$'; a
 *   template that names a group the regex does not have is an error at load.
 */
#include "route.h"

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUTE_FILE_MAX (16 * 1024 * 1024) /* a route table bigger than this is a mistake */
#define REWRITE_MAX (ADDRESS_MAX + 16)    /* longest rewrite result considered */
#define ROUTE_REGEX_DEPTH 32              /* deepest group nesting accepted */
#define ROUTE_REGEX_COST_MAX 20000.0      /* see regex_cost: bounds regcomp's memory */

enum pattern_kind { PAT_ALL, PAT_EXACT, PAT_PARENT, PAT_REGEX };

/* route_entry - a route plus what route.c keeps private about it */
struct route_entry {
    struct route r;                      /* first: handed out by route_table_get */
    char domain[ADDRESS_DOMAIN_MAX + 1]; /* normalised domain for PAT_EXACT / PAT_PARENT */
    regex_t re;
    int has_re;
};

struct route_table {
    struct route_entry **e;
    int n, cap;
};

static const char *const method_names[] = {
    [ROUTE_DUNNO] = "dunno",     [ROUTE_ACCEPT] = "accept", [ROUTE_REJECT] = "reject",
    [ROUTE_CDB] = "cdb",         [ROUTE_SMTP] = "smtp",     [ROUTE_LDAP] = "ldap",
    [ROUTE_REWRITE] = "rewrite",
};
#define METHOD_COUNT ((int)(sizeof(method_names) / sizeof(method_names[0])))

/* route_method_name - "cdb", "smtp", ... ("?" if out of range) */
const char *route_method_name(enum route_method m)
{
    if ((int)m < 0 || (int)m >= METHOD_COUNT)
        return "?";
    return method_names[m];
}

/* line_err - "fname:line: reason" into err; returns NULL for the caller's convenience */
static void *line_err(char *err, size_t errlen, const char *fname, int lineno, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void *line_err(char *err, size_t errlen, const char *fname, int lineno, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    if (err == NULL || errlen == 0)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%d: %s", fname ? fname : "(routes)", lineno, reason);
    return NULL;
}

/* entry_free - one route and everything it owns */
static void entry_free(struct route_entry *e)
{
    if (e == NULL)
        return;
    free(e->r.pattern);
    free(e->r.arg);
    for (int i = 0; i < e->r.noptions; i++) {
        free(e->r.options[i].name);
        free(e->r.options[i].value);
    }
    if (e->has_re)
        regfree(&e->re);
    free(e);
}

/* route_table_free - the table and every route in it; NULL is fine */
void route_table_free(struct route_table *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++)
        entry_free(t->e[i]);
    free(t->e);
    free(t);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* token_end - end of the whitespace-delimited token starting at p */
static char *token_end(char *p)
{
    while (*p != '\0' && !is_ws(*p))
        p++;
    return p;
}

/* skip_ws - past whitespace; a '#' there starts a comment, which ends the line */
static char *skip_ws(char *p)
{
    while (is_ws(*p))
        p++;
    if (*p == '#')
        p += strlen(p);
    return p;
}

/* template_check - the highest $N a rewrite template uses, or -1 if it has none */
static int template_max_group(const char *tpl)
{
    int max = -1;

    for (const char *p = tpl; *p != '\0'; p++) {
        if (*p != '$')
            continue;
        if (p[1] >= '0' && p[1] <= '9') {
            if (p[1] - '0' > max)
                max = p[1] - '0';
            p++;
        } else if (p[1] == '$' || p[1] == '&') {
            p++;
        }
    }
    return max;
}

/*
 * regex_cost - a rough upper bound of the work glibc's regcomp does for re.
 * It copies the operand of '+' once and of "{n,m}" up to m times, so nested
 * repetitions grow geometrically ("(a{255}){255}"); and '+' or "{}" applied
 * to an operand that can match the empty string ("(.*)+") makes its
 * epsilon-closure computation exponential in the nesting, and regexec can
 * loop for ever on some of them ("@(||.|)*", found by fuzzing). Returns the
 * estimate, or -1 with *why set for constructs refused outright:
 * back-references, nesting deeper than ROUTE_REGEX_DEPTH, '*', '+' or "{}"
 * applied to an operand that can be empty, adjacent repetition operators
 * ("a**", undefined in POSIX, slow in glibc).
 */
static double regex_cost(const char *re, const char **why)
{
    struct {
        double sum;          /* cost of this group so far */
        double last;         /* cost of the last item, which a repetition multiplies */
        int prefix_nullable; /* items before the last in this branch can all be empty */
        int last_nullable;   /* the last item can be empty */
        int branch_nullable; /* an earlier '|' branch can be empty */
    } st[ROUTE_REGEX_DEPTH + 1];
    int depth = 0;
    int after_dup = 0; /* the previous token was a repetition operator */

    memset(&st[0], 0, sizeof(st[0]));
    st[0].prefix_nullable = st[0].last_nullable = 1;
    for (const char *p = re; *p != '\0'; p++) {
        double item = 1;
        int item_nullable = 0;
        int is_dup =
            *p == '*' || *p == '?' || *p == '+' || (*p == '{' && p[1] >= '0' && p[1] <= '9');
        /* POSIX leaves "a**" and "a+*" undefined; glibc's cost grows with them */
        if (is_dup && after_dup) {
            *why = "adjacent repetition operators (like \"a**\" or \"a+?\") in regex";
            return -1;
        }
        after_dup = is_dup;
        switch (*p) {
        case '\\':
            if (p[1] >= '1' && p[1] <= '9') {
                *why = "back-references are not supported in route regexes";
                return -1;
            }
            if (p[1] != '\0')
                p++;
            break;
        case '[': /* bracket expression: one atom, however long */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p != '\0' && *p != ']') {
                if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char close = p[1];
                    p += 2;
                    while (*p != '\0' && !(p[0] == close && p[1] == ']'))
                        p++;
                    if (*p != '\0')
                        p++;
                }
                if (*p != '\0')
                    p++;
            }
            if (*p == '\0')
                p--; /* unterminated: regcomp reports it, after the loop ends here */
            break;
        case '^':
        case '$':
            item_nullable = 1;
            break;
        case '(':
            if (depth >= ROUTE_REGEX_DEPTH) {
                *why = "regex nested too deeply";
                return -1;
            }
            depth++;
            memset(&st[depth], 0, sizeof(st[depth]));
            st[depth].prefix_nullable = st[depth].last_nullable = 1;
            continue;
        case ')':
            if (depth == 0)
                break; /* unbalanced: regcomp reports it */
            item = st[depth].sum + 1;
            item_nullable =
                st[depth].branch_nullable || (st[depth].prefix_nullable && st[depth].last_nullable);
            depth--;
            break;
        case '|':
            st[depth].branch_nullable |= st[depth].prefix_nullable && st[depth].last_nullable;
            st[depth].prefix_nullable = st[depth].last_nullable = 1;
            st[depth].last = 0;
            continue;
        case '*':
            if (st[depth].last_nullable)
                goto nullable_repeat;
            st[depth].last_nullable = 1; /* no copy of the operand */
            continue;
        case '?':
            st[depth].last_nullable = 1;
            continue;
        case '+':
            if (st[depth].last_nullable)
                goto nullable_repeat;
            st[depth].sum += st[depth].last;
            st[depth].last *= 2;
            continue;
        case '{': {
            char *end;
            unsigned long n = strtoul(p + 1, &end, 10), m = n;
            if (end == p + 1)
                break; /* not a bound: a literal or an error for regcomp */
            if (*end == ',') {
                const char *q = end + 1;
                m = strtoul(q, &end, 10);
                if (end == q)
                    m = n + 1;
            }
            if (*end != '}')
                break;
            if (st[depth].last_nullable)
                goto nullable_repeat;
            double factor = (double)(m > n ? m : n);
            if (factor < 1)
                factor = 1;
            st[depth].sum += st[depth].last * (factor - 1);
            st[depth].last *= factor;
            if (n == 0)
                st[depth].last_nullable = 1;
            p = end;
            continue;
        }
        default:
            break;
        }
        st[depth].sum += item;
        st[depth].last = item;
        st[depth].prefix_nullable = st[depth].prefix_nullable && st[depth].last_nullable;
        st[depth].last_nullable = item_nullable;
    }
    while (depth > 0) { /* unbalanced '(': regcomp reports it, count it anyway */
        st[depth - 1].sum += st[depth].sum;
        depth--;
    }
    return st[0].sum;

nullable_repeat:
    *why = "regex too complex: '*', '+' or '{}' repeats an expression that can be empty";
    return -1;
}

/*
 * parse_pattern - the pattern token at *pp into e; advances *pp past it.
 * Returns NULL on success, else a reason written into why.
 */
static const char *parse_pattern(char **pp, struct route_entry *e, char *why, size_t whylen)
{
    char *p = *pp;

    if (*p == '/') {
        /* regex: unescape "\/", keep every other escape for regcomp */
        char *re = malloc(strlen(p) + 1);
        size_t n = 0;
        char *q = p + 1;
        if (re == NULL)
            return "out of memory";
        for (; *q != '\0' && *q != '/'; q++) {
            if (q[0] == '\\' && q[1] == '/') {
                re[n++] = '/';
                q++;
            } else if (q[0] == '\\' && q[1] != '\0') {
                re[n++] = *q++;
                re[n++] = *q;
            } else {
                re[n++] = *q;
            }
        }
        re[n] = '\0';
        if (*q != '/') {
            free(re);
            return "unterminated regex (missing closing /)";
        }
        q++;
        if (*q != '\0' && !is_ws(*q)) {
            free(re);
            return "text after regex (no flags are supported)";
        }
        if (n == 0) {
            free(re);
            return "empty regex";
        }
        const char *refused = NULL;
        double cost = regex_cost(re, &refused);
        if (cost < 0 || cost > ROUTE_REGEX_COST_MAX) {
            free(re);
            return refused ? refused : "regex too complex (nested repetitions)";
        }
        int rc = regcomp(&e->re, re, REG_EXTENDED | REG_ICASE);
        free(re);
        if (rc != 0) {
            char msg[200];
            regerror(rc, &e->re, msg, sizeof(msg));
            snprintf(why, whylen, "bad regex: %s", msg);
            return why;
        }
        e->has_re = 1;
        e->r.kind = PAT_REGEX;
        e->r.regex = &e->re;
        e->r.pattern = strndup(p, (size_t)(q - p));
        *pp = q;
        return e->r.pattern ? NULL : "out of memory";
    }

    char *end = token_end(p);
    size_t len = (size_t)(end - p);
    e->r.pattern = strndup(p, len);
    *pp = end;
    if (e->r.pattern == NULL)
        return "out of memory";
    if (len == 1 && p[0] == '*') {
        e->r.kind = PAT_ALL;
        return NULL;
    }

    /* validate the domain with the address parser: one set of rules for both */
    const char *dom = p;
    size_t dlen = len;
    e->r.kind = PAT_EXACT;
    if (p[0] == '.') {
        dom++;
        dlen--;
        e->r.kind = PAT_PARENT;
    }
    char probe[ADDRESS_DOMAIN_MAX + 8];
    char reason[128];
    struct address a;
    if (dlen == 0 || dlen > ADDRESS_DOMAIN_MAX + 1) {
        snprintf(why, whylen, "bad domain pattern \"%s\"", e->r.pattern);
        return why;
    }
    probe[0] = 'x';
    probe[1] = '@';
    memcpy(probe + 2, dom, dlen);
    if (address_parse(probe, dlen + 2, &a, reason, sizeof(reason)) < 0) {
        snprintf(why, whylen, "bad domain pattern \"%.300s\": %s", e->r.pattern, reason);
        return why;
    }
    if (e->r.kind == PAT_PARENT && a.domain[0] == '[') {
        snprintf(why, whylen, "an address literal has no subdomains: \"%.300s\"", e->r.pattern);
        return why;
    }
    memcpy(e->domain, a.domain, sizeof(e->domain));
    return NULL;
}

/*
 * parse_method - "name[:arg]" at *pp into e. Returns NULL or a reason.
 */
static const char *parse_method(char **pp, struct route_entry *e, char *why, size_t whylen)
{
    char *p = *pp;
    char *end = token_end(p);
    char *colon = memchr(p, ':', (size_t)(end - p));
    size_t nlen = (size_t)((colon ? colon : end) - p);
    int m = -1;

    *pp = end;
    for (int i = 0; i < METHOD_COUNT; i++)
        if (strlen(method_names[i]) == nlen && strncmp(method_names[i], p, nlen) == 0)
            m = i;
    if (m < 0) {
        snprintf(why, whylen, "unknown method \"%.*s\"", (int)(nlen > 100 ? 100 : nlen), p);
        return why;
    }
    e->r.method = (enum route_method)m;
    int needs_arg = m == ROUTE_CDB || m == ROUTE_SMTP || m == ROUTE_LDAP || m == ROUTE_REWRITE;
    if (!needs_arg) {
        if (colon != NULL) {
            snprintf(why, whylen, "method %s takes no argument", method_names[m]);
            return why;
        }
        return NULL;
    }
    if (colon == NULL || colon + 1 == end) {
        snprintf(why, whylen, "method %s needs an argument (%s:...)", method_names[m],
                 method_names[m]);
        return why;
    }
    e->r.arg = strndup(colon + 1, (size_t)(end - colon - 1));
    return e->r.arg ? NULL : "out of memory";
}

/* parse_option - one "name=value" token at *pp into e. Returns NULL or a reason. */
static const char *parse_option(char **pp, struct route_entry *e, char *why, size_t whylen)
{
    char *p = *pp;
    char *end = token_end(p);
    char *eq = memchr(p, '=', (size_t)(end - p));

    *pp = end;
    if (eq == NULL || eq == p) {
        snprintf(why, whylen, "bad option \"%.*s\" (expected name=value)",
                 (int)(end - p > 100 ? 100 : end - p), p);
        return why;
    }
    for (char *q = p; q < eq; q++) {
        char c = *q;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            snprintf(why, whylen, "bad option name \"%.*s\"", (int)(eq - p > 100 ? 100 : eq - p),
                     p);
            return why;
        }
    }
    if (e->r.noptions >= ROUTE_MAX_OPTIONS) {
        snprintf(why, whylen, "too many options (at most %d)", ROUTE_MAX_OPTIONS);
        return why;
    }
    for (int i = 0; i < e->r.noptions; i++) {
        if (strlen(e->r.options[i].name) == (size_t)(eq - p) &&
            strncmp(e->r.options[i].name, p, (size_t)(eq - p)) == 0) {
            snprintf(why, whylen, "duplicate option \"%s\"", e->r.options[i].name);
            return why;
        }
    }
    char *name = strndup(p, (size_t)(eq - p));
    char *value = strndup(eq + 1, (size_t)(end - eq - 1));
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return "out of memory";
    }
    e->r.options[e->r.noptions].name = name;
    e->r.options[e->r.noptions].value = value;
    e->r.noptions++;
    return NULL;
}

/*
 * parse_line - one NUL-terminated line (comments and blanks already allowed).
 * Returns 1 and *out for a route, 0 for a blank/comment line, -1 with a
 * reason in why.
 */
static int parse_line(char *line, struct route_entry **out, char *why, size_t whylen)
{
    const char *reason;
    char *p = skip_ws(line);

    *out = NULL;
    if (*p == '\0')
        return 0;
    struct route_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if ((reason = parse_pattern(&p, e, why, whylen)) != NULL)
        goto fail;
    p = skip_ws(p);
    if (*p == '\0') {
        reason = "missing method after pattern";
        goto fail;
    }
    if ((reason = parse_method(&p, e, why, whylen)) != NULL)
        goto fail;
    for (p = skip_ws(p); *p != '\0'; p = skip_ws(p))
        if ((reason = parse_option(&p, e, why, whylen)) != NULL)
            goto fail;

    if (e->r.method == ROUTE_REWRITE) {
        if (e->r.kind != PAT_REGEX) {
            reason = "rewrite needs a /regex/ pattern";
            goto fail;
        }
        int maxg = template_max_group(e->r.arg);
        if (maxg > (int)e->re.re_nsub) {
            snprintf(why, whylen, "rewrite uses $%d but the regex has %d group(s)", maxg,
                     (int)e->re.re_nsub);
            reason = why;
            goto fail;
        }
    }
    *out = e;
    return 1;

fail:
    if (reason != why)
        snprintf(why, whylen, "%s", reason);
    entry_free(e);
    return -1;
}

/* table_add - append e to t; -1 when out of memory */
static int table_add(struct route_table *t, struct route_entry *e)
{
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 16;
        struct route_entry **ne = realloc(t->e, (size_t)cap * sizeof(*ne));
        if (ne == NULL)
            return -1;
        t->e = ne;
        t->cap = cap;
    }
    t->e[t->n++] = e;
    return 0;
}

/* route_table_parse - see route.h; the whole table or nothing */
struct route_table *route_table_parse(const char *text, size_t len, const char *fname, char *err,
                                      size_t errlen)
{
    struct route_table *t = calloc(1, sizeof(*t));
    char line[ROUTE_LINE_MAX + 1];
    char why[512];
    size_t pos = 0;
    int lineno = 0;

    if (t == NULL)
        return line_err(err, errlen, fname, 0, "out of memory");
    if (text == NULL && len > 0) {
        free(t);
        return line_err(err, errlen, fname, 0, "no text");
    }
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - start) : len - pos;
        struct route_entry *e;

        lineno++;
        pos += llen + (nl ? 1 : 0);
        if (llen > ROUTE_LINE_MAX) {
            route_table_free(t);
            return line_err(err, errlen, fname, lineno, "line too long (more than %d bytes)",
                            ROUTE_LINE_MAX);
        }
        for (size_t i = 0; i < llen; i++) {
            unsigned char c = (unsigned char)start[i];
            if (c == '\0' || (c < 0x20 && !is_ws((char)c)) || c == 0x7f) {
                route_table_free(t);
                return line_err(err, errlen, fname, lineno, "control character in line");
            }
        }
        memcpy(line, start, llen);
        line[llen] = '\0';
        int rc = parse_line(line, &e, why, sizeof(why));
        if (rc < 0) {
            route_table_free(t);
            return line_err(err, errlen, fname, lineno, "%s", why);
        }
        if (rc == 0)
            continue;
        e->r.lineno = lineno;
        if (table_add(t, e) < 0) {
            entry_free(e);
            route_table_free(t);
            return line_err(err, errlen, fname, lineno, "out of memory");
        }
    }
    if (t->n == 0) {
        /* an empty table (a truncated deploy, a file of comments) would verify nothing */
        route_table_free(t);
        return line_err(err, errlen, fname, lineno > 0 ? lineno : 1,
                        "no routes: a table must have at least one route "
                        "(write \"* dunno\" to verify nothing on purpose)");
    }
    return t;
}

/*
 * anchor_paths - make every relative file argument (cdb:PATH) relative to
 * the directory of the table that names it, as a postmaster reads the
 * table: the daemon itself runs in "/", where a relative name would mean
 * another file than the one the table's author saw beside it.
 */
static int anchor_paths(struct route_table *t, const char *table_path)
{
    const char *slash = strrchr(table_path, '/');
    size_t dirlen = slash == NULL ? 0 : (size_t)(slash - table_path) + 1; /* with the '/' */

    for (int i = 0; i < t->n; i++) {
        struct route *r = &t->e[i]->r;
        if (r->method != ROUTE_CDB || r->arg == NULL || r->arg[0] == '/' || dirlen == 0)
            continue;
        size_t alen = strlen(r->arg);
        char *abs = malloc(dirlen + alen + 1);
        if (abs == NULL)
            return -1;
        memcpy(abs, table_path, dirlen);
        memcpy(abs + dirlen, r->arg, alen + 1);
        free(r->arg);
        r->arg = abs;
    }
    return 0;
}

/* route_table_load - read path (at most ROUTE_FILE_MAX bytes) and parse it */
struct route_table *route_table_load(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > ROUTE_FILE_MAX) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: not a regular file of at most %d bytes", path,
                     ROUTE_FILE_MAX);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return line_err(err, errlen, path, 0, "out of memory");
    }
    /* read to EOF, not to st_size: the file may change under us; stay bounded */
    for (;;) {
        if (len == cap) {
            if (cap > ROUTE_FILE_MAX) {
                free(buf);
                close(fd);
                return line_err(err, errlen, path, 0, "file too large");
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                close(fd);
                return line_err(err, errlen, path, 0, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    struct route_table *t = route_table_parse(buf, len, path, err, errlen);
    free(buf);
    if (t != NULL && anchor_paths(t, path) < 0) {
        route_table_free(t);
        return line_err(err, errlen, path, 0, "out of memory");
    }
    return t;
}

int route_table_count(const struct route_table *t)
{
    return t ? t->n : 0;
}

const struct route *route_table_get(const struct route_table *t, int i)
{
    if (t == NULL || i < 0 || i >= t->n)
        return NULL;
    return &t->e[i]->r;
}

/* entry_matches - does e match addr (whose formatted form is in buf)? fills m for regexes */
static int entry_matches(const struct route_entry *e, const struct address *addr, const char *buf,
                         regmatch_t *m, size_t nm)
{
    switch (e->r.kind) {
    case PAT_ALL:
        return 1;
    case PAT_EXACT:
        return !addr->is_null && strcmp(addr->domain, e->domain) == 0;
    case PAT_PARENT: {
        /* strict subdomains only: "x.example.org" matches ".example.org" */
        size_t dl = strlen(addr->domain), pl = strlen(e->domain);
        return !addr->is_null && dl > pl + 1 && addr->domain[dl - pl - 1] == '.' &&
               strcmp(addr->domain + dl - pl, e->domain) == 0;
    }
    case PAT_REGEX:
        /* groups only when a rewrite needs them: without, glibc never backtracks */
        if (e->r.method != ROUTE_REWRITE)
            nm = 0;
        return regexec(&e->re, buf, nm, nm ? m : NULL, 0) == 0;
    }
    return 0;
}

/* find_entry - first matching entry, with the regex groups in m (10 slots) */
static const struct route_entry *find_entry(const struct route_table *t, const struct address *addr,
                                            char *buf, size_t size, regmatch_t *m)
{
    if (t == NULL || addr == NULL || address_format(addr, buf, size) < 0)
        return NULL;
    for (int i = 0; i < t->n; i++)
        if (entry_matches(t->e[i], addr, buf, m, 10))
            return t->e[i];
    return NULL;
}

/* route_match - first route matching addr (rewrites are not followed), or NULL */
const struct route *route_match(const struct route_table *t, const struct address *addr)
{
    char buf[ADDRESS_MAX + 8];
    regmatch_t m[10];
    const struct route_entry *e = find_entry(t, addr, buf, sizeof(buf), m);

    return e ? &e->r : NULL;
}

/*
 * expand_template - substitute $N / $0 / $& / $$ from subject and m into out.
 * Returns the length, or -1 if it would not fit.
 */
static int expand_template(const char *tpl, const char *subject, const regmatch_t *m, size_t nsub,
                           char *out, size_t size)
{
    size_t n = 0;

    for (const char *p = tpl; *p != '\0'; p++) {
        const char *src = p;
        size_t slen = 1;

        if (p[0] == '$' && ((p[1] >= '0' && p[1] <= '9') || p[1] == '&')) {
            size_t g = p[1] == '&' ? 0 : (size_t)(p[1] - '0');
            p++;
            slen = 0;
            if (g <= nsub && m[g].rm_so >= 0 && m[g].rm_eo >= m[g].rm_so) {
                src = subject + m[g].rm_so;
                slen = (size_t)(m[g].rm_eo - m[g].rm_so);
            }
        } else if (p[0] == '$' && p[1] == '$') {
            p++;
        }
        if (n + slen >= size)
            return -1;
        memcpy(out + n, src, slen);
        n += slen;
    }
    out[n] = '\0';
    return (int)n;
}

/* route_resolve - follow rewrites, at most ROUTE_MAX_REWRITES of them */
const struct route *route_resolve(const struct route_table *t, struct address *addr, int *failed,
                                  char *err, size_t errlen)
{
    char buf[ADDRESS_MAX + 8];
    char out[REWRITE_MAX];
    char reason[128];
    regmatch_t m[10];
    struct address cur;
    int dummy;

    if (failed == NULL)
        failed = &dummy;
    *failed = 0;
    if (addr == NULL)
        return NULL;
    cur = *addr;
    for (int n = 0;; n++) {
        const struct route_entry *e = find_entry(t, &cur, buf, sizeof(buf), m);
        if (e == NULL || e->r.method != ROUTE_REWRITE) {
            *addr = cur;
            return e ? &e->r : NULL;
        }
        if (n >= ROUTE_MAX_REWRITES) {
            *failed = 1;
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "rewrite loop: more than %d rewrites (last at line %d)",
                         ROUTE_MAX_REWRITES, e->r.lineno);
            return NULL;
        }
        int len = expand_template(e->r.arg, buf, m, e->re.re_nsub, out, sizeof(out));
        if (len < 0) {
            *failed = 1;
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "rewrite at line %d: result too long", e->r.lineno);
            return NULL;
        }
        if (address_parse(out, (size_t)len, &cur, reason, sizeof(reason)) < 0) {
            *failed = 1;
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "rewrite at line %d gives a malformed address: %s",
                         e->r.lineno, reason);
            return NULL;
        }
    }
}

/* route_option - value of option name on route r, or def if absent */
const char *route_option(const struct route *r, const char *name, const char *def)
{
    if (r == NULL || name == NULL)
        return def;
    for (int i = 0; i < r->noptions && i < ROUTE_MAX_OPTIONS; i++)
        if (r->options[i].name != NULL && strcmp(r->options[i].name, name) == 0)
            return r->options[i].value;
    return def;
}

/*
 * route_options_check - every option of r is claimed by one of the tables
 * and has a value of its declared type; see route.h.
 */
int route_options_check(const struct route *r, const struct value_decl *const *tables,
                        size_t ntables, char *why, size_t whylen)
{
    for (int i = 0; i < r->noptions && i < ROUTE_MAX_OPTIONS; i++) {
        const struct route_option *o = &r->options[i];
        const struct value_decl *found = NULL;

        for (size_t t = 0; t < ntables && found == NULL; t++)
            for (const struct value_decl *d = tables[t]; d != NULL && d->name != NULL; d++)
                if (strcmp(d->name, o->name) == 0) {
                    found = d;
                    break;
                }
        if (found == NULL) {
            const char *near = value_closest(o->name, tables, ntables);
            snprintf(why, whylen, "unknown option \"%.64s\" for %s routes%s%s%s", o->name,
                     route_method_name(r->method), near ? " (did you mean \"" : "",
                     near ? near : "", near ? "\"?)" : "");
            return -1;
        }
        if (value_check(found, o->value, why, whylen) < 0)
            return -1;
    }
    return 0;
}
