/*
 * backend_cdb.h - recipient tables in tinycdb files, read into private
 * snapshots (cdb_snapshot.h).
 *
 * Keys are looked up Postfix-style, most specific first: "user+ext@domain"
 * (the address as routed), "user@domain" (without sub-address), "@domain"
 * (catch-all). Local parts are lower-cased unless the route says
 * fold_local=no. A value starting with "REJECT" or with a 5xx code makes the
 * address invalid (the rest of the value is the reason), a 4xx code makes
 * it tempfail (a mailbox being migrated); any other value makes it valid. No
 * key found: invalid, "5.1.1 User unknown".
 *
 * Replacing a table: the path is stat()ed at most every check_interval
 * (default 1s; 0: every lookup) and a new version (inode, size, mtime or
 * ctime changed) is read whole into memory and checked before it answers.
 * "cdb -c new && mv new table.cdb" is best; a table rewritten in place (cp,
 * rsync --inplace) is safe too: until the new version is complete and
 * consistent the previous one keeps answering. With no usable version
 * (missing, unreadable, corrupt or half-written at start, or removed) lookups
 * answer tempfail naming the file, never "invalid". open() succeeds even when
 * the file is missing or broken (it logs a warning), so one missing table
 * does not stop the daemon. Memory: the size of the table, twice that while
 * a new version is read. Options: fold_local=yes|no, check_interval=DURATION.
 */
#ifndef CALLAHEAD_BACKEND_CDB_H
#define CALLAHEAD_BACKEND_CDB_H

#include "backend.h"

extern const struct backend_ops backend_cdb_ops;

#endif
