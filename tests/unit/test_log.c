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

/* the per-decision line's ms= figure: integers only, rounded half up to 0.1 ms */
Test(log, ms_of_ns)
{
    static const struct {
        long long ns;
        long long whole;
        int tenth;
    } cases[] = {
        {-5, 0, 0},           {0, 0, 0},
        {49999, 0, 0},        {50000, 0, 1},
        {149999, 0, 1},       {150000, 0, 2},
        {1234567, 1, 2},      {999949999, 999, 9},
        {999950000, 1000, 0}, {12345678901LL, 12345, 7},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct log_ms ms = log_ms_of_ns(cases[i].ns);
        cr_assert(ms.whole == cases[i].whole && ms.tenth == cases[i].tenth,
                  "%lld ns: %lld.%d, want %lld.%d", cases[i].ns, ms.whole, ms.tenth, cases[i].whole,
                  cases[i].tenth);
    }
}

/* one line as "ident: level: message\n", the message cut at LOG_LINE_MAX - 1 bytes */
Test(log, line_shape_and_cut)
{
    int saved;
    char *big = malloc(LOG_LINE_MAX + 100);

    memset(big, 'm', LOG_LINE_MAX + 99);
    big[LOG_LINE_MAX + 99] = '\0';
    log_open("shape", 1, 0);
    FILE *fp = capture_start(&saved);
    log_info("a=%d b=%s ms=%lld.%d", 7, "x y", 12LL, 3);
    log_msg(LOG_WARNING, "%s", big);
    char *out = capture_end(fp, saved);
    const char *want1 = "shape: info: a=7 b=x y ms=12.3\n";
    cr_assert(strncmp(out, want1, strlen(want1)) == 0, "[%s]", out);
    const char *second = out + strlen(want1);
    cr_assert(strncmp(second, "shape: warning: mmm", 19) == 0);
    cr_assert_eq(strlen(second), strlen("shape: warning: ") + LOG_LINE_MAX - 1 + 1);
    cr_assert_eq(second[strlen(second) - 1], '\n');
    free(out);
    free(big);
}

/* log_buf gives the bytes snprintf gives for the same pieces, and cuts where it is full */
Test(log, log_buf_matches_snprintf)
{
    static const long long ints[] = {
        0, 7, -1, 550, -2147483648LL, 9223372036854775807LL, -9223372036854775807LL - 1};
    struct log_buf b;
    char want[128];

    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        log_buf_init(&b);
        log_buf_str(&b, "code=");
        log_buf_int(&b, ints[i]);
        log_buf_str(&b, " ms=");
        log_buf_ms(&b, log_ms_of_ns(ints[i] > 0 ? ints[i] : 1234567));
        struct log_ms ms = log_ms_of_ns(ints[i] > 0 ? ints[i] : 1234567);
        snprintf(want, sizeof(want), "code=%lld ms=%lld.%d", ints[i], ms.whole, ms.tenth);
        cr_assert_str_eq(b.s, want);
        cr_assert_eq(b.len, strlen(want));
    }
    /* full: cut, NUL-terminated, later appends change nothing */
    log_buf_init(&b);
    char *big = malloc(sizeof(b.s) + 10);
    memset(big, 'z', sizeof(b.s) + 9);
    big[sizeof(b.s) + 9] = '\0';
    log_buf_str(&b, big);
    cr_assert_eq(b.len, sizeof(b.s) - 1);
    cr_assert_eq(strlen(b.s), sizeof(b.s) - 1);
    log_buf_int(&b, 12345);
    log_buf_str(&b, "more");
    cr_assert_eq(b.len, sizeof(b.s) - 1);
    cr_assert_eq(b.s[b.len - 1], 'z');

    /* on stderr: the same bytes as log_msg("%s"), cut at LOG_LINE_MAX - 1 */
    int saved;
    log_open("buf", 1, 0);
    FILE *fp = capture_start(&saved);
    log_line(LOG_INFO, &b);
    log_msg(LOG_INFO, "%s", b.s);
    log_buf_init(&b);
    log_buf_str(&b, "short ");
    log_buf_int(&b, -3);
    log_line(LOG_NOTICE, &b);
    char *out = capture_end(fp, saved);
    size_t one = strlen("buf: info: ") + LOG_LINE_MAX - 1 + 1;
    cr_assert_eq(strlen(out), 2 * one + strlen("buf: notice: short -3\n"));
    cr_assert_eq(memcmp(out, out + one, one), 0, "log_line and log_msg differ");
    cr_assert_str_eq(out + 2 * one, "buf: notice: short -3\n");
    free(out);
    free(big);
}
