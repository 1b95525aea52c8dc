#!/bin/bash
# tests/bench/run.sh - measure callahead-policyd on cached verdicts beside
# redis-benchmark at the same concurrency, and print one table.
#
# Why beside Redis: a cached verdict is, at heart, a key lookup behind a
# line protocol on one event loop, so "how close to Redis on the same machine"
# is a figure that means something on any machine. docs/BENCHMARKS.md records
# the results.
#
# It starts a private redis-server and a private callahead-policyd on
# 127.0.0.1 (free ports, a temp dir), pins both servers to one core and the
# clients to another (taskset), and stops all it started by pid on exit, also on ^C or
# failure. It is not part of "make check": it takes minutes and its figures
# depend on the machine.
#
# Environment (all optional):
#   BUILD=DIR        an existing configured build dir (default: ./_build-bench, built here)
#   CONNS="1 50 1000"  concurrencies to run
#   REQUESTS=200000  measured requests per run (policy_bench -n, redis-benchmark -n)
#   WARMUP=20000     policy_bench warm-up requests per run
#   REPEAT=1         runs per concurrency (one table row each)
#   SERVER_CPU=0 CLIENT_CPU=1   cores for the servers and for the clients
#   RATE_FRACTION=0.5  at N=PACED_N, also offer this fraction of the throughput measured
#                    there (policy_bench -R) and report p99 at that load; 0 skips it
#   PACED_N          the N of the paced run: 1000 when CONNS has it (the issue's figure),
#                    else the largest N
#   ROUTE=smtp       smtp: recipients are verified by callouts to local next hops (smtp-sink
#                    accepts alice, bob, carol@example.test; tests/e2e/smtp_testserver
#                    answers 550 5.1.1 user unknown for nobody@invalid.test),
#                    so after the first callout every answer is a cached verdict;
#                    cdb: a CDB table route (the verifier asks a local table directly,
#                    never the cache: this measures the table path)
#   CACHE=l1         l1: the in-process cache answers; redis: cache_l1_size = 1, so nearly
#                    every answer is a Redis GET round trip from the daemon
#   KEEP=1           keep the temp dir (configs, logs) and print its path
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-}
CONNS=${CONNS:-"1 50 1000"}
REQUESTS=${REQUESTS:-200000}
WARMUP=${WARMUP:-20000}
REPEAT=${REPEAT:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RATE_FRACTION=${RATE_FRACTION:-0.5}
KEEP=${KEEP:-0}
ROUTE=${ROUTE:-smtp}
CACHE=${CACHE:-l1}
case $ROUTE in smtp | cdb) ;; *) echo "run.sh: ROUTE is smtp or cdb" >&2 && exit 2 ;; esac
case $CACHE in l1 | redis) ;; *) echo "run.sh: CACHE is l1 or redis" >&2 && exit 2 ;; esac

say() { printf '%s\n' "$*" >&2; }
fail() {
    say "run.sh: $*"
    exit 1
}

for tool in redis-server redis-benchmark redis-cli cdb taskset smtp-sink; do
    command -v "$tool" >/dev/null ||
        fail "$tool not found (apt-get install -y redis-server redis-tools tinycdb postfix util-linux)"
done

# --- build (or reuse) the daemon and the client
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

# --- private directory, cleanup by pid
T=$(mktemp -d /tmp/callahead-bench.XXXXXX)
REDIS_PID=
POLICYD_PID=
SINK_PIDS=
cleanup() {
    local rc=$?
    for pid in $POLICYD_PID $REDIS_PID $SINK_PIDS; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $POLICYD_PID $REDIS_PID $SINK_PIDS; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        say "run.sh: kept $T"
    else
        rm -rf "$T"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports come from below the kernel's ephemeral range: a port inside it may be the source
# port of one of the thousands of client connections a run opens (or of one in TIME_WAIT),
# and then nobody listens on it but bind() fails ("Address already in use").
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] 2>/dev/null || EPHEMERAL_LOW=32768
# free_port - a TCP port on 127.0.0.1 nobody listens on (checked, not reserved: good enough here)
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

# 1000 connections need 1000+ descriptors in the client and in each server
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
maxn=0
for n in $CONNS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] || [ "$nofile" -gt $((maxn + 64)) ] ||
    fail "ulimit -n is $nofile, need $((maxn + 64))"

REDIS_PORT=$(free_port)
POLICY_PORT=$(free_port)
[ "$REDIS_PORT" != "$POLICY_PORT" ] || POLICY_PORT=$(free_port)

# --- redis-server on the server core
taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no \
    --save '' --appendonly no --dir "$T" --logfile "$T/redis.log" \
    --maxclients $((maxn + 100)) &
REDIS_PID=$!
for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || fail "redis did not start: $T/redis.log"
# the key redis-benchmark -t get reads (without -r), holding a value shaped like a cached verdict
redis-cli -p "$REDIS_PORT" set key:__rand_int__ "valid 250 1732458000 cdb" >/dev/null

# --- the route table (and its CDB or next hops), the daemon's config
VALID="alice@example.test bob@example.test carol@example.test"
if [ "$ROUTE" = cdb ]; then
    INVALID="nobody@example.test"
    for a in $VALID; do printf '%s OK\n' "$a"; done | cdb -cm "$T/users.cdb"
    cat >"$T/routes" <<EOF
# benchmark routes: one CDB domain, everything else unknown
example.test   cdb:$T/users.cdb
*              dunno
EOF
else
    # two next hops: one accepts every RCPT, one says "user unknown" to every RCPT.
    # Not smtp-sink -f rcpt: its "500 5.3.0 Error: command failed" is a refusal of the
    # client, not of the address, which the daemon answers 4xx and never caches.
    INVALID="nobody@invalid.test"
    SINK_OK=$(free_port)
    SINK_NO=$(free_port)
    # shellcheck disable=SC2046 # pkg-config prints several words on purpose
    cc -std=c11 -D_GNU_SOURCE -O2 -o "$T/smtp_testserver" "$SRCDIR/tests/e2e/smtp_testserver.c" \
        $(pkg-config --cflags --libs libevent) || fail "cannot compile smtp_testserver.c"
    printf 'rcpt * 550 5.1.1 <nobody@invalid.test>: Recipient address rejected: User unknown\n' \
        >"$T/unknown.script"
    taskset -c "$CLIENT_CPU" smtp-sink -u nobody "127.0.0.1:$SINK_OK" 64 &
    SINK_PIDS="$SINK_PIDS $!"
    taskset -c "$CLIENT_CPU" "$T/smtp_testserver" -p "$SINK_NO" -s "$T/unknown.script" \
        >"$T/testserver.log" 2>&1 &
    SINK_PIDS="$SINK_PIDS $!"
    cat >"$T/routes" <<EOF
# benchmark routes: callouts to local next hops, everything else unknown
example.test   smtp:[127.0.0.1]:$SINK_OK
invalid.test   smtp:[127.0.0.1]:$SINK_NO
*              dunno
EOF
fi
cat >"$T/callahead.conf" <<EOF
# written by tests/bench/run.sh (ROUTE=$ROUTE CACHE=$CACHE)
listen = inet:127.0.0.1:$POLICY_PORT
redis_server = 127.0.0.1:$REDIS_PORT
route_table = $T/routes
max_connections = $((maxn + 100))
EOF
[ "$CACHE" = l1 ] || echo "cache_l1_size = 1" >>"$T/callahead.conf"
"$POLICYD" -c "$T/callahead.conf" -t >/dev/null 2>"$T/check.log" ||
    fail "configuration rejected: $(cat "$T/check.log")"

# --- the daemon on the server core, in the foreground; its per-decision log goes to a file
# (a real one writes the same line to syslog: that cost is part of what is measured)
# (appended, so it can be emptied between runs to count each run's cache answers)
taskset -c "$SERVER_CPU" "$POLICYD" -f -c "$T/callahead.conf" 2>>"$T/policyd.log" &
POLICYD_PID=$!
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$POLICY_PORT") 2>/dev/null && break
    kill -0 "$POLICYD_PID" 2>/dev/null || fail "policyd exited: $(tail -5 "$T/policyd.log")"
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$POLICY_PORT") 2>/dev/null || fail "policyd does not listen"

ADDRS=()
for a in $VALID $INVALID; do ADDRS+=(-a "$a"); done

# psi_stall_us - microseconds some task waited for a CPU since boot (Linux PSI), or ""; the
# stall% column is its growth over a row's two runs: CPU taken by anything else on the machine
psi_stall_us() { sed -n 's/^some .*total=\([0-9]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || true; }

# field FILE NAME - the value after "NAME: " in policy_bench output
field() { sed -n "s/^$2: //p" "$1" | head -1; }
# lat FILE WHICH - one latency figure (p50, p99, ...) from policy_bench output, in microseconds
lat() { sed -n "s/^latency_us: .*$2 \([0-9.]*\).*/\1/p" "$1" | head -1; }

# cached_share - which part of the answers since the last call came from a cache, as
# "ANY/REDIS": from either cache, and from Redis alone (an L1 miss, a Redis round trip)
cached_share() {
    local all hit red
    all=$(grep -c ' cached=' "$T/policyd.log" || true)
    hit=$(grep -c ' cached=\(l1\|redis\)' "$T/policyd.log" || true)
    red=$(grep -c ' cached=redis' "$T/policyd.log" || true)
    : >"$T/policyd.log"
    awk -v a="$all" -v h="$hit" -v r="$red" \
        'BEGIN { if (a) printf "%.2f/%.2f", h / a, r / a; else printf "-" }'
}

# warm up once: every address goes through its backend into the cache, connections get accepted
taskset -c "$CLIENT_CPU" "$BENCH" -p "$POLICY_PORT" -c 50 -n 20000 -q "${ADDRS[@]}" \
    >"$T/warm.out" 2>&1 || fail "warm-up failed: $(cat "$T/warm.out")"
cp "$T/policyd.log" "$T/policyd.warm.log"
share=$(cached_share)
if [ "$ROUTE" = smtp ] && grep -q 'verification not available' "$T/policyd.warm.log"; then
    fail "this build cannot verify smtp routes (no cached verdicts to measure); try ROUTE=cdb"
fi

say "run.sh: policyd pid $POLICYD_PID port $POLICY_PORT, redis pid $REDIS_PID port $REDIS_PORT,"
say "run.sh: servers on cpu $SERVER_CPU, clients on cpu $CLIENT_CPU, $REQUESTS requests per run"

printf 'date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s, %s cpus, kernel %s\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(uname -r)"
printf 'load average before: %s; cpu pressure: %s\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
printf 'route: %s, cache: %s, answers from a cache/from Redis during warm-up: %s\n\n' "$ROUTE" "$CACHE" "$share"
printf '%-6s %12s %10s %10s %12s %10s %10s %7s %11s %6s\n' N policyd_rps p50_us p99_us \
    redis_rps p50_us p99_us ratio cached/redis stall%
row=0
last_n=
last_rps=
declare -A RPS_AT # the last measured policyd rate at each N
ROWS=()           # the table's rows, for the summary
for n in $CONNS; do
    for rep in $(seq 1 "$REPEAT"); do
        row=$((row + 1))
        stall0=$(psi_stall_us)
        t0=$(date +%s%N)
        out=$T/policy.$n.$rep.out
        if ! taskset -c "$CLIENT_CPU" "$BENCH" -p "$POLICY_PORT" -c "$n" -n "$REQUESTS" \
            -w "$WARMUP" -q "${ADDRS[@]}" >"$out" 2>"$out.err"; then
            cat "$out" "$out.err" >&2
            fail "policy_bench failed at N=$n"
        fi
        share=$(cached_share)
        prps=$(field "$out" requests_per_second)
        pp50=$(lat "$out" p50)
        pp99=$(lat "$out" p99)

        rout=$T/redis.$n.$rep.csv
        taskset -c "$CLIENT_CPU" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t get -c "$n" \
            -n "$REQUESTS" --csv >"$rout" 2>"$rout.err" || fail "redis-benchmark failed at N=$n"
        # "GET","rps","avg_ms","min_ms","p50_ms","p95_ms","p99_ms","max_ms"
        IFS=, read -r _ rrps _ _ rp50 _ rp99 _ < <(grep '^"GET"' "$rout" | tr -d '"')
        [ -n "${rrps:-}" ] || fail "cannot read redis-benchmark output: $(cat "$rout")"
        stall1=$(psi_stall_us)
        t1=$(date +%s%N)

        line=$(awk -v n="$n" -v prps="$prps" -v pp50="$pp50" -v pp99="$pp99" -v rrps="$rrps" \
            -v rp50="$rp50" -v rp99="$rp99" -v share="$share" -v s0="$stall0" -v s1="$stall1" \
            -v t0="$t0" -v t1="$t1" 'BEGIN {
                stall = s0 == "" ? "-" : sprintf("%.0f", 100 * (s1 - s0) * 1000 / (t1 - t0))
                printf "%-6s %12.0f %10.1f %10.1f %12.0f %10.1f %10.1f %7.2f %11s %6s\n",
                    n, prps, pp50, pp99, rrps, rp50 * 1000, rp99 * 1000, prps / rrps, share,
                    stall }')
        printf '%s\n' "$line"
        ROWS+=("$line")
        last_n=$n
        last_rps=$prps
        RPS_AT[$n]=$prps
    done
done

# the latency target is about a loaded, not a saturated, server: a closed loop at N
# connections always waits N/throughput, so also offer a fixed fraction of the rate
if [ -z "${PACED_N:-}" ]; then
    PACED_N=$last_n
    case " $CONNS " in *" 1000 "*) PACED_N=1000 ;; esac
fi
if [ -n "${RPS_AT[$PACED_N]:-}" ]; then
    last_n=$PACED_N
    last_rps=${RPS_AT[$PACED_N]}
fi
if [ -n "$last_n" ] && awk -v f="$RATE_FRACTION" 'BEGIN { exit !(f > 0) }'; then
    rate=$(awk -v r="$last_rps" -v f="$RATE_FRACTION" 'BEGIN { printf "%d", r * f }')
    out=$T/policy.paced.out
    if ! taskset -c "$CLIENT_CPU" "$BENCH" -p "$POLICY_PORT" -c "$last_n" -n "$REQUESTS" \
        -w "$WARMUP" -R "$rate" -q "${ADDRS[@]}" >"$out" 2>"$out.err"; then
        cat "$out" "$out.err" >&2
        fail "paced policy_bench failed"
    fi
    printf '\npaced: N=%s offered %s/s (%s of the saturated rate): achieved %s/s, %s, cached %s\n' \
        "$last_n" "$rate" "$RATE_FRACTION" "$(field "$out" requests_per_second)" \
        "$(field "$out" latency_us)" "$(cached_share)"
    PACED_P99=$(lat "$out" p99)
    PACED_DESC="N=$last_n at $rate/s ($RATE_FRACTION of the saturated rate)"
fi

printf '\nactions in the last policyd run:\n'
sed -n 's/^action: /  /p' "$out"

# --- summary: the figures against the issue's targets, and how busy the machine was
printf '\nsummary (%s, route %s, cache %s):\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$ROUTE" "$CACHE"
printf '%s\n' "${ROWS[@]}" | awk '{
        n = $1; r = $8; s = $10
        if (!(n in lo) || r < lo[n]) lo[n] = r
        if (!(n in hi) || r > hi[n]) hi[n] = r
        if (!(n in order)) { order[n] = ++k; ns[k] = n }
        if (s != "-" && s + 0 > stall) stall = s + 0
        if (r < 1.0) below++
    } END {
        for (i = 1; i <= k; i++)
            printf "  N=%-6s policyd/redis-benchmark GET: %.2f-%.2f x\n", ns[i], lo[ns[i]], hi[ns[i]]
        printf "  target >= 1.0 x at every N: %s\n", below ? "MISSED in " below " row(s)" : "met"
        printf "  highest stall%%: %d (CPU taken by other work; above ~10 the rows are noisy)\n", stall
    }'
if [ -n "${PACED_P99:-}" ]; then
    awk -v p="$PACED_P99" -v d="$PACED_DESC" 'BEGIN {
        printf "  open-loop p99 %s: %.1f us: target <= 1000 us %s\n", d, p,
            p <= 1000 ? "met" : "MISSED" }'
fi
printf '  load average now: %s (before: see the top)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

kill -0 "$POLICYD_PID" 2>/dev/null || fail "policyd died during the run"
