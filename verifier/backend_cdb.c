/*
 * backend_cdb.c - recipient tables in tinycdb files (see backend_cdb.h).
 *
 * Lookups are memory reads in a private snapshot of the file, cheap enough
 * to run inline on the event loop, so this backend is synchronous: lookup
 * always answers BACKEND_DONE and there is nothing to cancel.
 *
 * Versions: the path is stat()ed at most every check_interval (a stat per
 * lookup costs a path walk; a second is soon enough for a table change) and
 * a changed file is read into a new snapshot, which replaces the old one only
 * when it is whole and consistent (cdb_snapshot_load). An unusable new
 * version leaves the old snapshot answering and is tried again at the next
 * check; a settled bad version (its ctime tick has passed) is not re-read
 * until it changes. A snapshot read in the same clock tick as the file's
 * last change is read once more after that tick, because a write within one
 * tick need not change any timestamp.
 *
 * Failure is never "invalid": with no usable snapshot (missing, unreadable,
 * corrupt or half-written table) the answer is tempfail with a text that
 * names the file; warnings are rate-limited (one per minute per table, with
 * a count), so a table rewritten in a loop cannot flood the log.
 *
 * Keys are UTF-8 (RFC 6531): an internationalised domain is looked up in
 * U-labels ("info@b\xc3\xbccher.example") first, then in A-labels
 * ("info@xn--bcher-kva.example"), so a table may be written either way and
 * both spellings of a recipient find the same record.
 *
 * Options (route "name=value"): fold_local=yes|no (default yes: lower-case
 * the local part of each key), check_interval=DURATION|0 (default 1s). Other
 * options are left to other layers.
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

#include "cdb_snapshot.h"
#include "log.h"
#include "value_parse.h"

#define CDB_SOURCE "cdb"
#define CDB_VALUE_MAX 1024 /* longer values are cut: only the reason text comes from them */
#define CDB_NOT_FOUND_TEXT "5.1.1 User unknown"
#define CDB_CHECK_DEFAULT "1s"      /* how often the path is stat()ed for a new version */
#define CDB_CHECK_MAX_MS 3600000L   /* check_interval upper bound: one hour */
#define CDB_WARN_INTERVAL_MS 60000L /* "still serving the previous version" at most this often */

struct cdb_state {
    char *path;
    bool fold_local;
    char delims[16];           /* recipient_delimiter, copied: env strings need not outlive us */
    long long check_ms;        /* check_interval; 0: stat on every lookup */
    long long next_check;      /* monotonic ms of the next stat */
    struct cdb_snapshot *snap; /* the version answering lookups, NULL when none is usable */
    struct cdb_file_id id;     /* of snap */
    bool settled;              /* snap's version can no longer change without changing id */
    bool failed;               /* the newest version seen (bad_id) is unusable */
    bool bad_settled;          /* ... and will not become usable without changing its id */
    struct cdb_file_id bad_id;
    struct log_limit warn; /* unusable new versions: one line per CDB_WARN_INTERVAL_MS */
    bool warned;           /* a failure was logged: say so when the table is usable again */
    char error[200];       /* why no table is usable, for the tempfail text */
};

/* now_ms - a cheap monotonic clock for the check interval */
static long long now_ms(void)
{
    struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* table_drop - forget the snapshot, if any */
static void table_drop(struct cdb_state *s)
{
    cdb_snapshot_free(s->snap);
    s->snap = NULL;
    memset(&s->id, 0, sizeof(s->id));
}

/*
 * table_bad - the version id (seen, settled as told) cannot be used, because
 * of why. Logged at once when limited is false (a state that lasts: the file
 * is missing, a record is corrupt), else at most once per
 * CDB_WARN_INTERVAL_MS with a count of the others, so a table rewritten in a
 * loop costs one line a minute, not one per check. Returns 0 when the
 * previous snapshot still answers, -1 when there is none (s->error says why,
 * for the tempfail text).
 */
static int table_bad(struct cdb_state *s, const struct cdb_file_id *id, bool settled,
                     const char *why, bool limited)
{
    s->failed = true;
    s->bad_id = *id;
    s->bad_settled = settled;
    snprintf(s->error, sizeof(s->error), "%s: %s", s->path, why);
    int logged = 1;
    if (s->snap != NULL)
        logged = log_limited(&s->warn, CDB_WARN_INTERVAL_MS, LOG_WARNING,
                             "cdb table %s; still answering from the previous version (%zu bytes)",
                             s->error, cdb_snapshot_size(s->snap));
    else if (limited)
        logged = log_limited(&s->warn, CDB_WARN_INTERVAL_MS, LOG_WARNING,
                             "cdb table %s; answering tempfail", s->error);
    else
        log_warn("cdb table %s; answering tempfail", s->error);
    /* "usable again" only follows a failure that was logged */
    if (logged)
        s->warned = true;
    return s->snap != NULL ? 0 : -1;
}

/* table_load - read the version now at path; swap it in if it is usable */
static int table_load(struct cdb_state *s)
{
    struct cdb_snapshot *snap;
    struct cdb_file_id id;
    bool settled;
    char why[128];

    if (cdb_snapshot_load(s->path, &snap, &id, &settled, why, sizeof(why)) < 0)
        return table_bad(s, &id, settled, why, true);
    bool was_failed = s->failed || s->snap == NULL;
    table_drop(s);
    s->snap = snap;
    s->id = id;
    s->settled = settled;
    s->failed = false;
    s->error[0] = '\0';
    if (was_failed && s->warned)
        log_info("cdb table %s: usable again (%zu bytes)", s->path, cdb_snapshot_size(snap));
    s->warned = false;
    return 0;
}

/*
 * table_refresh - make sure the snapshot answering is the newest usable
 * version of the file, checking the path at most every check_interval.
 * Returns 0 when a snapshot is usable (possibly the previous version, when
 * the new one is incomplete), -1 (with s->error set) when none is.
 *
 * A removed file (stat fails) drops the snapshot: removing a table is how a
 * postmaster stops it answering, and the answer is tempfail until it is back.
 */
static int table_refresh(struct cdb_state *s)
{
    struct stat st;
    struct cdb_file_id now;
    long long t = now_ms();

    /* an unsettled snapshot is re-read once its clock tick has passed: check it each time */
    if (t < s->next_check && (s->snap == NULL || s->settled))
        return s->snap != NULL ? 0 : -1;
    s->next_check = t + s->check_ms;

    if (stat(s->path, &st) < 0) {
        int e = errno;
        bool repeat = s->failed && s->bad_id.ino == 0 && s->snap == NULL;
        table_drop(s);
        memset(&now, 0, sizeof(now));
        if (repeat)
            return -1; /* the same missing file: logged already */
        return table_bad(s, &now, true, strerror(e), false);
    }
    cdb_file_id_from_stat(&now, &st);
    if (s->snap != NULL && cdb_file_id_equal(&now, &s->id)) {
        if (s->settled || !cdb_file_id_settled(&now))
            return 0;
        return table_load(s); /* read once more, now that no write can hide in the same tick */
    }
    if (s->failed && s->bad_settled && cdb_file_id_equal(&now, &s->bad_id))
        return s->snap != NULL ? 0 : -1; /* the same bad version: neither re-read nor re-log */
    return table_load(s);
}

/*
 * table_get - look up key; 1 and the value (bounded, not NUL-terminated) when
 * found, 0 when not, -1 when the file is corrupt.
 */
static int table_get(struct cdb_state *s, const char *key, size_t klen, const char **val,
                     size_t *vlen)
{
    return cdb_snapshot_find(s->snap, key, klen, val, vlen);
}

/*
 * value_verdict - turn a table value into a verdict: "REJECT [text]" or
 * "5xx [text]" is invalid, "4xx [text]" tempfail (as a 4xx in a Postfix
 * access table defers: a postmaster can park a mailbox being migrated),
 * anything else valid (the value is the text).
 */
static void value_verdict(const char *val, size_t vlen, struct verdict *out)
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
    const char *check = route_option(r, "check_interval", CDB_CHECK_DEFAULT);
    long long check_ms = 0;
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
    if (value_parse_duration(check, VALUE_SECONDS, 0, CDB_CHECK_MAX_MS, &check_ms) != VALUE_OK) {
        snprintf(err, errlen,
                 "cdb:%s: check_interval must be 0 or a duration up to 1h, not \"%.50s\"", r->arg,
                 check);
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
    s->fold_local = fold_local;
    s->check_ms = check_ms;
    snprintf(s->delims, sizeof(s->delims), "%s", delims);
    /* a missing table is logged here and answered with tempfail until it appears */
    (void)table_refresh(s);
    return s;
}

/*
 * get_addr - the record for a (local part folded or not), U-label key first,
 * then the A-label key when the domain has an IDN label; table_get's result.
 */
static int get_addr(struct cdb_state *s, const struct address *a, const char **val, size_t *vlen)
{
    char key[ADDRESS_UTF8_MAX + 2];
    int klen, rc;

    klen = address_key_utf8(a, s->fold_local, key, sizeof(key));
    rc = klen < 0 ? 0 : table_get(s, key, (size_t)klen, val, vlen);
    if (rc == 0 && strcmp(a->domain, a->domain_utf8) != 0) {
        klen = address_key(a, s->fold_local, key, sizeof(key));
        rc = klen < 0 ? 0 : table_get(s, key, (size_t)klen, val, vlen);
    }
    return rc;
}

/* get_domain - the catch-all "@domain", U-label form first as in get_addr */
static int get_domain(struct cdb_state *s, const struct address *a, const char **val, size_t *vlen)
{
    char key[ADDRESS_DOMAIN_UTF8_MAX + 2];
    int klen, rc;

    klen = snprintf(key, sizeof(key), "@%s", a->domain_utf8);
    rc = (klen < 0 || (size_t)klen >= sizeof(key)) ? 0 : table_get(s, key, (size_t)klen, val, vlen);
    if (rc == 0 && strcmp(a->domain, a->domain_utf8) != 0) {
        klen = snprintf(key, sizeof(key), "@%s", a->domain);
        rc = (klen < 0 || (size_t)klen >= sizeof(key)) ? 0
                                                       : table_get(s, key, (size_t)klen, val, vlen);
    }
    return rc;
}

/* cdb_lookup - most specific key first; always BACKEND_DONE */
static enum backend_status cdb_lookup(void *state, const struct address *addr, struct verdict *out,
                                      backend_cb cb, void *arg, struct backend_req **req)
{
    struct cdb_state *s = state;
    const char *val = NULL;
    size_t vlen = 0;
    int rc;

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
    rc = get_addr(s, addr, &val, &vlen);

    /* 2: without the sub-address extension */
    if (rc == 0 && s->delims[0] != '\0') {
        struct address base = *addr;
        if (address_strip_subaddress(&base, s->delims))
            rc = get_addr(s, &base, &val, &vlen);
    }

    /* 3: the domain catch-all */
    if (rc == 0)
        rc = get_domain(s, addr, &val, &vlen);

    if (rc < 0) {
        /* unusable until the file changes: remember this version as broken */
        struct cdb_file_id id = s->id;
        table_drop(s);
        table_bad(s, &id, true, "corrupt cdb file (a record lies outside the file)", false);
        verdict_set(out, VERDICT_TEMPFAIL, 0, CDB_SOURCE, s->error);
    } else if (rc == 0) {
        verdict_set(out, VERDICT_INVALID, 550, CDB_SOURCE, CDB_NOT_FOUND_TEXT);
    } else {
        value_verdict(val, vlen, out);
    }
    return BACKEND_DONE;
}

/* cdb_close - free the snapshot and the state; no requests can be pending */
static void cdb_close(void *state)
{
    struct cdb_state *s = state;

    if (s == NULL)
        return;
    table_drop(s);
    free(s->path);
    free(s);
}

/* cdb_options - the route options cdb_open reads (docs/ROUTES.md); durations in ms */
static const struct value_decl cdb_options[] = {
    {"check_interval", VALUE_DURATION, 0, CDB_CHECK_MAX_MS},
    {NULL, VALUE_TEXT, 0, 0},
};

const struct backend_ops backend_cdb_ops = {
    .name = "cdb",
    .flags = 0, /* synchronous: an mmap'd table answers faster than any cache */
    .open = cdb_open,
    .lookup = cdb_lookup,
    .cancel = NULL,
    .close = cdb_close,
    .options = cdb_options,
};
