/*
 * log.c - syslog or stderr, chosen once at start-up (see log.h), and the
 * one rate limiter every repeatable warning goes through, so a hostile
 * client or a flapping server costs a line per interval, not a line per
 * event.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int log_debug_enabled;
static int log_to_stderr = 1;
static char log_ident[64] = "callahead"; /* a copy: the config that named it may be freed */

void log_open(const char *ident, int to_stderr, int facility)
{
    static int syslog_open;

    /* closed first: syslog keeps a pointer to the identity, which is about to change */
    if (syslog_open)
        closelog();
    syslog_open = 0;
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    log_to_stderr = to_stderr;
    if (!to_stderr) {
        /* our copy, not ident: openlog keeps the pointer, and a reload frees the config */
        openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
        syslog_open = 1;
    }
}

void log_set_debug(int on)
{
    log_debug_enabled = on;
}

static const char *const log_level_names[] = {"emerg",   "alert",  "crit", "error",
                                              "warning", "notice", "info", "debug"};

/*
 * log_stderr - "ident: level: message\n" in one buffer, written with one
 * fwrite: stderr is unbuffered, and fprintf's own formatting of the
 * finished message into it cost as much again as the message. The message
 * (len bytes) is cut at LOG_LINE_MAX - 1 bytes, as it always was.
 */
static void log_stderr(int prio, const char *msg, size_t len)
{
    char line[sizeof(log_ident) + 16 + LOG_LINE_MAX];
    const char *level = log_level_names[prio & 7];
    size_t ilen = strnlen(log_ident, sizeof(log_ident) - 1), llen = strlen(level), head = 0;

    memcpy(line, log_ident, ilen);
    head += ilen;
    line[head++] = ':';
    line[head++] = ' ';
    memcpy(line + head, level, llen);
    head += llen;
    line[head++] = ':';
    line[head++] = ' ';
    if (len > LOG_LINE_MAX - 1)
        len = LOG_LINE_MAX - 1;
    memcpy(line + head, msg, len);
    len += head;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void log_vmsg(int prio, const char *fmt, va_list ap)
{
    if (!log_to_stderr) {
        vsyslog(prio, fmt, ap);
        return;
    }
    char msg[LOG_LINE_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    log_stderr(prio, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

void log_line(int prio, const struct log_buf *b)
{
    if (!log_to_stderr) {
        syslog(prio, "%s", b->s);
        return;
    }
    log_stderr(prio, b->s, b->len);
}

void log_buf_init(struct log_buf *b)
{
    b->s[0] = '\0';
    b->len = 0;
}

/* log_buf_put - append n bytes, cut at the end of the buffer; always NUL-terminated */
static void log_buf_put(struct log_buf *b, const char *s, size_t n)
{
    size_t room = sizeof(b->s) - 1 - b->len;

    if (n > room)
        n = room;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void log_buf_str(struct log_buf *b, const char *s)
{
    log_buf_put(b, s, strlen(s));
}

void log_buf_int(struct log_buf *b, long long v)
{
    char digits[24], *p = digits + sizeof(digits);
    /* negate as unsigned: -LLONG_MIN does not fit in a long long */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    log_buf_put(b, p, (size_t)(digits + sizeof(digits) - p));
}

void log_buf_ms(struct log_buf *b, struct log_ms ms)
{
    char tenth[2] = {'.', (char)('0' + (ms.tenth >= 0 && ms.tenth <= 9 ? ms.tenth : 0))};

    log_buf_int(b, ms.whole);
    log_buf_put(b, tenth, 2);
}

struct log_ms log_ms_of_ns(long long ns)
{
    struct log_ms ms = {0, 0};

    if (ns <= 0)
        return ms;
    /* 0.1 ms = 100,000 ns, rounded half up (without ns + 50000, which could overflow) */
    long long tenths = ns / 100000 + (ns % 100000 >= 50000);
    ms.whole = tenths / 10;
    ms.tenth = (int)(tenths % 10);
    return ms;
}

void log_msg(int prio, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(prio, fmt, ap);
    va_end(ap);
}

int log_limited(struct log_limit *l, long interval_ms, int prio, const char *fmt, ...)
{
    struct timespec now;
    char line[1800];
    va_list ap;

    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed_ms =
        (long)(now.tv_sec - l->last.tv_sec) * 1000 + (now.tv_nsec - l->last.tv_nsec) / 1000000;
    if (l->logged_once && elapsed_ms < interval_ms) {
        l->suppressed++;
        return 0;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (l->suppressed)
        log_msg(prio, "%s (%lu similar not logged)", line, l->suppressed);
    else
        log_msg(prio, "%s", line);
    l->suppressed = 0;
    l->last = now;
    l->logged_once = 1;
    return 1;
}
