/*
 * cdb_snapshot.c - read a tinycdb file into private memory and look keys up
 * there (see cdb_snapshot.h for why not mmap).
 *
 * The cdb format (D. J. Bernstein's): a 2048-byte header of 256 (position,
 * slot count) pairs, the records (key length, value length, key, value), then
 * the 256 hash tables of (hash, record position) slots. Every number is a
 * little-endian 32-bit value; tinycdb's cdb_hash and cdb_unpack are used so
 * the hash is the one cdb_make wrote. Nothing read from the file is trusted:
 * a count or a position is checked against the snapshot's length before it
 * is used, in 64-bit arithmetic so no sum can wrap.
 */
#include "cdb_snapshot.h"

#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CDB_HEADER 2048

struct cdb_snapshot {
    unsigned char *data;
    size_t len;
};

void cdb_file_id_from_stat(struct cdb_file_id *id, const struct stat *st)
{
    memset(id, 0, sizeof(*id));
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
    id->ctime = st->st_ctim;
}

static bool ts_equal(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

bool cdb_file_id_equal(const struct cdb_file_id *a, const struct cdb_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           ts_equal(&a->mtime, &b->mtime) && ts_equal(&a->ctime, &b->ctime);
}

/* ts_before - a earlier than b? */
static bool ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * coarse_now - the clock the kernel stamps inodes with. Any write that starts
 * after this call gets a ctime at or after it; with no coarse clock, step a
 * whole second back so the comparison stays on the safe side.
 */
static void coarse_now(struct timespec *ts)
{
#ifdef CLOCK_REALTIME_COARSE
    if (clock_gettime(CLOCK_REALTIME_COARSE, ts) == 0)
        return;
#endif
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec -= 1;
}

bool cdb_file_id_settled(const struct cdb_file_id *id)
{
    struct timespec now;

    coarse_now(&now);
    return ts_before(&id->ctime, &now);
}

int cdb_snapshot_check(const unsigned char *buf, size_t len)
{
    if (len < CDB_HEADER || (unsigned long long)len > CDB_SNAPSHOT_MAX)
        return -1;
    for (int i = 0; i < 256; i++) {
        uint64_t pos = cdb_unpack(buf + i * 8);
        uint64_t slots = cdb_unpack(buf + i * 8 + 4);
        if (slots == 0)
            continue;
        /* a table lies after the header and inside the file, slots of 8 bytes each */
        if (pos < CDB_HEADER || pos > len || slots > (len - pos) / 8)
            return -1;
    }
    return 0;
}

/* read_full - pread exactly len bytes at off; 0, or -1 (errno set; 0 for a short read) */
static int read_full(int fd, unsigned char *buf, size_t len, off_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = 0; /* truncated under us */
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* load_fail - fill why, return -1 */
static int load_fail(char *why, size_t whylen, const char *msg)
{
    snprintf(why, whylen, "%s", msg);
    return -1;
}

int cdb_snapshot_load(const char *path, struct cdb_snapshot **out, struct cdb_file_id *id,
                      bool *settled, char *why, size_t whylen)
{
    struct stat before, after;
    struct timespec start;
    unsigned char header[CDB_HEADER];
    struct cdb_snapshot *s = NULL;
    int fd, rc = -1;

    *out = NULL;
    *settled = false;
    memset(id, 0, sizeof(*id));
    coarse_now(&start);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return load_fail(why, whylen, strerror(errno));
    if (fstat(fd, &before) < 0) {
        load_fail(why, whylen, strerror(errno));
        goto done;
    }
    cdb_file_id_from_stat(id, &before);
    if (!S_ISREG(before.st_mode)) {
        load_fail(why, whylen, "not a regular file");
        goto done;
    }
    if (before.st_size < CDB_HEADER || (unsigned long long)before.st_size > CDB_SNAPSHOT_MAX) {
        load_fail(why, whylen, "corrupt or incomplete cdb file (bad size)");
        goto done;
    }
    /* the header first: a file still being written is refused without reading all of it */
    if (read_full(fd, header, sizeof(header), 0) < 0 ||
        cdb_snapshot_check(header, (size_t)before.st_size) < 0) {
        load_fail(why, whylen, "corrupt or incomplete cdb file");
        goto done;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->data = malloc((size_t)before.st_size)) == NULL) {
        load_fail(why, whylen, "out of memory");
        goto done;
    }
    s->len = (size_t)before.st_size;
    if (read_full(fd, s->data, s->len, 0) < 0) {
        load_fail(why, whylen, errno ? strerror(errno) : "changed while being read");
        goto done;
    }
    if (fstat(fd, &after) < 0) {
        load_fail(why, whylen, strerror(errno));
        goto done;
    }
    struct cdb_file_id then;
    cdb_file_id_from_stat(&then, &after);
    if (!cdb_file_id_equal(id, &then)) {
        *id = then;
        load_fail(why, whylen, "changed while being read");
        goto done;
    }
    /* the header read again with the rest: it is the one lookups will use */
    if (cdb_snapshot_check(s->data, s->len) < 0) {
        load_fail(why, whylen, "corrupt or incomplete cdb file");
        goto done;
    }
    *settled = ts_before(&after.st_ctim, &start);
    *out = s;
    s = NULL;
    rc = 0;
done:
    if (rc < 0 && id->ino != 0)
        *settled = ts_before(&id->ctime, &start);
    cdb_snapshot_free(s);
    close(fd);
    return rc;
}

int cdb_snapshot_find(const struct cdb_snapshot *s, const char *key, size_t klen, const char **val,
                      size_t *vlen)
{
    if (s == NULL || klen > 0xffffffffu)
        return -1;
    const unsigned char *d = s->data;
    uint64_t len = s->len;
    unsigned hash = cdb_hash(key, (unsigned)klen);
    uint64_t tpos = cdb_unpack(d + (hash & 255) * 8);
    uint64_t slots = cdb_unpack(d + (hash & 255) * 8 + 4);

    if (slots == 0)
        return 0;
    /* checked at load; checked again because it costs nothing */
    if (tpos < CDB_HEADER || tpos > len || slots > (len - tpos) / 8)
        return -1;
    uint64_t first = (hash >> 8) % slots;
    for (uint64_t i = 0; i < slots; i++) {
        const unsigned char *slot = d + tpos + ((first + i) % slots) * 8;
        uint64_t rpos = cdb_unpack(slot + 4);
        if (rpos == 0)
            return 0; /* an empty slot ends the probe sequence */
        if (cdb_unpack(slot) != hash)
            continue;
        if (rpos < CDB_HEADER || rpos > len - 8)
            return -1;
        uint64_t rklen = cdb_unpack(d + rpos), rvlen = cdb_unpack(d + rpos + 4);
        if (rklen > len - rpos - 8 || rvlen > len - rpos - 8 - rklen)
            return -1;
        if (rklen == klen && memcmp(d + rpos + 8, key, klen) == 0) {
            *val = (const char *)d + rpos + 8 + rklen;
            *vlen = (size_t)rvlen;
            return 1;
        }
    }
    return 0;
}

size_t cdb_snapshot_size(const struct cdb_snapshot *s)
{
    return s ? s->len : 0;
}

void cdb_snapshot_free(struct cdb_snapshot *s)
{
    if (s == NULL)
        return;
    free(s->data);
    free(s);
}
