/*
 * main.c - callahead-milter: the milter front end for Sendmail and Postfix
 * smtpd_milters. It asks callahead-policyd at every RCPT (see milter.c).
 *
 * Start-up order, as for policyd (and with its startup.c): read and check
 * callahead.conf and resolve the policy service while errors still reach
 * the terminal; detach (the starting command waits until we listen, and
 * exits 1 with our reason if we do not); lock the pidfile; raise the file
 * descriptor limit (one policyd connection per SMTP session); open the
 * milter socket as root (replacing a stale unix socket, never a live one),
 * set its mode and owner; drop privileges; then hand over to libmilter's
 * smfi_main, which runs the worker threads and stops on SIGTERM (it waits
 * up to about 5 s for sessions to end).
 */
#include <errno.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "autoconf.h" /* PACKAGE_VERSION */
#include "config.h"
#include "log.h"
#include "milter.h"
#include "startup.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static void usage(void)
{
    fprintf(stderr, "usage: callahead-milter [-f] [-D] [-c config]   run the milter\n"
                    "       callahead-milter [-c config] -t          check the configuration\n"
                    "       callahead-milter [-c config] -n          print non-default parameters\n"
                    "       callahead-milter -d                      parameter reference\n"
                    "  -f  stay in the foreground and log to stderr\n"
                    "  -D  debug logging\n");
    exit(2);
}

/* facility_code - syslog_facility's value (already checked by the config parser) */
static int facility_code(const char *name)
{
    static const struct {
        const char *name;
        int code;
    } tab[] = {{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
               {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
               {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
               {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcasecmp(name, tab[i].name) == 0)
            return tab[i].code;
    return LOG_MAIL;
}

/* unix_path - the path of a unix:/local: milter socket, or NULL for inet */
static const char *unix_path(const char *conn)
{
    if (strncmp(conn, "unix:", 5) == 0)
        return conn + 5;
    if (strncmp(conn, "local:", 6) == 0)
        return conn + 6;
    return NULL;
}

/*
 * clear_stale_socket - remove a unix socket nobody listens on (a crashed
 * milter's); refuse when a milter still answers there or the path is not
 * a socket, so a second instance cannot steal the first one's socket.
 */
static int clear_stale_socket(const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "%s: another milter is listening there", path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) < 0) {
        snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* socket_owner - chmod/chown the unix socket as milter_socket_* say */
static int socket_owner(const struct config *c, const char *path, char *err, size_t errlen)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;

    if (c->milter_socket_owner[0]) {
        struct passwd *pw = getpwnam(c->milter_socket_owner);
        if (pw == NULL) {
            snprintf(err, errlen, "milter_socket_owner = %s: no such user", c->milter_socket_owner);
            return -1;
        }
        uid = pw->pw_uid;
    }
    if (c->milter_socket_group[0]) {
        struct group *gr = getgrnam(c->milter_socket_group);
        if (gr == NULL) {
            snprintf(err, errlen, "milter_socket_group = %s: no such group",
                     c->milter_socket_group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0) {
        snprintf(err, errlen, "chown %s: %s", path, strerror(errno));
        return -1;
    }
    if (chmod(path, (mode_t)c->milter_socket_mode) < 0) {
        snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ready_fd - where start-up reports to the command that started us (-1: foreground) */
static int ready_fd = -1;

/* start_fail - a start-up failure after detaching: log it, tell the starting command, exit 1 */
static void start_fail(const char *msg) __attribute__((noreturn));
static void start_fail(const char *msg)
{
    log_err("%s", msg);
    startup_failed(ready_fd, msg);
    exit(1);
}

/* settings_from_config - the callbacks' view of the configuration */
static int settings_from_config(const struct config *c, struct milter_settings *s, char *err,
                                size_t errlen)
{
    char why[256];

    memset(s, 0, sizeof(*s));
    if (policy_endpoint_parse(c->milter_policy_service, &s->policy, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "milter_policy_service: %s", why);
        return -1;
    }
    if (netlist_parse(c->milter_skip_networks, &s->skip_networks, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "milter_skip_networks: %s", why);
        return -1;
    }
    s->timeout_ms = c->milter_timeout_ms;
    s->default_tempfail = strcmp(c->milter_default_action, "tempfail") == 0;
    s->max_inflight = c->milter_max_inflight;
    s->skip_authenticated = c->milter_skip_authenticated;
    s->error_log_interval = c->milter_error_log_interval;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = SYSCONFDIR "/callahead/callahead.conf";
    int foreground = 0, debug = 0, check_only = 0, print_conf = 0, opt;
    static struct config cfg;
    static struct milter_settings settings;
    char err[512];

    while ((opt = getopt(argc, argv, "c:fDndtV")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'D':
            debug = 1;
            break;
        case 'n':
            print_conf = 1;
            break;
        case 'd':
            config_print_doc(stdout, 0);
            return 0;
        case 't':
            check_only = 1;
            break;
        case 'V':
            printf("callahead-milter %s\n", PACKAGE_VERSION);
            return 0;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();

    if (config_load(config_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "callahead-milter: %s\n", err);
        return 1;
    }
    if (print_conf) {
        config_print(stdout, &cfg, 1);
        config_free(&cfg);
        return 0;
    }
    if (settings_from_config(&cfg, &settings, err, sizeof(err)) < 0) {
        fprintf(stderr, "callahead-milter: %s: %s\n", config_path, err);
        config_free(&cfg);
        return 1;
    }
    if (check_only) {
        config_free(&cfg);
        return 0;
    }

    /* relative names mean the start directory, also after detaching into "/" */
    char start_dir[PATH_MAX];
    if (getcwd(start_dir, sizeof(start_dir)) == NULL) {
        fprintf(stderr, "callahead-milter: getcwd: %s\n", strerror(errno));
        return 1;
    }
    const char *upath = unix_path(cfg.milter_listen);
    char *path = upath ? startup_abs_path(start_dir, upath) : NULL;
    char *pidfile = startup_abs_path(start_dir, cfg.milter_pidfile);
    if ((upath && path == NULL) || pidfile == NULL) {
        fprintf(stderr, "callahead-milter: out of memory\n");
        return 1;
    }
    char conn[PATH_MAX + 16];
    if (path != NULL)
        snprintf(conn, sizeof(conn), "unix:%s", path);
    else
        snprintf(conn, sizeof(conn), "%s", cfg.milter_listen);

    char ident[96];
    snprintf(ident, sizeof(ident), "%s/milter", cfg.syslog_name);
    log_open(ident, foreground, facility_code(cfg.syslog_facility));
    log_set_debug(debug || cfg.debug);
    signal(SIGPIPE, SIG_IGN);

    if (!foreground && (ready_fd = startup_detach(err, sizeof(err))) < 0) {
        fprintf(stderr, "callahead-milter: %s\n", err);
        return 1;
    }
    /* from here on every failure goes through start_fail */
    if (pidfile[0] != '\0' && startup_pidfile_lock(pidfile, err, sizeof(err)) < 0)
        start_fail(err);
    /* each SMTP session holds the MTA's connection and one to policyd */
    long need = 4L * cfg.milter_max_inflight + 64 > 4096 ? 4L * cfg.milter_max_inflight + 64 : 4096;
    long have = startup_raise_nofile(need, err, sizeof(err));
    if (have < 0)
        log_warn("%s", err);
    else if (have < need)
        log_warn("open file limit %ld is below the %ld that milter_max_inflight = %d suggests",
                 have, need, cfg.milter_max_inflight);

    if (path != NULL && clear_stale_socket(path, err, sizeof(err)) < 0)
        start_fail(err);
    if (smfi_setconn(conn) == MI_FAILURE || milter_register(&settings, err, sizeof(err)) < 0)
        start_fail("cannot set up the milter socket");
    if (smfi_opensocket(false) == MI_FAILURE) {
        char msg[sizeof(conn) + 64];
        snprintf(msg, sizeof(msg), "cannot listen on %s (in use, or no permission)", conn);
        start_fail(msg);
    }
    if (path != NULL && socket_owner(&cfg, path, err, sizeof(err)) < 0) {
        unlink(path);
        start_fail(err);
    }
    if (startup_drop_privileges("milter_user", cfg.milter_user, err, sizeof(err)) < 0)
        start_fail(err);
    log_info("callahead-milter %s listening on %s, policy service %s, timeout %dms, "
             "default action %s",
             PACKAGE_VERSION, conn, settings.policy.name, settings.timeout_ms,
             settings.default_tempfail ? "tempfail" : "continue");
    startup_ready(ready_fd); /* the starting command exits 0 now */
    ready_fd = -1;

    int rc = smfi_main();
    log_info("callahead-milter stopping");
    if (path != NULL)
        unlink(path); /* may fail after dropping privileges; a stale socket is replaced next time */
    if (pidfile[0] != '\0')
        unlink(pidfile);
    free(path);
    free(pidfile);
    config_free(&cfg);
    return rc == MI_SUCCESS ? 0 : 1;
}
