#!/bin/sh
# tests/fuzz/run.sh - build every tests/fuzz/fuzz_*.c as a libFuzzer binary
# and run each for a bounded time on a copy of its seed corpus.
#
# Each harness links against all of verifier/*.c and policyd/*.c (except
# policyd/main.c) and the libmilter-free parts of milter/, compiled once
# into a static archive, so a harness for any
# parser builds with this one script and pulls in only the objects it uses.
#
#   FUZZ_BUILD    build and scratch dir     (default a new /tmp/callahead-fuzz.XXXXXX,
#                 removed when every harness passed)
#   FUZZ_SECONDS  run time per harness, s   (default 10)
#   FUZZ_ONLY     run only this harness, e.g. "address" (optional)
#
# Exit 0 when every harness built and ran without a finding, 1 otherwise.
# Crash inputs are left in $FUZZ_BUILD/artifacts/.
set -u

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
if [ -n "${FUZZ_BUILD:-}" ]; then
    BUILD=$FUZZ_BUILD
    own_build=0
else
    # a private directory, so two suites running at once never share objects or artifacts
    BUILD=$(mktemp -d /tmp/callahead-fuzz.XXXXXX) || exit 1
    own_build=1
fi
SECONDS_EACH=${FUZZ_SECONDS:-10}
CC=${FUZZ_CC:-clang}

command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: $CC not found (apt-get install clang)" >&2; exit 1; }

CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -Iverifier -Ipolicyd -Imilter"
PKG_CFLAGS=$(pkg-config --cflags libevent hiredis libcdb libidn2 ldap lber 2>/dev/null)
PKG_LIBS=$(pkg-config --libs libevent hiredis libcdb libidn2 ldap lber) || {
    echo "fuzz: pkg-config cannot find libevent hiredis libcdb libidn2 ldap lber" >&2
    exit 1
}

mkdir -p "$BUILD/obj" "$BUILD/bin" "$BUILD/corpus" "$BUILD/artifacts" || exit 1

# The library: instrumented for coverage and sanitizers, without libFuzzer's
# main (fuzzer-no-link); an archive so each harness takes only what it needs.
echo "fuzz: compiling library sources"
rm -f "$BUILD/obj/"*.o "$BUILD/libfuzzdeps.a"
# milter/: only the parts that need no libmilter (reply mapping, policy client)
for src in verifier/*.c policyd/*.c milter/milter_reply.c milter/policy_client.c; do
    [ "$src" = policyd/main.c ] && continue
    obj="$BUILD/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS $PKG_CFLAGS -fsanitize=fuzzer-no-link,address,undefined \
        -c "$src" -o "$obj"; then
        echo "fuzz: cannot compile $src" >&2
        exit 1
    fi
done
ar rcs "$BUILD/libfuzzdeps.a" "$BUILD/obj/"*.o || exit 1

passed=0
failed=0
failed_names=""
for harness in tests/fuzz/fuzz_*.c; do
    [ -e "$harness" ] || continue
    name=$(basename "$harness" .c)
    short=${name#fuzz_}
    if [ -n "${FUZZ_ONLY:-}" ] && [ "$FUZZ_ONLY" != "$short" ] && [ "$FUZZ_ONLY" != "$name" ]; then
        continue
    fi
    bin="$BUILD/bin/$name"
    echo "fuzz: building $name"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS $PKG_CFLAGS -fsanitize=fuzzer,address,undefined \
        "$harness" "$BUILD/libfuzzdeps.a" $PKG_LIBS -o "$bin"; then
        echo "fuzz: $name: build failed" >&2
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        continue
    fi

    # run on a copy: what the fuzzer finds must not land in the repository
    corpus="$BUILD/corpus/$short"
    rm -rf "$corpus"
    mkdir -p "$corpus"
    if [ -d "tests/fuzz/corpus/$short" ]; then
        cp -R "tests/fuzz/corpus/$short/." "$corpus/"
    fi
    echo "fuzz: running $name for ${SECONDS_EACH}s"
    if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$BUILD/artifacts/$name-" -print_final_stats=1 \
        "$corpus" >"$BUILD/$name.log" 2>&1; then
        passed=$((passed + 1))
        echo "fuzz: $name: ok ($(grep -c . "$BUILD/$name.log") log lines, $(ls "$corpus" | wc -l) corpus files)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        echo "fuzz: $name: FAILED; last lines of $BUILD/$name.log:" >&2
        tail -n 40 "$BUILD/$name.log" >&2
    fi
done

[ -n "$failed_names" ] && echo "fuzz: failing:$failed_names" >&2
echo "fuzz: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
    [ "$own_build" = 1 ] && rm -rf "$BUILD"
    exit 0
fi
echo "fuzz: crash inputs are in $BUILD/artifacts/" >&2
exit 1
