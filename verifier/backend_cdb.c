/*
 * backend_cdb.c - recipient tables in tinycdb files (see backend_cdb.h).
 *
 * Lookups are mmap reads, cheap enough to run inline on the event loop, so
 * this backend is synchronous: lookup always answers BACKEND_DONE and there
 * is nothing to cancel.
 *
 * Reopening: every lookup stat()s the path (one syscall, far cheaper than the
 * policy round trip around it) and reopens the table when the device, inode,
 * size or mtime differ from the open one. Replace a table by writing a new
 * file and rename()ing it over the old one ("cdb -c" does exactly that);
 * rewriting a mapped file in place can fault the reader, as with any mmap.
 *
 * Failure is never "invalid": a missing, unreadable or corrupt table gives
 * tempfail with a text that names the file, and is logged once per change of
 * the file, not once per lookup. open() succeeds even when the file is
 * missing at start (with a warning), so one missing table does not stop the
 * daemon; the table is picked up as soon as it appears.
 *
 * Options (route "name=value"): fold_local=yes|no (default yes: lower-case
 * the local part of each key). Other options are left to other layers.
 */
#include "backend_cdb.h"

#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "value_parse.h"

#define CDB_SOURCE "cdb"
#define CDB_VALUE_MAX 1024 /* longer values are cut: only the reason text comes from them */
#define CDB_NOT_FOUND_TEXT "5.1.1 User unknown"

/* file_id - what identifies one version of the table file */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct cdb_state {
    char *path;
    bool fold_local;
    char delims[16];       /* recipient_delimiter, copied: env strings need not outlive us */
    int fd;                /* -1 when no table is open */
    struct cdb db;         /* valid when fd >= 0 */
    struct file_id id;     /* of the open table */
    bool failed;           /* last attempt failed for the file version in bad_id */
    struct file_id bad_id; /* so a broken file is reported once, not per lookup */
    char error[200];       /* why the table is unusable, for the tempfail text */
};

static bool id_equal(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void id_from_stat(struct file_id *id, const struct stat *st)
{
    memset(id, 0, sizeof(*id));
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
}

/* table_close - unmap and close the open table, if any */
static void table_close(struct cdb_state *s)
{
    if (s->fd >= 0) {
        cdb_free(&s->db);
        close(s->fd);
        s->fd = -1;
    }
}

/*
 * table_fail - remember that the file version id is unusable and why; log it
 * once per version. Returns -1.
 */
static int table_fail(struct cdb_state *s, const struct file_id *id, const char *why)
{
    bool repeat = s->failed && id != NULL && id_equal(id, &s->bad_id);

    snprintf(s->error, sizeof(s->error), "%s: %s", s->path, why);
    s->failed = true;
    if (id != NULL)
        s->bad_id = *id;
    else
        memset(&s->bad_id, 0, sizeof(s->bad_id));
    if (!repeat)
        log_warn("cdb table %s", s->error);
    return -1;
}

/*
 * table_refresh - make sure the table open is the file now at path. Returns
 * 0 when a usable table is open, -1 (with s->error set) otherwise.
 */
static int table_refresh(struct cdb_state *s)
{
    struct stat st;
    struct file_id now;

    if (stat(s->path, &st) < 0) {
        table_close(s);
        /* a missing file stays missing between lookups: log it once */
        if (s->failed && s->bad_id.ino == 0 && s->bad_id.dev == 0)
            return -1;
        return table_fail(s, NULL, strerror(errno));
    }
    id_from_stat(&now, &st);
    if (s->fd >= 0 && id_equal(&now, &s->id))
        return 0;
    if (s->fd < 0 && s->failed && id_equal(&now, &s->bad_id))
        return -1; /* same broken file as last time: do not retry or re-log */

    table_close(s);
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return table_fail(s, &now, strerror(errno));
    /* identify what we actually opened: the path may have moved on since stat() */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return table_fail(s, &now, "not a regular file");
    }
    id_from_stat(&now, &st);
    if (st.st_size < 2048 || (unsigned long long)st.st_size > 0xffffffffULL) {
        close(fd);
        return table_fail(s, &now, "corrupt cdb file (bad size)");
    }
    memset(&s->db, 0, sizeof(s->db));
    if (cdb_init(&s->db, fd) < 0) {
        int e = errno;
        close(fd);
        return table_fail(s, &now, e == EPROTO ? "corrupt cdb file" : strerror(e));
    }
    s->fd = fd;
    s->id = now;
    if (s->failed)
        log_info("cdb table %s: usable again", s->path);
    s->failed = false;
    s->error[0] = '\0';
    return 0;
}

/*
 * table_get - look up key; 1 and the value (bounded, not NUL-terminated) when
 * found, 0 when not, -1 when the file is corrupt.
 */
static int table_get(struct cdb_state *s, const char *key, size_t klen, const char **val,
                     unsigned *vlen)
{
    int rc = cdb_find(&s->db, key, (unsigned)klen);

    if (rc <= 0)
        return rc < 0 ? -1 : 0;
    unsigned pos = cdb_datapos(&s->db), len = cdb_datalen(&s->db);
    /* tinycdb checks this too; a hostile file gets no benefit of the doubt */
    if (pos > s->db.cdb_fsize || len > s->db.cdb_fsize - pos)
        return -1;
    *val = cdb_get(&s->db, len, pos);
    if (*val == NULL)
        return -1;
    *vlen = len;
    return 1;
}

/*
 * value_verdict - turn a table value into a verdict: "REJECT [text]" or
 * "5xx [text]" is invalid, "4xx [text]" tempfail (as a 4xx in a Postfix
 * access table defers: a postmaster can park a mailbox being migrated),
 * anything else valid (the value is the text).
 */
static void value_verdict(const char *val, unsigned vlen, struct verdict *out)
{
    char text[VERDICT_TEXT_MAX];
    size_t len = vlen > CDB_VALUE_MAX ? CDB_VALUE_MAX : vlen;

    verdict_sanitize(text, sizeof(text), val, len);
    size_t tlen = strlen(text);
    if (tlen >= 6 && strncasecmp(text, "REJECT", 6) == 0 && (text[6] == '\0' || text[6] == ' ')) {
        const char *reason = text[6] ? text + 7 : "";
        verdict_set(out, VERDICT_INVALID, 550, CDB_SOURCE, *reason ? reason : CDB_NOT_FOUND_TEXT);
        return;
    }
    if (tlen >= 3 && (text[0] == '5' || text[0] == '4') && text[1] >= '0' && text[1] <= '9' &&
        text[2] >= '0' && text[2] <= '9' && (text[3] == '\0' || text[3] == ' ')) {
        int code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
        const char *reason = text[3] ? text + 4 : "";
        if (text[0] == '5')
            verdict_set(out, VERDICT_INVALID, code, CDB_SOURCE,
                        *reason ? reason : CDB_NOT_FOUND_TEXT);
        else
            verdict_set(out, VERDICT_TEMPFAIL, code, CDB_SOURCE,
                        *reason ? reason : "4.2.1 Mailbox temporarily unavailable");
        return;
    }
    verdict_set(out, VERDICT_VALID, 0, CDB_SOURCE, text);
}

/* cdb_open - per-route state; the table itself is opened lazily and re-opened on change */
static void *cdb_open(const struct backend_env *env, const struct route *r, char *err,
                      size_t errlen)
{
    const char *fold = route_option(r, "fold_local", "yes");
    const char *delims = env && env->recipient_delimiter ? env->recipient_delimiter : "";
    bool fold_local;

    if (r == NULL || r->arg == NULL || r->arg[0] == '\0') {
        snprintf(err, errlen, "cdb: no table path");
        return NULL;
    }
    int fold_yes;
    if (value_parse_bool(fold, &fold_yes) == VALUE_OK)
        fold_local = fold_yes != 0;
    else {
        snprintf(err, errlen, "cdb:%s: fold_local must be yes or no, not \"%.50s\"", r->arg, fold);
        return NULL;
    }
    if (strlen(delims) >= sizeof(((struct cdb_state *)0)->delims)) {
        snprintf(err, errlen, "cdb:%s: recipient_delimiter too long", r->arg);
        return NULL;
    }

    struct cdb_state *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(r->arg)) == NULL) {
        free(s);
        snprintf(err, errlen, "cdb:%s: out of memory", r->arg);
        return NULL;
    }
    s->fd = -1;
    s->fold_local = fold_local;
    snprintf(s->delims, sizeof(s->delims), "%s", delims);
    /* a missing table is logged here and answered with tempfail until it appears */
    (void)table_refresh(s);
    return s;
}

/* cdb_lookup - most specific key first; always BACKEND_DONE */
static enum backend_status cdb_lookup(void *state, const struct address *addr, struct verdict *out,
                                      backend_cb cb, void *arg, struct backend_req **req)
{
    struct cdb_state *s = state;
    char key[ADDRESS_MAX + 2];
    const char *val = NULL;
    unsigned vlen = 0;
    int klen, rc;

    if (req != NULL)
        *req = NULL;
    if (table_refresh(s) < 0) {
        verdict_set(out, VERDICT_TEMPFAIL, 0, CDB_SOURCE, s->error);
        return BACKEND_DONE;
    }
    if (addr->is_null) {
        verdict_set(out, VERDICT_UNKNOWN, 0, CDB_SOURCE, "null address is not looked up");
        return BACKEND_DONE;
    }

    /* 1: the address as routed */
    klen = address_key(addr, s->fold_local, key, sizeof(key));
    rc = klen < 0 ? 0 : table_get(s, key, (size_t)klen, &val, &vlen);

    /* 2: without the sub-address extension */
    if (rc == 0 && s->delims[0] != '\0') {
        struct address base = *addr;
        if (address_strip_subaddress(&base, s->delims)) {
            klen = address_key(&base, s->fold_local, key, sizeof(key));
            rc = klen < 0 ? 0 : table_get(s, key, (size_t)klen, &val, &vlen);
        }
    }

    /* 3: the domain catch-all */
    if (rc == 0) {
        klen = snprintf(key, sizeof(key), "@%s", addr->domain);
        rc = (klen < 0 || (size_t)klen >= sizeof(key))
                 ? 0
                 : table_get(s, key, (size_t)klen, &val, &vlen);
    }

    if (rc < 0) {
        /* unusable until the file changes: remember this version as broken */
        struct file_id id = s->id;
        table_close(s);
        table_fail(s, &id, "corrupt cdb file");
        verdict_set(out, VERDICT_TEMPFAIL, 0, CDB_SOURCE, s->error);
    } else if (rc == 0) {
        verdict_set(out, VERDICT_INVALID, 550, CDB_SOURCE, CDB_NOT_FOUND_TEXT);
    } else {
        value_verdict(val, vlen, out);
    }
    return BACKEND_DONE;
}

/* cdb_close - unmap and free; no requests can be pending */
static void cdb_close(void *state)
{
    struct cdb_state *s = state;

    if (s == NULL)
        return;
    table_close(s);
    free(s->path);
    free(s);
}

const struct backend_ops backend_cdb_ops = {
    .name = "cdb",
    .open = cdb_open,
    .lookup = cdb_lookup,
    .cancel = NULL,
    .close = cdb_close,
};
