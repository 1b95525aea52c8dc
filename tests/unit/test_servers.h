/*
 * test_servers.h - real servers for the unit tests: free loopback ports,
 * fork/exec of a server that dies with the test (PR_SET_PDEATHSIG), waiting
 * until it is ready, stopping it by pid, and dnsmasq serving a private .test
 * zone. One copy of this plumbing instead of one per test file; the zone
 * data and what "ready" means for a given server stay in the test files.
 *
 * Everything returns 0 / -1 (or a pid / port / -1) and never asserts, so the
 * tests keep their own Criterion assertions and messages. Only 127.0.0.1 is
 * ever bound or contacted.
 */
#ifndef TEST_SERVERS_H
#define TEST_SERVERS_H

#include <sys/types.h>

#define TS_DNSMASQ "/usr/sbin/dnsmasq"
#define TS_STOP_MS 3000 /* SIGTERM grace before SIGKILL in ts_stop() */

/* ts_free_port - a loopback TCP port nobody listens on right now, or -1 */
int ts_free_port(void);

/* ts_free_port_udp_tcp - a loopback port free for both UDP and TCP right now, or -1 */
int ts_free_port_udp_tcp(void);

/*
 * ts_spawn - fork/exec argv[0] (searched in PATH when it has no slash) with
 * argv; the child gets SIGKILL when the test process dies. out_log and
 * err_log, when not NULL, receive the child's stdout and stderr (appended,
 * created 0600; the same path for both shares one file). Returns the pid, or
 * -1 when fork failed; an exec failure shows as the child exiting with 127.
 */
pid_t ts_spawn(char *const argv[], const char *out_log, const char *err_log);

/* ts_probe_fn - a readiness check: 0 when the server is ready */
typedef int (*ts_probe_fn)(void *arg);

/*
 * ts_wait - call probe(arg) every interval_ms until it returns 0 (0), the
 * child *pid exits (-1; it is reaped and *pid set to -1), or timeout_ms pass
 * (-1, *pid unchanged). pid may point to -1 when there is no child to watch.
 */
int ts_wait(pid_t *pid, ts_probe_fn probe, void *arg, int timeout_ms, int interval_ms);

/* ts_tcp_probe - 0 when 127.0.0.1:port accepts a TCP connection */
int ts_tcp_probe(int port);

/* ts_wait_tcp - ts_wait() with ts_tcp_probe(port), polling every 10 ms */
int ts_wait_tcp(pid_t *pid, int port, int timeout_ms);

/*
 * ts_stop_sig - send sig to *pid (and SIGCONT, so a stopped one can act on
 * it), wait up to timeout_ms for it to exit, then SIGKILL; always reaps and
 * sets *pid to -1. Nothing happens when *pid <= 0. Returns 0 when it exited
 * within the timeout, 1 when it had to be killed, -1 when there was none.
 */
int ts_stop_sig(pid_t *pid, int sig, int timeout_ms);

/* ts_stop - ts_stop_sig(pid, SIGTERM, TS_STOP_MS) */
int ts_stop(pid_t *pid);

/* ts_dns_probe - one raw UDP query for ready.test A to 127.0.0.1:port; 0 when answered */
int ts_dns_probe(int port);

/*
 * ts_dnsmasq_start - dnsmasq on 127.0.0.1, authoritative for .test (unknown
 * names there are NXDOMAIN, nothing is forwarded), with ready.test A
 * 127.0.0.1 for the readiness probe plus the options in extra (NULL-terminated,
 * may be NULL): the caller's zone. Pid file and stdout/stderr log go to dir.
 * Tries up to three free ports; on success sets *pid and *port and returns 0
 * once it answers; -1 (with *pid -1) when it does not start (see
 * dir/dnsmasq.log).
 */
int ts_dnsmasq_start(const char *dir, const char *const extra[], pid_t *pid, int *port);

#define TS_SLAPD "/usr/sbin/slapd"
#define TS_SLAPADD "/usr/sbin/slapadd"
#define TS_SLAPD_SUFFIX "dc=example,dc=test"
#define TS_SLAPD_ROOTDN "cn=admin,dc=example,dc=test"
#define TS_SLAPD_ROOTPW "secret"

/*
 * ts_slapd_prepare - a private OpenLDAP directory in dir: slapd.conf (mdb
 * database in dir/db, suffix TS_SLAPD_SUFFIX, root TS_SLAPD_ROOTDN with
 * TS_SLAPD_ROOTPW, anonymous read, the schemas users.ldif needs, plus the
 * global lines in extra, e.g. "idletimeout 1", may be NULL), loaded offline
 * from ldif with slapadd. 0, or -1 (see dir/slapadd.log).
 */
int ts_slapd_prepare(const char *dir, const char *ldif, const char *extra);

/*
 * ts_slapd_start - slapd in the foreground (so *pid is slapd itself, for
 * SIGSTOP and SIGKILL) on ldap://127.0.0.1:port/ for the directory
 * ts_slapd_prepare made in dir; 0 once it accepts connections, -1 when it
 * did not start (see dir/slapd.log). Stop it with ts_stop().
 */
int ts_slapd_start(const char *dir, int port, pid_t *pid);

#endif
