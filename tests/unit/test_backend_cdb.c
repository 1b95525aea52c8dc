/*
 * test_backend_cdb.c - the tinycdb backend against real CDB files built at
 * test time (libcdb's cdb_make API, and once the `cdb` tool a postmaster
 * would use): key order, values, folding, reopen on replace, and failure
 * modes that must give tempfail, never invalid, never a crash.
 */
#include <criterion/criterion.h>
#include <cdb.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_cdb.h"

static char dir[] = "/tmp/callahead-cdb-XXXXXX";
static char err[512];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(backend_cdb, .init = setup, .fini = teardown);

/* path_in - dir/name in a static buffer (two slots, so two paths can be live) */
static const char *path_in(const char *name)
{
    static char buf[2][256];
    static int slot;
    slot ^= 1;
    snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", dir, name);
    return buf[slot];
}

/* make_table - write a cdb at path from NULL-terminated key, value pairs */
static void make_table(const char *path, const char *const *kv)
{
    struct cdb_make cm;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(cdb_make_start(&cm, fd), 0);
    for (; kv[0] != NULL; kv += 2)
        cr_assert_eq(
            cdb_make_add(&cm, kv[0], (unsigned)strlen(kv[0]), kv[1], (unsigned)strlen(kv[1])), 0);
    cr_assert_eq(cdb_make_finish(&cm), 0);
    close(fd);
}

/* write_file - raw bytes at path */
static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

struct fixture {
    struct route_table *routes;
    void *state;
};

/* open_backend - parse "x.test cdb:PATH OPTIONS" and open the backend on it */
static struct fixture open_backend(const char *path, const char *options, const char *delims)
{
    struct fixture f;
    char line[512];
    struct backend_env env = {.base = NULL, .recipient_delimiter = delims};
    int n = snprintf(line, sizeof(line), "x.test cdb:%s %s\n", path, options ? options : "");
    f.routes = route_table_parse(line, (size_t)n, "test", err, sizeof(err));
    cr_assert_not_null(f.routes, "%s", err);
    err[0] = '\0';
    f.state = backend_cdb_ops.open(&env, route_table_get(f.routes, 0), err, sizeof(err));
    return f;
}

static void close_backend(struct fixture *f)
{
    if (f->state)
        backend_cdb_ops.close(f->state);
    route_table_free(f->routes);
}

/* lookup - one lookup of s; always synchronous */
static struct verdict lookup(void *state, const char *s)
{
    struct address a;
    struct verdict v;
    struct backend_req *req = (struct backend_req *)&a; /* must be reset to NULL */
    char why[128];
    cr_assert_eq(address_parse(s, strlen(s), &a, why, sizeof(why)), 0, "%s", why);
    memset(&v, 0, sizeof(v));
    cr_assert_eq(backend_cdb_ops.lookup(state, &a, &v, NULL, NULL, &req), BACKEND_DONE);
    cr_assert_null(req);
    cr_assert_str_eq(v.source, "cdb");
    return v;
}

static const char *const basic[] = {
    "alice@x.test",
    "OK",
    "bob@x.test",
    "valid mailbox",
    "carol+lists@x.test",
    "exact extension",
    "carol@x.test",
    "OK carol",
    "Dave@x.test",
    "OK mixed case key",
    "eve@x.test",
    "REJECT 5.2.1 Mailbox disabled",
    "frank@x.test",
    "REJECT",
    "gina@x.test",
    "554 5.7.1 Go away",
    "hal@x.test",
    "550",
    "ian@x.test",
    "REJECTED is not a reject",
    "jo@x.test",
    "reject 5.1.1 lower case works too",
    "kim@x.test",
    "450 4.2.1 Mailbox being migrated",
    "lou@x.test",
    "421",
    "@catchall.test",
    "OK catch-all",
    "@hostile.test",
    "OK\r\nX-Injected: yes\x01",
    NULL,
};

Test(backend_cdb, ops_shape)
{
    cr_assert_str_eq(backend_cdb_ops.name, "cdb");
    cr_assert_not_null(backend_cdb_ops.open);
    cr_assert_not_null(backend_cdb_ops.lookup);
    cr_assert_null(backend_cdb_ops.cancel);
    cr_assert_not_null(backend_cdb_ops.close);
}

Test(backend_cdb, found_and_missing)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);

    struct verdict v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_eq(v.code, 0);
    cr_assert_str_eq(v.text, "OK");
    cr_assert_gt(v.when, 0);
    v = lookup(f.state, "bob@X.TEST.");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "valid mailbox");

    v = lookup(f.state, "nobody@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    cr_assert_str_eq(v.text, "5.1.1 User unknown");
    close_backend(&f);
}

Test(backend_cdb, subaddress_fallback)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+-");
    cr_assert_not_null(f.state, "%s", err);
    struct verdict v = lookup(f.state, "alice+news@x.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "OK");
    v = lookup(f.state, "alice-news@x.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    /* the exact key wins over the stripped one */
    v = lookup(f.state, "carol+lists@x.test");
    cr_assert_str_eq(v.text, "exact extension");
    v = lookup(f.state, "carol+other@x.test");
    cr_assert_str_eq(v.text, "OK carol");
    close_backend(&f);

    /* no recipient_delimiter: no fallback */
    f = open_backend(p, NULL, "");
    cr_assert_not_null(f.state, "%s", err);
    v = lookup(f.state, "alice+news@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    close_backend(&f);
    f = open_backend(p, NULL, NULL);
    cr_assert_not_null(f.state, "%s", err);
    v = lookup(f.state, "alice+news@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    close_backend(&f);
}

Test(backend_cdb, domain_catch_all)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    struct verdict v = lookup(f.state, "anyone+x@CatchAll.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "OK catch-all");
    /* values are hostile too: sanitised before they go anywhere */
    v = lookup(f.state, "x@hostile.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "OK X-Injected: yes?");
    close_backend(&f);
}

Test(backend_cdb, reject_values)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    struct verdict v = lookup(f.state, "eve@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    cr_assert_str_eq(v.text, "5.2.1 Mailbox disabled");
    v = lookup(f.state, "frank@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    cr_assert_str_eq(v.text, "5.1.1 User unknown");
    v = lookup(f.state, "gina@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 554);
    cr_assert_str_eq(v.text, "5.7.1 Go away");
    v = lookup(f.state, "hal@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_eq(v.code, 550);
    v = lookup(f.state, "ian@x.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    v = lookup(f.state, "jo+x@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_str_eq(v.text, "5.1.1 lower case works too");
    v = lookup(f.state, "kim@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL, "a 4xx value defers, never rejects");
    cr_assert_eq(v.code, 450);
    cr_assert_str_eq(v.text, "4.2.1 Mailbox being migrated");
    v = lookup(f.state, "lou@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);
    cr_assert_str_eq(v.text, "4.2.1 Mailbox temporarily unavailable");
    close_backend(&f);
}

Test(backend_cdb, case_folding)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    cr_assert_eq(lookup(f.state, "ALICE@x.test").kind, VERDICT_VALID);
    /* keys are compared folded: a mixed-case key in the table cannot match */
    cr_assert_eq(lookup(f.state, "Dave@x.test").kind, VERDICT_INVALID);
    close_backend(&f);

    f = open_backend(p, "fold_local=no", "+");
    cr_assert_not_null(f.state, "%s", err);
    cr_assert_eq(lookup(f.state, "ALICE@x.test").kind, VERDICT_INVALID);
    cr_assert_eq(lookup(f.state, "alice@X.test").kind, VERDICT_VALID); /* domains always fold */
    struct verdict v = lookup(f.state, "Dave+ext@x.test");
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_str_eq(v.text, "OK mixed case key");
    cr_assert_eq(lookup(f.state, "dave@x.test").kind, VERDICT_INVALID);
    close_backend(&f);

    f = open_backend(p, "fold_local=maybe", "+");
    cr_assert_null(f.state);
    cr_assert(strstr(err, "fold_local") != NULL, "%s", err);
    close_backend(&f);
}

Test(backend_cdb, null_address_is_not_looked_up)
{
    const char *p = path_in("t.cdb");
    make_table(p, basic);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    cr_assert_eq(lookup(f.state, "<>").kind, VERDICT_UNKNOWN);
    close_backend(&f);
}

Test(backend_cdb, reopen_on_rename)
{
    const char *p = path_in("t.cdb");
    const char *tmp = path_in("t.cdb.new");
    static const char *const v1[] = {"alice@x.test", "OK v1", NULL};
    static const char *const v2[] = {"bob@x.test", "OK v2", "@x.test", "REJECT closed", NULL};
    make_table(p, v1);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    cr_assert_str_eq(lookup(f.state, "alice@x.test").text, "OK v1");
    cr_assert_eq(lookup(f.state, "bob@x.test").kind, VERDICT_INVALID);

    make_table(tmp, v2);
    cr_assert_eq(rename(tmp, p), 0);
    /* no sleep: the change of inode is seen at the very next lookup */
    cr_assert_str_eq(lookup(f.state, "bob@x.test").text, "OK v2");
    struct verdict v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_str_eq(v.text, "closed");
    close_backend(&f);
}

Test(backend_cdb, cdb_tool_table)
{
    const char *p = path_in("tool.cdb");
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "printf 'carol@example.test OK\\n@example.test REJECT 5.1.1 no catch-all\\n' | "
             "cdb -cm '%s'",
             p);
    cr_assert_eq(system(cmd), 0, "cdb tool failed: %s", cmd);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    struct address a;
    struct verdict v;
    struct backend_req *req = NULL;
    cr_assert_eq(address_parse("Carol+x@example.test", 20, &a, err, sizeof(err)), 0);
    cr_assert_eq(backend_cdb_ops.lookup(f.state, &a, &v, NULL, NULL, &req), BACKEND_DONE);
    cr_assert_eq(v.kind, VERDICT_VALID);
    cr_assert_eq(address_parse("dan@example.test", 16, &a, err, sizeof(err)), 0);
    cr_assert_eq(backend_cdb_ops.lookup(f.state, &a, &v, NULL, NULL, &req), BACKEND_DONE);
    cr_assert_eq(v.kind, VERDICT_INVALID);
    cr_assert_str_eq(v.text, "5.1.1 no catch-all");
    close_backend(&f);
}

Test(backend_cdb, missing_file_is_tempfail_until_it_appears)
{
    const char *p = path_in("later.cdb");
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "open must succeed for a missing table: %s", err);
    struct verdict v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);
    cr_assert(strstr(v.text, "later.cdb") != NULL, "%s", v.text);
    cr_assert(strstr(v.text, "No such file") != NULL, "%s", v.text);
    v = lookup(f.state, "alice@x.test"); /* again: same answer, logged once */
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);

    make_table(p, basic);
    cr_assert_eq(lookup(f.state, "alice@x.test").kind, VERDICT_VALID);

    /* removed while open: tempfail again, not a stale answer */
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(lookup(f.state, "alice@x.test").kind, VERDICT_TEMPFAIL);
    close_backend(&f);
}

Test(backend_cdb, unreadable_path_is_tempfail)
{
    /* a directory where the table should be */
    const char *p = path_in("adir.cdb");
    cr_assert_eq(mkdir(p, 0755), 0);
    struct fixture f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    struct verdict v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);
    cr_assert(strstr(v.text, "adir.cdb") != NULL, "%s", v.text);
    close_backend(&f);
}

Test(backend_cdb, corrupt_files_are_tempfail)
{
    const char *p = path_in("bad.cdb");
    struct fixture f;
    struct verdict v;

    /* too short to be a cdb */
    write_file(p, "alice@x.test OK\n", 16);
    f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);
    cr_assert(strstr(v.text, "corrupt") != NULL, "%s", v.text);
    close_backend(&f);

    /* a header whose hash tables all point past the end of the file */
    unsigned char hdr[2048 + 64];
    memset(hdr, 0, sizeof(hdr));
    for (int i = 0; i < 256; i++) {
        cdb_pack(0x7ffffff0u, hdr + i * 8);
        cdb_pack(1000u, hdr + i * 8 + 4);
    }
    write_file(p, hdr, sizeof(hdr));
    f = open_backend(p, NULL, "+");
    cr_assert_not_null(f.state, "%s", err);
    v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL, "kind %d text %s", v.kind, v.text);
    v = lookup(f.state, "alice@x.test");
    cr_assert_eq(v.kind, VERDICT_TEMPFAIL);

    /* a good table replacing it is picked up */
    const char *tmp = path_in("bad.cdb.new");
    make_table(tmp, basic);
    cr_assert_eq(rename(tmp, p), 0);
    cr_assert_eq(lookup(f.state, "alice@x.test").kind, VERDICT_VALID);
    close_backend(&f);
}

Test(backend_cdb, random_garbage_never_crashes)
{
    const char *p = path_in("noise.cdb");
    unsigned char buf[4096];
    unsigned seed = 12345;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(buf); i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (unsigned char)(seed >> 16);
        }
        size_t len = 2048 + (seed % 2048);
        write_file(p, buf, len);
        struct fixture f = open_backend(p, NULL, "+");
        cr_assert_not_null(f.state, "%s", err);
        struct verdict v = lookup(f.state, "alice+x@x.test");
        /* whatever the noise says, the answer is one of the kinds, never a crash */
        cr_assert(v.kind == VERDICT_TEMPFAIL || v.kind == VERDICT_INVALID ||
                  v.kind == VERDICT_VALID);
        close_backend(&f);
    }
}

Test(backend_cdb, open_needs_a_path)
{
    struct backend_env env = {.base = NULL, .recipient_delimiter = "+"};
    struct route r;
    memset(&r, 0, sizeof(r));
    r.method = ROUTE_CDB;
    r.arg = NULL;
    err[0] = '\0';
    cr_assert_null(backend_cdb_ops.open(&env, &r, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}
