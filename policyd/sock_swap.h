/*
 * sock_swap.h - apply on SIGHUP what a reload changes about the daemon's
 * sockets other than the listen list (listen_swap.h): the mode, owner and
 * group of the unix: listening sockets that stay open, the control socket
 * (control_socket, control_socket_mode, control_socket_group) and the
 * Prometheus endpoint (stats_listen).
 *
 * In the same two steps as listen_swap, so a reload stays all or nothing:
 * prepare binds the new control and stats sockets and applies the new file
 * permissions (anything that can fail: a path or port in use, a chown the
 * daemon may no longer do because it dropped root), and undoes what it did
 * when a later step fails; abort undoes it after prepare succeeded; commit
 * only swaps what prepare made ready and cannot fail. Connections accepted
 * on a socket that is replaced go on to their end; the socket itself closes.
 */
#ifndef CALLAHEAD_SOCK_SWAP_H
#define CALLAHEAD_SOCK_SWAP_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct listener;
struct control_server;
struct policy_server;
struct stats_env;
struct stats_http;

struct sock_swap {
    int control_fd;    /* the new control socket, bound and listening, or -1 */
    int stats_fd;      /* the new stats_listen socket, bound and listening, or -1 */
    int control_perms; /* the kept control socket file got next's mode and group */
    int unix_perms;    /* the kept unix: listeners' files got next's unix_socket_* */
};

/* The running objects commit changes; main.c owns them. */
struct sock_swap_live {
    struct event_base *base;
    struct policy_server *server;
    struct stats_env *stats;
    struct listener **control_listener; /* NULL when no control socket is open */
    struct control_server **control;    /* kept while its connections last */
    struct stats_http **stats_http;
};

/*
 * sock_swap_prepare - make ready every socket change from running to next.
 * Returns 0, or -1 with err naming the parameter that cannot be applied and
 * why; then nothing has changed.
 */
int sock_swap_prepare(const struct config *running, const struct config *next, struct sock_swap *sw,
                      char *err, size_t errlen);

/* sock_swap_abort - undo a successful prepare: the reload was refused later */
void sock_swap_abort(struct sock_swap *sw, const struct config *running, const struct config *next);

/*
 * sock_swap_commit - serve the new control and stats sockets and close the
 * old ones; running is still the configuration in force, next the new one.
 */
void sock_swap_commit(struct sock_swap *sw, const struct config *running, const struct config *next,
                      const struct sock_swap_live *live);

#endif
