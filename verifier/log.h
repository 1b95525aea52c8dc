/*
 * log.h - one logging sink for the library and the daemons: syslog
 * (LOG_MAIL) normally, stderr in the foreground and in tests. Debug lines
 * cost one integer compare when debug is off.
 */
#ifndef CALLAHEAD_LOG_H
#define CALLAHEAD_LOG_H

#include <stdarg.h>
#include <syslog.h>

/* log_open - ident for syslog; to_stderr 1 = write to stderr instead of syslog */
void log_open(const char *ident, int to_stderr, int facility);
void log_set_debug(int on);
extern int log_debug_enabled;

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_debug_enabled)                                                                     \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
