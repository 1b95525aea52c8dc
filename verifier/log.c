/*
 * log.c - syslog or stderr, chosen once at start-up (see log.h).
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
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    log_to_stderr = to_stderr;
    if (!to_stderr)
        openlog(ident, LOG_PID | LOG_NDELAY, facility);
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
    char line[2048];
    vsnprintf(line, sizeof(line), fmt, ap);
    fprintf(stderr, "%s: %s: %s\n", log_ident, names[prio & 7], line);
}

void log_msg(int prio, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(prio, fmt, ap);
    va_end(ap);
}
