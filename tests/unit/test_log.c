/*
 * test_log.c - the shared warning rate limiter: a burst of one kind of
 * warning costs one line per interval, and the next line written says how
 * many were dropped.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* capture_start - send stderr (where the log writes in tests) to a temporary file */
static FILE *capture_start(int *saved)
{
    FILE *fp = tmpfile();

    cr_assert_not_null(fp);
    fflush(stderr);
    *saved = dup(2);
    dup2(fileno(fp), 2);
    return fp;
}

/* capture_end - restore stderr; returns what was written (caller frees) */
static char *capture_end(FILE *fp, int saved)
{
    static const size_t cap = 65536;
    char *buf = calloc(1, cap);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(fp);
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

Test(log, burst_is_one_line_then_a_count)
{
    struct log_limit lim = {0};
    int saved, written = 0;

    log_open("test", 1, 0);
    FILE *fp = capture_start(&saved);
    for (int i = 0; i < 1000; i++)
        written += log_limited(&lim, 200, LOG_WARNING, "kind A number %d", i);
    usleep(300 * 1000);
    written += log_limited(&lim, 200, LOG_WARNING, "kind A number %d", 1000);
    char *out = capture_end(fp, saved);

    cr_assert_eq(written, 2, "two lines written, got %d:\n%s", written, out);
    cr_assert_eq(count_lines(out, "kind A number"), 2, "%s", out);
    cr_assert_not_null(strstr(out, "kind A number 0\n"), "%s", out);
    cr_assert_not_null(strstr(out, "kind A number 1000 (999 similar not logged)\n"), "%s", out);
    free(out);
}

Test(log, kinds_are_limited_separately)
{
    struct log_limit a = {0}, b = {0};
    int saved;

    log_open("test", 1, 0);
    FILE *fp = capture_start(&saved);
    for (int i = 0; i < 100; i++) {
        log_limited(&a, 10000, LOG_WARNING, "kind A");
        log_limited(&b, 10000, LOG_WARNING, "kind B");
    }
    char *out = capture_end(fp, saved);
    cr_assert_eq(count_lines(out, "kind A"), 1, "%s", out);
    cr_assert_eq(count_lines(out, "kind B"), 1, "%s", out);
    free(out);
}
