/*
 * log.h - one logging sink for the library and the daemons: syslog
 * (LOG_MAIL) normally, stderr in the foreground and in tests. Debug lines
 * cost one integer compare when debug is off.
 */
#ifndef CALLAHEAD_LOG_H
#define CALLAHEAD_LOG_H

#include <stdarg.h>
#include <syslog.h>
#include <time.h>

/*
 * log_open - ident for syslog (copied); to_stderr 1 = write to stderr instead
 * of syslog. Called again (a reload's syslog_name or syslog_facility), it
 * closes the syslog connection and opens it with the new values.
 */
void log_open(const char *ident, int to_stderr, int facility);
void log_set_debug(int on);
extern int log_debug_enabled;

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * log_limit - one kind of warning that a client or a failing server can
 * repeat at will (a protocol error per connection, accept() failing while
 * descriptors run out, Redis flapping). Zero-initialise it; it needs no
 * cleanup.
 */
struct log_limit {
    struct timespec last;     /* CLOCK_MONOTONIC time of the last line written */
    unsigned long suppressed; /* lines dropped since then */
    int logged_once;
};

/*
 * log_limited - log like log_msg, but at most one line per interval_ms for
 * this limiter; lines dropped in between are counted and the next line that
 * is written ends with "(N similar not logged)". Returns 1 when the line was
 * written, 0 when it was counted only.
 */
int log_limited(struct log_limit *l, long interval_ms, int prio, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* LOG_LINE_MAX - the longest message, without the "ident: level: " prefix and the line end */
#define LOG_LINE_MAX 2048

/*
 * log_ms - a duration in milliseconds with one decimal, for "ms=%lld.%d".
 * Integers, so a per-request log line needs no floating-point formatting.
 */
struct log_ms {
    long long whole;
    int tenth;
};

/* log_ms_of_ns - ns nanoseconds as milliseconds rounded half up to 0.1 ms; 0.0 when ns <= 0 */
struct log_ms log_ms_of_ns(long long ns);

/*
 * log_buf - a line built by appending strings and integers, for the one
 * line per decision: glibc's printf machinery cost more per request than
 * parsing the request did. Appends past the end are cut, as vsnprintf
 * cuts. Zero-initialise it or call log_buf_init.
 */
struct log_buf {
    char s[2 * LOG_LINE_MAX];
    size_t len;
};

void log_buf_init(struct log_buf *b);
/* log_buf_str - append the string s */
void log_buf_str(struct log_buf *b, const char *s);
/* log_buf_int - append v in decimal, as %lld prints it */
void log_buf_int(struct log_buf *b, long long v);
/* log_buf_ms - append ms as "W.T", as "%lld.%d" prints a struct log_ms */
void log_buf_ms(struct log_buf *b, struct log_ms ms);
/*
 * log_line - log b at prio: the same bytes log_msg(prio, "%s", b->s) would
 * write (on stderr the message is cut at LOG_LINE_MAX - 1 bytes).
 */
void log_line(int prio, const struct log_buf *b);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_debug_enabled)                                                                     \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
