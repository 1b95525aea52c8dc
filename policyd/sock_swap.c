/*
 * sock_swap.c - the reload of the control socket, the stats endpoint and the
 * unix: sockets' permissions (sock_swap.h). A new socket is bound before the
 * old one closes, so the callahead command and the metrics scraper never
 * find nothing listening; a setting that cannot be applied (most often a
 * chown after the daemon dropped root) refuses the reload by name.
 */
#include "sock_swap.h"

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "listener.h"
#include "log.h"
#include "stats_http.h"

/* changed - do the strings a and b differ? */
static int changed(const char *a, const char *b)
{
    return strcmp(a, b) != 0;
}

/* list_add - append name to the comma separated list in buf */
static void list_add(char *buf, size_t size, const char *name)
{
    size_t n = strlen(buf);

    if (n < size)
        snprintf(buf + n, size - n, "%s%s", n ? ", " : "", name);
}

/*
 * name_or_self - the owner (or group) name to apply when a setting goes
 * from running to next: "" (keep the file's) when unchanged, next's name
 * when set, and the daemon's own user (group) when next went back to empty,
 * which means "the daemon's" (buf holds that name).
 */
static const char *name_or_self(const char *running, const char *next, int group, char *buf,
                                size_t size)
{
    if (!changed(running, next))
        return "";
    if (next[0] != '\0')
        return next;
    if (group) {
        struct group *gr = getgrgid(getegid());
        snprintf(buf, size, "%s", gr != NULL ? gr->gr_name : "");
    } else {
        struct passwd *pw = getpwuid(geteuid());
        snprintf(buf, size, "%s", pw != NULL ? pw->pw_name : "");
    }
    return buf;
}

/* perm_hint - what to add to a failed chown or chmod: root is gone until a restart */
static const char *perm_hint(const char *why)
{
    int denied = strstr(why, "not permitted") != NULL || strstr(why, "ermission denied") != NULL;

    return geteuid() != 0 && denied ? " (the daemon no longer runs as root: this needs a restart)"
                                    : "";
}

/* in_list - is spec one of c's listen entries? */
static int in_list(const struct config *c, const char *spec)
{
    for (int i = 0; i < c->nlisten; i++)
        if (strcmp(c->listen[i], spec) == 0)
            return 1;
    return 0;
}

/* unix_perms_differ - do running and next differ in the unix_socket_* settings? */
static int unix_perms_differ(const struct config *running, const struct config *next)
{
    return running->unix_socket_mode != next->unix_socket_mode ||
           changed(running->unix_socket_owner, next->unix_socket_owner) ||
           changed(running->unix_socket_group, next->unix_socket_group);
}

/*
 * unix_perms_apply - give the unix: listeners that next keeps from running
 * the settings going from "from" to "to" (for an undo, the other way), at
 * most limit of them. Returns how many were done; on a failure err is set
 * and *failed is 1.
 */
static int unix_perms_apply(const struct config *running, const struct config *next,
                            const struct config *from, const struct config *to, int limit,
                            int *failed, char *err, size_t errlen)
{
    char ubuf[256], gbuf[256];
    const char *owner =
        name_or_self(from->unix_socket_owner, to->unix_socket_owner, 0, ubuf, sizeof(ubuf));
    const char *group =
        name_or_self(from->unix_socket_group, to->unix_socket_group, 1, gbuf, sizeof(gbuf));
    int done = 0;

    *failed = 0;
    for (int i = 0; i < next->nlisten && done < limit; i++) {
        const char *spec = next->listen[i];
        if (strncmp(spec, "unix:", 5) != 0 || !in_list(running, spec))
            continue;
        if (listener_set_perms(spec + 5, to->unix_socket_mode, owner, group, err, errlen) < 0) {
            *failed = 1;
            return done;
        }
        done++;
    }
    return done;
}

/* control_perms_apply - the kept control socket file gets to's mode and group */
static int control_perms_apply(const struct config *from, const struct config *to, char *err,
                               size_t errlen)
{
    char gbuf[256];
    const char *group =
        name_or_self(from->control_socket_group, to->control_socket_group, 1, gbuf, sizeof(gbuf));

    return listener_set_perms(to->control_socket, to->control_socket_mode, "", group, err, errlen);
}

/* bind_new - a bound, listening socket for spec, or -1 + err */
static int bind_new(const char *spec, int mode, const char *owner, const char *group, char *err,
                    size_t errlen)
{
    int fd = listener_bind(spec, mode, owner, group, err, errlen);

    if (fd >= 0 && listener_listen(fd, err, errlen) < 0) {
        if (strncmp(spec, "unix:", 5) == 0)
            unlink(spec + 5);
        close(fd);
        fd = -1;
    }
    return fd;
}

int sock_swap_prepare(const struct config *running, const struct config *next, struct sock_swap *sw,
                      char *err, size_t errlen)
{
    char why[400];
    int failed;

    sw->control_fd = sw->stats_fd = -1;
    sw->control_perms = sw->unix_perms = 0;
    if (unix_perms_differ(running, next)) {
        int done = unix_perms_apply(running, next, running, next, CONFIG_MAX_LISTEN, &failed, why,
                                    sizeof(why));
        if (failed) {
            int ignored;
            char uerr[400];
            /* the one that failed too: its chown may have worked and its chmod not */
            unix_perms_apply(running, next, next, running, done + 1, &ignored, uerr, sizeof(uerr));
            char names[80] = "";
            if (running->unix_socket_mode != next->unix_socket_mode)
                list_add(names, sizeof(names), "unix_socket_mode");
            if (changed(running->unix_socket_owner, next->unix_socket_owner))
                list_add(names, sizeof(names), "unix_socket_owner");
            if (changed(running->unix_socket_group, next->unix_socket_group))
                list_add(names, sizeof(names), "unix_socket_group");
            snprintf(err, errlen, "%s: %s%s", names, why, perm_hint(why));
            return -1;
        }
        sw->unix_perms = 1;
    }
    if (changed(running->control_socket, next->control_socket)) {
        if (next->control_socket[0] != '\0') {
            char spec[PATH_MAX + 8];
            snprintf(spec, sizeof(spec), "unix:%s", next->control_socket);
            /* owned by the daemon's user, as at start-up */
            sw->control_fd = bind_new(spec, next->control_socket_mode, next->user,
                                      next->control_socket_group, why, sizeof(why));
            if (sw->control_fd < 0) {
                snprintf(err, errlen, "control_socket: %s%s", why, perm_hint(why));
                goto fail;
            }
        }
    } else if (next->control_socket[0] != '\0' &&
               (running->control_socket_mode != next->control_socket_mode ||
                changed(running->control_socket_group, next->control_socket_group))) {
        if (control_perms_apply(running, next, why, sizeof(why)) < 0) {
            char names[80] = "";
            if (running->control_socket_mode != next->control_socket_mode)
                list_add(names, sizeof(names), "control_socket_mode");
            if (changed(running->control_socket_group, next->control_socket_group))
                list_add(names, sizeof(names), "control_socket_group");
            snprintf(err, errlen, "%s: %s%s", names, why, perm_hint(why));
            goto fail;
        }
        sw->control_perms = 1;
    }
    if (changed(running->stats_listen, next->stats_listen) && next->stats_listen[0] != '\0') {
        sw->stats_fd = bind_new(next->stats_listen, 0, "", "", why, sizeof(why));
        if (sw->stats_fd < 0) {
            snprintf(err, errlen, "stats_listen: %s%s", why, perm_hint(why)); /* port < 1024 */
            goto fail;
        }
    }
    return 0;

fail:
    sock_swap_abort(sw, running, next);
    return -1;
}

void sock_swap_abort(struct sock_swap *sw, const struct config *running, const struct config *next)
{
    char err[400];
    int failed;

    if (sw->unix_perms) {
        unix_perms_apply(running, next, next, running, CONFIG_MAX_LISTEN, &failed, err,
                         sizeof(err));
        if (failed)
            log_warn("reload refused, but the old unix socket settings: %s", err);
        sw->unix_perms = 0;
    }
    if (sw->control_perms) {
        if (control_perms_apply(next, running, err, sizeof(err)) < 0)
            log_warn("reload refused, but the old control socket settings: %s", err);
        sw->control_perms = 0;
    }
    if (sw->control_fd >= 0) {
        unlink(next->control_socket); /* bound by prepare: ours */
        close(sw->control_fd);
        sw->control_fd = -1;
    }
    if (sw->stats_fd >= 0) {
        close(sw->stats_fd);
        sw->stats_fd = -1;
    }
}

/* control_commit - the new control socket replaces the old one (or none) */
static void control_commit(struct sock_swap *sw, const struct config *running,
                           const struct config *next, const struct sock_swap_live *live)
{
    char err[256];

    if (!changed(running->control_socket, next->control_socket)) {
        if (sw->control_perms && *live->control != NULL)
            control_reconfigure(*live->control, next->control_socket);
        sw->control_perms = 0;
        return;
    }
    if (*live->control_listener != NULL) {
        listener_free(*live->control_listener); /* unlinks the old file: it is ours */
        *live->control_listener = NULL;
        log_info("control socket %s closed", running->control_socket);
    }
    if (sw->control_fd < 0) {
        if (*live->control != NULL)
            control_reconfigure(*live->control, NULL);
        return;
    }
    if (*live->control == NULL)
        *live->control = control_new(live->base, live->stats, next->control_socket);
    else
        control_reconfigure(*live->control, next->control_socket);
    struct listener *l = NULL;
    if (*live->control != NULL)
        l = listener_start(live->base, sw->control_fd, live->server, err, sizeof(err));
    else {
        snprintf(err, sizeof(err), "out of memory");
        close(sw->control_fd);
    }
    sw->control_fd = -1;
    if (l == NULL) {
        log_err("reload: control socket %s: %s", next->control_socket, err);
        return;
    }
    listener_set_accept(l, control_accept, *live->control);
    *live->control_listener = l;
    log_info("control socket on unix:%s", next->control_socket);
}

/* stats_commit - the new stats_listen socket replaces the old one (or none) */
static void stats_commit(struct sock_swap *sw, const struct config *running,
                         const struct config *next, const struct sock_swap_live *live)
{
    char err[256];

    if (!changed(running->stats_listen, next->stats_listen))
        return;
    int fd = sw->stats_fd;
    sw->stats_fd = -1;
    if (*live->stats_http == NULL) {
        if (fd < 0)
            return;
        *live->stats_http = stats_http_new(live->base, fd, live->stats, err, sizeof(err));
        if (*live->stats_http == NULL) {
            close(fd);
            log_err("reload: %s", err);
            return;
        }
    } else if (stats_http_reconfigure(*live->stats_http, fd, err, sizeof(err)) < 0) {
        close(fd);
        log_err("reload: %s", err);
        return;
    }
    if (running->stats_listen[0] != '\0')
        log_info("no metrics on http://%s/metrics any more", running->stats_listen + 5);
    if (fd >= 0)
        log_info("metrics on http://%s/metrics", next->stats_listen + 5);
}

void sock_swap_commit(struct sock_swap *sw, const struct config *running, const struct config *next,
                      const struct sock_swap_live *live)
{
    if (sw->unix_perms)
        log_info("unix sockets: mode %04o, owner %s, group %s", (unsigned)next->unix_socket_mode,
                 next->unix_socket_owner[0] ? next->unix_socket_owner : "(the daemon's)",
                 next->unix_socket_group[0] ? next->unix_socket_group : "(the daemon's)");
    sw->unix_perms = 0;
    control_commit(sw, running, next, live);
    stats_commit(sw, running, next, live);
}
