/*
 * listen_swap.h - apply a changed "listen" list on SIGHUP without dropping
 * connections. In two steps, so that a reload stays all or nothing: prepare
 * binds every address that is new (before anything else changes; one that
 * cannot be bound refuses the reload and closes what it bound), commit then
 * starts accepting on them and closes the listeners no longer listed, whose
 * established connections go on to their end.
 */
#ifndef CALLAHEAD_LISTEN_SWAP_H
#define CALLAHEAD_LISTEN_SWAP_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct listener;
struct policy_server;

struct listen_swap {
    int n;                       /* entries of the next list */
    int keep[CONFIG_MAX_LISTEN]; /* index of the running listener kept, or -1: new */
    int fd[CONFIG_MAX_LISTEN];   /* the bound socket of a new entry, else -1 */
};

/*
 * listen_swap_prepare - bind and listen on each entry of next->listen that
 * running->listen does not have (the same spelling: a listener is kept when
 * its spec is unchanged). Returns how many are new, or -1 + err (nothing
 * left bound). unix: sockets get next's unix_socket_* settings.
 */
int listen_swap_prepare(const struct config *running, const struct config *next,
                        struct listen_swap *sw, char *err, size_t errlen);

/* listen_swap_abort - close what prepare bound: the reload was refused later */
void listen_swap_abort(struct listen_swap *sw);

/*
 * listen_swap_commit - start the new listeners and free the ones not kept;
 * ls/n (the running listeners, in the order of running->listen) become the
 * next list's. A listener that cannot start (out of memory) is logged and
 * its slot left NULL.
 */
void listen_swap_commit(struct listen_swap *sw, const struct config *running, struct listener **ls,
                        int *n, struct event_base *base, struct policy_server *server);

#endif
