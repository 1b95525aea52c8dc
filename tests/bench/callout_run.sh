#!/bin/bash
# tests/bench/callout_run.sh - the callout benchmark: what a never-seen recipient costs
# through callahead-policyd, next to a direct SMTP dialogue with the same next hop and
# next to Postfix's own reject_unverified_recipient (verify(8)), and how many bytes
# each writes to disk per probe. Prints one table; docs/BENCHMARKS_CALLOUTS.md records it.
#
# Why its own client (callout_bench.c, compiled here): every request must carry a
# never-seen address (policy_bench cycles through at most 64), and a direct SMTP
# dialogue must be timed by the same code as a policy query, so that the difference
# is the daemon's overhead. swaks is timed too, once, to show why it is not used:
# its perl start-up is ~100x the thing measured.
#
# Servers, all on 127.0.0.1, free ports, one temp dir, stopped by pid on exit:
#   redis-server           the shared cache (no persistence: --save '' --appendonly no)
#   postfix "back"         the next hop: relay for the dept, reuse and bulk* test domains;
#                          u*@ exist (250), x*@ do not (550 5.1.1 ... relay recipient table)
#   smtp-sink              an accept-all next hop (sink.test), to see the daemon's own ceiling
#   callahead-policyd      routes to "back": dept.test reuse=no, reuse.test reuse=yes, and
#                          for throughput bulk.test reuse=yes max_connections=CONC,
#                          bulk10.test reuse=yes max_connections=10 (fewer sessions than
#                          clients: lookups queue for a session), bulkn.test reuse=no
#                          max_connections=CONC; sink.test to smtp-sink (max_connections=CONC)
#   callahead-policyd #2   same routes, cache_l1_size = 1: answers from Redis, not L1
#   postfix "front-policy" relay MX: check_policy_service inet:policyd
#   postfix "front-verify" relay MX: reject_unverified_recipient, verify(8) probing "back"
#
# Disk: /proc/PID/io of policyd, redis and each Postfix instance (master + live children: the
# kernel adds a reaped child's I/O to its parent) around the rows; with strace installed, also
# the file-system calls of policyd (a separate untimed pass) and of front-verify (its
# sequential cold row).
#
# Environment (optional): BUILD=DIR (configured build dir; default a private one under
# /tmp), N=200 addresses per latency row, NTHRU=1000 addresses per throughput row,
# CONC=50 throughput concurrency, VCONC=20 concurrency of the cold verify(8) row,
# VN1=10 addresses of the sequential cold verify(8) row, KEEP=1 keep the temp dir,
# POLICYD_EXTRA="debug = yes" lines added to both daemon configs, LOG_TS=1 prefix every
# daemon log line with its arrival time (with debug: where a slow callout spent its time).
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-/tmp/callahead-cbench-build}
N=${N:-200}
NTHRU=${NTHRU:-1000}
CONC=${CONC:-50}
VCONC=${VCONC:-20}
VN1=${VN1:-10}
KEEP=${KEEP:-0}

say() { printf 'callout_run: %s\n' "$*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}

for tool in redis-server redis-cli postfix smtp-sink script swaks cc pkg-config; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

# --- build the daemon (out of tree) and the client
if [ ! -f "$BUILD/Makefile" ]; then
    [ -x "$SRCDIR/configure" ] || (cd "$SRCDIR" && autoreconf -fi >/dev/null 2>&1)
    mkdir -p "$BUILD"
    (cd "$BUILD" && "$SRCDIR/configure" --disable-tests CFLAGS="-O2 -g" >/dev/null) ||
        fail "configure failed in $BUILD"
fi
make -C "$BUILD" -j2 callahead-policyd >/dev/null 2>&1 || fail "build failed in $BUILD"
POLICYD=$BUILD/callahead-policyd

T=$(mktemp -d /tmp/callahead-cbench.XXXXXX)
chmod 0755 "$T" # Postfix daemons (user postfix) and smtp-sink (nobody) walk into it
BENCH=$T/callout_bench
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$BENCH" "$SRCDIR/tests/bench/callout_bench.c" \
    $(pkg-config --cflags --libs libevent) || fail "cannot compile callout_bench.c"

# --- cleanup by pid, also on failure and ^C
PIDS=()
PF_DIRS=()
cleanup() {
    local rc=$? d pid i
    trap - EXIT
    for d in "${PF_DIRS[@]}"; do
        pid=$(tr -dc 0-9 <"$d/queue/pid/master.pid" 2>/dev/null || true)
        script -qec "postfix -c '$d' stop" /dev/null >/dev/null 2>&1 || true
        i=0
        while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then
        say "files kept in $T"
    else
        rm -rf "$T"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED_PORTS=" "
# free_port VAR - a loopback port below the ephemeral range that no socket uses
free_port() {
    local p hex
    for _ in $(seq 1 500); do
        p=$((12000 + RANDOM % 18000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        hex=$(printf ':%04X' "$p")
        if ! awk -v p="$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            USED_PORTS="$USED_PORTS$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    fail "no free port"
}

# wait_port PORT WHAT - until PORT accepts connections (30 s)
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    fail "$2 does not listen on $1"
}

# --- servers
free_port REDIS_PORT
free_port SINK_PORT
free_port BACK_PORT
free_port POLICY_PORT
free_port POLICY2_PORT
free_port FP_PORT
free_port FV_PORT

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no --save '' --appendonly no \
    --dir "$T" --logfile "$T/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" redis-server

smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256 >"$T/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
wait_port "$SINK_PORT" smtp-sink

# pf_instance NAME PORT MAIN-CF-EXTRA - a private Postfix instance in $T/NAME with smtpd
# on 127.0.0.1:PORT (adapted from tests/e2e/lib.sh: nothing chrooted, own queue and log)
pf_instance() {
    local name=$1 port=$2 extra=$3 d=$T/$1
    mkdir -p "$d/log" "$d/queue" "$d/data"
    chown postfix "$d/data"
    cat >"$d/main.cf" <<EOF
# private Postfix instance "$name" for tests/bench/callout_run.sh
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = $name.bench.test
mydomain = bench.test
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
# set-permissions must not depend on doc files (postfix-doc ships them gzipped)
readme_directory = no
html_directory = no
default_process_limit = 200
# no flow control: without deliveries qmgr hands out no tokens, and every queue file that
# smtpd or verify(8) opens would wait in_flow_delay (1s) - a benchmark artefact
in_flow_delay = 0
maillog_file = $d/log/maillog
maillog_file_prefixes = $d/log
$extra
EOF
    sed "s/^SMTPD_LISTEN /127.0.0.1:$port /" "$SRCDIR/tests/e2e/postfix-master.cf" >"$d/master.cf"
    script -qec "postfix -c '$d' set-permissions" /dev/null >"$d/log/setup.log" 2>&1 ||
        fail "postfix $name set-permissions: $(cat "$d/log/setup.log")"
    script -qec "postfix -c '$d' start" /dev/null >>"$d/log/setup.log" 2>&1 ||
        fail "postfix $name start: $(cat "$d/log/setup.log")"
    PF_DIRS+=("$d")
    wait_port "$port" "postfix $name"
}

# the next hop: knows u*@ in its relay domains, refuses x*@ with 550 at RCPT
mkdir -p "$T/back"
printf '/^u[^@]*@/ OK\n' >"$T/back/users.regexp"
pf_instance back "$BACK_PORT" "relay_domains = dept.test reuse.test bulk.test bulk10.test bulkn.test
relay_recipient_maps = regexp:$T/back/users.regexp
transport_maps = inline:{ {dept.test = discard:} {reuse.test = discard:} {bulk.test = discard:}
    {bulk10.test = discard:} {bulkn.test = discard:} }"

cat >"$T/routes" <<EOF
# written by tests/bench/callout_run.sh
dept.test   smtp:[127.0.0.1]:$BACK_PORT reuse=no
reuse.test  smtp:[127.0.0.1]:$BACK_PORT reuse=yes
bulk.test   smtp:[127.0.0.1]:$BACK_PORT reuse=yes max_connections=$CONC
bulk10.test smtp:[127.0.0.1]:$BACK_PORT reuse=yes max_connections=10
bulkn.test  smtp:[127.0.0.1]:$BACK_PORT reuse=no max_connections=$CONC
sink.test   smtp:[127.0.0.1]:$SINK_PORT reuse=yes max_connections=$CONC
*           dunno
EOF
for i in 1 2; do
    port=$POLICY_PORT
    [ $i = 1 ] || port=$POLICY2_PORT
    {
        echo "# written by tests/bench/callout_run.sh"
        echo "listen = inet:127.0.0.1:$port"
        echo "redis_server = 127.0.0.1:$REDIS_PORT"
        echo "route_table = $T/routes"
        [ $i = 1 ] || echo "cache_l1_size = 1"
        [ -z "${POLICYD_EXTRA:-}" ] || printf '%s\n' "$POLICYD_EXTRA"
    } >"$T/policyd$i.conf"
    "$POLICYD" -c "$T/policyd$i.conf" -t >/dev/null 2>"$T/check.log" ||
        fail "configuration rejected: $(cat "$T/check.log")"
    # the log goes through a pipe to another process, as it goes to syslog in production:
    # the daemon's own disk writes are then what the probes cost, not the logging
    if [ "${LOG_TS:-0}" = 1 ]; then # for diagnosis: each log line gets its arrival time
        "$POLICYD" -f -c "$T/policyd$i.conf" \
            2> >(perl -MTime::HiRes=time -ne '$| = 1; printf "%.4f %s", time, $_' >"$T/policyd$i.log") &
    else
        "$POLICYD" -f -c "$T/policyd$i.conf" 2> >(cat >"$T/policyd$i.log") &
    fi
    PIDS+=("$!")
    eval "POLICYD${i}_PID=$!"
    wait_port "$port" "callahead-policyd #$i"
done

pf_instance front-policy "$FP_PORT" "relay_domains = dept.test reuse.test
transport_maps = inline:{ {dept.test = smtp:[127.0.0.1]:$BACK_PORT} {reuse.test = smtp:[127.0.0.1]:$BACK_PORT} }
smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service { inet:127.0.0.1:$POLICY_PORT, timeout=30s, default_action=DEFER_IF_PERMIT }"

pf_instance front-verify "$FV_PORT" "relay_domains = dept.test
transport_maps = inline:{ {dept.test = smtp:[127.0.0.1]:$BACK_PORT} }
address_verify_map = btree:\$data_directory/verify_cache
address_verify_poll_delay = 1s
unverified_recipient_reject_code = 550
smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient"

say "redis $REDIS_PORT, smtp-sink $SINK_PORT, postfix back $BACK_PORT, policyd $POLICY_PORT" \
    "(L1) $POLICY2_PORT (Redis), front-policy $FP_PORT, front-verify $FV_PORT; dir $T"

# --- measuring helpers

# addrs FILE TAG DOMAIN COUNT - never-seen addresses, alternately valid (u) and invalid (x)
addrs() {
    awk -v t="$2" -v d="$3" -v n="$4" \
        'BEGIN { for (i = 1; i <= n; i++) printf "%s%s%d@%s\n", (i % 2 ? "u" : "x"), t, i, d }' >"$1"
}

# io_pids PID... - sum of write_bytes, cancelled_write_bytes, wchar over the processes
io_pids() {
    local p
    for p in "$@"; do cat "/proc/$p/io" 2>/dev/null || true; done |
        awk '/^write_bytes/ { w += $2 } /^cancelled_write_bytes/ { c += $2 } /^wchar/ { x += $2 }
             END { printf "%d %d %d\n", w, c, x }'
}

# pf_pids DIR [COMM] - the instance's master and its children (only COMM when given, or
# every child but postlogd when COMM is "-postlogd"); a reaped child's I/O is added to
# the master's /proc/PID/io by the kernel, so master + live children is the total
pf_pids() {
    local m
    m=$(tr -dc 0-9 <"$1/queue/pid/master.pid")
    case "${2:-}" in
    "") echo "$m" && ps -o pid= --ppid "$m" ;;
    -postlogd) echo "$m" && ps -o pid=,comm= --ppid "$m" | awk '$2 != "postlogd" { print $1 }' ;;
    *) ps -o pid=,comm= --ppid "$m" | awk -v c="$2" '$2 == c { print $1 }' ;;
    esac
}

# pf_io DIR - "WRITE CANCELLED WCHAR LOGWRITE": the instance without postlogd, and postlogd
pf_io() {
    # shellcheck disable=SC2046 # pid lists
    printf '%s %s\n' "$(io_pids $(pf_pids "$1" -postlogd))" \
        "$(io_pids $(pf_pids "$1" postlogd) | cut -d' ' -f1)"
}

# back_conns - connections the next hop has logged so far
back_conns() {
    sleep 0.3 # postlogd writes asynchronously
    grep -c ']: connect from ' "$T/back/log/maillog" || true
}

# log_mark I - lines in policyd #I's log so far
log_mark() { wc -l <"$T/policyd$1.log"; }
# log_sources I MARK - how the decisions after MARK were answered: callout/l1/redis counts
log_sources() {
    tail -n +"$(($2 + 1))" "$T/policyd$1.log" | awk '/: info: .* verdict=/ {
        if (/ cached=l1/) l++; else if (/ cached=redis/) r++; else c++ }
        END { printf "%d/%d/%d", c, l, r }'
}

ROWS=$T/rows
: >"$ROWS"
# row LABEL CONC OUTFILE WHICH BACKEND-CONNS SOURCES - one table row from a callout_bench run
row() {
    local lat
    lat=$(sed -n "s/^$4: //p" "$3")
    awk -v l="$1" -v c="$2" -v lat="$lat" -v b="$5" -v s="$6" \
        -v n="$(sed -n 's/^answered: //p' "$3")" -v ps="$(sed -n 's/^per_second: //p' "$3")" \
        -v rep="$(sed -n 's/^reply: //p' "$3" | tr '\n' ',' | sed 's/,$//; s/,/, /g')" 'BEGIN {
            split(lat, a, " ")
            printf "%-44s %5s %4s %9.3f %9.3f %9.1f %6s %-11s %s\n", l, n, c, a[2] / 1000,
                a[6] / 1000, ps, b, s, rep }' >>"$ROWS"
}

# run NAME MODE PORT CONC FILE - callout_bench, output in $T/NAME.out; fails the script on errors
run() {
    "$BENCH" -m "$2" -p "$3" -c "$4" -T 60000 -f "$5" >"$T/$1.out" 2>"$T/$1.err" ||
        fail "$1: callout_bench: $(head -5 "$T/$1.err") $(cat "$T/$1.out")"
}

STRACE_CALLS=openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,link,truncate,ftruncate
STRACE_CALLS=$STRACE_CALLS,fsync,fdatasync,sync,syncfs,sync_file_range,msync
STRACE_CALLS=$STRACE_CALLS,connect # not a file call: shows the tracer was attached
STRACE_PID=
# strace_on FILE PID... - trace the file-system calls of those processes and their new children
strace_on() {
    local f=$1 p args=()
    shift
    command -v strace >/dev/null || return 0
    for p in "$@"; do args+=(-p "$p"); done
    strace -f -qq -e trace="$STRACE_CALLS" -o "$f" "${args[@]}" 2>/dev/null &
    STRACE_PID=$!
    PIDS+=("$STRACE_PID")
    sleep 0.5 # attached
}
# strace_off - stop the tracer (by its pid) and let it detach
strace_off() {
    [ -n "$STRACE_PID" ] || return 0
    sleep 0.5 # the last probe's cache update
    kill -INT "$STRACE_PID" 2>/dev/null || true
    wait "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=
}
# strace_count FILE REGEX - calls in FILE matching REGEX (an interrupted call counts once)
strace_count() {
    [ -f "$1" ] || { echo "-" && return 0; }
    grep -v 'resumed>' "$1" | grep -cE "$2" || true
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

# 1. direct SMTP sessions to the next hop, then the same addresses through policyd (cold),
#    then again (warm: L1), then through policyd #2 (warm: Redis)
addrs "$T/a.dept" a dept.test "$N"
sed 's/@dept\.test$/@reuse.test/' "$T/a.dept" >"$T/a.reuse"
b0=$(back_conns)
BACK_IO0=$(pf_io "$T/back")
run direct smtp "$BACK_PORT" 1 "$T/a.dept"
BACK_IO1=$(pf_io "$T/back")
b1=$(back_conns)
row "direct SMTP to next hop (connect..RCPT reply)" 1 "$T/direct.out" session_us $((b1 - b0)) -
row "  same, RCPT TO..reply only" 1 "$T/direct.out" rcpt_us - -

# swaks, for reference only: 20 runs, wall clock per run
: >"$T/swaks.times"
for i in $(seq 1 20); do
    t0=$(date +%s%N)
    swaks --server "127.0.0.1:$BACK_PORT" --quit-after RCPT --from sender@client.bench.test \
        --to "uswaks$i@dept.test" --helo client.bench.test >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >>"$T/swaks.times"
done
sort -n "$T/swaks.times" | awk '{ v[NR] = $1 } END {
    printf "%-44s %5d %4d %9.3f %9.3f %9s %6s %-11s %s\n", "swaks --quit-after RCPT (wall, incl. perl)",
        NR, 1, v[int((NR - 1) * 0.5 + 1.5)] / 1000, v[NR] / 1000, "-", 20, "-", "(p99 = max of 20)" }' >>"$ROWS"

POL_IO0=$(io_pids "$POLICYD1_PID")
REDIS_IO0=$(io_pids "$REDIS_PID")
LOGSZ0=$(stat -c %s "$T/policyd1.log")
PROBES=0
for r in dept reuse; do
    m=$(log_mark 1)
    b0=$(back_conns)
    run "cold.$r" policy "$POLICY_PORT" 1 "$T/a.$r"
    b1=$(back_conns)
    if [ $r = dept ]; then
        row "policyd cold, callout reuse=no" 1 "$T/cold.$r.out" latency_us $((b1 - b0)) "$(log_sources 1 "$m")"
    else
        row "policyd cold, callout reuse=yes" 1 "$T/cold.$r.out" latency_us $((b1 - b0)) "$(log_sources 1 "$m")"
    fi
    PROBES=$((PROBES + N))
done
m=$(log_mark 1)
b0=$(back_conns)
run warm.l1 policy "$POLICY_PORT" 1 "$T/a.dept"
b1=$(back_conns)
row "policyd warm (L1 hit)" 1 "$T/warm.l1.out" latency_us $((b1 - b0)) "$(log_sources 1 "$m")"
m=$(log_mark 2)
run warm.redis policy "$POLICY2_PORT" 1 "$T/a.dept"
b2=$(back_conns)
row "policyd #2 warm (Redis hit, cache_l1_size=1)" 1 "$T/warm.redis.out" latency_us $((b2 - b1)) "$(log_sources 2 "$m")"

# 2. callouts/s: NTHRU distinct addresses at CONC, to smtp-sink and to the Postfix next hop;
#    and the next hop's own rate for direct sessions at the same concurrency
addrs "$T/t.sink" t sink.test "$NTHRU"
m=$(log_mark 1)
run thru.sink policy "$POLICY_PORT" "$CONC" "$T/t.sink"
row "callouts/s, smtp-sink next hop, reuse=yes" "$CONC" "$T/thru.sink.out" latency_us - "$(log_sources 1 "$m")"
# The next hop's smtpd processes are forked on demand by its master: the first CONC
# connections of a run wait for fork+exec. An untimed warm-up of CONC direct sessions
# leaves CONC smtpd processes idle, so that no row (direct or callout) pays for them.
# Then, in this order: direct sessions (the next hop's own rate); bulk: the route defaults,
# twice with new addresses each time: "first contact" opens its sessions in the row, "open
# sessions" finds them in the pool (idle_timeout 5s); bulk10: max_connections=10, lookups
# wait for one of 10 sessions; bulkn: a new session per callout.
addrs "$T/t.warm" warm dept.test $((CONC * 4))
run thru.warm smtp "$BACK_PORT" "$CONC" "$T/t.warm"
addrs "$T/t.direct" d dept.test "$NTHRU"
b0=$(back_conns)
run thru.direct smtp "$BACK_PORT" "$CONC" "$T/t.direct"
b1=$(back_conns)
row "direct SMTP sessions/s to Postfix next hop" "$CONC" "$T/thru.direct.out" session_us $((b1 - b0)) -
for r in bulk bulk2 bulk10 bulkn; do
    d=$r
    [ $r != bulk2 ] || d=bulk
    addrs "$T/t.$r" "t${r}_" "$d.test" "$NTHRU"
    m=$(log_mark 1)
    b0=$(back_conns)
    run "thru.$r" policy "$POLICY_PORT" "$CONC" "$T/t.$r"
    b1=$(back_conns)
    case $r in
    bulk) what="callouts/s, Postfix next hop, first contact" ;;
    bulk2) what="  same, sessions already open" ;;
    bulk10) what="  same, max_connections=10" ;;
    bulkn) what="  same, reuse=no" ;;
    esac
    row "$what" "$CONC" "$T/thru.$r.out" latency_us $((b1 - b0)) "$(log_sources 1 "$m")"
done
PROBES=$((PROBES + 5 * NTHRU))
POL_IO1=$(io_pids "$POLICYD1_PID")
REDIS_IO1=$(io_pids "$REDIS_PID")
LOGSZ1=$(stat -c %s "$T/policyd1.log")

# 3. through a front Postfix: check_policy_service (callahead) vs reject_unverified_recipient
addrs "$T/f.pol" f dept.test "$N"
FP_IO0=$(pf_io "$T/front-policy")
m=$(log_mark 1)
b0=$(back_conns)
run front.pol.cold smtp "$FP_PORT" 1 "$T/f.pol"
b1=$(back_conns)
FP_IO1=$(pf_io "$T/front-policy")
row "front Postfix + policyd: cold RCPT" 1 "$T/front.pol.cold.out" rcpt_us $((b1 - b0)) "$(log_sources 1 "$m")"
m=$(log_mark 1)
run front.pol.warm smtp "$FP_PORT" 1 "$T/f.pol"
b2=$(back_conns)
row "front Postfix + policyd: warm RCPT" 1 "$T/front.pol.warm.out" rcpt_us $((b2 - b1)) "$(log_sources 1 "$m")"

addrs "$T/v.one" w dept.test "$VN1"
addrs "$T/v.many" v dept.test "$N"
FV_IO0=$(pf_io "$T/front-verify")
b0=$(back_conns)
# the sequential row runs under strace (when installed): which file system calls do the
# instance's processes make per probe (queue file create/rename/unlink, fsync, the cache)?
# shellcheck disable=SC2046 # a list of pids
strace_on "$T/strace.verify" $(pf_pids "$T/front-verify")
run front.ver.cold1 smtp "$FV_PORT" 1 "$T/v.one"
strace_off
b1=$(back_conns)
row "front Postfix verify(8): cold RCPT" 1 "$T/front.ver.cold1.out" rcpt_us $((b1 - b0)) -
run front.ver.cold smtp "$FV_PORT" "$VCONC" "$T/v.many"
b2=$(back_conns)
row "front Postfix verify(8): cold RCPT" "$VCONC" "$T/front.ver.cold.out" rcpt_us $((b2 - b1)) -
# probes still in flight when smtpd gave up (450) finish into the cache: wait for them
for _ in $(seq 1 100); do
    [ -z "$(find "$T/front-verify/queue/incoming" "$T/front-verify/queue/active" \
        "$T/front-verify/queue/deferred" -type f 2>/dev/null | head -1)" ] && break
    sleep 0.2
done
sleep 1
FV_IO1=$(pf_io "$T/front-verify")
VPROBES=$(grep -c 'status=deliverable\|status=undeliverable' "$T/front-verify/log/maillog" || true)
b2=$(back_conns)
run front.ver.warm smtp "$FV_PORT" 1 "$T/v.many"
b3=$(back_conns)
row "front Postfix verify(8): warm RCPT (2nd try)" 1 "$T/front.ver.warm.out" rcpt_us $((b3 - b2)) -

# the same strace view of callahead-policyd: a separate pass of VN1 * 10 cold callouts
# (not a timed row: strace slows every system call)
addrs "$T/s.sink" s sink.test $((VN1 * 10))
strace_on "$T/strace.policyd" "$POLICYD1_PID"
run strace.policyd policy "$POLICY_PORT" 1 "$T/s.sink"
strace_off
T_END=$(date +%s)

# --- report
printf 'date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s, %s cpus, kernel %s; postfix %s, redis %s\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(uname -r)" \
    "$(postconf -c "$T/back" -h mail_version)" "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
printf 'load average before/after: %s / %s; measuring took %ss\n' "$LOAD0" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" $((T_END - T_START))
printf 'client: callout_bench (C, libevent), latency = one request'"'"'s round trip; addresses alternate\n'
printf '  valid u*@ (250) / invalid x*@ (550) and are never reused across rows except "warm"\n\n'
printf '%-44s %5s %4s %9s %9s %9s %6s %-11s %s\n' what n conc p50_ms p99_ms per_s b_conn \
    call/l1/rds replies
cat "$ROWS"

# p50/p99 of a callout_bench output (ms)
pct() { sed -n "s/^$2: //p" "$1" | awk -v k="$3" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) / 1000 }'; }
# rate of a callout_bench output (answers per second)
rate() { sed -n 's/^per_second: //p' "$1"; }

# one line per callout row to compare with the next hop's own session rate (issue target:
# callouts/s >= 1.5x direct sessions/s at the same concurrency, p99 < 20 ms)
printf '\n'
for r in bulk2 bulk; do
    case $r in
    bulk2) lab="sessions open" ;;
    bulk) lab="first contact" ;;
    esac
    awk -v c="$(rate "$T/thru.$r.out")" -v d="$(rate "$T/thru.direct.out")" -v lab="$lab" \
        -v p50="$(pct "$T/thru.$r.out" latency_us p50)" -v p99="$(pct "$T/thru.$r.out" latency_us p99)" \
        -v n="$NTHRU" -v k="$CONC" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        printf "summary (%s): callouts/s %.0f, direct sessions/s %.0f, ratio %.2f, p50 %.3f ms, p99 %.3f ms (conc %d, %d cold addresses, half valid, load %s)\n",
            lab, c, d, (d > 0 ? c / d : 0), p50, p99, k, n, load }'
done
printf '\noverhead of a cold policy query (callout, reuse=no) over a direct session, same next hop and client:\n'
awk -v d50="$(pct "$T/direct.out" session_us p50)" -v d99="$(pct "$T/direct.out" session_us p99)" \
    -v c50="$(pct "$T/cold.dept.out" latency_us p50)" -v c99="$(pct "$T/cold.dept.out" latency_us p99)" \
    'BEGIN { printf "  p50 %+.3f ms (%.3f vs %.3f), p99 %+.3f ms (%.3f vs %.3f)\n", c50 - d50, c50, d50,
        c99 - d99, c99, d99 }'

read -r pw pc px <<<"$POL_IO0"
read -r qw qc qx <<<"$POL_IO1"
read -r rw _ _ <<<"$REDIS_IO0"
read -r sw _ _ <<<"$REDIS_IO1"
printf '\ndisk writes per probe (/proc/PID/io write_bytes; cancelled = dirty pages dropped by unlink):\n'
awk -v n="$PROBES" -v w=$((qw - pw)) -v c=$((qc - pc)) -v x=$((qx - px)) -v r=$((sw - rw)) \
    -v lg=$((LOGSZ1 - LOGSZ0)) 'BEGIN {
    printf "  callahead-policyd: %d probes: write_bytes %.1f/probe, cancelled %.1f, wchar %.1f (sockets)\n",
        n, w / n, c / n, x / n
    printf "    its log (stderr piped away, syslog in production): %.1f bytes/probe\n", lg / n
    printf "    redis-server (no persistence configured): write_bytes %.1f/probe\n", r / n }'
# pf_disk LABEL IO0 IO1 COUNT UNIT
pf_disk() {
    local w0 c0 l0 w1 c1 l1
    read -r w0 c0 _ l0 <<<"$2"
    read -r w1 c1 _ l1 <<<"$3"
    awk -v lab="$1" -v n="$4" -v u="$5" -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v l=$((l1 - l0)) 'BEGIN {
        printf "  %s: %d %s: write_bytes %.0f/%s, cancelled %.0f/%s; its postlogd (maillog) %.0f/%s\n",
            lab, n, u, w / n, u, c / n, u, l / n, u }'
}
pf_disk "back-end Postfix, direct sessions" "$BACK_IO0" "$BACK_IO1" "$N" session
pf_disk "front Postfix + policyd, cold RCPT sessions" "$FP_IO0" "$FP_IO1" "$N" session
pf_disk "front Postfix verify(8), cold RCPT sessions" "$FV_IO0" "$FV_IO1" $((N + VN1)) session
awk -v n="$VPROBES" -v s=$((N + VN1)) 'BEGIN { printf "    (%d verify probes completed for those %d sessions)\n", n, s }'
if command -v strace >/dev/null; then
    printf '\nfile-system system calls (strace -f -e trace=%s):\n' "$STRACE_CALLS"
    for w in policyd verify; do
        f=$T/strace.$w
        if [ $w = policyd ]; then
            lab="callahead-policyd, $((VN1 * 10)) cold callouts"
        else
            lab="front Postfix verify(8), $VN1 cold RCPTs"
        fi
        printf '  %s: %s connect (tracer attached); %s fsync/fdatasync, %s file creations, %s unlink, %s rename\n' \
            "$lab" "$(strace_count "$f" '^[0-9]+ +connect\(')" \
            "$(strace_count "$f" '^[0-9]+ +(fsync|fdatasync|sync_file_range|syncfs|sync)\(')" \
            "$(strace_count "$f" 'O_CREAT|^[0-9]+ +creat\(')" "$(strace_count "$f" '^[0-9]+ +unlink(at)?\(')" \
            "$(strace_count "$f" '^[0-9]+ +rename(at2?)?\(')"
    done
fi
printf '  verify_cache after the run: %s bytes\n' "$(stat -c %s "$T/front-verify/data/verify_cache.db" 2>/dev/null || echo '?')"
