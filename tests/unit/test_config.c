/*
 * test_config.c - callahead.conf parsing: defaults, every type's good and bad
 * values, syntax (comments, continuation, CRLF), error positions, hostile
 * files, the print round trip, and that contrib/callahead.conf.example
 * parses and documents every parameter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* by path, so it can never be confused with an autoconf-generated config.h */
#include "../../policyd/cache_swap.h"
#include "../../policyd/config.h"
#include "backend.h"

/* parse_ok - parse text, assert success */
static void parse_ok(const char *text, struct config *c)
{
    char err[256] = "";

    cr_assert_eq(config_parse(text, strlen(text), "test.conf", c, err, sizeof(err)), 0,
                 "unexpected error: %s", err);
}

/* parse_err - parse text, assert failure with exactly the message want */
static void parse_err(const char *text, size_t len, const char *want)
{
    struct config c;
    char err[512] = "";

    cr_assert_eq(config_parse(text, len, "test.conf", &c, err, sizeof(err)), -1, "accepted: %.60s",
                 text);
    cr_assert_str_eq(err, want);
}

/* parse_err_prefix - parse_err for a C string, checking only that the message starts with want */
static void parse_err_prefix(const char *text, const char *want)
{
    struct config c;
    char err[512] = "";

    cr_assert_eq(config_parse(text, strlen(text), "test.conf", &c, err, sizeof(err)), -1,
                 "accepted: %.80s", text);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "got \"%s\", want \"%s...\"", err, want);
}

Test(config, defaults)
{
    struct config c;

    config_defaults(&c);
    cr_assert_eq(c.nlisten, 1);
    cr_assert_str_eq(c.listen[0], "inet:127.0.0.1:10040");
    cr_assert_eq(c.unix_socket_mode, 0660);
    cr_assert_str_eq(c.unix_socket_owner, "");
    cr_assert_str_eq(c.user, "");
    cr_assert_str_eq(c.pidfile, "");
    cr_assert_str_eq(c.syslog_name, "callahead");
    cr_assert_str_eq(c.syslog_facility, "mail");
    cr_assert_eq(c.debug, 0);
    cr_assert_eq(c.max_connections, 4096);
    cr_assert_eq(c.idle_timeout, 300);
    cr_assert_eq(c.request_timeout, 30);
    cr_assert_eq(c.limits.max_line, 4096);
    cr_assert_eq(c.limits.max_attributes, 100);
    cr_assert_eq(c.limits.max_request, 65536);
    cr_assert_str_eq(c.action[VERDICT_VALID], "DUNNO");
    cr_assert_str_eq(c.action[VERDICT_INVALID], "550 5.1.1 %r");
    cr_assert_str_eq(c.action[VERDICT_TEMPFAIL],
                     "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: %r");
    cr_assert_str_eq(c.action[VERDICT_UNKNOWN], "DUNNO");
    cr_assert_str_eq(c.action_malformed, "DUNNO");
    cr_assert_eq(c.fail_open, 0);
    cr_assert_eq(c.dry_run, 0);
    cr_assert_str_eq(c.route_table, "/etc/callahead/routes");
    cr_assert_str_eq(c.recipient_delimiter, "+");
    cr_assert_eq(c.answer_budget_ms, 5000);
    cr_assert_str_eq(c.redis_server, "");
    cr_assert_str_eq(c.redis_key_prefix, "callahead:");
    cr_assert_eq(c.redis_timeout_ms, 250);
    cr_assert_eq(c.redis_reconnect_max_ms, 10000);
    cr_assert_eq(c.cache_l1_size, 100000);
    cr_assert_eq(c.cache_l1_ttl, 60);
    cr_assert_eq(c.ttl[VERDICT_VALID], 31 * 86400);
    cr_assert_eq(c.ttl[VERDICT_INVALID], 3 * 86400);
    cr_assert_eq(c.ttl[VERDICT_TEMPFAIL], 60);
    cr_assert_eq(c.refresh[VERDICT_VALID], 7 * 86400);
    cr_assert_eq(c.refresh[VERDICT_INVALID], 3 * 3600);
    config_free(&c);
    cr_assert_null(c.listen[0]);
    cr_assert_null(c.user);
}

Test(config, empty_file_is_defaults)
{
    struct config c;

    cr_assert_eq(config_parse("", 0, "empty.conf", &c, NULL, 0), 0);
    cr_assert_eq(c.max_connections, 4096);
    config_free(&c);
    parse_ok("\n\n   \n# only a comment\n", &c);
    cr_assert_eq(c.idle_timeout, 300);
    config_free(&c);
}

Test(config, every_type_good)
{
    struct config c;

    parse_ok("listen = inet:127.0.0.1:0, inet:[::1]:10041 unix:/run/callahead/policy.sock\n"
             "unix_socket_mode = 0600\n"
             "user = callahead\n"
             "syslog_facility = local3\n"
             "debug = yes\n"
             "dry_run = TRUE\n"
             "fail_open = on\n"
             "max_connections = 10\n"
             "idle_timeout = 5m\n"
             "request_timeout = 10\n"
             "ttl_valid = 2w\n"
             "ttl_invalid = 1d\n"
             "ttl_tempfail = 0\n"
             "refresh_valid = 12h\n"
             "refresh_invalid = 90s\n"
             "answer_budget = 2s\n"
             "redis_timeout = 100\n"
             "redis_reconnect_max = 500ms\n"
             "action_invalid = REJECT no such user %a (%s)\n"
             "recipient_delimiter = +-\n"
             "redis_server = 127.0.0.1:6390\n",
             &c);
    cr_assert_eq(c.nlisten, 3);
    cr_assert_str_eq(c.listen[0], "inet:127.0.0.1:0");
    cr_assert_str_eq(c.listen[1], "inet:[::1]:10041");
    cr_assert_str_eq(c.listen[2], "unix:/run/callahead/policy.sock");
    cr_assert_eq(c.unix_socket_mode, 0600);
    cr_assert_str_eq(c.user, "callahead");
    cr_assert_str_eq(c.syslog_facility, "local3");
    cr_assert_eq(c.debug, 1);
    cr_assert_eq(c.dry_run, 1);
    cr_assert_eq(c.fail_open, 1);
    cr_assert_eq(c.max_connections, 10);
    cr_assert_eq(c.idle_timeout, 300);
    cr_assert_eq(c.request_timeout, 10);
    cr_assert_eq(c.ttl[VERDICT_VALID], 14 * 86400);
    cr_assert_eq(c.ttl[VERDICT_INVALID], 86400);
    cr_assert_eq(c.ttl[VERDICT_TEMPFAIL], 0);
    cr_assert_eq(c.refresh[VERDICT_VALID], 12 * 3600);
    cr_assert_eq(c.refresh[VERDICT_INVALID], 90);
    cr_assert_eq(c.answer_budget_ms, 2000);
    cr_assert_eq(c.redis_timeout_ms, 100);
    cr_assert_eq(c.redis_reconnect_max_ms, 500);
    cr_assert_str_eq(c.action[VERDICT_INVALID], "REJECT no such user %a (%s)");
    cr_assert_str_eq(c.recipient_delimiter, "+-");
    cr_assert_str_eq(c.redis_server, "127.0.0.1:6390");
    config_free(&c);
}

Test(config, bad_values)
{
    parse_err_prefix("max_connections = ten\n", "test.conf:1: bad number for max_connections");
    parse_err_prefix("max_connections = -1\n", "test.conf:1: bad number");
    parse_err_prefix("max_connections = 12x\n", "test.conf:1: bad number");
    parse_err_prefix("max_connections =\n", "test.conf:1: bad number");
    parse_err_prefix("max_connections = 99999999999999999999999\n", "test.conf:1: bad number");
    parse_err_prefix("max_connections = 0\n", "test.conf:1: max_connections out of range");
    parse_err_prefix("max_attributes = 2\n", "test.conf:1: max_attributes out of range");
    parse_err_prefix("debug = maybe\n", "test.conf:1: bad boolean for debug");
    parse_err_prefix("debug =\n", "test.conf:1: bad boolean");
    parse_err_prefix("idle_timeout = 5y\n", "test.conf:1: bad time for idle_timeout");
    parse_err_prefix("idle_timeout = 5mm\n", "test.conf:1: bad time");
    parse_err_prefix("idle_timeout = m\n", "test.conf:1: bad time");
    parse_err_prefix("idle_timeout = 0\n", "test.conf:1: idle_timeout out of range");
    parse_err_prefix("ttl_valid = 1000w\n", "test.conf:1: ttl_valid out of range");
    parse_err_prefix("ttl_valid = 999999999w\n", "test.conf:1: ttl_valid out of range");
    parse_err_prefix("answer_budget = 5y\n", "test.conf:1: bad time for answer_budget");
    parse_err_prefix("answer_budget = 11m\n", "test.conf:1: answer_budget out of range");
    parse_err_prefix("idle_timeout = 1500ms\n", "test.conf:1: bad time for idle_timeout");
    parse_err_prefix("answer_budget = 1ms\n", "test.conf:1: answer_budget out of range");
    parse_err_prefix("redis_reconnect_max = 50ms\n", "test.conf:1: redis_reconnect_max out");
    parse_err_prefix("unix_socket_mode = 0680\n", "test.conf:1: bad octal mode");
    parse_err_prefix("unix_socket_mode = rw\n", "test.conf:1: bad octal mode");
    parse_err_prefix("unix_socket_mode = 01777\n", "test.conf:1: unix_socket_mode out of range");
    parse_err_prefix("syslog_facility = kern\n", "test.conf:1: bad syslog_facility");
    parse_err_prefix("syslog_name =\n", "test.conf:1: syslog_name must not be empty");
    parse_err_prefix("redis_server = ::1:6379\n", "test.conf:1: bad redis_server");
    parse_err_prefix("redis_server = host:99999\n", "test.conf:1: bad redis_server");
    parse_err_prefix("redis_server = unix:\n", "test.conf:1: bad redis_server");
    parse_err_prefix("redis_server = 127.0.0.1:0\n", "test.conf:1: bad redis_server");
}

Test(config, bad_actions)
{
    parse_err_prefix("action_invalid = 550x nope\n", "test.conf:1: bad action_invalid: ");
    parse_err_prefix("action_valid = hello\n", "test.conf:1: bad action_valid: ");
    parse_err_prefix("action_tempfail = 450 %q\n", "test.conf:1: bad action_tempfail: ");
    parse_err_prefix("action_unknown =\n", "test.conf:1: bad action_unknown: ");
    parse_err_prefix("action_malformed = 250 ok\n", "test.conf:1: bad action_malformed: ");
}

Test(config, listen_values)
{
    struct config c;

    parse_ok("listen = unix:/tmp/a.sock,unix:/tmp/b.sock\n", &c);
    cr_assert_eq(c.nlisten, 2);
    cr_assert_str_eq(c.listen[1], "unix:/tmp/b.sock");
    config_free(&c);

    parse_err_prefix("listen = tcp:127.0.0.1:25\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = inet:127.0.0.1\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = inet:127.0.0.1:65536\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = inet:::1:25\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = inet:[::1:25\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = inet::25\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = unix:\n", "test.conf:1: bad listen entry");
    parse_err_prefix("listen = ,\n", "test.conf:1: listen is empty");

    /* a unix path must fit sockaddr_un */
    char big[300];
    snprintf(big, sizeof(big), "listen = unix:/%0120d\n", 0);
    parse_err_prefix(big, "test.conf:1: bad listen entry");

    /* 16 entries fit, 17 do not */
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof(text), "listen =");
    for (int i = 0; i < 16; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, " inet:127.0.0.1:%d", 20000 + i);
    snprintf(text + n, sizeof(text) - n, "\n");
    parse_ok(text, &c);
    cr_assert_eq(c.nlisten, CONFIG_MAX_LISTEN);
    config_free(&c);
    snprintf(text + n, sizeof(text) - n, " unix:/x\n");
    parse_err(text, strlen(text), "test.conf:1: too many listen entries (at most 16)");
}

Test(config, continuation_and_comments)
{
    struct config c;

    parse_ok("# a comment\n"
             "listen = inet:127.0.0.1:1,\n"
             "    inet:127.0.0.1:2\n"
             "# a comment between continuation lines is skipped, as in Postfix\n"
             "\tunix:/tmp/x.sock\n"
             "\n"
             "action_invalid = 550 5.1.1 <%a>:\n"
             "  no such\n"
             "     user\n"
             "   # indented comment\n"
             "debug=yes\n"
             "user  =   someone  \n",
             &c);
    cr_assert_eq(c.nlisten, 3);
    cr_assert_str_eq(c.listen[2], "unix:/tmp/x.sock");
    cr_assert_str_eq(c.action[VERDICT_INVALID], "550 5.1.1 <%a>: no such user");
    cr_assert_eq(c.debug, 1);
    cr_assert_str_eq(c.user, "someone", "name and value trimmed");
    config_free(&c);
}

Test(config, continuation_applies_to_previous)
{
    struct config c;

    /* "  user = x" after debug=yes continues debug's value: an error, not a new parameter */
    parse_err_prefix("debug = yes\n  user = x\n", "test.conf:1: bad boolean for debug");
    parse_err_prefix("  debug = yes\n", "test.conf:1: continuation line without a parameter");
    parse_ok("user = a\n  b\n", &c);
    cr_assert_str_eq(c.user, "a b");
    config_free(&c);
}

Test(config, unknown_missing_duplicate)
{
    parse_err_prefix("debug = no\n\n# x\nno_such_param = 1\n",
                     "test.conf:4: unknown parameter \"no_such_param\"");
    parse_err_prefix("debug = no\ndebug = yes\n", "test.conf:2: duplicate parameter \"debug\"");
    parse_err_prefix("debug no\n", "test.conf:1: missing '=' after \"debug\"");
    parse_err_prefix("= 5\n", "test.conf:1: missing parameter name");
    /* an unknown name is sanitised and truncated before it reaches the message */
    parse_err_prefix("Bad\x01Name\x1b[31m = 1\n",
                     "test.conf:1: unknown parameter \"?ad??ame??31m\"");
    struct config c;
    char err[256];
    char longname[300];
    memset(longname, 'a', 250);
    strcpy(longname + 250, " = 1\n");
    cr_assert_eq(config_parse(longname, strlen(longname), "t", &c, err, sizeof(err)), -1);
    cr_assert_lt(strlen(err), 100, "%s", err);
    cr_assert_not_null(strstr(err, "...\""));
    for (const char *p = err; *p; p++)
        cr_assert(*p >= 0x20 && *p < 0x7f);
}

Test(config, error_frees_and_fname_in_message)
{
    struct config c;
    char err[256];

    cr_assert_eq(config_parse("user = x\nbogus = 1\n", 19, "/etc/callahead/callahead.conf", &c, err,
                              sizeof(err)),
                 -1);
    cr_assert_str_eq(err, "/etc/callahead/callahead.conf:2: unknown parameter \"bogus\"");
    cr_assert_null(c.user, "freed on error");
    cr_assert_eq(c.nlisten, 0);
    config_free(&c); /* and freeing again is harmless */
}

Test(config, crlf_file)
{
    struct config c;

    parse_ok("# dos\r\nuser = win\r\nlisten = unix:/tmp/a,\r\n  unix:/tmp/b\r\n\r\nidle_timeout = "
             "1m\r\n",
             &c);
    cr_assert_str_eq(c.user, "win");
    cr_assert_eq(c.nlisten, 2);
    cr_assert_str_eq(c.listen[1], "unix:/tmp/b");
    cr_assert_eq(c.idle_timeout, 60);
    config_free(&c);
}

Test(config, no_final_newline)
{
    struct config c;

    parse_ok("user = last", &c);
    cr_assert_str_eq(c.user, "last");
    config_free(&c);
}

Test(config, hostile_nul)
{
    const char text[] = "user = a\nsyslog_name = b\0c\n";

    parse_err(text, sizeof(text) - 1, "test.conf:2: NUL byte in file");
}

Test(config, hostile_control_characters)
{
    parse_err_prefix("user = a\x1b[2Jb\n", "test.conf:1: control character in the value of user");
    parse_err_prefix("pidfile = /run/x\ry\n", "test.conf:1: control character");
    parse_err_prefix("user = a\x7f\n", "test.conf:1: control character");
    struct config c;
    parse_ok("user = a\tb\n", &c);
    cr_assert_str_eq(c.user, "a\tb");
    config_free(&c);
}

Test(config, hostile_long_line)
{
    size_t n = 100 * 1024;
    char *text = malloc(n + 1);

    cr_assert_not_null(text);
    memcpy(text, "# ok\nuser = ", 12);
    memset(text + 12, 'x', n - 12);
    text[n] = '\0';
    parse_err(text, n, "test.conf:2: line too long (at most 4096 bytes)");
    /* a line of 4096 bytes is read, but its value is over the value limit */
    memcpy(text, "user = ", 7);
    text[4096] = '\n';
    parse_err(text, 4097, "test.conf:1: value of user too long (at most 2048 bytes)");
    /* long values built from continuation lines are bounded too */
    char *cont = malloc(200 * 40 + 16);
    cr_assert_not_null(cont);
    size_t len = (size_t)sprintf(cont, "user = a\n");
    for (int i = 0; i < 200; i++)
        len += (size_t)sprintf(cont + len, "  %036d\n", i);
    parse_err(cont, len, "test.conf:1: value too long (at most 2048 bytes)");
    free(cont);
    free(text);
}

Test(config, hostile_garbage_lines)
{
    size_t n = 10000;
    char *text = malloc(n * 40);
    size_t len = 0;
    unsigned int seed = 12345;

    cr_assert_not_null(text);
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < 30; j++) {
            seed = seed * 1103515245 + 12345;
            char ch = (char)((seed >> 16) & 0xff);
            text[len++] = (ch == '\n' || ch == '\0') ? 'x' : ch;
        }
        text[len++] = '\n';
    }
    struct config c;
    char err[256] = "";
    cr_assert_eq(config_parse(text, len, "garbage", &c, err, sizeof(err)), -1);
    cr_assert_eq(strncmp(err, "garbage:", 8), 0, "%s", err);
    for (const char *p = err; *p; p++)
        cr_assert(*p >= 0x20 && *p < 0x7f, "raw byte in message: %s", err);
    free(text);
}

/* print - config_print into a string the caller frees */
static char *print(const struct config *c, int only_changed)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);

    cr_assert_not_null(fp);
    config_print(fp, c, only_changed);
    fclose(fp);
    return buf;
}

Test(config, print_round_trip)
{
    struct config a, b;

    parse_ok("listen = inet:[::1]:10041, unix:/tmp/p.sock\n"
             "unix_socket_mode = 0600\n"
             "user = callahead\n"
             "debug = yes\n"
             "idle_timeout = 90\n"
             "ttl_valid = 2w\n"
             "ttl_tempfail = 0\n"
             "answer_budget = 1500\n"
             "action_invalid = 550 5.1.1 <%a>: gone (%s %c) 100%%\n"
             "recipient_delimiter =\n"
             "redis_server = [::1]:6390\n",
             &a);
    char *text = print(&a, 0);
    parse_ok(text, &b);
    char *again = print(&b, 0);
    cr_assert_str_eq(text, again, "print -> parse -> print is stable");
    cr_assert_eq(b.nlisten, 2);
    cr_assert_str_eq(b.listen[0], "inet:[::1]:10041");
    cr_assert_eq(b.unix_socket_mode, 0600);
    cr_assert_eq(b.idle_timeout, 90);
    cr_assert_eq(b.ttl[VERDICT_VALID], 14 * 86400);
    cr_assert_eq(b.ttl[VERDICT_TEMPFAIL], 0);
    cr_assert_eq(b.answer_budget_ms, 1500);
    cr_assert_str_eq(b.action[VERDICT_INVALID], a.action[VERDICT_INVALID]);
    cr_assert_str_eq(b.recipient_delimiter, "");
    cr_assert_str_eq(b.redis_server, "[::1]:6390");
    cr_assert_not_null(strstr(text, "unix_socket_mode = 0600\n"));
    cr_assert_not_null(strstr(text, "idle_timeout = 90s\n"));
    cr_assert_not_null(strstr(text, "ttl_invalid = 3d\n"));

    /* only_changed: exactly the parameters that differ from the defaults */
    char *changed = print(&a, 1);
    cr_assert_not_null(strstr(changed, "debug = yes\n"));
    cr_assert_null(strstr(changed, "max_connections"));
    cr_assert_null(strstr(changed, "ttl_invalid"));
    int lines = 0;
    for (const char *p = changed; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 11, "%s", changed);
    struct config d;
    config_defaults(&d);
    char *none = print(&d, 1);
    cr_assert_str_eq(none, "");
    free(none);
    free(changed);
    free(again);
    free(text);
    config_free(&d);
    config_free(&a);
    config_free(&b);
}

Test(config, verifier_config)
{
    struct config c;
    struct verifier_config vc;

    config_defaults(&c);
    config_verifier(&c, &vc);
    cr_assert_str_eq(vc.route_table, "/etc/callahead/routes");
    cr_assert_str_eq(vc.recipient_delimiter, "+");
    cr_assert_eq(vc.answer_budget_ms, 5000);
    cr_assert_eq(vc.cache.use_redis, 0);
    cr_assert_str_eq(vc.cache.key_prefix, "callahead:");
    cr_assert_eq(vc.cache.l1_max_entries, 100000);
    cr_assert_eq(vc.cache.l1_ttl, 60);
    cr_assert_eq(vc.cache.ttl[VERDICT_VALID], 31 * 86400);
    cr_assert_eq(vc.cache.ttl[VERDICT_INVALID], 3 * 86400);
    cr_assert_eq(vc.cache.refresh[VERDICT_INVALID], 3 * 3600);
    cr_assert_eq(vc.cache.refresh[VERDICT_TEMPFAIL], 0);
    cr_assert_eq(vc.cache.redis.reconnect_min_ms, 100);
    cr_assert_eq(vc.cache.redis.reconnect_max_ms, 10000);
    cr_assert_eq(vc.cache.redis.timeout_ms, 250);
    config_free(&c);

    parse_ok("redis_server = 127.0.0.1:6390\n", &c);
    config_verifier(&c, &vc);
    cr_assert_eq(vc.cache.use_redis, 1);
    cr_assert_str_eq(vc.cache.redis.host, "127.0.0.1");
    cr_assert_eq(vc.cache.redis.port, 6390);
    cr_assert_null(vc.cache.redis.unix_path);
    config_free(&c);

    parse_ok("redis_server = [::1]:7000\n", &c);
    config_verifier(&c, &vc);
    cr_assert_str_eq(vc.cache.redis.host, "::1");
    cr_assert_eq(vc.cache.redis.port, 7000);
    config_free(&c);

    parse_ok("redis_server = redis.example.org\n", &c);
    config_verifier(&c, &vc);
    cr_assert_str_eq(vc.cache.redis.host, "redis.example.org");
    cr_assert_eq(vc.cache.redis.port, 6379);
    config_free(&c);

    parse_ok("redis_server = unix:/run/redis/redis.sock\n", &c);
    config_verifier(&c, &vc);
    cr_assert_eq(vc.cache.use_redis, 1);
    cr_assert_str_eq(vc.cache.redis.unix_path, "/run/redis/redis.sock");
    config_free(&c);
}

Test(config, print_doc)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);

    config_print_doc(fp, 1);
    fclose(fp);
    cr_assert_not_null(strstr(buf, ".TP\n.B redis_timeout\n(default: 250ms)\n"), "Redis reloads");
    cr_assert_not_null(
        strstr(buf, ".TP\n.B pidfile\n(default: empty; a change needs a restart)\n"));
    cr_assert_not_null(strstr(buf, ".TP\n.B ttl_valid\n(default: 31d)\n"), "TTLs reload");
    cr_assert_not_null(strstr(buf, ".TP\n.B dry_run\n(default: no)\n"));
    cr_assert_not_null(strstr(buf, ".B listen\n"));
    cr_assert_not_null(strstr(buf, "(default: empty; a change needs a restart)"));
    free(buf);

    fp = open_memstream(&buf, &size);
    config_print_doc(fp, 0);
    fclose(fp);
    cr_assert_not_null(strstr(buf, "idle_timeout (default: 300s)\n    "));
    cr_assert_not_null(strstr(buf, "smtpd_policy_service_max_idle"));
    for (const char *line = buf; *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, "    ", 4) == 0)
            cr_assert_leq(nl - line, 78, "wrapped: %.*s", (int)(nl - line), line);
        line = nl + 1;
    }
    free(buf);
}

Test(config, load_errors)
{
    struct config c;
    char err[256];

    cr_assert_eq(config_load("/nonexistent/callahead.conf", &c, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "/nonexistent/callahead.conf: No such file or directory");
    cr_assert_eq(config_load("/", &c, err, sizeof(err)), -1);
    cr_assert_eq(strncmp(err, "/: ", 3), 0, "%s", err);
}

/* the shipped example parses, and names every parameter (as "#name = default" lines) */
Test(config, example_file)
{
    const char *path = TEST_SRCDIR "/contrib/callahead.conf.example";
    struct config c, d;
    char err[256] = "";

    cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);

    /* the names the table knows, from config_print */
    config_defaults(&d);
    char *all = print(&d, 0);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    char *text = NULL;
    size_t tsize = 0;
    cr_assert_gt(getdelim(&text, &tsize, '\0', fp), 0);
    fclose(fp);

    int nparams = 0;
    for (char *line = all; *line;) {
        char *nl = strchr(line, '\n');
        size_t nlen = strcspn(line, " ");
        char want[128];
        snprintf(want, sizeof(want), "\n#%.*s =", (int)nlen, line);
        cr_assert_not_null(strstr(text, want), "%.*s missing from the example", (int)nlen, line);
        nparams++;
        line = nl + 1;
    }
    cr_assert_geq(nparams, 35);

    /* every "#name =" in the example is a real parameter: uncommenting it parses */
    for (char *p = strstr(text, "\n#"); p; p = strstr(p + 1, "\n#")) {
        size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (n == 0 || strncmp(p + 2 + n, " =", 2) != 0)
            continue;
        size_t ll = strcspn(p + 2, "\n");
        char *one = strndup(p + 2, ll);
        struct config e;
        cr_assert_eq(config_parse(one, ll, "example", &e, err, sizeof(err)), 0, "%s: %s", one, err);
        /* and the value shown is the default */
        char *changed = print(&e, 1);
        cr_assert_str_eq(changed, "", "example's value is not the default: %s", one);
        free(changed);
        config_free(&e);
        free(one);
    }
    free(text);
    free(all);
    config_free(&d);
    config_free(&c);
}

/* the one duration grammar of value_parse.h: every unit for every time parameter */
Test(config, one_duration_grammar)
{
    struct config c;

    parse_ok("idle_timeout = 5000ms\n"
             "answer_budget = 1m\n"
             "redis_reconnect_max = 1h\n"
             "dns_timeout = 4S\n"
             "cache_l1_ttl = 1w\n",
             &c);
    cr_assert_eq(c.idle_timeout, 5);
    cr_assert_eq(c.answer_budget_ms, 60000);
    cr_assert_eq(c.redis_reconnect_max_ms, 3600000);
    cr_assert_eq(c.dns_timeout_ms, 4000);
    cr_assert_eq(c.cache_l1_ttl, 7 * 86400);
    config_free(&c);
    /* a bare number keeps the parameter's unit: seconds, or ms where the default says ms */
    parse_ok("idle_timeout = 7\nredis_timeout = 7\n", &c);
    cr_assert_eq(c.idle_timeout, 7);
    cr_assert_eq(c.redis_timeout_ms, 7);
    config_free(&c);
    parse_err_prefix("answer_budget = 99999999999999999999w\n",
                     "test.conf:1: answer_budget out of range");
    parse_err_prefix("redis_timeout = -5ms\n", "test.conf:1: bad time for redis_timeout");
}

/* a reload may change only what a running daemon can apply; the rest is named */
Test(config, restart_changes)
{
    struct config a, b;
    char names[256];

    parse_ok("dry_run = yes\nroute_table = /a\n", &a);
    parse_ok("action_invalid = 550 5.1.1 no\nroute_table = /b\nanswer_budget = 2s\n"
             "ttl_valid = 2d\nrefresh_invalid = 1h\ncache_l1_ttl = 10s\n",
             &b);
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 0);
    cr_assert_str_eq(names, "");
    config_free(&b);

    parse_ok("redis_server = 127.0.0.1:6390\nredis_timeout = 1s\nredis_key_prefix = x:\n"
             "recipient_delimiter = -\nlisten = inet:127.0.0.1:1\ndry_run = yes\n"
             "user = nobody\npidfile = /run/x.pid\nroute_table = /a\n",
             &b);
    /* listen, recipient_delimiter and the Redis settings are applied by a reload: not named */
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 2);
    cr_assert_str_eq(names, "user, pidfile");
    /* the same value written differently is no change */
    config_free(&a);
    parse_ok("redis_server = 127.0.0.1:6390\nredis_timeout = 1000ms\nredis_key_prefix = x:\n"
             "recipient_delimiter = -\nlisten = inet:127.0.0.1:1\nuser = nobody\n"
             "pidfile = /run/x.pid\n",
             &a);
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 0, "%s", names);
    /* a short buffer is cut, the count stays right */
    config_free(&a);
    config_defaults(&a);
    cr_assert_eq(config_restart_changes(&a, &b, names, 8), 2);
    cr_assert_eq(strlen(names), 7);
    config_free(&a);
    config_free(&b);
}

/* the operations parameters are checked when the file is read, so -t reports them */
Test(config, operations_values)
{
    struct config c;
    char err[512] = "";
    const char *good = "control_socket = /run/callahead/control\n"
                       "control_socket_mode = 0660\n"
                       "stats_listen = inet:[::1]:9157\n"
                       "harvest_exempt_networks = 192.0.2.0/24, 2001:db8::/32 10.1.2.3\n"
                       "max_invalid_per_client = 20\n";

    cr_assert_eq(config_parse(good, strlen(good), "test.conf", &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(c.stats_listen, "inet:[::1]:9157");
    cr_assert_eq(c.control_socket_mode, 0660);
    cr_assert_eq(c.max_invalid_per_client, 20);
    config_free(&c);

    parse_err_prefix("stats_listen = 127.0.0.1:9157\n", "test.conf:1: bad stats_listen");
    parse_err_prefix("stats_listen = inet:127.0.0.1\n", "test.conf:1: bad stats_listen");
    parse_err_prefix("stats_listen = unix:/run/x\n", "test.conf:1: bad stats_listen");
    parse_err_prefix(
        "control_socket = /run/"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
        "test.conf:1: bad control_socket");
    parse_err_prefix("harvest_exempt_networks = 192.0.2.0/33\n",
                     "test.conf:1: harvest_exempt_networks: bad network \"192.0.2.0/33\"");
    parse_err_prefix("harvest_ipv4_prefix = 4\n", "test.conf:1:");
    parse_err_prefix("harvest_action = hello\n", "test.conf:1:");
}

Test(config, redis_sentinel_parameters)
{
    struct config c;
    struct verifier_config vc;

    parse_ok("redis_sentinels = 127.0.0.1:26379, 127.0.0.2:26379 [::1]:26380\n"
             "redis_master_name = mymaster\nredis_password = s3cret\nredis_db = 5\n",
             &c);
    config_verifier(&c, &vc);
    cr_assert(vc.cache.use_redis, "Sentinel mode uses Redis");
    cr_assert_str_eq(vc.cache.redis.sentinels, "127.0.0.1:26379, 127.0.0.2:26379 [::1]:26380");
    cr_assert_str_eq(vc.cache.redis.master_name, "mymaster");
    cr_assert_str_eq(vc.cache.redis.password, "s3cret");
    cr_assert_eq(vc.cache.redis.db, 5);
    cr_assert_null(vc.cache.redis.host);
    config_free(&c);

    parse_err("redis_sentinels = 127.0.0.1:26379\n", 34,
              "test.conf: redis_sentinels needs redis_master_name");
    parse_err_prefix("redis_sentinels = 127.0.0.1:26379\nredis_master_name = m\n"
                     "redis_server = 127.0.0.1:6379\n",
                     "test.conf: set either redis_server or redis_sentinels");
    parse_err_prefix("redis_sentinels = 127.0.0.1\n", "test.conf:1: bad redis_sentinels");
    parse_err_prefix("redis_sentinels = 127.0.0.1:26379;x\n", "test.conf:1: bad redis_sentinels");
    parse_err_prefix("redis_master_name = two words\n", "test.conf:1: bad redis_master_name");
    parse_err_prefix("redis_db = -1\n", "test.conf:1: bad number for redis_db");
    parse_err_prefix("redis_db = 1000001\n", "test.conf:1: redis_db out of range");
}

/* named LDAP sources: ldap_NAME_PARAM lines become backend_source entries with file:line */
Test(config, ldap_sources)
{
    struct config c;

    parse_ok("debug = yes\n"
             "ldap_corp_server_host = ldap://10.0.0.1 ldap://10.0.0.2:3389\n"
             "ldap_corp_search_base = dc=example,dc=com\n"
             "# the longest known parameter wins: bind_dn, not bind\n"
             "ldap_corp_bind_dn = cn=reader,dc=example,dc=com\n"
             "ldap_corp_bind = yes\n"
             "ldap_ad_main_query_filter = (proxyAddresses=smtp:%s)\n"
             "ldap_corp_bind_pw = s3cret\n"
             "ldap_corp_domain = example.com,\n"
             "   example.net\n",
             &c);
    cr_assert_eq(c.nsources, 2);
    const struct backend_source *corp = &c.sources[0], *ad = &c.sources[1];
    cr_assert_str_eq(corp->type, "ldap");
    cr_assert_str_eq(corp->name, "corp");
    cr_assert_str_eq(ad->name, "ad_main", "a source name may hold '_'");
    cr_assert_eq(corp->nparams, 6);
    cr_assert_eq(ad->nparams, 1);
    cr_assert_str_eq(ad->params[0].name, "query_filter");
    cr_assert_str_eq(ad->params[0].value, "(proxyAddresses=smtp:%s)");
    cr_assert_str_eq(ad->params[0].file, "test.conf");
    cr_assert_eq(ad->params[0].line, 7);
    cr_assert_str_eq(corp->params[2].name, "bind_dn");
    cr_assert_eq(corp->params[2].line, 5);
    cr_assert_str_eq(corp->params[3].name, "bind");
    cr_assert_str_eq(corp->params[5].name, "domain");
    cr_assert_str_eq(corp->params[5].value, "example.com, example.net");
    cr_assert_eq(corp->params[5].line, 9);

    /* they reach the verifier, and -n prints them (without the password) */
    struct verifier_config vc;
    config_verifier(&c, &vc);
    cr_assert_eq(vc.sources, c.sources);
    cr_assert_eq(vc.nsources, 2);
    char *changed = print(&c, 1);
    cr_assert_not_null(strstr(changed, "ldap_corp_bind_dn = cn=reader,dc=example,dc=com\n"));
    cr_assert_not_null(strstr(changed, "ldap_ad_main_query_filter = (proxyAddresses=smtp:%s)\n"));
    cr_assert_null(strstr(changed, "s3cret"));
    free(changed);
    config_free(&c);
    cr_assert_eq(c.nsources, 0);

    parse_err("ldap_corp_bogus = 1\n", 20,
              "test.conf:1: unknown parameter \"ldap_corp_bogus\" (an LDAP source parameter is "
              "ldap_NAME_PARAM, PARAM one of callahead.conf(5)'s)");
    parse_err("ldap_server_host = ldap://10.0.0.1\n", 34,
              "test.conf:1: unknown parameter \"ldap_server_host\" (an LDAP source parameter is "
              "ldap_NAME_PARAM, PARAM one of callahead.conf(5)'s)");
    parse_err("ldap_a_timeout = 1s\n\nldap_a_timeout = 2s\n", 40,
              "test.conf:3: duplicate parameter \"ldap_a_timeout\"");
    parse_err_prefix("ldap_a_search_base = dc=x\x01\n", "test.conf:1: control character");
}

Test(config, ldap_doc)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    cr_assert_not_null(fp);
    config_print_doc(fp, 0);
    fclose(fp);
    cr_assert_not_null(strstr(buf, "LDAP SOURCES\n"));
    cr_assert_not_null(strstr(buf, "ldap_NAME_server_host (default: ldap://127.0.0.1:389)"));
    cr_assert_not_null(strstr(buf, "ldap_NAME_disabled_attribute (default: empty)"));
    free(buf);
}

/* an LDAP source's name is echoed in messages: odd bytes are refused, never printed raw */
Test(config, ldap_source_name_is_checked)
{
    parse_err_prefix("ldap_c\x17orp\x9d_server_host = ldap://127.0.0.1\n",
                     "test.conf:1: bad LDAP source name in \"ldap_c");
    parse_err_prefix("ldap_c(orp_connect_timeout = 1s\n",
                     "test.conf:1: bad LDAP source name in \"ldap_c");
    struct config c;
    parse_ok("ldap_Corp-1.x_server_host = ldap://127.0.0.1\n", &c);
    config_free(&c);
}

/*
 * the socket, syslog, probe and resolver settings are applied by a reload
 * (sock_swap.c, log_open, the flight pool, dns_reconfigure): not named;
 * user and pidfile still are
 */
Test(config, restart_changes_only_user_and_pidfile_of_these)
{
    struct config a, b;
    char names[256];

    parse_ok("route_table = /a\n", &a);
    parse_ok("route_table = /a\nunix_socket_mode = 0666\nunix_socket_owner = postfix\n"
             "unix_socket_group = postfix\nsyslog_name = other\nsyslog_facility = local3\n"
             "control_socket = /run/c\ncontrol_socket_mode = 0660\ncontrol_socket_group = mail\n"
             "stats_listen = inet:127.0.0.1:9157\nmax_probes = 7\nmax_connections = 9\n"
             "dns_servers = 127.0.0.1:5353\ndns_timeout = 900ms\n",
             &b);
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 0, "%s", names);
    config_free(&b);
    parse_ok("route_table = /a\nuser = nobody\npidfile = /run/x.pid\n", &b);
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 2);
    cr_assert_str_eq(names, "user, pidfile");
    config_free(&a);
    config_free(&b);
}

/* a reload applies the Redis settings (cache_swap.c): which of them changed, as -n shows them */
Test(config, redis_changes_are_swapped_not_refused)
{
    struct config a, b;
    char names[256];

    parse_ok("redis_server = 127.0.0.1:6390\nredis_timeout = 1000ms\n", &a);
    parse_ok("redis_server = 127.0.0.1:6390\nredis_timeout = 1s\nttl_valid = 2d\n", &b);
    cr_assert_eq(cache_swap_changes(&a, &b, names, sizeof(names)), 0, "%s", names);
    cr_assert_str_eq(names, "");
    config_free(&b);
    parse_ok("redis_server = 127.0.0.1:6391\nredis_timeout = 1s\nredis_db = 2\n"
             "redis_key_prefix = b:\nredis_password = s3cret\nredis_reconnect_max = 2s\n",
             &b);
    cr_assert_eq(config_restart_changes(&a, &b, names, sizeof(names)), 0, "%s", names);
    cr_assert_eq(cache_swap_changes(&a, &b, names, sizeof(names)), 5);
    cr_assert_str_eq(names, "redis_server, redis_password, redis_db, redis_key_prefix, "
                            "redis_reconnect_max");
    config_free(&b);
    /* from a single server to sentinels, and to no Redis at all */
    parse_ok("redis_sentinels = 127.0.0.1:26379\nredis_master_name = m\nredis_timeout = 1s\n", &b);
    cr_assert_eq(cache_swap_changes(&a, &b, names, sizeof(names)), 3);
    cr_assert_str_eq(names, "redis_server, redis_sentinels, redis_master_name");
    config_free(&b);
    parse_ok("redis_timeout = 1s\n", &b);
    cr_assert_eq(cache_swap_changes(&a, &b, names, sizeof(names)), 1);
    cr_assert_eq(config_changed(&a, &b, "no_such_parameter"), -1);
    config_free(&a);
    config_free(&b);
}
