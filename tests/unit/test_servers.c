/*
 * test_servers.c - the shared plumbing behind the unit tests' real servers
 * (dnsmasq, redis-server, smtp_testserver, smtp-sink): free loopback ports,
 * fork/exec with PR_SET_PDEATHSIG so a crashed test leaves nothing behind,
 * readiness polling with a deadline, stop by pid, and a dnsmasq starter.
 * test_dns.c, test_backend_smtp.c and test_cache_redis.c each had their own
 * copy of this; see test_servers.h for the interface.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "test_servers.h"

#define DNSMASQ_TRIES 3        /* ports tried: another process may grab one in between */
#define DNSMASQ_WAIT_MS 5000   /* until it answers ready.test */
#define DNSMASQ_BASE_ARGS 16   /* options ts_dnsmasq_start() adds itself, and the NULL */
#define DNSMASQ_MAX_EXTRA 1000 /* a sanity limit on the caller's list */
#define DNS_PROBE_TIMEOUT_US 100000

/* now_ms - monotonic milliseconds, for deadlines */
static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* loopback - 127.0.0.1:port as a sockaddr_in */
static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

/* ts_free_port - bind port 0 on loopback and give back what the kernel chose */
int ts_free_port(void)
{
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

/*
 * ts_free_port_udp_tcp - the kernel picks a UDP port; it counts only when
 * the same TCP port binds too (dnsmasq needs both), so try a few times
 */
int ts_free_port_udp_tcp(void)
{
    for (int tries = 0; tries < 20; tries++) {
        struct sockaddr_in sin = loopback(0);
        socklen_t len = sizeof(sin);
        int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0), port = -1;

        if (u >= 0 && t >= 0 && bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
            getsockname(u, (struct sockaddr *)&sin, &len) == 0 &&
            bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0)
            port = ntohs(sin.sin_port);
        if (u >= 0)
            close(u);
        if (t >= 0)
            close(t);
        if (port > 0)
            return port;
    }
    return -1;
}

/* redirect - point fd at the file path (append); the child only, errors ignored */
static void redirect(int fd, const char *path)
{
    int f = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);

    if (f < 0)
        return;
    dup2(f, fd);
    if (f != fd)
        close(f);
}

/* ts_spawn - fork/exec; the child dies with us (see test_servers.h) */
pid_t ts_spawn(char *const argv[], const char *out_log, const char *err_log)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0)
        return pid; /* the child's pid, or -1 */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the test died before prctl: no signal will come */
        _exit(127);
    if (out_log != NULL)
        redirect(STDOUT_FILENO, out_log);
    if (err_log != NULL) {
        if (out_log != NULL && strcmp(out_log, err_log) == 0)
            dup2(STDOUT_FILENO, STDERR_FILENO); /* one file, one offset: lines stay in order */
        else
            redirect(STDERR_FILENO, err_log);
    }
    execvp(argv[0], argv);
    _exit(127);
}

/* ts_wait - poll probe until ready, the child exits, or the deadline */
int ts_wait(pid_t *pid, ts_probe_fn probe, void *arg, int timeout_ms, int interval_ms)
{
    long end = now_ms() + timeout_ms;

    for (;;) {
        if (probe(arg) == 0)
            return 0;
        if (*pid > 0 && waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = -1; /* reaped: nothing for ts_stop() to kill */
            return -1;
        }
        if (now_ms() >= end)
            return -1;
        usleep((useconds_t)interval_ms * 1000);
    }
}

/* ts_tcp_probe - one blocking connect to 127.0.0.1:port (loopback answers at once) */
int ts_tcp_probe(int port)
{
    struct sockaddr_in sin = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0), r;

    if (fd < 0)
        return -1;
    r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    close(fd);
    return r == 0 ? 0 : -1;
}

/* tcp_probe - ts_probe_fn adapter: arg points to the port */
static int tcp_probe(void *arg)
{
    return ts_tcp_probe(*(const int *)arg);
}

int ts_wait_tcp(pid_t *pid, int port, int timeout_ms)
{
    return ts_wait(pid, tcp_probe, &port, timeout_ms, 10);
}

/* ts_stop_sig - signal, wait with a timeout, then SIGKILL; always reaps */
int ts_stop_sig(pid_t *pid, int sig, int timeout_ms)
{
    long end = now_ms() + timeout_ms;
    int killed = 1;

    if (*pid <= 0)
        return -1;
    kill(*pid, sig);
    if (sig != SIGKILL)
        kill(*pid, SIGCONT); /* a SIGSTOPped (tarpit) server must run to act on sig */
    for (;;) {
        pid_t r = waitpid(*pid, NULL, WNOHANG);
        if (r == *pid || (r < 0 && errno != EINTR)) { /* gone (or not ours any more) */
            killed = 0;
            break;
        }
        if (now_ms() >= end)
            break;
        usleep(10000);
    }
    if (killed) {
        kill(*pid, SIGKILL);
        while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    *pid = -1;
    return killed;
}

int ts_stop(pid_t *pid)
{
    return ts_stop_sig(pid, SIGTERM, TS_STOP_MS);
}

/*
 * ts_dns_probe - a hand-made query (id 0x1234, RD, ready.test IN A); any
 * reply of header size with our id will do: the server is up
 */
int ts_dns_probe(int port)
{
    static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0, 0,
                                      0,    0,    5,    'r',  'e', 'a', 'd', 'y', 4, 't',
                                      'e',  's',  't',  0,    0,   1,   0,   1};
    struct sockaddr_in sin = loopback(port);
    struct timeval tv = {0, DNS_PROBE_TIMEOUT_US};
    unsigned char buf[512];
    int fd = socket(AF_INET, SOCK_DGRAM, 0), ok = -1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)sizeof(q) &&
        recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12 && buf[1] == 0x34)
        ok = 0;
    close(fd);
    return ok;
}

/* dns_probe - ts_probe_fn adapter: arg points to the port */
static int dns_probe(void *arg)
{
    return ts_dns_probe(*(const int *)arg);
}

/* dnsmasq_try - one start of dnsmasq on port; 0 when it answers */
static int dnsmasq_try(const char *dir, const char *const extra[], size_t nextra, int port,
                       pid_t *pid)
{
    char portopt[32], pidopt[4200], logf[4200];
    const char **argv = calloc(DNSMASQ_BASE_ARGS + nextra, sizeof(*argv));
    size_t n = 0;
    int ok;

    if (argv == NULL)
        return -1;
    snprintf(portopt, sizeof(portopt), "--port=%d", port);
    snprintf(pidopt, sizeof(pidopt), "--pid-file=%s/dnsmasq.pid", dir);
    snprintf(logf, sizeof(logf), "%s/dnsmasq.log", dir);
    argv[n++] = TS_DNSMASQ;
    /* not --no-daemon: in that mode dnsmasq serves TCP in its main process and
     * stops answering UDP while c-ares keeps its TCP connection open */
    argv[n++] = "--keep-in-foreground";
    argv[n++] = portopt;
    argv[n++] = "--listen-address=127.0.0.1";
    argv[n++] = "--bind-interfaces";
    argv[n++] = "--no-resolv";
    argv[n++] = "--no-hosts";
    argv[n++] = "--no-poll";
    argv[n++] = "--conf-file=/dev/null";
    argv[n++] = pidopt;
    if (geteuid() == 0) { /* stay root: a credential change would clear PDEATHSIG */
        argv[n++] = "--user=root";
        argv[n++] = "--group=root";
    }
    argv[n++] = "--local=/test/"; /* .test is ours: unknown names there are NXDOMAIN */
    argv[n++] = "--host-record=ready.test,127.0.0.1"; /* what ts_dns_probe() asks */
    for (size_t i = 0; i < nextra; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    *pid = ts_spawn((char *const *)argv, logf, logf);
    free(argv);
    if (*pid < 0)
        return -1;
    ok = ts_wait(pid, dns_probe, &port, DNSMASQ_WAIT_MS, 50);
    if (ok != 0) /* exited (port taken, a bad option: see the log) or silent */
        ts_stop(pid);
    return ok;
}

/* ts_dnsmasq_start - count the caller's options, then try a few free ports */
int ts_dnsmasq_start(const char *dir, const char *const extra[], pid_t *pid, int *port)
{
    size_t nextra = 0;

    *pid = -1;
    *port = -1;
    while (extra != NULL && extra[nextra] != NULL)
        if (++nextra > DNSMASQ_MAX_EXTRA)
            return -1;
    for (int tries = 0; tries < DNSMASQ_TRIES; tries++) {
        *port = ts_free_port_udp_tcp();
        if (*port <= 0)
            return -1;
        if (dnsmasq_try(dir, extra, nextra, *port, pid) == 0)
            return 0;
    }
    return -1;
}

int ts_slapd_prepare(const char *dir, const char *ldif, const char *extra)
{
    char path[512], db[512], log[512];

    snprintf(db, sizeof(db), "%s/db", dir);
    if (mkdir(db, 0700) < 0 && errno != EEXIST)
        return -1;
    snprintf(path, sizeof(path), "%s/slapd.conf", dir);
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
        return -1;
    fprintf(fp,
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/nis.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            "include /etc/ldap/schema/misc.schema\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "pidfile %s/slapd.pid\n"
            "%s\n"
            "database mdb\n"
            "maxsize 10485760\n"
            "suffix \"" TS_SLAPD_SUFFIX "\"\n"
            "rootdn \"" TS_SLAPD_ROOTDN "\"\n"
            "rootpw " TS_SLAPD_ROOTPW "\n"
            "directory %s\n"
            "index objectClass,mail eq\n"
            "access to * by * read\n",
            dir, extra != NULL ? extra : "", db);
    if (fclose(fp) != 0)
        return -1;
    snprintf(log, sizeof(log), "%s/slapadd.log", dir);
    char *const argv[] = {TS_SLAPADD, "-q", "-f", path, "-l", (char *)ldif, NULL};
    pid_t pid = ts_spawn(argv, log, log);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return -1;
    return 0;
}

int ts_slapd_start(const char *dir, int port, pid_t *pid)
{
    char conf[512], url[64], log[512];

    snprintf(conf, sizeof(conf), "%s/slapd.conf", dir);
    snprintf(url, sizeof(url), "ldap://127.0.0.1:%d/", port);
    snprintf(log, sizeof(log), "%s/slapd.log", dir);
    /* -d 0: stay in the foreground, so that the pid is slapd's own */
    char *const argv[] = {TS_SLAPD, "-d", "0", "-f", conf, "-h", url, NULL};
    *pid = ts_spawn(argv, log, log);
    if (*pid < 0)
        return -1;
    if (ts_wait_tcp(pid, port, 10000) < 0) {
        ts_stop(pid);
        return -1;
    }
    return 0;
}
