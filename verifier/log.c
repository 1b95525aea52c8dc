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

void log_vmsg(int prio, const char *fmt, va_list ap)
{
    static const char *names[] = {"emerg",   "alert",  "crit", "error",
                                  "warning", "notice", "info", "debug"};

    if (!log_to_stderr) {
        vsyslog(prio, fmt, ap);
        return;
    }
    /*
     * "ident: level: message\n" formatted into one buffer and written with
     * one fwrite: stderr is unbuffered, and fprintf's own formatting of the
     * finished message into it cost as much again as the message. The
     * message is cut at LOG_LINE_MAX - 1 bytes, as it always was.
     */
    char line[sizeof(log_ident) + 16 + LOG_LINE_MAX];
    int head = snprintf(line, sizeof(line), "%s: %s: ", log_ident, names[prio & 7]);
    if (head < 0)
        return;
    int n = vsnprintf(line + head, LOG_LINE_MAX, fmt, ap);
    if (n < 0)
        return;
    size_t len = (size_t)head + ((size_t)n < LOG_LINE_MAX ? (size_t)n : LOG_LINE_MAX - 1);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

struct log_ms log_ms_of_ns(long long ns)
{
    struct log_ms ms = {0, 0};

    if (ns <= 0)
        return ms;
    long long tenths = (ns + 50000) / 100000; /* 0.1 ms = 100,000 ns, rounded half up */
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
