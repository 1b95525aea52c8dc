/*
 * listener.h - the sockets policyd listens on: "inet:HOST:PORT",
 * "inet:[IPV6]:PORT" or "unix:PATH", created before privileges are dropped
 * (so a UNIX socket can live in Postfix's private/ directory with the mode
 * and owner Postfix's smtpd needs) and kept across SIGHUP reloads (a reload
 * adds and removes listeners: listen_swap.c).
 */
#ifndef CALLAHEAD_LISTENER_H
#define CALLAHEAD_LISTENER_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct policy_server;
struct listener;

/*
 * listener_bind - create and bind spec; listener_listen starts listening.
 * For unix: an existing socket file is removed first only when nothing
 * answers on it (a live one is an error: another server owns it), then
 * mode/owner/group (owner, group: "" = keep) are applied. Returns the fd or -1 with err
 * set. An inet port 0 binds any free port: listener_describe shows which.
 */
int listener_bind(const char *spec, int mode, const char *owner, const char *group, char *err,
                  size_t errlen);

/*
 * listener_set_perms - chown (owner, group: "" = keep) then chmod the UNIX
 * socket file path; a reload uses it to apply changed unix_socket_* and
 * control_socket_* settings to a socket that stays open. 0, or -1 with err
 * set (an unknown name, or EPERM once the daemon no longer runs as root).
 */
int listener_set_perms(const char *path, int mode, const char *owner, const char *group, char *err,
                       size_t errlen);

/*
 * listener_listen - start accepting connections on a bound fd. main.c calls
 * it only once every socket is bound and has its final owner and mode, so a
 * client that can connect to one listener finds all of them ready.
 */
int listener_listen(int fd, char *err, size_t errlen);

/* listener_describe - "inet:127.0.0.1:10040" / "unix:/path" for the bound fd */
void listener_describe(int fd, char *buf, size_t size);

/* listener_start - accept on fd into policy_conn_new; NULL + err on failure */
struct listener *listener_start(struct event_base *base, int fd, struct policy_server *s, char *err,
                                size_t errlen);

/*
 * listener_set_accept - hand accepted sockets to fn instead of
 * policy_conn_new (the control socket uses this); fn owns fd.
 */
typedef void (*listener_accept_fn)(void *arg, int fd, const char *peer);
void listener_set_accept(struct listener *l, listener_accept_fn fn, void *arg);

/*
 * listener_free - stop accepting and close the socket; a UNIX socket's file
 * is unlinked only when it is still the one this listener created (same
 * device and inode), so a server that took the path over keeps it.
 */
void listener_free(struct listener *l);

#endif
