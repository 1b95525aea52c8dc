/*
 * backend_cdb.h - recipient tables in tinycdb files, read through mmap.
 *
 * Keys are looked up Postfix-style, most specific first: "user+ext@domain"
 * (the address as routed), "user@domain" (without sub-address), "@domain"
 * (catch-all). Local parts are lower-cased unless the route says
 * fold_local=no. A value starting with "REJECT" or with a 5xx code makes the
 * address invalid (the rest of the value is the reason), a 4xx code makes
 * it tempfail (a mailbox being migrated); any other value makes it valid. No key found: invalid,
 * "5.1.1 User unknown". The file is re-opened when its inode, size or mtime change, so "cdb -c new
 * && mv new table.cdb" takes effect at the next lookup without a reload; a table that fails to open
 * gives tempfail, never "invalid". open() succeeds even when the file is missing or broken at start
 * (it logs a warning), so one missing table does not stop the daemon: lookups answer tempfail,
 * naming the file, until a usable table appears. The path is stat()ed on every lookup (one
 * syscall); options: fold_local=yes|no.
 */
#ifndef CALLAHEAD_BACKEND_CDB_H
#define CALLAHEAD_BACKEND_CDB_H

#include "backend.h"

extern const struct backend_ops backend_cdb_ops;

#endif
