/*
 * listen_swap.c - the listeners a reload adds and removes (listen_swap.h).
 * Binding comes first and alone, so that a port in use, a live unix socket
 * of another server or a port the daemon may no longer bind (it dropped
 * root after start-up) refuses the reload before anything has changed.
 */
#include "listen_swap.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"

/* find - index of spec in c->listen, or -1 */
static int find(const struct config *c, const char *spec)
{
    for (int i = 0; i < c->nlisten; i++)
        if (strcmp(c->listen[i], spec) == 0)
            return i;
    return -1;
}

void listen_swap_abort(struct listen_swap *sw)
{
    for (int i = 0; i < sw->n; i++)
        if (sw->fd[i] >= 0) {
            close(sw->fd[i]);
            sw->fd[i] = -1;
        }
}

int listen_swap_prepare(const struct config *running, const struct config *next,
                        struct listen_swap *sw, char *err, size_t errlen)
{
    int added = 0;

    sw->n = next->nlisten;
    for (int i = 0; i < sw->n; i++) {
        sw->keep[i] = find(running, next->listen[i]);
        sw->fd[i] = -1;
    }
    for (int i = 0; i < sw->n; i++) {
        if (sw->keep[i] >= 0)
            continue;
        char berr[400];
        int fd = listener_bind(next->listen[i], next->unix_socket_mode, next->unix_socket_owner,
                               next->unix_socket_group, berr, sizeof(berr));
        if (fd >= 0 && listener_listen(fd, berr, sizeof(berr)) < 0) {
            close(fd);
            fd = -1;
        }
        if (fd < 0) {
            /* after dropping root a port below 1024 is out of reach until a restart */
            int unprivileged = geteuid() != 0 && strstr(berr, "ermission denied") != NULL;
            snprintf(err, errlen, "%s%s", berr,
                     unprivileged ? " (the daemon no longer runs as root: binding this needs "
                                    "a restart)"
                                  : "");
            listen_swap_abort(sw);
            return -1;
        }
        sw->fd[i] = fd;
        added++;
    }
    return added;
}

void listen_swap_commit(struct listen_swap *sw, const struct config *running, struct listener **ls,
                        int *n, struct event_base *base, struct policy_server *server)
{
    struct listener *next[CONFIG_MAX_LISTEN];
    int used[CONFIG_MAX_LISTEN] = {0};
    int nn = 0;

    for (int i = 0; i < sw->n; i++) {
        char name[160], err[256];
        if (sw->keep[i] >= 0 && sw->keep[i] < *n) {
            next[nn++] = ls[sw->keep[i]];
            used[sw->keep[i]] = 1;
            continue;
        }
        /* a slot per entry, NULL when it failed, so ls stays in the order of the list */
        struct listener *l = NULL;
        if (sw->fd[i] >= 0) {
            listener_describe(sw->fd[i], name, sizeof(name));
            l = listener_start(base, sw->fd[i], server, err, sizeof(err));
            if (l == NULL) /* not closed here: listener_start may have closed it already */
                log_err("reload: %s: %s", name, err);
            else
                log_info("listening on %s", name);
            sw->fd[i] = -1;
        }
        next[nn++] = l;
    }
    /* the connections they accepted belong to the server and go on */
    for (int i = 0; i < *n; i++)
        if (!used[i]) {
            log_info("no longer listening on %s", i < running->nlisten ? running->listen[i] : "?");
            listener_free(ls[i]);
        }
    for (int i = 0; i < nn; i++)
        ls[i] = next[i];
    *n = nn;
}
