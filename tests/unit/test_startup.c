/*
 * test_startup.c - the one-time start-up steps of callahead-policyd: how
 * relative names are made absolute, the pidfile lock against a second
 * process, and raising the soft descriptor limit.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "startup.h"

Test(startup, abs_path)
{
    char *p;

    p = startup_abs_path("/srv/mail", "routes");
    cr_assert_str_eq(p, "/srv/mail/routes");
    free(p);
    p = startup_abs_path("/srv/mail/", "./sub/routes");
    cr_assert_str_eq(p, "/srv/mail/sub/routes");
    free(p);
    p = startup_abs_path("/", "routes");
    cr_assert_str_eq(p, "/routes");
    free(p);
    p = startup_abs_path("/srv", "/etc/callahead/routes");
    cr_assert_str_eq(p, "/etc/callahead/routes", "absolute names are kept");
    free(p);
    p = startup_abs_path("/srv", "");
    cr_assert_str_eq(p, "", "an empty name (no pidfile) stays empty");
    free(p);
}

Test(startup, config_paths)
{
    static const char text[] = "listen = inet:127.0.0.1:10040, unix:run/policy.sock\n"
                               "route_table = routes\npidfile = run/callahead.pid\n";
    struct config c;
    char err[256];

    cr_assert_eq(config_parse(text, strlen(text), "test", &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(startup_config_paths(&c, "/srv/mail", err, sizeof(err)), 0);
    cr_assert_str_eq(c.route_table, "/srv/mail/routes");
    cr_assert_str_eq(c.pidfile, "/srv/mail/run/callahead.pid");
    cr_assert_str_eq(c.listen[0], "inet:127.0.0.1:10040", "inet listeners are untouched");
    cr_assert_str_eq(c.listen[1], "unix:/srv/mail/run/policy.sock");
    config_free(&c);
}

Test(startup, pidfile_lock_refuses_a_second_process)
{
    char path[] = "/tmp/callahead-test-pid-XXXXXX", err[512];
    int sync[2];
    int tmp = mkstemp(path);

    cr_assert_geq(tmp, 0);
    close(tmp);
    cr_assert_eq(pipe(sync), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        char e[256];
        int fd = startup_pidfile_lock(path, e, sizeof(e));
        (void)!write(sync[1], fd >= 0 ? "L" : "F", 1);
        pause(); /* hold the lock until killed */
        _exit(0);
    }
    char got = 0;
    cr_assert_eq(read(sync[0], &got, 1), 1);
    cr_assert_eq(got, 'L', "the first process takes the lock");

    cr_assert_eq(startup_pidfile_lock(path, err, sizeof(err)), -1, "a second one is refused");
    char want[64];
    snprintf(want, sizeof(want), "(pid %ld)", (long)child);
    cr_assert_not_null(strstr(err, "locked by a running instance"), "%s", err);
    cr_assert_not_null(strstr(err, want), "%s", err);

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* the holder is gone (a crash): its file is taken over */
    int fd = startup_pidfile_lock(path, err, sizeof(err));
    cr_assert_geq(fd, 0, "%s", err);
    char buf[32] = "";
    cr_assert_gt(pread(fd, buf, sizeof(buf) - 1, 0), 0);
    cr_assert_eq(strtol(buf, NULL, 10), (long)getpid(), "the pidfile now names us: %s", buf);
    close(fd);
    unlink(path);
}

Test(startup, raise_soft_nofile)
{
    struct rlimit rl;
    char err[256];

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 256)
        cr_skip_test("hard descriptor limit %ld is too low for this test", (long)rl.rlim_max);
    struct rlimit low = {64, rl.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    cr_assert_eq(startup_raise_nofile(200, err, sizeof(err)), 200, "%s", err);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &low), 0);
    cr_assert_eq(low.rlim_cur, 200);
    /* already enough: left alone */
    cr_assert_eq(startup_raise_nofile(100, err, sizeof(err)), 200);
    setrlimit(RLIMIT_NOFILE, &rl);
}
