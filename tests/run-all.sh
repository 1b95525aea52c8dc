#!/bin/bash
# tests/run-all.sh - the one test command (CI runs it through .ci/run).
#
# On Debian 12 as root, from a fresh clone in any directory: installs what the
# tests need, builds twice out of tree (./_build with -Werror, ./_build-asan
# with ASan+UBSan as well), runs the Criterion unit tests in both and prints
# their logs, checks clang-format, runs the end-to-end scenarios against real
# servers with the normal build, the ASan build and (some) under valgrind, and
# runs the fuzzers briefly. Every step runs even when an earlier one failed
# (unless it needs that step's output); a summary comes last and the exit
# status is 1 when anything failed.
#
# Environment: SKIP_INSTALL=1 (do not touch packages), FUZZ_SECONDS (default 5),
# JOBS (make -j, default: number of CPUs), VALGRIND_SCENARIOS (the e2e scenarios
# run with the daemon under valgrind; default: a set that passes through every
# part of the daemon once; "all" for every scenario).
# shellcheck disable=SC2317 # functions run through step() look unreachable to it
set -u -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
: "${FUZZ_SECONDS:=5}"
: "${VALGRIND_SCENARIOS:=default}"
# The valgrind pass is the slowest (each scenario runs the daemon ten times
# slower); these scenarios together reach the policy protocol, CDB, callouts
# (Postfix and scripted next hops), Redis up and down, a Sentinel failover,
# reload (with the control, stats and unix sockets it moves or changes and
# the resolver it replaces, and the Redis it moves the cache to, with a probe lock taken on
# the old one, and the Redis host names it looks up first, abandoned at a stop, and the
# Sentinel set it moves to and from, with a master name the sentinels do not know), the control socket and cross-daemon flush, slow clients, the
# milter's policy path and STARTTLS callouts (slowed down, TLS 1.3 session
# tickets and the next reply arrive together).
if [ "$VALGRIND_SCENARIOS" = default ]; then
    VALGRIND_SCENARIOS="test_malformed test_pipelined test_cdb_rewrite test_callout_failures
      test_callout_postfix_backend test_redis_down test_redis_verdict test_sighup
      test_reload_restart test_reload_l1_size test_control test_flush test_slow_clients test_milter_miltertest
      test_redis_sentinel test_callout_tls test_reload_sockets test_reload_callout
      test_reload_redis test_reload_redis_lock test_reload_redis_dns test_reload_sentinel"
elif [ "$VALGRIND_SCENARIOS" = all ]; then
    VALGRIND_SCENARIOS=""
fi
export FUZZ_SECONDS

PACKAGES="build-essential autoconf automake libtool pkg-config libevent-dev libhiredis-dev libssl-dev
  libmilter-dev libcriterion-dev libcdb-dev libc-ares-dev libidn2-dev tinycdb libldap-dev redis-server redis-sentinel postfix postfix-doc
  slapd ldap-utils swaks miltertest clang libclang-rt-14-dev valgrind clang-format dnsmasq-base
  curl prometheus"

summary=()
failed=0
t_all=$(date +%s)

# step NAME CMD... - run one step with a banner and its time; record PASS/FAIL
step() {
    local name=$1 start rc
    shift
    printf '\n==== %s\n' "$name"
    start=$(date +%s)
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        summary+=("PASS  $name ($(($(date +%s) - start))s)")
    else
        summary+=("FAIL  $name ($(($(date +%s) - start))s, exit $rc)")
        failed=1
    fi
    return "$rc"
}

# skip NAME WHY - record a step that could not run
skip() {
    summary+=("SKIP  $1 ($2)")
    printf '\n==== %s: skipped (%s)\n' "$1" "$2"
}

# install_packages - install whatever of $PACKAGES is missing (apt-get update only then)
install_packages() {
    local missing="" p
    if [ "${SKIP_INSTALL:-0}" = 1 ]; then
        echo "SKIP_INSTALL=1: not checking packages"
        return 0
    fi
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        echo "all packages present"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "missing packages:$missing (run as root to install)"; return 1; }
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix and slapd ask questions on install; we configure private instances ourselves.
    printf '%s\n' 'postfix postfix/main_mailer_type select No configuration' \
        'postfix postfix/mailname string localhost' 'slapd slapd/no_configuration boolean true' |
        debconf-set-selections
    # shellcheck disable=SC2086
    apt-get update -q && apt-get install -y -q --no-install-recommends $missing
}

# build DIR CONFIGURE-ARGS... - configure and make in DIR (out of tree, VPATH)
build() {
    local dir=$1
    shift
    mkdir -p "$top/$dir" || return 1
    (
        cd "$top/$dir" || exit 1
        if ! "$top/configure" "$@" >configure.out 2>&1; then
            tail -n 30 configure.out
            exit 1
        fi
        make -j"$JOBS"
    )
}

# unit DIR - make check in DIR, then print every unit test log so Criterion's
# "Synthesis:" lines are visible, and automake's summary
unit() {
    local dir=$1
    (
        cd "$top/$dir" || exit 1
        rc=0
        make -j"$JOBS" check >make-check.out 2>&1 || rc=$?
        for f in tests/unit/*.log; do
            [ -f "$f" ] || continue
            printf -- '---- %s/%s\n' "$dir" "$f"
            cat "$f"
        done
        printf -- '---- %s: make check summary\n' "$dir"
        sed 's/\x1b\[[0-9;]*m//g' make-check.out | grep -E '^(FAIL|ERROR|XPASS): |^# [A-Z]+: ' || true
        [ "$rc" -eq 0 ] || echo "make check failed in $dir (exit $rc); full output in $dir/make-check.out"
        exit "$rc"
    )
}

# check_format - clang-format must not change any C file of ours
check_format() {
    local files bad=0 f
    command -v clang-format >/dev/null || { echo "clang-format not installed"; return 1; }
    files=$(find verifier policyd milter cli tests -type f \( -name '*.c' -o -name '*.h' \) \
        -not -path '*/corpus/*' 2>/dev/null | sort)
    for f in $files; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            echo "needs clang-format: $f"
            clang-format "$f" | diff -u "$f" - | head -n 20
            bad=1
        fi
    done
    echo "$(echo "$files" | wc -w) files checked with $(clang-format --version)"
    return "$bad"
}

step "install packages" install_packages
step "autoreconf" autoreconf -fi
build_ok=0
asan_ok=0
if step "build _build (--enable-werror)" build _build --enable-werror; then
    build_ok=1
    step "unit tests _build" unit _build
fi
if step "build _build-asan (--enable-werror --enable-sanitizers)" build _build-asan --enable-werror \
    --enable-sanitizers; then
    asan_ok=1
    step "unit tests _build-asan" unit _build-asan
fi
step "clang-format" check_format

# Two streams at once, as the machine has two cores and the end-to-end
# scenarios spend most of their time waiting on servers: the ASan pass and the
# fuzzers in the background, the normal and valgrind passes here. Scenarios
# are independent (own ports, own directories); the background stream's
# output is printed when it is done, and its results join the summary.
stream_log=$(mktemp "${TMPDIR:-/tmp}/callahead-run-all.XXXXXX")
(
    # shellcheck disable=SC2030 # the stream's own summary, handed back in a file
    summary=()
    failed=0
    if [ "$asan_ok" = 1 ]; then
        step "e2e (_build-asan)" env E2E_BUILD="$top/_build-asan" E2E_LABEL=e2e-asan \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/e2e/run.sh
    else
        skip "e2e (_build-asan)" "build failed"
    fi
    step "fuzz (FUZZ_SECONDS=$FUZZ_SECONDS)" bash tests/fuzz/run.sh
    printf '%s\n' "${summary[@]}" >"$stream_log.summary"
    exit "$failed"
) >"$stream_log" 2>&1 &
stream_pid=$!

if [ "$build_ok" = 1 ]; then
    step "e2e (_build)" env E2E_BUILD="$top/_build" E2E_LABEL=e2e bash tests/e2e/run.sh
    # shellcheck disable=SC2086,SC2116 # echo: the list on one line
    step "e2e under valgrind (_build): $(echo ${VALGRIND_SCENARIOS:-all scenarios})" env E2E_BUILD="$top/_build" \
        E2E_LABEL=e2e-valgrind E2E_START_TIMEOUT=60 \
        POLICYD_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect" \
        bash tests/e2e/run.sh $VALGRIND_SCENARIOS
else
    skip "e2e (_build)" "build failed"
    skip "e2e under valgrind" "build failed"
fi

wait "$stream_pid" || failed=1
printf '\n==== background stream (ASan end-to-end, fuzz)\n'
cat "$stream_log"
if [ -s "$stream_log.summary" ]; then
    mapfile -t stream_summary <"$stream_log.summary"
    summary+=("${stream_summary[@]}")
else
    summary+=("FAIL  background stream (no summary)")
    failed=1
fi
rm -f "$stream_log" "$stream_log.summary"

printf '\n==== summary (%ss)\n' "$(($(date +%s) - t_all))"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "run-all: FAILED"
    exit 1
fi
echo "run-all: all passed"
exit 0
