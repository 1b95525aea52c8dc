#!/bin/bash
# tests/bench/paper.sh - the goodput-vs-bounces experiment on real Postfix: how many valid
# messages a front MX accepts per second as the share of mail to non-existent recipients
# grows, with no verification, with Postfix's own reject_unverified_recipient, and with
# callahead-policyd (cold and warm cache). Writes a CSV, SVG plots (gnuplot) and a record
# of the machine, the date and every command it ran. docs/BENCHMARKS.md explains the
# figures of record.
#
# Why: the claim callahead rests on is that an MX whose smtpd processes are busy with mail
# that will bounce accepts less valid mail, and that rejecting at RCPT from a shared cache
# keeps the goodput. This is that experiment, rerunnable by anyone with Postfix.
#
# Servers, all on 127.0.0.1 (free ports, one temp dir), stopped by pid on exit:
#   back          Postfix that knows its users: u*@dept.test accepted (then discarded),
#                 anything else refused with 550 at RCPT (relay_recipient_maps)
#   smtp-sink     where the bounces go (sender@client.bench.test)
#   redis-server  callahead's shared cache (no persistence)
#   policyd       callahead-policyd: dept.test verified by SMTP callouts to back
#                 (route defaults: reuse=yes, max_connections=20, 8 RCPTs a session)
#   front-a       (a) no verification: accepts all, relays to back, bounces the refused
#   front-b       (b) reject_unverified_recipient (verify(8) probes back; Postfix defaults
#                 but unverified_recipient_reject_code = 550)
#   front-c       (c, d) check_policy_service -> policyd
#   sendmail      (e) Sendmail 8.17 (unpacked from the Debian
#                 packages, tests/e2e/lib_milter.sh) with callahead-milter on a unix socket,
#                 asking the same policyd; MaxDaemonChildren = 100 like the Postfix fronts,
#                 RefuseLA/QueueLA raised so the shared machine's load does not make it
#                 refuse or queue; CPU and disk are those of the daemon and its reaped
#                 children only (a background delivery orphaned to init is not counted);
#                 beyond MaxDaemonChildren it closes its socket: counted as refused
# (b) runs twice: "b" as (c), every address new; "bw" with the verify(8) cache filled first.
# Every front is Postfix with default_process_limit = 100 (its default), Postfix defaults
# otherwise. The load: tests/bench/smtp_load (C, one libevent loop) keeping CONNS sessions,
# 5 messages a session, one recipient and BODY bytes a message.
#
# Per point (configuration x invalid share): addresses get a tag of their own, so (a), (b)
# and (c) start cold: every valid address (a pool of 1,000) is new at first, and every
# invalid one is new (a dictionary attack). The warm ones, (d) and bw, use fixed pools
# (1,000 valid, 1,000 invalid) that are walked once through their front without DATA
# (smtp_load -P -r) before their first point. The points run share by share, every
# configuration at each share, so a disturbance of the shared machine is spread over the
# configurations. After each run the front's queue is left to drain (DRAIN_MAX seconds)
# so that the CPU and disk figures include relaying and bouncing what was accepted; what
# is still queued then is counted (backlog_left) and deleted (postsuper -d ALL), so that
# it cannot slow the next point down. CPU =
# utime+stime (+ reaped children) of the front's master and its children, of policyd and of
# redis-server from /proc; disk = /proc/PID/io write_bytes of the front's processes
# (without postlogd: logging goes to syslog in production).
#
# Environment (all optional):
#   DURATION=12    seconds of load per point
#   SHARES="0 10 25 50 75 90"   invalid shares, percent
#   CONFIGS="a b bw c d e"      which configurations
#   CONNS=200      client sessions kept open
#   BODY=2048      message body bytes
#   BACK_IN_FLOW_DELAY=0   the back end's in_flow_delay (Postfix's default: 1s)
#   DRAIN_MAX=20   seconds to wait for the front's active queue to empty after a point
#   OUT=./paper-results   where the CSV, plots and records go
#   BUILD=DIR      a configured build dir (default ./_build-paper, configured -O2 here)
#   KEEP=1         keep the temp dir (instances, logs)
# Default run: 6 configurations x 6 shares x 12 s, drains and prefills: about 12 minutes.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-12}
SHARES=${SHARES:-0 10 25 50 75 90}
CONFIGS=${CONFIGS:-a b bw c d e}
CONNS=${CONNS:-200}
BODY=${BODY:-2048}
DRAIN_MAX=${DRAIN_MAX:-20}
BACK_IN_FLOW_DELAY=${BACK_IN_FLOW_DELAY:-0}
OUT=${OUT:-$PWD/paper-results}
BUILD=${BUILD:-$SRCDIR/_build-paper}
VALID_POOL=1000
WARM_INVALID_POOL=1000
MSGS_PER_SESSION=5

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CMDS=$OUT/commands.txt
: >"$CMDS"

# rec CMD... - record a command in commands.txt, then run it
rec() {
    printf '%s\n' "$*" >>"$CMDS"
    "$@"
}

# --- build (out of tree, optimised) before any server starts
if [ ! -f "$BUILD/Makefile" ]; then
    [ -x "$SRCDIR/configure" ] || (cd "$SRCDIR" && rec autoreconf -fi >/dev/null 2>&1)
    mkdir -p "$BUILD"
    (cd "$BUILD" && rec "$SRCDIR/configure" --disable-tests CFLAGS="-O2 -g" >/dev/null) ||
        { echo "paper: configure failed in $BUILD" >&2 && exit 1; }
fi
TARGETS="callahead-policyd tests/bench/smtp_load"
case " $CONFIGS " in *" e "*) TARGETS="$TARGETS callahead-milter" ;; esac
# shellcheck disable=SC2086 # a list of targets
rec make -C "$BUILD" -j2 $TARGETS >/dev/null ||
    { echo "paper: build failed in $BUILD" >&2 && exit 1; }
LOAD=$BUILD/tests/bench/smtp_load
export E2E_BUILD=$BUILD
export E2E_KEEP=${KEEP:-0}
command -v gnuplot >/dev/null || echo "paper: gnuplot not found (Debian: gnuplot-nox): no plots" >&2

# shellcheck source=tests/e2e/lib.sh
. "$SRCDIR/tests/e2e/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$SRCDIR/tests/e2e/lib_milter.sh"
e2e_need postfix smtp-sink redis-server redis-cli script

# --- servers
e2e_start_redis
printf 'redis-server --bind 127.0.0.1 --port PORT --save "" --appendonly no\n' >>"$CMDS"

e2e_free_port SINK_PORT
printf 'smtp-sink -u nobody 127.0.0.1:%s 256\n' "$SINK_PORT" >>"$CMDS"
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256 >"$E2E_TMP/sink.log" 2>&1 &
SINK_PID=$!
e2e_track "$SINK_PID" smtp-sink
e2e_wait_port "$SINK_PORT" "$SINK_PID" smtp-sink

# pf_instance NAME PORT PROCESS-LIMIT MAIN-CF-EXTRA - a private Postfix in $E2E_TMP/NAME
pf_instance() {
    local name=$1 port=$2 limit=$3 extra=$4 d=$E2E_TMP/$1
    mkdir -p "$d/log" "$d/queue" "$d/data"
    chown postfix "$d/data"
    {
        echo "# private Postfix instance \"$name\" for tests/bench/paper.sh"
        e2e_postfix_main_cf_base "$d" "$name.bench.test" bench.test
        echo "default_process_limit = $limit"
        printf '%s\n' "$extra"
    } >"$d/main.cf"
    e2e_postfix_launch "$d" "$port" "postfix $name"
    printf 'postfix -c %s start  # config/%s.main.cf, config/%s.master.cf\n' "$name" "$name" \
        "$name" >>"$CMDS"
    mkdir -p "$OUT/config"
    cp "$d/main.cf" "$OUT/config/$name.main.cf"
    cp "$d/master.cf" "$OUT/config/$name.master.cf"
}

e2e_free_port BACK_PORT
mkdir -p "$E2E_TMP/back"
printf '/^u[^@]*@/ OK\n' >"$E2E_TMP/back/users.regexp"
# the back end is not measured: it gets more processes than the fronts so it is not
# the bottleneck, and discards what it accepts. in_flow_delay = 0: smtpd opens a queue file
# at the first accepted RCPT, so every probe of a valid address (callahead's, verify(8)'s)
# would wait up to 1 s for a flow-control token whenever the back end is not delivering
# (the prefills deliver nothing); that wait is the next hop's, not the front's
pf_instance back "$BACK_PORT" 200 "in_flow_delay = $BACK_IN_FLOW_DELAY
relay_domains = dept.test
relay_recipient_maps = regexp:$E2E_TMP/back/users.regexp
transport_maps = inline:{ {dept.test = discard:} }
smtpd_recipient_restrictions = reject_unauth_destination"

FRONT_COMMON="relay_domains = dept.test
transport_maps = inline:{ {dept.test = smtp:[127.0.0.1]:$BACK_PORT}
    {client.bench.test = smtp:[127.0.0.1]:$SINK_PORT} }"

e2e_free_port POLICYD_PORT
E2E_ROUTES=$E2E_TMP/routes
printf '# written by tests/bench/paper.sh\ndept.test smtp:[127.0.0.1]:%s\n* dunno\n' \
    "$BACK_PORT" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/policyd.conf"
cp "$E2E_TMP/policyd.conf" "$E2E_ROUTES" "$OUT/config/"
printf '%s\n' "$POLICYD -f -c policyd.conf  # config/policyd.conf, config/routes" >>"$CMDS"
e2e_start_policyd "$E2E_TMP/policyd.conf"

declare -A FRONT_PORT
for c in $CONFIGS; do
    case $c in
    a)
        e2e_free_port port
        pf_instance front-a "$port" 100 "$FRONT_COMMON
smtpd_recipient_restrictions = reject_unauth_destination"
        FRONT_PORT[a]=$port
        ;;
    b | bw)
        if [ -z "${FRONT_PORT[b]:-}" ]; then
            e2e_free_port port
            pf_instance front-b "$port" 100 "$FRONT_COMMON
unverified_recipient_reject_code = 550
smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient"
            FRONT_PORT[b]=$port
        fi
        FRONT_PORT[bw]=${FRONT_PORT[b]}
        ;;
    c | d)
        if [ -z "${FRONT_PORT[c]:-}" ]; then
            e2e_free_port port
            pf_instance front-c "$port" 100 "$FRONT_COMMON
smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service { inet:127.0.0.1:$POLICYD_PORT, timeout=30s, default_action=DEFER_IF_PERMIT }"
            FRONT_PORT[c]=$port
        fi
        FRONT_PORT[d]=${FRONT_PORT[c]}
        ;;
    e)
        # Sendmail refuses a milter socket below a world-writable directory (/tmp)
        SOCKDIR=$(mktemp -d /run/callahead-paper.XXXXXX) || e2e_fail "mktemp in /run failed"
        trap 'rm -rf "$SOCKDIR"; e2e_cleanup' EXIT
        cp "$E2E_TMP/policyd.conf" "$E2E_TMP/milter.conf"
        printf '%s\n' "milter_listen = unix:$SOCKDIR/milter.sock" \
            "milter_policy_service = inet:127.0.0.1:$POLICYD_PORT" >>"$E2E_TMP/milter.conf"
        cp "$E2E_TMP/milter.conf" "$OUT/config/"
        printf '%s\n' "$MILTER -f -c milter.conf  # config/milter.conf" >>"$CMDS"
        MILTER_DEBUG=0 e2e_start_milter "$E2E_TMP/milter.conf" "$SOCKDIR/milter.sock"
        # dept.test and everything else (bounces) go to the back end: lib_milter.sh
        # points Sendmail's mailers at $SINK_PORT
        SINK_PORT=$BACK_PORT SM_LISTEN_QUEUE=100 SM_EXTRA_MC="RELAY_DOMAIN(\`dept.test')dnl
define(\`confMAX_DAEMON_CHILDREN', \`100')dnl
define(\`confREFUSE_LA', \`1000')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confMIN_FREE_BLOCKS', \`0')dnl" e2e_start_sendmail "local:$SOCKDIR/milter.sock"
        cp "$SM_DIR/e2e.mc" "$OUT/config/sendmail.mc"
        printf '%s\n' "sendmail -C sendmail.cf -bD  # config/sendmail.mc (m4 -> .cf)" >>"$CMDS"
        FRONT_PORT[e]=$SM_PORT
        ;;
    *) e2e_fail "unknown configuration $c (a b bw c d e)" ;;
    esac
done

# --- measuring functions

# front_dir CONFIG - the Postfix instance a configuration runs on
front_dir() {
    case $1 in
    d) echo "$E2E_TMP/front-c" ;;
    bw) echo "$E2E_TMP/front-b" ;;
    e) echo "$SM_DIR" ;;
    *) echo "$E2E_TMP/front-$1" ;;
    esac
}

# pf_pids DIR - the instance's master and its children except postlogd; a reaped child's
# CPU time (cutime/cstime) and I/O are added to its parent's by the kernel, so master +
# live children is the whole instance
pf_pids() {
    local m
    if [ "$1" = "${SM_DIR:-}" ]; then # Sendmail: the daemon and its session children
        echo "$SM_PID"
        ps -o pid= --ppid "$SM_PID"
        return 0
    fi
    m=$(tr -dc 0-9 <"$1/queue/pid/master.pid")
    echo "$m"
    ps -o pid=,comm= --ppid "$m" | awk '$2 != "postlogd" { print $1 }'
}

# cpu_ticks PID... - utime+stime+cutime+cstime summed (clock ticks); gone pids count 0
cpu_ticks() {
    local p
    for p in "$@"; do
        # the command name (field 2) may hold spaces: count fields after its ")"
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true
    done | awk '{ t += $12 + $13 + $14 + $15 } END { printf "%d\n", t }'
}

# io_write PID... - write_bytes and cancelled_write_bytes summed
io_write() {
    local p
    for p in "$@"; do cat "/proc/$p/io" 2>/dev/null || true; done |
        awk '/^write_bytes/ { w += $2 } /^cancelled_write_bytes/ { c += $2 }
             END { printf "%d %d\n", w, c }'
}

# queue_busy DIR - files in the queues that are being worked on (not deferred)
queue_busy() {
    if [ "$1" = "${SM_DIR:-}" ]; then # Sendmail delivers in the background, from mqueue
        find "$1/mqueue" -type f -name 'qf*' 2>/dev/null | wc -l
        return 0
    fi
    find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" -type f 2>/dev/null | wc -l
}
# queue_all DIR - every queue file, deferred ones too
queue_all() {
    if [ "$1" = "${SM_DIR:-}" ]; then
        queue_busy "$1"
        return 0
    fi
    find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" \
        "$1/queue/hold" -type f 2>/dev/null | wc -l
}

# drain DIR - wait (DRAIN_MAX seconds at most) until nothing is in incoming/active;
# prints the seconds waited
drain() {
    local t0 t1
    t0=$(date +%s.%N)
    for _ in $(seq 1 $((DRAIN_MAX * 5))); do
        [ "$(queue_busy "$1")" -eq 0 ] && break
        sleep 0.2
    done
    sleep 1 # postlogd writes asynchronously; the last bounce's log line
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", b - a }'
}

# val FILE KEY - a "key: value" line of smtp_load's output
val() { sed -n "s/^$2: //p" "$1"; }
# lat FILE STEP - "p50,p99" of a step (ms)
lat() { sed -n "s/^latency_ms $2: n [0-9]* p50 \([0-9.]*\) p99 \([0-9.]*\) .*/\1,\2/p" "$1"; }

TCK=$(getconf CLK_TCK)
CSV=$OUT/paper.csv
echo "config,invalid_pct,seconds,connections,sessions,messages,msgs_per_s,goodput_per_s,accepted_valid,accepted_invalid,rcpt_rejected_invalid,rcpt_rejected_valid,rcpt_4xx,other_4xx,data_5xx,refused,replies_421,bounced,ndr_sent,backlog_left,drain_s,front_cpu_s,policyd_cpu_s,redis_cpu_s,front_cpu_s_per_1k,policyd_cpu_s_per_1k,front_write_bytes_per_msg,front_cancelled_bytes_per_msg,greeting_p50_ms,greeting_p99_ms,ehlo_p50_ms,ehlo_p99_ms,mail_p50_ms,mail_p99_ms,rcpt_p50_ms,rcpt_p99_ms,data_p50_ms,data_p99_ms,dot_p50_ms,dot_p99_ms,back_cpu_s,client_cpu_s" >"$CSV"

MACHINE=$OUT/machine.txt
{
    echo "date_start: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "loadavg_start: $(cat /proc/loadavg)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cpus"
    echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "postfix: $(postconf -c "$E2E_TMP/back" -h mail_version 2>/dev/null); redis: $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "filesystem of the queues: $(df -T "$E2E_TMP" | awk 'NR == 2 { print $2 }')"
    echo "source: $(git -C "$SRCDIR" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "settings: DURATION=$DURATION SHARES=\"$SHARES\" CONFIGS=\"$CONFIGS\" CONNS=$CONNS BODY=$BODY DRAIN_MAX=$DRAIN_MAX BACK_IN_FLOW_DELAY=$BACK_IN_FLOW_DELAY"
    echo "pools: valid $VALID_POOL, warm invalid $WARM_INVALID_POOL, $MSGS_PER_SESSION messages a session"
} >"$MACHINE"
e2e_log "servers up (back $BACK_PORT, sink $SINK_PORT, redis $REDIS_PORT, policyd $POLICYD_PORT," \
    "fronts ${FRONT_PORT[*]}); results in $OUT"

# warm CONFIG - is it a warm-cache configuration (fixed pools, filled before)?
warm() { [ "$1" = d ] || [ "$1" = bw ]; }

# prefill CONFIG - walk the warm pools once through the configuration's front, RCPT only
prefill() {
    local f=$OUT/runs/$1-prefill.out t0
    t0=$(date +%s)
    rec "$LOAD" -p "${FRONT_PORT[$1]}" -c "$CONNS" -P -r -g "$1" -V "$VALID_POOL" \
        -I "$WARM_INVALID_POOL" >"$f" 2>&1 || e2e_fail "prefill $1: $(tail -3 "$f")"
    drain "$(front_dir "$1")" >/dev/null
    e2e_log "$1: pools filled in $(($(date +%s) - t0))s: $(grep -E '^rcpt_' "$f" | tr '\n' ' ')"
}

# point CONFIG SHARE - one run of the load against a configuration; appends a CSV row
point() {
    local c=$1 p=$2 dir port tag out ipool=0 log0 m
    local cpu0 cpu1 pcpu0 pcpu1 rcpu0 rcpu1 bcpu0 bcpu1 io0 io1 w0 w1 x0 x1 drain_s
    dir=$(front_dir "$c")
    port=${FRONT_PORT[$c]}
    tag=$c$p
    out=$OUT/runs/$c-$p.out
    if warm "$c"; then
        tag=$c
        ipool=$WARM_INVALID_POOL
    fi
    local mlog=$dir/log/maillog
    [ "$c" != e ] || mlog=$SM_DIR/sendmail.log
    log0=$(wc -l <"$mlog")
    # shellcheck disable=SC2046 # pid lists
    cpu0=$(cpu_ticks $(pf_pids "$dir"))
    pcpu0=$(cpu_ticks "$POLICYD_PID")
    rcpu0=$(cpu_ticks "$REDIS_PID")
    # shellcheck disable=SC2046
    bcpu0=$(cpu_ticks $(pf_pids "$E2E_TMP/back"))
    # shellcheck disable=SC2046
    io0=$(io_write $(pf_pids "$dir"))
    rec "$LOAD" -p "$port" -c "$CONNS" -t "$DURATION" -i "$p" -g "$tag" -V "$VALID_POOL" \
        -I "$ipool" -M "$MSGS_PER_SESSION" -b "$BODY" >"$out" 2>"$out.err" ||
        e2e_fail "smtp_load $c $p failed: $(head -5 "$out.err")"
    drain_s=$(drain "$dir")
    # shellcheck disable=SC2046
    cpu1=$(cpu_ticks $(pf_pids "$dir"))
    pcpu1=$(cpu_ticks "$POLICYD_PID")
    rcpu1=$(cpu_ticks "$REDIS_PID")
    # shellcheck disable=SC2046
    bcpu1=$(cpu_ticks $(pf_pids "$E2E_TMP/back"))
    # shellcheck disable=SC2046
    io1=$(io_write $(pf_pids "$dir"))
    read -r w0 x0 <<<"$io0"
    read -r w1 x1 <<<"$io1"
    m=$(val "$out" messages) # 0 is a figure too: (b) cold can take longer than a short run
    local bounced ndr deferred
    bounced=$(tail -n +"$((log0 + 1))" "$mlog" | grep -c 'status=bounced\|dsn=5' || true)
    ndr=$(tail -n +"$((log0 + 1))" "$mlog" | grep -c 'sender non-delivery notification\|: DSN: ' || true)
    deferred=$(queue_all "$dir")
    if [ "$deferred" -gt 0 ] && [ "$c" = e ]; then
        find "$SM_DIR/mqueue" -type f -delete
    elif [ "$deferred" -gt 0 ]; then # not drained in time: it must not slow the next point
        script -qec "postsuper -c '$dir' -d ALL" /dev/null >/dev/null 2>&1 || true
    fi
    awk -v c="$c" -v p="$p" -v m="$m" -v tck="$TCK" \
        -v fc=$((cpu1 - cpu0)) -v pc=$((pcpu1 - pcpu0)) -v rc=$((rcpu1 - rcpu0)) \
        -v bc=$((bcpu1 - bcpu0)) -v cc="$(val "$out" client_cpu_s)" \
        -v wb=$((w1 - w0)) -v cb=$((x1 - x0)) -v b="$bounced" -v n="$ndr" -v q="$deferred" \
        -v d="$drain_s" -v secs="$(val "$out" seconds)" -v conns="$(val "$out" connections)" \
        -v sess="$(val "$out" sessions)" -v mps="$(val "$out" messages_per_s)" \
        -v gp="$(val "$out" goodput_per_s)" -v av="$(val "$out" accepted_valid)" \
        -v ai="$(val "$out" accepted_invalid)" -v ri="$(val "$out" rcpt_rejected_invalid)" \
        -v rv="$(val "$out" rcpt_rejected_valid)" -v r4="$(val "$out" rcpt_4xx)" \
        -v o4=$(($(val "$out" mail_4xx) + $(val "$out" data_4xx) + $(val "$out" dot_4xx))) \
        -v d5=$(($(val "$out" data_5xx) + $(val "$out" dot_5xx))) \
        -v rf="$(val "$out" refused)" -v r421="$(val "$out" replies_421)" \
        -v lats="$(lat "$out" greeting),$(lat "$out" ehlo),$(lat "$out" mail),$(lat "$out" rcpt),$(lat "$out" data),$(lat "$out" dot)" \
        'BEGIN {
            printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%d,%d,%s,%.2f,%.2f,%.2f,%.3f,%.3f,%.0f,%.0f,%s,%.2f,%s\n",
                c, p, secs, conns, sess, m, mps, gp, av, ai, ri, rv, r4, o4, d5, rf, r421, b, n, q, d,
                fc / tck, pc / tck, rc / tck, fc / tck / (m ? m : 1) * 1000, pc / tck / (m ? m : 1) * 1000,
                wb / (m ? m : 1), cb / (m ? m : 1), lats, bc / tck, cc }' >>"$CSV"
    e2e_log "$c $p%: $(tail -1 "$CSV" | cut -d, -f6-8) (messages, msgs/s, goodput/s); drain ${drain_s}s"
}

T_START=$(date +%s)
mkdir -p "$OUT/runs"
for c in $CONFIGS; do
    if warm "$c"; then prefill "$c"; fi
done
for p in $SHARES; do
    for c in $CONFIGS; do
        point "$c" "$p"
    done
done
T_END=$(date +%s)
{
    echo "date_end: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "loadavg_end: $(cat /proc/loadavg)"
    echo "measuring_seconds: $((T_END - T_START))"
} >>"$MACHINE"

# summary.md: the main columns as a Markdown table (docs/BENCHMARKS.md quotes it)
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    function v(k) { return $(col[k]) }
    BEGIN { print "| config | invalid % | goodput/s | msgs/s | RCPT p50 / p99 ms | front CPU s / 1k msgs | policyd CPU s / 1k | bytes written / msg | bounced | backlog left | RCPT 4xx | refused |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" }
    { printf "| %s | %s | %.0f | %.0f | %.1f / %.0f | %.2f | %.3f | %.0f | %d | %d | %d | %d |\n",
        v("config"), v("invalid_pct"), v("goodput_per_s"), v("msgs_per_s"), v("rcpt_p50_ms"),
        v("rcpt_p99_ms"), v("front_cpu_s_per_1k"), v("policyd_cpu_s_per_1k"),
        v("front_write_bytes_per_msg"), v("bounced"), v("backlog_left"), v("rcpt_4xx"),
        v("refused") }' "$CSV" >"$OUT/summary.md"

if command -v gnuplot >/dev/null; then
    rec gnuplot -e "csv='$CSV'; outdir='$OUT'; configs='$CONFIGS'" "$SRCDIR/tests/bench/paper.gp" ||
        e2e_fail "gnuplot failed"
fi
# the records name this run's directories symbolically, not by this machine's paths
for f in "$CMDS" "$OUT"/config/*; do
    sed -i -e "s|$OUT|\$OUT|g" -e "s|$BUILD|\$BUILD|g" -e "s|$SRCDIR|.|g" \
        -e "s|$E2E_TMP|\$TMP|g" ${SOCKDIR:+-e "s|$SOCKDIR|\$SOCKDIR|g"} \
        ${SENDMAIL_ROOT:+-e "s|$SENDMAIL_ROOT|\$SENDMAIL_ROOT|g"} "$f"
done
cat "$OUT/summary.md" >&2
e2e_log "done in $((T_END - T_START))s: $CSV"
