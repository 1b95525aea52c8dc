/*
 * cache_flush.c - operator flushes (see cache_flush.h): selectors, the
 * in-process part, and the Redis part as a small state machine of one
 * asynchronous command at a time:
 *   DEL of named keys -> SCAN pass (-> MGET to keep only "invalid" values)
 *   -> DEL of the batch -> ... until the cursor is 0 -> next pattern ...
 *   -> PUBLISH -> done
 */
#include "cache_flush.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cache.h"
#include "cache_mem.h"
#include "cache_redis.h"
#include "log.h"

#define FLUSH_KEY_MAX 1100     /* "<prefix>rcpt:<address>", as cache.c's CACHE_KEY_MAX, escaped */
#define FLUSH_SCAN_COUNT "500" /* keys Redis looks at per SCAN call */
#define FLUSH_MSG_MAX (16 + ADDRESS_MAX + 1)

static const char *const kind_names[] = {"address", "domain", "invalid", "all"};

const char *cache_flush_kind_name(enum cache_flush_kind kind)
{
    if ((int)kind < 0 || kind > CACHE_FLUSH_ALL)
        return "?";
    return kind_names[kind];
}

int cache_flush_select(enum cache_flush_kind kind, const char *name, struct cache_flush_sel *out,
                       char *err, size_t errlen)
{
    struct address a;
    char buf[ADDRESS_MAX + 8];

    memset(out, 0, sizeof(*out));
    out->kind = kind;
    switch (kind) {
    case CACHE_FLUSH_ADDRESS:
        if (address_parse(name, strlen(name), &a, err, errlen) < 0)
            return -1;
        if (a.is_null) {
            snprintf(err, errlen, "the null address is never cached");
            return -1;
        }
        if (address_key(&a, 1, out->name, sizeof(out->name)) < 0 ||
            address_key(&a, 0, out->alt, sizeof(out->alt)) < 0) {
            snprintf(err, errlen, "address too long");
            return -1;
        }
        if (strcmp(out->name, out->alt) == 0)
            out->alt[0] = '\0';
        return 0;
    case CACHE_FLUSH_DOMAIN:
        /* a domain is what address_parse makes of the part after '@' */
        if (name[0] == '@')
            name++;
        if (name[0] == '\0' || strchr(name, '@') != NULL ||
            (size_t)snprintf(buf, sizeof(buf), "x@%s", name) >= sizeof(buf)) {
            snprintf(err, errlen, "not a domain");
            return -1;
        }
        if (address_parse(buf, strlen(buf), &a, err, errlen) < 0)
            return -1;
        snprintf(out->name, sizeof(out->name), "%s", a.domain);
        return 0;
    case CACHE_FLUSH_INVALID:
    case CACHE_FLUSH_ALL:
        return 0;
    }
    snprintf(err, errlen, "unknown kind of flush");
    return -1;
}

int cache_flush_format(const struct cache_flush_sel *sel, char *buf, size_t size)
{
    int n;

    if (sel->kind == CACHE_FLUSH_ADDRESS || sel->kind == CACHE_FLUSH_DOMAIN)
        n = snprintf(buf, size, "%s %s", cache_flush_kind_name(sel->kind),
                     sel->alt[0] ? sel->alt : sel->name);
    else
        n = snprintf(buf, size, "%s", cache_flush_kind_name(sel->kind));
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int cache_flush_parse(const char *msg, size_t len, struct cache_flush_sel *out)
{
    char buf[FLUSH_MSG_MAX + 1], err[128];

    if (len > FLUSH_MSG_MAX || memchr(msg, '\0', len) != NULL)
        return -1;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char *sp = strchr(buf, ' ');
    const char *name = "";
    if (sp != NULL) {
        *sp = '\0';
        name = sp + 1;
    }
    for (int k = 0; k <= CACHE_FLUSH_ALL; k++) {
        if (strcmp(buf, kind_names[k]) != 0)
            continue;
        int named = k == CACHE_FLUSH_ADDRESS || k == CACHE_FLUSH_DOMAIN;
        if (named != (sp != NULL))
            return -1;
        return cache_flush_select((enum cache_flush_kind)k, name, out, err, sizeof(err));
    }
    return -1;
}

/* match_sel - does an in-process cache entry fall under the selector? */
static int match_sel(const char *key, const struct verdict *v, void *arg)
{
    const struct cache_flush_sel *sel = arg;
    const char *at = strrchr(key, '@');

    switch (sel->kind) {
    case CACHE_FLUSH_DOMAIN:
        /* rcpt entries are "local@domain"; a domain fact is "dom:<domain>" (cache.c) */
        if (at != NULL)
            return strcmp(at + 1, sel->name) == 0;
        return strncmp(key, "dom:", 4) == 0 && strcmp(key + 4, sel->name) == 0;
    case CACHE_FLUSH_INVALID:
        return at != NULL && v->kind == VERDICT_INVALID;
    default:
        return 0;
    }
}

unsigned long cache_flush_l1(struct cache *c, const struct cache_flush_sel *sel)
{
    struct cache_mem *l1 = cache_l1_handle(c);
    unsigned long n = 0;

    switch (sel->kind) {
    case CACHE_FLUSH_ADDRESS:
        n += (unsigned long)cache_mem_del(l1, sel->name);
        if (sel->alt[0])
            n += (unsigned long)cache_mem_del(l1, sel->alt);
        return n;
    case CACHE_FLUSH_ALL:
        n = (unsigned long)cache_mem_count(l1);
        cache_mem_clear(l1);
        return n;
    default:
        return (unsigned long)cache_mem_del_matching(l1, match_sel, (void *)sel);
    }
}

/* ---------------------------------------------------------------- Redis */

struct flush_key {
    char *k;
    size_t len;
};

struct cache_flush_op {
    struct cache *c;
    struct cache_redis *r;
    struct cache_flush_sel sel;
    cache_flush_cb cb;
    void *arg;
    struct cache_redis_req *rreq; /* the command in flight */
    struct event *ev_done;        /* completion, always from the loop */
    char patterns[2][FLUSH_KEY_MAX];
    int npatterns, pass;
    char cursor[32];
    struct flush_key *batch; /* keys to DEL (after MGET filtering for "invalid") */
    size_t nbatch;
    int filtered; /* the batch went through MGET */
    int published;
    unsigned long deleted;
    long receivers;
    int ok;
    char err[160];
};

static void op_step(struct cache_flush_op *op);

/* glob_escape - s with Redis glob metacharacters escaped, appended to buf at *pos */
static int glob_append(char *buf, size_t size, size_t *pos, const char *s, int escape)
{
    for (; *s; s++) {
        if (escape && strchr("*?[]\\", *s) != NULL) {
            if (*pos + 1 >= size)
                return -1;
            buf[(*pos)++] = '\\';
        }
        if (*pos + 1 >= size)
            return -1;
        buf[(*pos)++] = *s;
    }
    buf[*pos] = '\0';
    return 0;
}

/* key_prefix - the configured key prefix ("callahead:"), from cache_key */
static int key_prefix(const struct cache *c, char *buf, size_t size)
{
    int n = cache_key(c, "x", "", buf, size);

    if (n < 2)
        return -1;
    buf[n - 2] = '\0'; /* drop "x:" */
    return n - 2;
}

int cache_flush_channel(const struct cache *c, char *buf, size_t size)
{
    char prefix[FLUSH_KEY_MAX];

    if (key_prefix(c, prefix, sizeof(prefix)) < 0)
        return -1;
    return cache_flush_channel_of(prefix, buf, size);
}

int cache_flush_channel_of(const char *prefix, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%sflush", prefix != NULL ? prefix : "callahead:");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

static void batch_clear(struct cache_flush_op *op)
{
    for (size_t i = 0; i < op->nbatch; i++)
        free(op->batch[i].k);
    free(op->batch);
    op->batch = NULL;
    op->nbatch = 0;
    op->filtered = 0;
}

/* batch_add - keep a copy of len bytes of key for the next DEL (or MGET) */
static int batch_add(struct cache_flush_op *op, const char *key, size_t len)
{
    struct flush_key *nb = realloc(op->batch, (op->nbatch + 1) * sizeof(*nb));

    if (nb == NULL)
        return -1;
    op->batch = nb;
    if ((nb[op->nbatch].k = malloc(len + 1)) == NULL)
        return -1;
    memcpy(nb[op->nbatch].k, key, len);
    nb[op->nbatch].k[len] = '\0';
    nb[op->nbatch].len = len;
    op->nbatch++;
    return 0;
}

/* op_finish - stop with ok or err; the callback runs from ev_done */
static void op_finish(struct cache_flush_op *op, int ok, const char *err)
{
    op->rreq = NULL;
    op->ok = ok;
    if (!ok)
        snprintf(op->err, sizeof(op->err), "redis: %s", err);
    event_active(op->ev_done, EV_TIMEOUT, 0);
}

static void op_free(struct cache_flush_op *op)
{
    batch_clear(op);
    event_free(op->ev_done);
    free(op);
}

static void op_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache_flush_op *op = arg;
    cache_flush_cb cb = op->cb;
    void *cbarg = op->arg;
    int ok = op->ok;
    unsigned long deleted = op->deleted;
    long receivers = op->receivers;
    char err[sizeof(op->err)];

    snprintf(err, sizeof(err), "%s", op->err);
    op_free(op);
    cb(ok, deleted, receivers, ok ? "" : err, cbarg);
}

/* reply_int - a DEL or PUBLISH answer */
static void reply_int(int status, const char *val, size_t len, void *arg)
{
    struct cache_flush_op *op = arg;
    char num[32];

    op->rreq = NULL;
    if (status != 1 || len == 0 || len >= sizeof(num)) {
        op_finish(op, 0, status == -1 ? val : "unexpected reply");
        return;
    }
    memcpy(num, val, len);
    num[len] = '\0';
    long n = strtol(num, NULL, 10);
    if (!op->published && op->nbatch > 0) {
        op->deleted += n > 0 ? (unsigned long)n : 0;
        batch_clear(op);
    } else {
        op->receivers = n;
        op->published = 1;
    }
    op_step(op);
}

/* reply_scan - cursor and a batch of keys */
static void reply_scan(int status, size_t n, const char **elems, const size_t *lens, void *arg)
{
    struct cache_flush_op *op = arg;

    op->rreq = NULL;
    if (status != 1 || n < 1 || elems[0] == NULL || lens[0] == 0 || lens[0] >= sizeof(op->cursor) ||
        strspn(elems[0], "0123456789") != lens[0]) {
        op_finish(op, 0, status == -1 && n == 1 ? elems[0] : "unexpected SCAN reply");
        return;
    }
    memcpy(op->cursor, elems[0], lens[0]);
    op->cursor[lens[0]] = '\0';
    for (size_t i = 1; i < n; i++) {
        if (elems[i] != NULL && batch_add(op, elems[i], lens[i]) < 0) {
            op_finish(op, 0, "out of memory");
            return;
        }
    }
    if (strcmp(op->cursor, "0") == 0)
        op->pass++; /* this pattern is done; the next starts at cursor 0 again */
    op_step(op);
}

/* reply_mget - the values of the batch: keep only the keys that hold an "invalid" verdict */
static void reply_mget(int status, size_t n, const char **elems, const size_t *lens, void *arg)
{
    struct cache_flush_op *op = arg;
    size_t kept = 0;

    op->rreq = NULL;
    if (status != 1 || n != op->nbatch) {
        op_finish(op, 0, status == -1 && n == 1 ? elems[0] : "unexpected MGET reply");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct verdict v;
        if (elems[i] != NULL && verdict_parse(elems[i], lens[i], &v) == 0 &&
            v.kind == VERDICT_INVALID)
            op->batch[kept++] = op->batch[i];
        else
            free(op->batch[i].k);
    }
    op->nbatch = kept;
    op->filtered = 1;
    op_step(op);
}

/* send_batch - "CMD key..." for the batch */
static void send_batch(struct cache_flush_op *op, const char *cmd)
{
    const char **argv = calloc(op->nbatch + 1, sizeof(*argv));
    size_t *argvlen = calloc(op->nbatch + 1, sizeof(*argvlen));

    if (argv == NULL || argvlen == NULL) {
        free(argv);
        free(argvlen);
        op_finish(op, 0, "out of memory");
        return;
    }
    argv[0] = cmd;
    argvlen[0] = strlen(cmd);
    for (size_t i = 0; i < op->nbatch; i++) {
        argv[i + 1] = op->batch[i].k;
        argvlen[i + 1] = op->batch[i].len;
    }
    if (strcmp(cmd, "MGET") == 0)
        op->rreq =
            cache_redis_command_array(op->r, (int)op->nbatch + 1, argv, argvlen, reply_mget, op);
    else
        op->rreq = cache_redis_command(op->r, (int)op->nbatch + 1, argv, argvlen, reply_int, op);
    free(argv);
    free(argvlen);
    if (op->rreq == NULL)
        op_finish(op, 0, "not connected");
}

/* op_step - send the next command, or finish */
static void op_step(struct cache_flush_op *op)
{
    if (op->nbatch > 0) {
        send_batch(op, op->sel.kind == CACHE_FLUSH_INVALID && !op->filtered ? "MGET" : "DEL");
        return;
    }
    op->filtered = 0;
    if (op->pass < op->npatterns) {
        const char *pat = op->patterns[op->pass];
        const char *argv[6] = {"SCAN", op->cursor, "MATCH", pat, "COUNT", FLUSH_SCAN_COUNT};
        size_t argvlen[6] = {4, strlen(op->cursor), 5, strlen(pat), 5, strlen(FLUSH_SCAN_COUNT)};
        op->rreq = cache_redis_command_array(op->r, 6, argv, argvlen, reply_scan, op);
        if (op->rreq == NULL)
            op_finish(op, 0, "not connected");
        return;
    }
    if (!op->published) {
        char channel[FLUSH_KEY_MAX], msg[FLUSH_MSG_MAX + 1];
        int clen = cache_flush_channel(op->c, channel, sizeof(channel));
        int mlen = cache_flush_format(&op->sel, msg, sizeof(msg));
        if (clen < 0 || mlen < 0) {
            op_finish(op, 0, "flush message too long");
            return;
        }
        const char *argv[3] = {"PUBLISH", channel, msg};
        size_t argvlen[3] = {7, (size_t)clen, (size_t)mlen};
        op->rreq = cache_redis_command(op->r, 3, argv, argvlen, reply_int, op);
        if (op->rreq == NULL)
            op_finish(op, 0, "not connected");
        return;
    }
    op_finish(op, 1, "");
}

/* op_plan - the named keys to delete first and the SCAN patterns, by kind */
static int op_plan(struct cache_flush_op *op)
{
    char prefix[FLUSH_KEY_MAX], key[FLUSH_KEY_MAX];
    int n;

    if (key_prefix(op->c, prefix, sizeof(prefix)) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        op->patterns[i][0] = '\0';
    switch (op->sel.kind) {
    case CACHE_FLUSH_ADDRESS:
        if ((n = cache_key(op->c, "rcpt", op->sel.name, key, sizeof(key))) < 0 ||
            batch_add(op, key, (size_t)n) < 0)
            return -1;
        if (op->sel.alt[0] && ((n = cache_key(op->c, "rcpt", op->sel.alt, key, sizeof(key))) < 0 ||
                               batch_add(op, key, (size_t)n) < 0))
            return -1;
        return 0;
    case CACHE_FLUSH_DOMAIN: {
        size_t pos = 0;
        if ((n = cache_key(op->c, "dom", op->sel.name, key, sizeof(key))) < 0 ||
            batch_add(op, key, (size_t)n) < 0)
            return -1;
        if (glob_append(op->patterns[0], FLUSH_KEY_MAX, &pos, prefix, 1) < 0 ||
            glob_append(op->patterns[0], FLUSH_KEY_MAX, &pos, "rcpt:*@", 0) < 0 ||
            glob_append(op->patterns[0], FLUSH_KEY_MAX, &pos, op->sel.name, 1) < 0)
            return -1;
        op->npatterns = 1;
        return 0;
    }
    case CACHE_FLUSH_INVALID:
    case CACHE_FLUSH_ALL: {
        size_t pos = 0;
        if (glob_append(op->patterns[0], FLUSH_KEY_MAX, &pos, prefix, 1) < 0 ||
            glob_append(op->patterns[0], FLUSH_KEY_MAX, &pos, "rcpt:*", 0) < 0)
            return -1;
        op->npatterns = 1;
        if (op->sel.kind == CACHE_FLUSH_ALL) {
            pos = 0;
            if (glob_append(op->patterns[1], FLUSH_KEY_MAX, &pos, prefix, 1) < 0 ||
                glob_append(op->patterns[1], FLUSH_KEY_MAX, &pos, "dom:*", 0) < 0)
                return -1;
            op->npatterns = 2;
        }
        return 0;
    }
    }
    return -1;
}

struct cache_flush_op *cache_flush_redis(struct event_base *base, struct cache *c,
                                         const struct cache_flush_sel *sel, cache_flush_cb cb,
                                         void *arg)
{
    struct cache_flush_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->c = c;
    op->r = cache_redis_handle(c);
    op->sel = *sel;
    op->cb = cb;
    op->arg = arg;
    snprintf(op->cursor, sizeof(op->cursor), "0");
    if ((op->ev_done = event_new(base, -1, 0, op_done_cb, op)) == NULL) {
        free(op);
        return NULL;
    }
    if (op->r == NULL) {
        op_finish(op, 0, "not configured");
        return op;
    }
    if (op_plan(op) < 0) {
        op_finish(op, 0, "key too long");
        return op;
    }
    if (!cache_redis_connected(op->r)) {
        op_finish(op, 0, "not connected");
        return op;
    }
    op_step(op);
    return op;
}

void cache_flush_cancel(struct cache_flush_op *op)
{
    if (op == NULL)
        return;
    cache_redis_cancel(op->rreq);
    event_del(op->ev_done);
    op_free(op);
}
