/*
 * startup.h - what callahead-policyd does once, between reading its
 * configuration and running its event loop: make relative paths absolute
 * (the daemon works in "/"), detach into the background so that the command
 * that started it still learns whether the start worked, hold the pidfile
 * locked so a second instance refuses to start, and raise the descriptor
 * limit to what max_connections needs.
 */
#ifndef CALLAHEAD_STARTUP_H
#define CALLAHEAD_STARTUP_H

#include <stddef.h>

struct config;

/*
 * startup_abs_path - path made absolute against base (a directory); an
 * absolute path or an empty one is copied unchanged. The result is
 * malloc'ed (the caller frees it); NULL when out of memory.
 */
char *startup_abs_path(const char *base, const char *path);

/*
 * startup_config_paths - make the file names in cfg absolute against base:
 * route_table, pidfile and every "unix:PATH" listener. Start-up and reload
 * use the same base (the working directory the daemon was started in), so a
 * relative name means the same file before and after the daemon detaches.
 * Returns 0, or -1 with err set (out of memory).
 */
int startup_config_paths(struct config *cfg, const char *base, char *err, size_t errlen);

/*
 * startup_detach - go into the background. The command that was run waits
 * until the daemon calls startup_ready (it exits 0) or startup_failed (it
 * prints the message and exits 1), or until the daemon dies (exit 1); it
 * never returns. In the daemon, the function returns the descriptor to
 * report on (the daemon is a session leader in "/", stdin/stdout/stderr on
 * /dev/null), or -1 with err set when it could not detach.
 */
int startup_detach(char *err, size_t errlen);

/* startup_ready - report "listening" to the waiting command; fd -1 (foreground) is a no-op */
void startup_ready(int fd);

/* startup_failed - report msg as the reason start-up failed; fd -1 is a no-op */
void startup_failed(int fd, const char *msg);

/*
 * startup_pidfile_lock - open path, lock it (fcntl, for the life of the
 * process) and write our pid into it. Another process holding the lock is
 * a running instance: -1 with its pid in err, and the file is left alone.
 * An unlocked file left by a crashed instance is simply taken over.
 * Returns the open descriptor (keep it open), 0 ... n, or -1 with err set.
 */
int startup_pidfile_lock(const char *path, char *err, size_t errlen);

/*
 * startup_raise_nofile - raise RLIMIT_NOFILE so that need descriptors fit:
 * the soft limit up to the hard one, and the hard one too when allowed
 * (root). Returns the soft limit now in effect (which may be below need:
 * the caller says what that means), or -1 with err set.
 */
long startup_raise_nofile(long need, char *err, size_t errlen);

/*
 * startup_drop_privileges - become user (with its groups) once the sockets
 * are bound; param names the setting in messages ("user", "milter_user").
 * An empty user, or already being that user, is a no-op. Fails when not
 * root, or when root could be regained afterwards.
 */
int startup_drop_privileges(const char *param, const char *user, char *err, size_t errlen);

#endif
