/*
 * test_route.c - route table parsing (errors carry file and line), matching
 * rules, and rewrite resolution with its loop limit.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "route.h"

static char err[512];

static struct route_table *parse(const char *text)
{
    err[0] = '\0';
    return route_table_parse(text, strlen(text), "routes", err, sizeof(err));
}

/* expect_error - text must be refused with "routes:LINE: ...want..." */
static void expect_error(const char *text, int line, const char *want)
{
    struct route_table *t = parse(text);
    char prefix[32];
    cr_assert_null(t, "accepted: %s", text);
    snprintf(prefix, sizeof(prefix), "routes:%d: ", line);
    cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "error \"%s\", wanted prefix \"%s\"", err,
                 prefix);
    cr_assert(strstr(err, want) != NULL, "error \"%s\", wanted \"%s\"", err, want);
}

static struct address addr(const char *s)
{
    struct address a;
    char why[128];
    cr_assert_eq(address_parse(s, strlen(s), &a, why, sizeof(why)), 0, "%s: %s", s, why);
    return a;
}

/* match_line - line number of the route matching s, 0 if none */
static int match_line(const struct route_table *t, const char *s)
{
    struct address a = addr(s);
    const struct route *r = route_match(t, &a);
    return r ? r->lineno : 0;
}

static const char example[] =
    "# callahead routes\n"
    "\n"
    "Example.ORG.          cdb:/etc/callahead/example.org.cdb   fold_local=no  # table\n"
    "  .dept.example.org   smtp:[mail.dept.example.org]:25 timeout=10 probe=\n"
    "example.net\tsmtp:mx\r\n"
    "example.com           ldap:corp\n"
    "/^(.+)\\+[^@]*@(.+)$/   rewrite:$1@$2\n"
    "/^postmaster@/        accept\n"
    "/^a#b@/               reject   # a '#' inside a regex is data\n"
    "*                     dunno";

Test(route, parse_example)
{
    struct route_table *t = parse(example);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(route_table_count(t), 8);

    const struct route *r = route_table_get(t, 0);
    cr_assert_eq(r->lineno, 3);
    cr_assert_str_eq(r->pattern, "Example.ORG.");
    cr_assert_eq(r->method, ROUTE_CDB);
    cr_assert_str_eq(r->arg, "/etc/callahead/example.org.cdb");
    cr_assert_eq(r->noptions, 1);
    cr_assert_str_eq(route_option(r, "fold_local", "yes"), "no");
    cr_assert_str_eq(route_option(r, "missing", "def"), "def");

    r = route_table_get(t, 1);
    cr_assert_eq(r->method, ROUTE_SMTP);
    cr_assert_str_eq(r->arg, "[mail.dept.example.org]:25");
    cr_assert_str_eq(route_option(r, "timeout", NULL), "10");
    cr_assert_str_eq(route_option(r, "probe", NULL), "");

    r = route_table_get(t, 2);
    cr_assert_str_eq(r->arg, "mx"); /* the CR of a CRLF line is whitespace */
    cr_assert_eq(route_table_get(t, 3)->method, ROUTE_LDAP);
    cr_assert_str_eq(route_table_get(t, 3)->arg, "corp");
    cr_assert_eq(route_table_get(t, 4)->method, ROUTE_REWRITE);
    cr_assert_str_eq(route_table_get(t, 4)->arg, "$1@$2");
    cr_assert_eq(route_table_get(t, 5)->method, ROUTE_ACCEPT);
    cr_assert_null(route_table_get(t, 5)->arg);
    cr_assert_eq(route_table_get(t, 6)->method, ROUTE_REJECT);
    cr_assert_str_eq(route_table_get(t, 6)->pattern, "/^a#b@/");
    cr_assert_eq(route_table_get(t, 7)->method, ROUTE_DUNNO);
    cr_assert_eq(route_table_get(t, 7)->lineno, 10);
    cr_assert_null(route_table_get(t, 8));
    cr_assert_null(route_table_get(t, -1));
    route_table_free(t);
}

Test(route, method_names)
{
    cr_assert_str_eq(route_method_name(ROUTE_CDB), "cdb");
    cr_assert_str_eq(route_method_name(ROUTE_REWRITE), "rewrite");
    cr_assert_str_eq(route_method_name(ROUTE_DUNNO), "dunno");
    cr_assert_str_eq(route_method_name((enum route_method)77), "?");
}

Test(route, matching_rules)
{
    struct route_table *t = parse(example);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(match_line(t, "bob@example.org"), 3);
    cr_assert_eq(match_line(t, "bob@EXAMPLE.org."), 3);
    cr_assert_eq(match_line(t, "bob@sub.example.org"), 10);   /* exact is exact */
    cr_assert_eq(match_line(t, "bob@dept.example.org"), 10);  /* .parent: not itself */
    cr_assert_eq(match_line(t, "bob@x.dept.example.org"), 4); /* strict subdomain */
    cr_assert_eq(match_line(t, "bob@x.y.Dept.Example.org"), 4);
    cr_assert_eq(match_line(t, "bob@xdept.example.org"), 10); /* label boundary */
    cr_assert_eq(match_line(t, "bob@example.net"), 5);
    cr_assert_eq(match_line(t, "bob+tag@example.com"), 6); /* first match wins */
    cr_assert_eq(match_line(t, "bob+tag@other.test"), 7);
    cr_assert_eq(match_line(t, "bob@example.com"), 6);
    cr_assert_eq(match_line(t, "PostMaster@anything.test"), 8); /* REG_ICASE */
    cr_assert_eq(match_line(t, "a#b@x"), 9);
    cr_assert_eq(match_line(t, "<>"), 10); /* the null path matches only * and regexes */
    route_table_free(t);
}

Test(route, null_address_matches_regex_and_star_only)
{
    struct route_table *t = parse("example.org accept\n.org accept\n/^$/ reject\n* dunno\n");
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(match_line(t, "<>"), 3);
    route_table_free(t);
    t = parse("example.org accept\n");
    cr_assert_not_null(t);
    cr_assert_eq(match_line(t, "<>"), 0);
    cr_assert_eq(match_line(t, "a@example.com"), 0);
    cr_assert_null(route_match(t, NULL));
    route_table_free(t);
}

/* an empty or comments-only table would verify nothing: refused; "* dunno" says so on purpose */
Test(route, empty_and_comment_only_tables_are_refused)
{
    expect_error("", 1, "no routes");
    expect_error("# nothing\n   \n\t# more\n", 3, "no routes");
    cr_assert(strstr(err, "* dunno") != NULL, "%s", err);
    struct route_table *t = parse("# verify nothing, on purpose\n* dunno\n");
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(route_table_count(t), 1);
    route_table_free(t);
    route_table_free(NULL);
}

Test(route, errors_name_file_and_line)
{
    expect_error("example.org\n", 1, "missing method");
    expect_error("# c\nexample.org bogus\n", 2, "unknown method \"bogus\"");
    expect_error("example.org cdb\n", 1, "needs an argument");
    expect_error("example.org cdb:\n", 1, "needs an argument");
    expect_error("example.org smtp:\n", 1, "needs an argument");
    expect_error("example.org ldap\n", 1, "needs an argument");
    expect_error("example.org reject:now\n", 1, "takes no argument");
    expect_error("example.org dunno:x\n", 1, "takes no argument");
    expect_error("* accept\nexample.org rewrite:$1@x\n", 2, "needs a /regex/");
    expect_error("/(a)@(b)/ rewrite:$3@x\n", 1, "$3");
    expect_error("/a(/ accept\n", 1, "bad regex");
    expect_error("/abc accept\n", 1, "unterminated regex");
    expect_error("/abc/i accept\n", 1, "text after regex");
    expect_error("// accept\n", 1, "empty regex");
    expect_error("exa_mple.org accept\n", 1, "bad domain pattern");
    expect_error("example..org accept\n", 1, "bad domain pattern");
    expect_error(". accept\n", 1, "bad domain pattern");
    expect_error(".[1.2.3.4] accept\n", 1, "no subdomains");
    expect_error("user@example.org accept\n", 1, "bad domain pattern");
    expect_error("a.org cdb:/x novalue\n", 1, "expected name=value");
    expect_error("a.org cdb:/x =v\n", 1, "expected name=value");
    expect_error("a.org cdb:/x a=1 a=2\n", 1, "duplicate option");
    expect_error("a.org cdb:/x b@d=1\n", 1, "bad option name");
    expect_error("a.org accept\n\n\nb.org accept\x01\n", 4, "control character");
}

Test(route, nul_byte_in_middle)
{
    const char text[] = "a.org accept\nb.org acc\0ept\n";
    struct route_table *t = route_table_parse(text, sizeof(text) - 1, "f", err, sizeof(err));
    cr_assert_null(t);
    cr_assert_eq(strncmp(err, "f:2: ", 5), 0, "%s", err);
}

Test(route, too_many_options)
{
    char line[2048];
    int n = snprintf(line, sizeof(line), "a.org cdb:/x");
    for (int i = 0; i <= ROUTE_MAX_OPTIONS; i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " o%d=%d", i, i);
    expect_error(line, 1, "too many options");
    /* exactly the maximum is fine */
    n = snprintf(line, sizeof(line), "a.org cdb:/x");
    for (int i = 0; i < ROUTE_MAX_OPTIONS; i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " o%d=%d", i, i);
    struct route_table *t = parse(line);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(route_table_get(t, 0)->noptions, ROUTE_MAX_OPTIONS);
    cr_assert_str_eq(route_option(route_table_get(t, 0), "o15", NULL), "15");
    route_table_free(t);
}

Test(route, line_length_limit)
{
    size_t len = ROUTE_LINE_MAX + 100;
    char *text = malloc(len + 1);
    cr_assert_not_null(text);
    /* a comment line of exactly ROUTE_LINE_MAX bytes is fine */
    memset(text, ' ', ROUTE_LINE_MAX);
    text[0] = '#';
    memcpy(text + ROUTE_LINE_MAX, "\n* dunno\n", 9);
    struct route_table *t = route_table_parse(text, ROUTE_LINE_MAX + 9, "big", err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(route_table_count(t), 1);
    route_table_free(t);
    /* one more byte is an error */
    memset(text, ' ', ROUTE_LINE_MAX + 1);
    text[0] = '#';
    t = route_table_parse(text, ROUTE_LINE_MAX + 1, "big", err, sizeof(err));
    cr_assert_null(t);
    cr_assert(strstr(err, "big:1: line too long") != NULL, "%s", err);
    free(text);
}

Test(route, regex_complexity_is_bounded)
{
    /* glibc's regcomp copies the operand of + and {n,m}: nesting explodes */
    expect_error("/^(.*++++++++++++++++++++++++++++++++++++++++)$/ accept\n", 1, "adjacent");
    expect_error("/^((((((((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)$/ "
                 "accept\n",
                 1, "too complex");
    expect_error("/(a{200}){200}/ accept\n", 1, "too complex");
    expect_error("/^(.*)++++++++++@(.*)$/ accept\n", 1, "can be empty");
    expect_error("/^(.*)+@(.*)+(x*)+$/ accept\n", 1, "can be empty");
    expect_error("/^(.**********@*****************)@(.*)$/ accept\n", 1, "adjacent repetition");
    expect_error("/^a{2}{3}@/ accept\n", 1, "adjacent repetition");
    expect_error("/@(||.|)*/ accept\n", 1, "can be empty"); /* glibc regexec never returns */
    expect_error("/^(a*)*@/ accept\n", 1, "can be empty");
    expect_error("/^((((((((a|)+)+)+)+)+)+)+)+@/ accept\n", 1, "can be empty");
    expect_error("/^((((((((a?){2})*){2})+)+)+)+)+@/ accept\n", 1, "can be empty");
    expect_error("/(a)\\1@x/ accept\n", 1, "back-references");
    char deep[200];
    int n = 0;
    for (int i = 0; i < 40; i++)
        deep[n++] = '(';
    deep[n++] = 'a';
    for (int i = 0; i < 40; i++)
        deep[n++] = ')';
    deep[n] = '\0';
    char line[300];
    snprintf(line, sizeof(line), "/%s/ accept\n", deep);
    expect_error(line, 1, "nested too deeply");

    /* ordinary patterns are nowhere near the limit */
    struct route_table *t = parse("/^[0-9]{4}-[a-z]{1,8}@(x|y)\\.test$/ accept\n"
                                  "/^(.+)\\+[^@]*@(.+)$/ rewrite:$1@$2\n"
                                  "/^[[:alpha:]]+[]a]*@/ reject\n");
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(match_line(t, "1234-abc@x.test"), 1);
    cr_assert_eq(match_line(t, "12345-abc@x.test"), 0);
    cr_assert_eq(match_line(t, "abcaa@z"), 3);
    route_table_free(t);
}

Test(route, regex_with_escaped_slash_and_spaces)
{
    struct route_table *t = parse("/^a\\/b@x$/ accept\n/^\"c d\"@x$/ reject\n");
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(match_line(t, "a/b@x"), 1);
    cr_assert_eq(match_line(t, "\"c d\"@x"), 2);
    cr_assert_eq(match_line(t, "ab@x"), 0);
    route_table_free(t);
}

/* resolve - route_resolve on s; returns the line (0 = none), address in out */
static int resolve(const struct route_table *t, const char *s, char *out, size_t size, int *failed)
{
    struct address a = addr(s);
    err[0] = '\0';
    *failed = -1;
    const struct route *r = route_resolve(t, &a, failed, err, sizeof(err));
    address_format(&a, out, size);
    return r ? r->lineno : 0;
}

Test(route, resolve_rewrites)
{
    struct route_table *t = parse(example);
    char out[ADDRESS_MAX + 1];
    int failed;
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(resolve(t, "Bob+tag@Other.TEST", out, sizeof(out), &failed), 10);
    cr_assert_eq(failed, 0);
    cr_assert_str_eq(out, "Bob@other.test");
    cr_assert_eq(resolve(t, "bob@example.org", out, sizeof(out), &failed), 3);
    cr_assert_eq(failed, 0);
    cr_assert_str_eq(out, "bob@example.org");
    route_table_free(t);
}

Test(route, resolve_template_forms)
{
    struct route_table *t = parse("/^([a-z]+)@old\\.test$/ rewrite:$1.$$x@new.test\n"
                                  "/^[a-z]+@alias\\.test$/ rewrite:list-$&\n"
                                  "/^list-(.*)@alias\\.test$/ rewrite:$0@x\n"
                                  "/^(a)?b@opt\\.test$/ rewrite:z$1z@opt2.test\n"
                                  "new.test accept\n"
                                  "alias.test reject\n"
                                  "* dunno\n");
    char out[ADDRESS_MAX + 1];
    int failed;
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(resolve(t, "joe@old.test", out, sizeof(out), &failed), 5);
    cr_assert_str_eq(out, "joe.$x@new.test");
    /* "$&" gives list-joe@alias.test, then "$0@x" gives a second @ */
    cr_assert_eq(resolve(t, "joe@alias.test", out, sizeof(out), &failed), 0);
    cr_assert_eq(failed, 1);
    cr_assert(strstr(err, "malformed") != NULL, "%s", err);
    /* an unmatched optional group expands to nothing */
    cr_assert_eq(resolve(t, "b@opt.test", out, sizeof(out), &failed), 7);
    cr_assert_eq(failed, 0);
    cr_assert_str_eq(out, "zz@opt2.test");
    route_table_free(t);
}

Test(route, resolve_loop_is_bounded)
{
    struct route_table *t = parse("/^(.*)@loop\\.test$/ rewrite:$1@loop.test\n* accept\n");
    char out[ADDRESS_MAX + 1];
    int failed;
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(resolve(t, "x@loop.test", out, sizeof(out), &failed), 0);
    cr_assert_eq(failed, 1);
    cr_assert(strstr(err, "rewrite loop") != NULL, "%s", err);
    route_table_free(t);

    /* a chain of exactly ROUTE_MAX_REWRITES rewrites is allowed */
    char text[2048];
    int n = 0;
    for (int i = 0; i < ROUTE_MAX_REWRITES; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "/^(.*)@d%d\\.test$/ rewrite:$1@d%d.test\n", i, i + 1);
    snprintf(text + n, sizeof(text) - (size_t)n, "* accept\n");
    t = parse(text);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(resolve(t, "x@d0.test", out, sizeof(out), &failed), ROUTE_MAX_REWRITES + 1);
    cr_assert_eq(failed, 0);
    cr_assert_str_eq(out, "x@d8.test");
    route_table_free(t);
    /* one more is too many */
    n = 0;
    for (int i = 0; i <= ROUTE_MAX_REWRITES; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "/^(.*)@d%d\\.test$/ rewrite:$1@d%d.test\n", i, i + 1);
    snprintf(text + n, sizeof(text) - (size_t)n, "* accept\n");
    t = parse(text);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(resolve(t, "x@d0.test", out, sizeof(out), &failed), 0);
    cr_assert_eq(failed, 1);
    route_table_free(t);
}

Test(route, resolve_result_too_long)
{
    struct route_table *t = parse("/^(.*)$/ rewrite:$1$1$1$1$1$1$1$1$1\n");
    char local[70];
    char out[ADDRESS_MAX + 1];
    int failed;
    cr_assert_not_null(t, "%s", err);
    memset(local, 'a', 60);
    snprintf(local + 60, sizeof(local) - 60, "@x");
    cr_assert_eq(resolve(t, local, out, sizeof(out), &failed), 0);
    cr_assert_eq(failed, 1);
    cr_assert_str_eq(out, local, "address must be left alone on failure");
    route_table_free(t);
}

Test(route, load_file)
{
    char path[] = "/tmp/callahead-route-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, example, sizeof(example) - 1), (ssize_t)(sizeof(example) - 1));
    close(fd);
    struct route_table *t = route_table_load(path, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(route_table_count(t), 8);
    route_table_free(t);

    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "* dunno\nbad line here\n", 22), 22);
    close(fd);
    t = route_table_load(path, err, sizeof(err));
    cr_assert_null(t);
    char want[64];
    snprintf(want, sizeof(want), "%s:2: ", path);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
    unlink(path);

    t = route_table_load(path, err, sizeof(err));
    cr_assert_null(t);
    cr_assert(strstr(err, "No such file") != NULL, "%s", err);
}

/* a relative cdb:PATH means the file beside the table, not one in the daemon's "/" */
Test(route, relative_cdb_path_is_beside_the_table)
{
    char dir[] = "/tmp/callahead-routedir-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/routes", dir);
    const char text[] = "a.test cdb:users.cdb\nb.test cdb:/var/lib/x.cdb\nc.test cdb:sub/y.cdb\n"
                        "d.test smtp:[127.0.0.1]:2525\n* dunno\n";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);

    struct route_table *t = route_table_load(path, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    char want[160];
    snprintf(want, sizeof(want), "%s/users.cdb", dir);
    cr_assert_str_eq(route_table_get(t, 0)->arg, want);
    cr_assert_str_eq(route_table_get(t, 1)->arg, "/var/lib/x.cdb");
    snprintf(want, sizeof(want), "%s/sub/y.cdb", dir);
    cr_assert_str_eq(route_table_get(t, 2)->arg, want);
    cr_assert_str_eq(route_table_get(t, 3)->arg, "[127.0.0.1]:2525");
    route_table_free(t);
    unlink(path);
    rmdir(dir);
}

static const struct value_decl generic[] = {
    {"fold_local", VALUE_BOOL, 0, 1},
    {"breaker_failures", VALUE_COUNT, 1, 1000},
    {"breaker_time", VALUE_DURATION, 1, 86400000},
    {NULL, 0, 0, 0},
};
static const struct value_decl own[] = {
    {"connect_timeout", VALUE_DURATION, 1, 3600000},
    {"sender", VALUE_TEXT, 0, 0},
    {NULL, 0, 0, 0},
};

/* check_line - route_options_check of the one route in text against generic and own */
static int check_line(const char *text)
{
    const struct value_decl *tables[] = {generic, own};
    struct route_table *t = parse(text);
    cr_assert_not_null(t, "%s", err);
    int rc = route_options_check(route_table_get(t, 0), tables, 2, err, sizeof(err));
    route_table_free(t);
    return rc;
}

/* every option must be claimed by a table and have a value of its declared type */
Test(route, options_are_declared_and_typed)
{
    cr_assert_eq(check_line("a.org smtp:mx connect_timeout=1s breaker_failures=2 fold_local=no "
                            "sender=x@y.org breaker_time=5m"),
                 0, "%s", err);
    cr_assert_eq(check_line("a.org smtp:mx fold_local=true"), 0, "%s", err);

    cr_assert_eq(check_line("a.org smtp:mx conect_timeout=1s"), -1);
    cr_assert_str_eq(err, "unknown option \"conect_timeout\" for smtp routes "
                          "(did you mean \"connect_timeout\"?)");
    cr_assert_eq(check_line("a.org smtp:mx connect_timeout=1s breaker_falures=2"), -1);
    cr_assert(strstr(err, "\"breaker_falures\"") && strstr(err, "\"breaker_failures\"?"), "%s",
              err);
    /* nothing close: no suggestion */
    cr_assert_eq(check_line("a.org cdb:/x colour=blue"), -1);
    cr_assert_str_eq(err, "unknown option \"colour\" for cdb routes");

    cr_assert_eq(check_line("a.org smtp:mx fold_local=maybe"), -1);
    cr_assert_str_eq(err, "fold_local=maybe: expected yes or no");
    cr_assert_eq(check_line("a.org smtp:mx breaker_failures=0"), -1);
    cr_assert_str_eq(err, "breaker_failures=0: expected a number from 1 to 1000");
    cr_assert_eq(check_line("a.org smtp:mx connect_timeout=2h"), -1);
    cr_assert(strstr(err, "connect_timeout=2h: expected a duration from 1ms to 1h") == err, "%s",
              err);
    cr_assert_eq(check_line("a.org smtp:mx connect_timeout=fast"), -1);

    /* a route with no tables claims nothing */
    struct route_table *t = parse("* dunno x=1\n");
    cr_assert_not_null(t);
    cr_assert_eq(route_options_check(route_table_get(t, 0), NULL, 0, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "unknown option \"x\" for dunno routes");
    route_table_free(t);
}

/* IDN patterns in U-labels or A-labels match both spellings of a domain */
Test(route, idn_patterns_match_both_spellings)
{
    struct route_table *t = parse("b\xc3\xbc"
                                  "cher.example   dunno\n"
                                  ".xn--caf-dma.example accept\n"
                                  "/^j\xc3\xb6rg@xn--/  reject\n"
                                  "*              dunno\n");
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(match_line(t, "x@xn--bcher-kva.example"), 1);
    cr_assert_eq(match_line(t, "x@B\xc3\x9c"
                               "CHER.example."),
                 1);
    cr_assert_eq(match_line(t, "x@mx.caf\xc3\xa9.example"), 2);
    cr_assert_eq(match_line(t, "j\xc3\xb6rg@xn--caf-dma.example"), 3); /* regex: A-labels */
    cr_assert_eq(match_line(t, "j\xc3\xb6rg@caf\xc3\xa9.example"), 3);
    cr_assert_eq(match_line(t, "x@buecher.example"), 4);
    route_table_free(t);
    expect_error("b\xc3\xbc_cher.example dunno\n", 1, "bad domain pattern");
    expect_error("xn--zz.example dunno\n", 1, "A-label");
}
