/*
 * ldap_tls.h - the TLS handshake of an LDAP connection, off the event loop.
 *
 * libldap 2.5 has no non-blocking TLS handshake: ldap_install_tls and
 * ldap_start_tls_s block until the handshake ends. So the pool connects
 * the socket on the loop as for plain LDAP, then hands it to one of two
 * worker threads that does ONLY ldap_init_fd and the handshake (the
 * StartTLS exchange first for start_tls), bounded by the time left of
 * connect_timeout: SO_RCVTIMEO/SO_SNDTIMEO on the socket (put in blocking
 * mode for the worker), LDAP_OPT_NETWORK_TIMEOUT and LDAP_OPT_TIMEOUT, and,
 * since libldap does not always keep those, shutdown(2) of the socket by
 * ldap_tls_abandon when the loop gives up at the deadline. The worker switches the socket back to
 * non-blocking and hands the LDAP handle (or a one-line reason) back through a pipe watched by the
 * loop. The workers never touch the event base or a pool.
 *
 * Ownership: from ldap_tls_start until done runs, the job owns the socket;
 * on success done receives the LDAP handle (which owns the socket), on
 * failure the socket is already closed. ldap_tls_abandon (the connection
 * gave up: its deadline, its pool freed) means done will never run; the
 * loop frees the job, and closes what the worker produced, when the
 * worker's result arrives.
 */
#ifndef CALLAHEAD_LDAP_TLS_H
#define CALLAHEAD_LDAP_TLS_H

#include <ldap.h>

struct event_base;
struct ldap_tls_job; /* opaque */

/* how TLS starts on the connected socket */
enum ldap_tls_mode { LDAP_TLS_LDAPS, LDAP_TLS_STARTTLS };

/* ldap_tls_done_fn - on the loop: ld (yours) or NULL with why */
typedef void (*ldap_tls_done_fn)(LDAP *ld, const char *why, void *arg);

/*
 * ldap_tls_start - hand fd (connected, non-blocking; the job owns it from
 * now on, even on failure) to a worker. uri for ldap_init_fd and the
 * certificate name check; ca_file ("" or NULL: the system's), require_cert
 * (1: the chain and the name must check, 0: not checked), timeout_ms the
 * whole bound. NULL when nothing could be started (fd is closed then).
 */
struct ldap_tls_job *ldap_tls_start(struct event_base *base, int fd, const char *uri,
                                    enum ldap_tls_mode mode, const char *ca_file, int require_cert,
                                    int timeout_ms, ldap_tls_done_fn done, void *arg);

/*
 * ldap_tls_abandon - done will not run; the socket is shut down so that a
 * worker blocked on it fails at once, and the job cleans up on the loop
 * when the worker answers
 */
void ldap_tls_abandon(struct ldap_tls_job *j);

#endif
