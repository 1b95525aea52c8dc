#!/bin/bash
# tests/bench/callgrind.sh - instructions per cached verdict in callahead-policyd,
# counted by valgrind's callgrind, and where they go.
#
# Why: requests per second on a shared machine move with whatever else runs;
# the number of instructions the daemon executes per request does not. This
# is the figure to compare before and after a change to the request path.
#
# It starts a private callahead-policyd under callgrind on 127.0.0.1 with an
# in-process cache only (no Redis: an L1 hit is the path measured), and one
# local smtp-sink as next hop (every RCPT accepted) plus our smtp_testserver
# for an "invalid" domain (550 5.1.1 to every RCPT). It warms the cache
# (WARMUP requests: one callout per address, then hits), zeroes the counters,
# sends REQUESTS requests from CONNS connections with policy_bench, dumps the
# counters and prints instructions per request and the functions (inclusive
# and self) that cost the most. Servers are stopped by pid on exit.
#
# Environment (all optional):
#   BUILD=DIR       a configured build dir (default: ./_build-bench, built -O2 -g here)
#   REQUESTS=20000  measured requests; CONNS=50 connections; WARMUP=2000
#   TOP=25          functions listed
#   KEEP=1          keep the temp dir (the callgrind.out files, the daemon's log)
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-}
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-2000}
TOP=${TOP:-25}
KEEP=${KEEP:-0}

say() { printf '%s\n' "$*" >&2; }
fail() {
    say "callgrind.sh: $*"
    exit 1
}
for tool in valgrind callgrind_control callgrind_annotate smtp-sink; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install -y valgrind postfix)"
done

if [ -z "$BUILD" ]; then
    BUILD=$SRCDIR/_build-bench
    if [ ! -f "$BUILD/Makefile" ]; then
        [ -x "$SRCDIR/configure" ] || (cd "$SRCDIR" && autoreconf -fi >/dev/null)
        mkdir -p "$BUILD"
        (cd "$BUILD" && "$SRCDIR/configure" --disable-tests CFLAGS="-O2 -g" >/dev/null)
    fi
fi
make -C "$BUILD" -j2 callahead-policyd tests/bench/policy_bench >/dev/null ||
    fail "build failed in $BUILD"
POLICYD=$BUILD/callahead-policyd
BENCH=$BUILD/tests/bench/policy_bench

T=$(mktemp -d /tmp/callahead-cg.XXXXXX)
PIDS=
VG_PID=
cleanup() {
    local rc=$?
    for pid in $VG_PID $PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $VG_PID $PIDS; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then say "callgrind.sh: kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Below the kernel's ephemeral range: a port inside it may be the source port of one of the
# thousands of client connections a run opens (or of one in TIME_WAIT), and then nobody
# listens on it but bind() fails ("Address already in use").
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] 2>/dev/null || EPHEMERAL_LOW=32768
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

PORT=$(free_port)
SINK_OK=$(free_port)
SINK_NO=$(free_port)
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -std=c11 -D_GNU_SOURCE -O2 -o "$T/smtp_testserver" "$SRCDIR/tests/e2e/smtp_testserver.c" \
    $(pkg-config --cflags --libs libevent) || fail "cannot compile smtp_testserver.c"
printf 'rcpt * 550 5.1.1 <nobody@invalid.test>: Recipient address rejected: User unknown\n' \
    >"$T/unknown.script"
smtp-sink -u nobody "127.0.0.1:$SINK_OK" 64 &
PIDS="$PIDS $!"
"$T/smtp_testserver" -p "$SINK_NO" -s "$T/unknown.script" >"$T/testserver.log" 2>&1 &
PIDS="$PIDS $!"
cat >"$T/routes" <<EOF
example.test   smtp:[127.0.0.1]:$SINK_OK
invalid.test   smtp:[127.0.0.1]:$SINK_NO
*              dunno
EOF
cat >"$T/callahead.conf" <<EOF
listen = inet:127.0.0.1:$PORT
route_table = $T/routes
EOF
"$POLICYD" -c "$T/callahead.conf" -t >/dev/null 2>"$T/check.log" ||
    fail "configuration rejected: $(cat "$T/check.log")"

valgrind --tool=callgrind --callgrind-out-file="$T/callgrind.out.%p" \
    "$POLICYD" -f -c "$T/callahead.conf" 2>>"$T/policyd.log" &
VG_PID=$!
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$VG_PID" 2>/dev/null || fail "policyd exited: $(tail -5 "$T/policyd.log")"
    sleep 0.1
done
ADDRS=(-a alice@example.test -a bob@example.test -a carol@example.test -a nobody@invalid.test)
"$BENCH" -p "$PORT" -c "$CONNS" -n "$WARMUP" -q "${ADDRS[@]}" >"$T/warm.out" 2>&1 ||
    fail "warm-up failed: $(cat "$T/warm.out")"
callgrind_control -z "$VG_PID" >/dev/null || fail "callgrind_control -z failed"
: >"$T/policyd.log"
"$BENCH" -p "$PORT" -c "$CONNS" -n "$REQUESTS" -w 0 -q "${ADDRS[@]}" >"$T/run.out" 2>&1 ||
    fail "measured run failed: $(cat "$T/run.out")"
callgrind_control -d "$VG_PID" >/dev/null || fail "callgrind_control -d failed"
sleep 1
dump=$T/callgrind.out.$VG_PID.1 # the counts since -z, written by -d
[ -s "$dump" ] || fail "no dump written ($dump)"
answered=$(grep -c ' cached=' "$T/policyd.log" || true)
hits=$(grep -c ' cached=l1' "$T/policyd.log" || true)
total=$(sed -n 's/^summary: //p;s/^totals: //p' "$dump" | head -1 | awk '{print $1}')
if [ -z "$total" ] || [ "$answered" -eq 0 ]; then fail "no counts in $dump"; fi

printf 'date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'commit: %s\n' "$(git -C "$SRCDIR" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
printf 'requests: %s (answered after zeroing: %s, from L1: %s), connections: %s\n' \
    "$REQUESTS" "$answered" "$hits" "$CONNS"
printf 'instructions: %s, per request: %s\n\n' "$total" \
    "$(awk -v t="$total" -v n="$answered" 'BEGIN { printf "%.0f", t / n }')"
# callgrind_annotate lists "Ir (share) file:function [object]"; the 100% lines are the
# frames on the stack at the dump (main, the loop), not costs of their own
annotate() {
    callgrind_annotate --auto=no --threshold=100 "$@" "$dump" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' | grep -v '(100.0%)' | head -"$TOP" |
        awk -v n="$answered" '{ ir = $1; gsub(",", "", ir); $1 = ""
            sub(/ \[[^]]*\]$/, ""); printf "%8.0f %s\n", ir / n, $0 }' | cut -c1-140
}
printf 'instructions per request by function, self (top %s):\n' "$TOP"
annotate
printf '\ninclusive (top %s):\n' "$TOP"
annotate --inclusive=yes
