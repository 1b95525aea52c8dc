/*
 * smtp_testserver.c - a scripted SMTP server for callout tests.
 *
 * Real next hops (Postfix, smtp-sink) cannot answer per address, send a
 * multi-line reply on demand, split a reply into single bytes, tarpit, send
 * garbage or hang up at a chosen step. This one can, from a small script:
 *
 *   smtp_testserver -p PORT [-b ADDR] [-P portfile] [-S statsfile] [-v] -s SCRIPT
 *
 * binds 127.0.0.1:PORT (or ADDR:PORT; ADDR must be an IPv4 loopback address
 * such as 127.0.0.2, so several servers can stand for several MX hosts on one
 * port) only (0 = any free port, written to portfile once
 * listening), exits on SIGTERM/SIGINT, prints its counters on SIGUSR1 and
 * rewrites statsfile after every connection and command. Script lines:
 *
 *   greeting CODE [TEXT]    the greeting (default "220 smtp_testserver ESMTP")
 *   ehlo|helo|mail|rset|quit|noop CODE [TEXT]   the reply to that command
 *   rcpt ADDR|* CODE [TEXT] reply to RCPT TO:<ADDR> (case-insensitive), first match wins
 *   raw STEP TEXT           send TEXT exactly instead of the reply at STEP
 *   disconnect STEP         close the connection instead of replying at STEP
 *   delay [STEP] MS         wait MS before replying (at STEP, or at every step)
 *   split [STEP] MS         send the reply one byte at a time, MS apart
 *   hangup MS               close a connection that sent no command for MS
 *                           after our last reply (a next hop dropping an idle
 *                           session that a client keeps for reuse)
 *   max_rcpts N             answer "452 4.5.3 Error: too many recipients" to
 *                           RCPTs after the first N of a mail transaction
 *                           (MAIL or RSET starts one), as Postfix does past
 *                           smtpd_recipient_limit
 *
 * The stats count, besides connections and commands, "pipelined": commands
 * that arrived together with the next one, i.e. the client did not wait for
 * the reply before sending more (RFC 2920).
 *
 * STEP is greeting, ehlo, helo, mail, rcpt, rset, quit, noop, starttls. In TEXT, "\n"
 * starts another line of a multi-line reply (same code), and "\r", "\t",
 * "\\", "\xHH" are escapes (for raw). A 421 reply or QUIT closes the
 * connection after the reply. Unknown commands get 502. '#' starts a comment.
 *
 * STARTTLS gets 502 unless the script gives "starttls 220 TEXT": then the
 * server never does TLS; whatever the client sends next (its ClientHello) is
 * answered with a line of plain text and the connection is closed, a next hop
 * whose TLS is broken. Offer it with e.g. "ehlo 250 ts\nSTARTTLS".
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define LINE_MAX_IN 4096
#define MAX_RULES 256

enum step {
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_MAIL,
    ST_RCPT,
    ST_RSET,
    ST_QUIT,
    ST_NOOP,
    ST_STARTTLS,
    ST_COUNT
};
static const char *const step_names[ST_COUNT] = {"greeting", "ehlo", "helo", "mail",    "rcpt",
                                                 "rset",     "quit", "noop", "starttls"};

struct step_cfg {
    int code;
    char *text; /* unescaped, '\n' separates lines */
    char *raw;  /* unescaped bytes sent verbatim, or NULL */
    size_t raw_len;
    int disconnect;
    int delay_ms;
    int split_ms;
};

struct rcpt_rule {
    char *addr; /* "*" for any */
    int code;
    char *text;
};

struct conn {
    struct bufferevent *bev;
    struct event *timer;
    struct event *idle;       /* hangup: closes a connection that stays silent */
    struct evbuffer *pending; /* reply waiting for its delay, or being split */
    int split_ms;
    int busy;                 /* a reply is in flight: read no further commands */
    int close_after;          /* close once the reply is out */
    int close_on_drain;       /* ... and the output has drained */
    int closing;              /* free at the next timer run */
    int tls_garbage;          /* said 220 to STARTTLS: answer the handshake with plain text */
    int txn_rcpts;            /* RCPTs since the last MAIL or RSET */
    struct conn *next, *prev; /* all connections, freed at exit */
};

static struct conn *conns;

static struct step_cfg steps[ST_COUNT];
static struct rcpt_rule rules[MAX_RULES];
static int nrules;
static int hangup_ms;
static int max_rcpts; /* 0: no limit */
static int verbose;
static const char *stats_path;
static struct {
    unsigned long connections, current, concurrent_max, hangups, pipelined;
    unsigned long commands[ST_COUNT];
    char last_rcpt[LINE_MAX_IN];
    char last_mail[LINE_MAX_IN];
} stats;

static void conn_process(struct conn *c);

/* unescape - in place: \n \r \t \\ \xHH; returns the new length */
static size_t unescape(char *s)
{
    char *w = s;
    const char *r = s;

    while (*r != '\0') {
        if (r[0] == '\\' && r[1] != '\0') {
            r++;
            switch (*r) {
            case 'n':
                *w++ = '\n';
                r++;
                break;
            case 'r':
                *w++ = '\r';
                r++;
                break;
            case 't':
                *w++ = '\t';
                r++;
                break;
            case 'x':
                if (isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
                    char hex[3] = {r[1], r[2], 0};
                    *w++ = (char)strtol(hex, NULL, 16);
                    r += 3;
                } else {
                    *w++ = 'x';
                    r++;
                }
                break;
            default:
                *w++ = *r++;
                break;
            }
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* step_parse - step name to enum, -1 if unknown */
static int step_parse(const char *name)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (strcasecmp(name, step_names[i]) == 0)
            return i;
    return -1;
}

/* parse_code_text - "CODE [TEXT]" */
static int parse_code_text(char *s, int *code, char **text)
{
    char *end;
    long v;

    while (*s == ' ' || *s == '\t')
        s++;
    v = strtol(s, &end, 10);
    if (end == s || v < 100 || v > 999 || (*end != '\0' && *end != ' ' && *end != '\t'))
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    *code = (int)v;
    *text = strdup(end);
    unescape(*text);
    return 0;
}

/* script_load - read the script; exits with a message on errors (this is a test tool) */
static void script_load(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[LINE_MAX_IN];
    int lineno = 0;

    steps[ST_GREETING] = (struct step_cfg){220, strdup("smtp_testserver ESMTP"), NULL, 0, 0, 0, 0};
    steps[ST_EHLO] =
        (struct step_cfg){250, strdup("smtp_testserver\nPIPELINING\n8BITMIME"), NULL, 0, 0, 0, 0};
    steps[ST_HELO] = (struct step_cfg){250, strdup("smtp_testserver"), NULL, 0, 0, 0, 0};
    steps[ST_MAIL] = (struct step_cfg){250, strdup("2.1.0 Ok"), NULL, 0, 0, 0, 0};
    steps[ST_RCPT] = (struct step_cfg){250, strdup("2.1.5 Ok"), NULL, 0, 0, 0, 0};
    steps[ST_RSET] = (struct step_cfg){250, strdup("2.0.0 Ok"), NULL, 0, 0, 0, 0};
    steps[ST_QUIT] = (struct step_cfg){221, strdup("2.0.0 Bye"), NULL, 0, 0, 0, 0};
    steps[ST_NOOP] = (struct step_cfg){250, strdup("2.0.0 Ok"), NULL, 0, 0, 0, 0};
    steps[ST_STARTTLS] =
        (struct step_cfg){502, strdup("5.5.2 Error: command not recognized"), NULL, 0, 0, 0, 0};
    if (f == NULL) {
        fprintf(stderr, "smtp_testserver: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = line, *word, *rest;
        int st;

        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        word = p;
        p += strcspn(p, " \t");
        if (*p != '\0')
            *p++ = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        rest = p;
        if ((st = step_parse(word)) >= 0 && st != ST_RCPT) {
            free(steps[st].text);
            if (parse_code_text(rest, &steps[st].code, &steps[st].text) < 0)
                goto bad;
        } else if (st == ST_RCPT) {
            char *addr = rest;
            if (nrules >= MAX_RULES)
                goto bad;
            rest += strcspn(rest, " \t");
            if (*rest == '\0')
                goto bad;
            *rest++ = '\0';
            rules[nrules].addr = strdup(addr);
            if (parse_code_text(rest, &rules[nrules].code, &rules[nrules].text) < 0)
                goto bad;
            nrules++;
        } else if (strcmp(word, "raw") == 0 || strcmp(word, "disconnect") == 0) {
            char *name = rest;
            rest += strcspn(rest, " \t");
            if (*rest != '\0')
                *rest++ = '\0';
            if ((st = step_parse(name)) < 0)
                goto bad;
            if (word[0] == 'd') {
                steps[st].disconnect = 1;
            } else {
                steps[st].raw = strdup(rest);
                steps[st].raw_len = unescape(steps[st].raw);
            }
        } else if (strcmp(word, "max_rcpts") == 0) {
            max_rcpts = atoi(rest);
            if (max_rcpts <= 0)
                goto bad;
        } else if (strcmp(word, "hangup") == 0) {
            hangup_ms = atoi(rest);
            if (hangup_ms <= 0)
                goto bad;
        } else if (strcmp(word, "delay") == 0 || strcmp(word, "split") == 0) {
            int ms, from = 0, to = ST_COUNT;
            if (!isdigit((unsigned char)*rest)) {
                char *name = rest;
                rest += strcspn(rest, " \t");
                if (*rest != '\0')
                    *rest++ = '\0';
                if ((st = step_parse(name)) < 0)
                    goto bad;
                from = st;
                to = st + 1;
            }
            ms = atoi(rest);
            if (ms < 0)
                goto bad;
            for (int i = from; i < to; i++) {
                if (word[0] == 'd')
                    steps[i].delay_ms = ms;
                else
                    steps[i].split_ms = ms;
            }
        } else {
            goto bad;
        }
    }
    fclose(f);
    return;
bad:
    fprintf(stderr, "smtp_testserver: %s:%d: bad line\n", path, lineno);
    exit(1);
}

/* stats_print - counters as "name value" lines */
static void stats_print(FILE *f)
{
    fprintf(f, "connections %lu\nconcurrent %lu\nconcurrent_max %lu\nhangups %lu\n",
            stats.connections, stats.current, stats.concurrent_max, stats.hangups);
    for (int i = 0; i < ST_COUNT; i++)
        fprintf(f, "%s %lu\n", step_names[i], stats.commands[i]);
    fprintf(f, "pipelined %lu\n", stats.pipelined);
    fprintf(f, "last_rcpt %s\nlast_mail %s\n", stats.last_rcpt, stats.last_mail);
}

/* stats_write - replace the stats file atomically so a reader never sees half */
static void stats_write(void)
{
    char tmp[4096];
    FILE *f;

    if (stats_path == NULL)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
    if ((f = fopen(tmp, "w")) == NULL)
        return;
    stats_print(f);
    fclose(f);
    rename(tmp, stats_path);
}

static void conn_free(struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    event_free(c->timer);
    event_free(c->idle);
    evbuffer_free(c->pending);
    free(c);
    stats.current--;
    stats_write();
}

/*
 * conn_sent - the reply is out: close if asked (never freeing c under a
 * caller's feet: the free runs from the loop), else read the next command
 * when called from the loop (async), not from inside conn_process.
 */
static void conn_sent(struct conn *c, int async)
{
    if (c->close_after) {
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            struct timeval now = {0, 0};
            c->closing = 1;
            evtimer_add(c->timer, &now);
        } else {
            c->close_on_drain = 1;
        }
        return; /* stays busy */
    }
    c->busy = 0;
    if (hangup_ms > 0) {
        struct timeval tv = {hangup_ms / 1000, (hangup_ms % 1000) * 1000};
        evtimer_add(c->idle, &tv);
    }
    if (async)
        conn_process(c);
}

/* conn_idle_cb - hangup: the client kept the connection silent too long */
static void conn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (verbose)
        fprintf(stderr, "smtp_testserver: idle for %dms: hanging up\n", hangup_ms);
    stats.hangups++;
    conn_free(c);
}

/* conn_timer_cb - the delay passed, the next byte of a split reply is due, or close now */
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    if (c->closing) {
        conn_free(c);
        return;
    }
    if (c->split_ms > 0 && evbuffer_get_length(c->pending) > 0) {
        struct timeval tv = {c->split_ms / 1000, (c->split_ms % 1000) * 1000};
        evbuffer_remove_buffer(c->pending, bufferevent_get_output(c->bev), 1);
        if (evbuffer_get_length(c->pending) > 0) {
            evtimer_add(c->timer, &tv);
            return;
        }
    } else {
        bufferevent_write_buffer(c->bev, c->pending);
    }
    conn_sent(c, what != 0);
}

/* conn_reply - answer at step st with code/text, honouring the step's modes */
static void conn_reply(struct conn *c, int st, int code, const char *text)
{
    const struct step_cfg *cfg = &steps[st];

    if (cfg->disconnect) {
        c->close_after = 1;
    } else if (cfg->raw != NULL) {
        evbuffer_add(c->pending, cfg->raw, cfg->raw_len);
    } else {
        const char *p = text;
        do {
            size_t n = strcspn(p, "\n");
            int last = p[n] == '\0';
            if (n == 0 && last && p == text)
                evbuffer_add_printf(c->pending, "%03d\r\n", code);
            else
                evbuffer_add_printf(c->pending, "%03d%c%.*s\r\n", code, last ? ' ' : '-', (int)n,
                                    p);
            p += n + (last ? 0 : 1);
        } while (*p != '\0');
        if (code == 421 || st == ST_QUIT)
            c->close_after = 1;
    }
    c->busy = 1;
    c->split_ms = cfg->split_ms;
    if (cfg->delay_ms > 0) {
        struct timeval tv = {cfg->delay_ms / 1000, (cfg->delay_ms % 1000) * 1000};
        evtimer_add(c->timer, &tv);
    } else {
        conn_timer_cb(-1, 0, c);
    }
}

/* rcpt_reply - first rule matching the address between < and > */
static void rcpt_reply(struct conn *c, const char *arg)
{
    const char *lt = strchr(arg, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    char addr[LINE_MAX_IN];

    if (lt == NULL || gt == NULL) {
        conn_reply(c, ST_RCPT, 501, "5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    snprintf(addr, sizeof(addr), "%.*s", (int)(gt - lt - 1), lt + 1);
    snprintf(stats.last_rcpt, sizeof(stats.last_rcpt), "%s", addr);
    if (max_rcpts > 0 && ++c->txn_rcpts > max_rcpts) {
        conn_reply(c, ST_RCPT, 452, "4.5.3 Error: too many recipients");
        return;
    }
    for (int i = 0; i < nrules; i++) {
        if (strcmp(rules[i].addr, "*") == 0 || strcasecmp(rules[i].addr, addr) == 0) {
            conn_reply(c, ST_RCPT, rules[i].code, rules[i].text);
            return;
        }
    }
    conn_reply(c, ST_RCPT, steps[ST_RCPT].code, steps[ST_RCPT].text);
}

/* conn_process - answer buffered command lines, one at a time */
static void conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (!c->busy) {
        size_t n;
        char *line;
        char verb[8];
        int st;

        if (c->tls_garbage) {
            if (evbuffer_get_length(in) == 0)
                return;
            /* the client's ClientHello: not TLS back, then hang up */
            evbuffer_drain(in, evbuffer_get_length(in));
            c->tls_garbage = 0;
            evbuffer_add_printf(c->pending, "this is not TLS\r\n");
            c->busy = 1;
            c->close_after = 1;
            conn_timer_cb(-1, 0, c);
            return;
        }
        line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

        if (line == NULL) {
            if (evbuffer_get_length(in) > LINE_MAX_IN)
                conn_free(c);
            return;
        }
        if (verbose)
            fprintf(stderr, "smtp_testserver: C: %s\n", line);
        if (evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF).pos >= 0)
            stats.pipelined++;
        evtimer_del(c->idle);
        snprintf(verb, sizeof(verb), "%.4s", line);
        st = -1;
        if (strcasecmp(verb, "EHLO") == 0)
            st = ST_EHLO;
        else if (strcasecmp(verb, "HELO") == 0)
            st = ST_HELO;
        else if (strcasecmp(verb, "MAIL") == 0)
            st = ST_MAIL;
        else if (strcasecmp(verb, "RCPT") == 0)
            st = ST_RCPT;
        else if (strcasecmp(verb, "RSET") == 0)
            st = ST_RSET;
        else if (strcasecmp(verb, "QUIT") == 0)
            st = ST_QUIT;
        else if (strcasecmp(verb, "NOOP") == 0)
            st = ST_NOOP;
        else if (strcasecmp(line, "STARTTLS") == 0)
            st = ST_STARTTLS;
        if (st >= 0)
            stats.commands[st]++;
        if (st == ST_MAIL)
            snprintf(stats.last_mail, sizeof(stats.last_mail), "%s", line);
        if (st == ST_MAIL || st == ST_RSET)
            c->txn_rcpts = 0;
        if (st == ST_RCPT)
            rcpt_reply(c, line);
        else if (st >= 0) {
            if (st == ST_STARTTLS && steps[st].code == 220 && steps[st].raw == NULL)
                c->tls_garbage = 1;
            conn_reply(c, st, steps[st].code, steps[st].text);
        } else {
            evbuffer_add_printf(bufferevent_get_output(c->bev),
                                "502 5.5.2 Error: command not recognized\r\n");
        }
        stats_write(); /* before the reply leaves: a client that saw it sees the counts */
        free(line);
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_process(arg);
}

/* conn_write_cb - output drained: finish a close that waited for it */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (c->close_on_drain)
        conn_free(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct event_base *base = arg;
    struct conn *c = calloc(1, sizeof(*c));

    (void)l;
    (void)sa;
    (void)len;
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(base, conn_timer_cb, c);
    c->idle = evtimer_new(base, conn_idle_cb, c);
    c->pending = evbuffer_new();
    c->next = conns;
    if (conns != NULL)
        conns->prev = c;
    conns = c;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    stats.connections++;
    if (++stats.current > stats.concurrent_max)
        stats.concurrent_max = stats.current;
    stats_write();
    conn_reply(c, ST_GREETING, steps[ST_GREETING].code, steps[ST_GREETING].text);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    if (sig == SIGUSR1) {
        stats_print(stdout);
        fflush(stdout);
        return;
    }
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    const char *script = NULL, *portfile = NULL, *bind_addr = "127.0.0.1";
    int port = -1, opt;
    struct event_base *base;
    struct evconnlistener *l;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    struct event *sig_term, *sig_int, *sig_usr1;

    while ((opt = getopt(argc, argv, "b:p:P:s:S:v")) != -1) {
        switch (opt) {
        case 'b':
            bind_addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'P':
            portfile = optarg;
            break;
        case 's':
            script = optarg;
            break;
        case 'S':
            stats_path = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        default:
            goto usage;
        }
    }
    if (script == NULL || port < 0 || port > 65535)
        goto usage;
    script_load(script);
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sin.sin_addr) != 1 ||
        (ntohl(sin.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "smtp_testserver: -b %s: expected an IPv4 loopback address\n", bind_addr);
        return 2;
    }
    l = evconnlistener_new_bind(base, accept_cb, base, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                64, (struct sockaddr *)&sin, sizeof(sin));
    if (l == NULL) {
        fprintf(stderr, "smtp_testserver: bind %s:%d: %s\n", bind_addr, port, strerror(errno));
        return 1;
    }
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
    if (portfile != NULL) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
        if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%d\n", ntohs(sin.sin_port)) < 0 ||
            fclose(f) != 0 || rename(tmp, portfile) < 0) {
            fprintf(stderr, "smtp_testserver: %s: %s\n", portfile, strerror(errno));
            return 1;
        }
    }
    stats_write();
    sig_term = evsignal_new(base, SIGTERM, signal_cb, base);
    sig_int = evsignal_new(base, SIGINT, signal_cb, base);
    sig_usr1 = evsignal_new(base, SIGUSR1, signal_cb, base);
    evsignal_add(sig_term, NULL);
    evsignal_add(sig_int, NULL);
    evsignal_add(sig_usr1, NULL);
    event_base_dispatch(base);
    while (conns != NULL)
        conn_free(conns);
    event_free(sig_term);
    event_free(sig_int);
    event_free(sig_usr1);
    evconnlistener_free(l);
    event_base_free(base);
    return 0;

usage:
    fprintf(
        stderr,
        "usage: smtp_testserver -p PORT [-b ADDR] [-P portfile] [-S statsfile] [-v] -s SCRIPT\n");
    return 2;
}
