/*
 * milter_bench.c - RCPT latency through callahead-milter, speaking the milter
 * protocol (version 6) as an MTA does: one session, option negotiation,
 * connect, HELO, MAIL, then N RCPT commands, each timed from the write of
 * the command to its reply. With -q the same recipients go straight to
 * policyd over the policy protocol on one connection, so the difference of
 * the two p50s is the milter's own cost. Blocking I/O, one connection: the
 * point is latency, not load.
 *
 * usage: milter_bench -p MILTER_PORT | -q POLICYD_PORT [-n N] [-w WARMUP] -a ADDR
 * Prints "n=N p50_us=.. p90_us=.. p99_us=.. max_us=.." and the first reply.
 * Exit 1 on any protocol error or unexpected reply.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;

static void die(const char *what)
{
    fprintf(stderr, "milter_bench: %s\n", what);
    exit(1);
}

static long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void connect_to(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        die("connect failed");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void write_all(const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            die("write failed");
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            die("the peer closed the connection");
        p += n;
        len -= (size_t)n;
    }
}

/* milter packet: 4-byte length (command byte included), command, data */
static void send_cmd(char cmd, const void *data, size_t len)
{
    uint32_t nlen = htonl((uint32_t)(len + 1));
    char hdr[5];

    memcpy(hdr, &nlen, 4);
    hdr[4] = cmd;
    write_all(hdr, 5);
    if (len)
        write_all(data, len);
}

/* recv_reply - one reply packet; its command byte, data (NUL-terminated) in buf */
static char recv_reply(char *buf, size_t size)
{
    uint32_t nlen;
    char cmd;

    read_all(&nlen, 4);
    nlen = ntohl(nlen);
    if (nlen == 0 || nlen > size)
        die("bad reply length");
    read_all(&cmd, 1);
    read_all(buf, nlen - 1);
    buf[nlen - 1] = '\0';
    return cmd;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int mport = 0, qport = 0, n = 10000, warmup = 1000, ch;
    const char *addr = NULL;
    char buf[65536], first[512] = "";

    while ((ch = getopt(argc, argv, "p:q:n:w:a:")) != -1) {
        switch (ch) {
        case 'p':
            mport = atoi(optarg);
            break;
        case 'q':
            qport = atoi(optarg);
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'w':
            warmup = atoi(optarg);
            break;
        case 'a':
            addr = optarg;
            break;
        default:
            die("usage: milter_bench -p MILTER_PORT | -q POLICYD_PORT [-n N] [-w W] -a ADDR");
        }
    }
    if ((mport == 0) == (qport == 0) || addr == NULL || n < 1 || warmup < 0)
        die("usage: milter_bench -p MILTER_PORT | -q POLICYD_PORT [-n N] [-w W] -a ADDR");
    long long *lat = calloc((size_t)n, sizeof(*lat));
    if (lat == NULL)
        die("out of memory");

    char req[1024];
    size_t reqlen;
    if (mport) {
        connect_to(mport);
        uint32_t neg[3] = {htonl(6), htonl(0x1ff), htonl(0x1fffff)};
        send_cmd('O', neg, sizeof(neg));
        if (recv_reply(buf, sizeof(buf)) != 'O')
            die("option negotiation failed");
        /* connect: host name, family '4', port, address */
        char c[64];
        size_t cl = 0;
        memcpy(c,
               "client.bench\0"
               "4",
               14);
        cl = 14;
        c[cl++] = 0x30;
        c[cl++] = 0x39;
        memcpy(c + cl, "127.0.0.1", 10);
        cl += 10;
        send_cmd('C', c, cl);
        if (recv_reply(buf, sizeof(buf)) != 'c')
            die("connect not continued");
        send_cmd('H', "client.bench", 13);
        if (recv_reply(buf, sizeof(buf)) != 'c')
            die("helo not continued");
        send_cmd('M', "<sender@client.bench>", 22);
        if (recv_reply(buf, sizeof(buf)) != 'c')
            die("mail not continued");
        reqlen = (size_t)snprintf(req, sizeof(req), "<%s>", addr) + 1;
    } else {
        connect_to(qport);
        reqlen = (size_t)snprintf(req, sizeof(req),
                                  "request=smtpd_access_policy\nprotocol_state=RCPT\n"
                                  "protocol_name=SMTP\nclient_address=127.0.0.1\n"
                                  "client_name=client.bench\nhelo_name=client.bench\n"
                                  "sender=sender@client.bench\nrecipient=%s\nqueue_id=\n\n",
                                  addr);
    }

    for (int i = -warmup; i < n; i++) {
        long long t0 = now_ns();
        if (mport) {
            send_cmd('R', req, reqlen);
            char r = recv_reply(buf, sizeof(buf));
            if (r != 'c' && r != 'y' && r != 't')
                die("unexpected RCPT reply");
            if (first[0] == '\0')
                snprintf(first, sizeof(first), "%c %.400s", r, r == 'y' ? buf : "");
        } else {
            write_all(req, reqlen);
            size_t len = 0;
            for (;;) {
                ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (k <= 0)
                    die("policyd closed the connection");
                len += (size_t)k;
                buf[len] = '\0';
                if (len >= 2 && buf[len - 1] == '\n' && buf[len - 2] == '\n')
                    break;
            }
            if (first[0] == '\0')
                snprintf(first, sizeof(first), "%.*s", (int)strcspn(buf, "\n"), buf);
        }
        if (i >= 0)
            lat[i] = now_ns() - t0;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp_ll);
    printf("n=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f first=[%s]\n", n,
           lat[n / 2] / 1000.0, lat[n * 9 / 10] / 1000.0, lat[n * 99 / 100] / 1000.0,
           lat[n - 1] / 1000.0, first);
    free(lat);
    close(fd);
    return 0;
}
