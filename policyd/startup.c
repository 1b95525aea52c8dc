/*
 * startup.c - the one-time steps between configuration and event loop (see
 * startup.h for the contract).
 *
 * Detaching reports back through a pipe: a daemon(3)-style start returns 0
 * to the shell or init script before the daemon has even bound its sockets,
 * so a start that fails later (a port in use, a bad user, a locked pidfile)
 * looked like success and left a stale pidfile. Here the first process waits
 * on the pipe for one message from the daemon: "R" once it listens, or "E"
 * and the reason. End of file without either means the daemon died.
 */
#include "startup.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define STARTUP_MSG_MAX 1024 /* longest start-up failure message passed back */

char *startup_abs_path(const char *base, const char *path)
{
    if (path[0] == '/' || path[0] == '\0')
        return strdup(path);
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    size_t blen = strlen(base), plen = strlen(path);
    char *abs = malloc(blen + 1 + plen + 1);
    if (abs == NULL)
        return NULL;
    memcpy(abs, base, blen);
    size_t n = blen;
    if (n == 0 || abs[n - 1] != '/')
        abs[n++] = '/';
    memcpy(abs + n, path, plen + 1);
    return abs;
}

/* replace_abs - *field made absolute against base, the old string freed */
static int replace_abs(char **field, const char *base, const char *prefix)
{
    size_t plen = strlen(prefix);
    char *abs = startup_abs_path(base, *field + plen);

    if (abs == NULL)
        return -1;
    if (plen > 0) {
        char *full = malloc(plen + strlen(abs) + 1);
        if (full == NULL) {
            free(abs);
            return -1;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, abs, strlen(abs) + 1);
        free(abs);
        abs = full;
    }
    free(*field);
    *field = abs;
    return 0;
}

int startup_config_paths(struct config *cfg, const char *base, char *err, size_t errlen)
{
    int rc = 0;

    rc |= replace_abs(&cfg->route_table, base, "");
    rc |= replace_abs(&cfg->pidfile, base, "");
    rc |= replace_abs(&cfg->control_socket, base, "");
    for (int i = 0; i < cfg->nlisten; i++)
        if (strncmp(cfg->listen[i], "unix:", 5) == 0)
            rc |= replace_abs(&cfg->listen[i], base, "unix:");
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* wait_for_daemon - the starting command: relay the daemon's verdict, then exit */
static void wait_for_daemon(int fd, pid_t child)
{
    char msg[STARTUP_MSG_MAX + 2];
    size_t got = 0;

    for (;;) {
        ssize_t n = read(fd, msg + got, sizeof(msg) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof(msg) - 1)
            break;
    }
    msg[got] = '\0';
    if (got >= 1 && msg[0] == 'R')
        _exit(0);
    /*
     * The daemon failed and exits right after saying so: wait for it, so
     * that when this command returns its sockets are closed and a restart
     * can bind them.
     */
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (got >= 1 && msg[0] == 'E') {
        fprintf(stderr, "callahead-policyd: %s\n", msg + 1);
    } else {
        if (WIFSIGNALED(status))
            fprintf(stderr,
                    "callahead-policyd: the daemon was killed by signal %d during "
                    "start-up\n",
                    WTERMSIG(status));
        else
            fprintf(stderr, "callahead-policyd: the daemon exited during start-up without "
                            "saying why (see the mail log)\n");
    }
    _exit(1);
}

int startup_detach(char *err, size_t errlen)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        wait_for_daemon(p[0], pid);
    }
    close(p[0]);
    (void)setsid(); /* cannot fail: a forked child is never a process group leader */
    if (chdir("/") < 0) {
        snprintf(err, errlen, "chdir /: %s", strerror(errno));
        startup_failed(p[1], err);
        _exit(1);
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    return p[1];
}

/* report - one message to the waiting command, then the pipe is closed */
static void report(int fd, char kind, const char *msg)
{
    char buf[STARTUP_MSG_MAX + 1];
    int n = snprintf(buf, sizeof(buf), "%c%s", kind, msg);

    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1;
    /* a pipe write of at most PIPE_BUF bytes is atomic; a lost reader is harmless */
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
    close(fd);
}

void startup_ready(int fd)
{
    if (fd >= 0)
        report(fd, 'R', "");
}

void startup_failed(int fd, const char *msg)
{
    if (fd >= 0)
        report(fd, 'E', msg);
}

int startup_pidfile_lock(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0) {
        snprintf(err, errlen, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            char pid[32] = "";
            ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\r\n")] = '\0';
            for (char *q = pid; *q; q++)
                if (*q < '0' || *q > '9')
                    *q = '?'; /* the file is not ours: print it tamed */
            snprintf(err, errlen,
                     "pidfile %s is locked by a running instance (pid %s): not starting a second",
                     path, pid[0] ? pid : "unknown");
        } else {
            snprintf(err, errlen, "pidfile %s: lock: %s", path, strerror(e));
        }
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        snprintf(err, errlen, "pidfile %s: write: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

long startup_raise_nofile(long need, char *err, size_t errlen)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)need)
        return (long)rl.rlim_cur;
    if (rl.rlim_cur == RLIM_INFINITY)
        return need;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need) {
        /* only a privileged process may raise the hard limit; try, and keep quiet if not */
        struct rlimit up = {(rlim_t)need, (rlim_t)need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return need;
    }
    struct rlimit soft = rl;
    soft.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need ? (rlim_t)need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &soft) < 0)
        return (long)rl.rlim_cur; /* the caller says what the limit in effect allows */
    return (long)soft.rlim_cur;
}

int startup_drop_privileges(const char *param, const char *user, char *err, size_t errlen)
{
    struct passwd *pw;

    if (user == NULL || user[0] == '\0')
        return 0;
    if ((pw = getpwnam(user)) == NULL) {
        snprintf(err, errlen, "%s = %s: no such user", param, user);
        return -1;
    }
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid)
            return 0;
        snprintf(err, errlen, "%s = %s: must start as root to change user", param, user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, errlen, "privileges were not dropped");
        return -1;
    }
    return 0;
}
