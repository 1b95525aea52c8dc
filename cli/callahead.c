/*
 * callahead.c - the postmaster's command: ask a running callahead-policyd
 * through its control socket (control_socket in callahead.conf) to verify
 * an address, show or flush cached verdicts, or report its counters, in
 * the spirit of postqueue and
 * redis-cli: one request, the answer as "name=value" lines (or JSON), and
 * an exit status a script can test.
 *
 * Exit status: verify: 0 valid, 1 invalid (or malformed), 2 tempfail,
 * 3 unknown; other commands 0. Errors (sysexits.h): 64 usage, 65 the daemon
 * refused the request, 69 no daemon on the socket, 75 no answer in time or
 * a flush that reached only this daemon (Redis down),
 * 76 a reply that is not the protocol, 77 permission denied, 78 no control
 * socket configured.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "autoconf.h" /* PACKAGE_VERSION */
#include "config.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define CLI_MAX_REPLY (1 << 20) /* a reply is a few KiB; more is not our daemon */
#define CLI_MAX_REQUEST 1024    /* the daemon's CONTROL_MAX_LINE */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: callahead [-c config] [-s socket] [-t seconds] COMMAND\n"
        "  verify ADDRESS [--sender S] [--client IP] [--refresh] [--json]\n"
        "  show ADDRESS|DOMAIN|CLIENT-IP [--json]\n"
        "  flush ADDRESS|DOMAIN|--invalid|--all\n"
        "  stats [--json]\n"
        "exit: verify 0 valid, 1 invalid, 2 tempfail, 3 unknown; 64+ errors (see callahead(1))\n");
    exit(EX_USAGE);
}

/* word_ok - may s travel as one word of a control request? */
static int word_ok(const char *s)
{
    if (*s == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return 0;
    return 1;
}

/* ms_left - milliseconds until deadline (CLOCK_MONOTONIC), at least 0 */
static int ms_left(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
    return ms < 0 ? 0 : (int)ms;
}

/*
 * exchange - send request (with its LF) to the socket at path and read the
 * reply up to its empty line within timeout seconds. Returns the reply
 * (malloc'ed, NUL-terminated) or exits with the matching status.
 */
static char *exchange(const char *path, const char *request, int timeout)
{
    struct sockaddr_un sun;
    struct timespec deadline;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "callahead: %s: socket path too long\n", path);
        exit(EX_USAGE);
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        fprintf(stderr, "callahead: %s: %s%s\n", path, strerror(e),
                e == ENOENT || e == ECONNREFUSED ? " (is callahead-policyd running?)" : "");
        exit(e == EACCES || e == EPERM ? EX_NOPERM : EX_UNAVAILABLE);
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout;

    size_t len = strlen(request), off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; /* a refusal closes at once: its reason is in the reply */
        off += (size_t)n;
    }

    char *buf = malloc(CLI_MAX_REPLY + 1);
    size_t got = 0;
    if (buf == NULL) {
        fprintf(stderr, "callahead: out of memory\n");
        exit(EX_OSERR);
    }
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = ms_left(&deadline);
        int pr = left > 0 ? poll(&pfd, 1, left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            fprintf(stderr, "callahead: %s: no answer within %d s\n", path, timeout);
            exit(EX_TEMPFAIL);
        }
        ssize_t n = read(fd, buf + got, CLI_MAX_REPLY - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (got >= 2 && buf[got - 1] == '\n' && (got == 1 || buf[got - 2] == '\n'))
            break;
        if (got == CLI_MAX_REPLY) {
            fprintf(stderr, "callahead: %s: reply too long\n", path);
            exit(EX_PROTOCOL);
        }
    }
    close(fd);
    buf[got] = '\0';
    if (got < 2 || strncmp(buf, "status=", 7) != 0 || buf[got - 1] != '\n' ||
        buf[got - 2] != '\n') {
        fprintf(stderr, "callahead: %s: incomplete or garbled reply\n", path);
        exit(EX_PROTOCOL);
    }
    buf[got - 1] = '\0'; /* drop the empty line's LF */
    return buf;
}

/* value_of - the value of name in a reply, or NULL (points into reply; up to the LF) */
static const char *value_of(const char *reply, const char *name, size_t *vlen)
{
    size_t n = strlen(name);

    for (const char *p = reply; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1, *e = strchr(v, '\n');
            *vlen = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
    }
    return NULL;
}

static int is_number(const char *s, size_t len)
{
    size_t i = 0, digits = 0;

    if (i < len && s[i] == '-')
        i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < len && s[i] == '.' && digits > 0) {
        size_t frac = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
        if (frac == 0)
            return 0;
    }
    return digits > 0 && i == len && (len == 1 || s[0] != '0' || s[1] == '.');
}

/* print_reply - the reply's lines but "status=", as name=value lines or one JSON object */
static void print_reply(const char *reply, int json)
{
    int first = 1;

    if (json)
        fputs("{", stdout);
    for (const char *p = reply; *p;) {
        const char *e = strchr(p, '\n');
        size_t llen = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', llen);
        if (eq != NULL && strncmp(p, "status=", 7) != 0) {
            size_t nlen = (size_t)(eq - p), vlen = llen - nlen - 1;
            if (!json) {
                fwrite(p, 1, llen, stdout);
                fputc('\n', stdout);
            } else {
                printf("%s\"%.*s\": ", first ? "" : ", ", (int)nlen, p);
                if (is_number(eq + 1, vlen)) {
                    fwrite(eq + 1, 1, vlen, stdout);
                } else {
                    fputc('"', stdout);
                    for (size_t i = 0; i < vlen; i++) {
                        char ch = eq[1 + i];
                        if (ch == '"' || ch == '\\')
                            fputc('\\', stdout);
                        fputc(ch, stdout);
                    }
                    fputc('"', stdout);
                }
                first = 0;
            }
        }
        p += llen + (e ? 1 : 0);
    }
    if (json)
        fputs("}\n", stdout);
}

/* verdict_exit - the exit status for a verify reply */
static int verdict_exit(const char *reply)
{
    size_t len;
    const char *v = value_of(reply, "verdict", &len);

    if (v == NULL)
        return EX_PROTOCOL;
    if (len == 5 && strncmp(v, "valid", 5) == 0)
        return 0;
    if ((len == 7 && strncmp(v, "invalid", 7) == 0) ||
        (len == 9 && strncmp(v, "malformed", 9) == 0))
        return 1;
    if (len == 8 && strncmp(v, "tempfail", 8) == 0)
        return 2;
    if (len == 7 && strncmp(v, "unknown", 7) == 0)
        return 3;
    return EX_PROTOCOL;
}

/* append - add " word" to the request, or exit when it cannot travel */
static void append(char *req, size_t size, const char *prefix, const char *word)
{
    if (!word_ok(word)) {
        fprintf(stderr, "callahead: \"%s\": empty, or contains a space or control character\n",
                word);
        exit(EX_USAGE);
    }
    size_t len = strlen(req);
    int n = snprintf(req + len, size - len, "%s%s%s", len ? " " : "", prefix, word);
    if (n < 0 || (size_t)n >= size - len) {
        fprintf(stderr, "callahead: request too long\n");
        exit(EX_USAGE);
    }
}

int main(int argc, char **argv)
{
    const char *config_path = SYSCONFDIR "/callahead/callahead.conf";
    const char *sock = NULL;
    int timeout = 30, json = 0, is_verify = 0;
    char req[CLI_MAX_REQUEST + 2] = "";
    int opt;

    while ((opt = getopt(argc, argv, "+c:s:t:V")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 't':
            timeout = atoi(optarg);
            if (timeout < 1 || timeout > 3600)
                usage();
            break;
        case 'V':
            printf("callahead " PACKAGE_VERSION "\n");
            return 0;
        default:
            usage();
        }
    }
    if (optind >= argc)
        usage();
    const char *cmd = argv[optind++];
    if (strcmp(cmd, "verify") == 0) {
        const char *addr = NULL;
        is_verify = 1;
        append(req, sizeof(req), "", "verify");
        for (int i = optind; i < argc; i++) {
            if (strcmp(argv[i], "--sender") == 0 && i + 1 < argc)
                append(req, sizeof(req), "sender=", argv[++i]);
            else if (strcmp(argv[i], "--client") == 0 && i + 1 < argc)
                append(req, sizeof(req), "client=", argv[++i]);
            else if (strcmp(argv[i], "--refresh") == 0)
                append(req, sizeof(req), "", "refresh");
            else if (strcmp(argv[i], "--json") == 0)
                json = 1;
            else if (argv[i][0] == '-' || addr != NULL)
                usage();
            else
                addr = argv[i];
        }
        if (addr == NULL)
            usage();
        /* the address goes second: "verify ADDR options" */
        char rest[sizeof(req)];
        snprintf(rest, sizeof(rest), "%s", req + strlen("verify"));
        req[0] = '\0';
        append(req, sizeof(req), "", "verify");
        append(req, sizeof(req), "", addr);
        if (strlen(req) + strlen(rest) >= sizeof(req) - 1)
            usage();
        strcat(req, rest);
    } else if (strcmp(cmd, "show") == 0) {
        const char *name = NULL;
        for (int i = optind; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0)
                json = 1;
            else if (argv[i][0] == '-' || name != NULL)
                usage();
            else
                name = argv[i];
        }
        if (name == NULL)
            usage();
        append(req, sizeof(req), "", "show");
        append(req, sizeof(req), "", name);
    } else if (strcmp(cmd, "flush") == 0) {
        if (optind + 1 != argc)
            usage();
        const char *what = argv[optind];
        append(req, sizeof(req), "", "flush");
        if (strcmp(what, "--invalid") == 0) {
            append(req, sizeof(req), "", "invalid");
        } else if (strcmp(what, "--all") == 0) {
            append(req, sizeof(req), "", "all");
        } else if (what[0] == '-') {
            usage();
        } else {
            /* an address has an '@' that is not its first character; "@dom" is a domain */
            append(req, sizeof(req), "",
                   strchr(what, '@') != NULL && what[0] != '@' ? "address" : "domain");
            append(req, sizeof(req), "", what);
        }
    } else if (strcmp(cmd, "stats") == 0) {
        append(req, sizeof(req), "", "stats");
        for (int i = optind; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0)
                json = 1;
            else
                usage();
        }
    } else {
        usage();
    }

    struct config cfg;
    char *sock_copy = NULL;
    if (sock == NULL) {
        char err[512];
        if (config_load(config_path, &cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "callahead: %s (or name the socket with -s)\n", err);
            return EX_CONFIG;
        }
        if (cfg.control_socket[0] == '\0') {
            fprintf(stderr, "callahead: %s: control_socket is not set\n", config_path);
            config_free(&cfg);
            return EX_CONFIG;
        }
        sock = sock_copy = strdup(cfg.control_socket);
        config_free(&cfg);
        if (sock == NULL) {
            fprintf(stderr, "callahead: out of memory\n");
            return EX_OSERR;
        }
    }
    strcat(req, "\n");
    char *reply = exchange(sock, req, timeout);
    free(sock_copy);
    if (strncmp(reply, "status=ok\n", 10) != 0 && strcmp(reply, "status=ok") != 0) {
        size_t len;
        const char *why = value_of(reply, "error", &len);
        fprintf(stderr, "callahead: %.*s\n", why ? (int)len : 13, why ? why : "request failed");
        size_t plen;
        int rc = EX_DATAERR;
        if (why && len == 17 && strncmp(why, "permission denied", 17) == 0)
            rc = EX_NOPERM;
        else if (value_of(reply, "partial", &plen) != NULL)
            rc = EX_TEMPFAIL; /* a flush that reached only this daemon */
        free(reply);
        return rc;
    }
    print_reply(reply, json);
    int rc = is_verify ? verdict_exit(reply) : 0;
    free(reply);
    return rc;
}
