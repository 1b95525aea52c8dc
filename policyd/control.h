/*
 * control.h - the control socket: a UNIX socket on which the "callahead"
 * command asks the running daemon to verify an address or report its
 * counters (the commands are in control_cmd.h).
 *
 * Anyone who can talk to it can probe addresses and read the counters, so
 * two locks guard it: the socket file's mode (control_socket_mode, 0600 by
 * default) and the peer's credentials from the kernel (SO_PEERCRED): only
 * root, the daemon's own user, and, when the mode lets the file's group
 * write, members of that group by their primary group, are served; anyone
 * else gets an error line and is disconnected.
 *
 * Each connection is a small state machine on the daemon's one event loop:
 *   READING  waiting for a request line (CONTROL_TIMEOUT_S, CONTROL_MAX_LINE)
 *   WORKING  a command is running (a lookup: bounded by the answer budget)
 *   WRITING  the reply drains; then back to READING
 *   CLOSING  an error reply drains; then
 *   LINGER   input is discarded until the client closes (at most 2 s), so
 *            the client reads the error instead of a connection reset
 * A malformed request gets an error reply; a line over the limit gets an
 * error reply and the connection is closed. Neither touches policy traffic.
 */
#ifndef CALLAHEAD_CONTROL_H
#define CALLAHEAD_CONTROL_H

#include <sys/types.h>

struct event_base;
struct stats_env;
struct control_server;

#define CONTROL_MAX_CONNS 16 /* control clients at once; more are refused */
#define CONTROL_TIMEOUT_S 30 /* to send a request line, and to take a reply */

/*
 * control_new - a control server for the socket file path (already bound
 * and listening by main.c; path is only read here to learn its group and
 * mode). env must outlive it. NULL on ENOMEM.
 */
struct control_server *control_new(struct event_base *base, struct stats_env *env,
                                   const char *path);

/*
 * control_reconfigure - read the group and mode of the socket file at path
 * again: a reload moved the control socket there, or gave it another
 * control_socket_mode or control_socket_group. Who may connect is decided
 * from now on by that file; connections already accepted go on to their end.
 * path NULL: no socket any more (only root and the daemon's user are served
 * on connections still open).
 */
void control_reconfigure(struct control_server *cs, const char *path);

/* control_accept - a listener_accept_fn: take over fd (closed on refusal) */
void control_accept(void *arg, int fd, const char *peer);

/* control_free - close every control connection; their commands are cancelled */
void control_free(struct control_server *cs);

#endif
