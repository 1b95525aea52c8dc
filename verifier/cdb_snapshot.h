/*
 * cdb_snapshot.h - a tinycdb file read into private memory, checked, and
 * looked up there.
 *
 * Why not mmap the table: a file that is mapped and then truncated (cp,
 * rsync --inplace and configuration-management tools rewrite in place)
 * makes every read past its new end a SIGBUS, and one table would take the
 * whole daemon down. A snapshot is read with read(2), so truncation can only
 * make the read short, never fault; it is used only when it is complete and
 * consistent:
 *
 *   - the file's identity (device, inode, size, mtime, ctime) is the same
 *     before and after the read, and the read returned exactly size bytes;
 *   - the cdb structure holds: every one of the 256 hash tables named in the
 *     2048-byte header lies inside the file (a file that cp is still writing
 *     has its header, written first, pointing past the current end), and every
 *     record a lookup reaches is bounds-checked before it is read.
 *
 * A snapshot costs as much memory as the file; while a new version is read
 * the old one stays in use, so a change briefly needs twice that.
 */
#ifndef CALLAHEAD_CDB_SNAPSHOT_H
#define CALLAHEAD_CDB_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#define CDB_SNAPSHOT_MAX 0xffffffffULL /* cdb offsets are 32-bit */

struct cdb_snapshot; /* opaque: the bytes of one file version */

/* cdb_file_id - what identifies one version of a file */
struct cdb_file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;
};

/* cdb_file_id_from_stat - fill id from st */
void cdb_file_id_from_stat(struct cdb_file_id *id, const struct stat *st);

/* cdb_file_id_equal - same file version (every field equal)? */
bool cdb_file_id_equal(const struct cdb_file_id *a, const struct cdb_file_id *b);

/*
 * cdb_snapshot_load - read the file at path into a new snapshot. On success
 * returns 0, *out owns the snapshot (free with cdb_snapshot_free), *id is
 * the version read, and *settled says whether that version can no longer be
 * changing unseen: its ctime is older than the (coarse) clock tick in which
 * the read started. A write in the same tick as the last one need not change
 * any timestamp, so an unsettled snapshot should be read again once the tick
 * has passed. On failure returns -1, *out is NULL, why says what was wrong
 * (open error, "not a regular file", "corrupt or incomplete cdb file",
 * "changed while being read"), *id is the version seen (zeroed if none) and
 * *settled says whether that version was settled, so a caller need not read
 * a settled bad version again before it changes. Never blocks on anything
 * but the file; never faults on truncation.
 */
int cdb_snapshot_load(const char *path, struct cdb_snapshot **out, struct cdb_file_id *id,
                      bool *settled, char *why, size_t whylen);

/*
 * cdb_file_id_settled - has the clock tick of id's ctime passed, so any
 * further write would change the id?
 */
bool cdb_file_id_settled(const struct cdb_file_id *id);

/*
 * cdb_snapshot_check - is buf (len bytes) a structurally sound cdb? The
 * header's 256 hash tables must lie inside buf. 0 yes, -1 no.
 */
int cdb_snapshot_check(const unsigned char *buf, size_t len);

/*
 * cdb_snapshot_find - look key up: 1 and the value (pointing into the
 * snapshot, not NUL-terminated, valid until it is freed) when found, 0 when
 * not, -1 when a record the search reaches lies outside the file (corrupt).
 */
int cdb_snapshot_find(const struct cdb_snapshot *s, const char *key, size_t klen, const char **val,
                      size_t *vlen);

/* cdb_snapshot_size - bytes held by the snapshot */
size_t cdb_snapshot_size(const struct cdb_snapshot *s);

/* cdb_snapshot_free - free s; NULL is fine */
void cdb_snapshot_free(struct cdb_snapshot *s);

#endif
