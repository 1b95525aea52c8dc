# tests/e2e/lib.sh - helpers for the end-to-end scenarios: real servers on loopback.
#
# Sourced by every tests/e2e/test_*.sh (and by contrib/try-it.sh). Starts
# redis-server, callahead-policyd, a private Postfix instance and an
# smtp-sink next hop on 127.0.0.1, on free ports, under one temporary
# directory per run, and stops every process it started, by pid, when the
# sourcing script exits - also when a check fails half-way.
#
# Environment:
#   E2E_BUILD        build directory holding callahead-policyd (default: <top>/_build)
#   POLICYD          the daemon binary (default: $E2E_BUILD/callahead-policyd)
#   POLICYD_WRAPPER  command prefix for the daemon, e.g. "valgrind --error-exitcode=99 ..."
#   E2E_START_TIMEOUT seconds to wait for a server to answer (default 30)
#   E2E_KEEP=1       keep the temporary directory even when the scenario passed
#   E2E_POLICYD_EXTRA lines (newline separated) appended to every daemon config
#
# Nothing here needs python: ports are probed with bash's /dev/tcp and raw
# protocol talk uses perl, which Debian always has (perl-base).

set -u -o pipefail

E2E_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${E2E_BUILD:=$E2E_TOP/_build}"
: "${POLICYD:=$E2E_BUILD/callahead-policyd}"
: "${POLICYD_WRAPPER:=}"
: "${E2E_START_TIMEOUT:=30}"
: "${E2E_KEEP:=0}"

E2E_NAME=$(basename "$0" .sh)
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/callahead-e2e.XXXXXX") || exit 1
# Postfix daemons (user postfix) and smtp-sink (user nobody) must reach their subdirectories.
chmod 0755 "$E2E_TMP"
E2E_FAILED=0
E2E_PIDS=()     # every background process we started, in start order
E2E_PIDNAMES=() # a name for each, for messages
E2E_POSTFIX_DIRS=()
E2E_PORTS=" "   # ports handed out in this run, so two servers never get the same one

# e2e_log - a progress line on stderr, prefixed with the scenario name
e2e_log() {
    printf '%s: %s\n' "$E2E_NAME" "$*" >&2
}

# e2e_fail - report a failed check and end the scenario (the EXIT trap cleans up)
e2e_fail() {
    printf '%s: FAIL: %s\n' "$E2E_NAME" "$*" >&2
    E2E_FAILED=1
    exit 1
}

# e2e_assert_eq EXPECTED ACTUAL WHAT - exact comparison
e2e_assert_eq() {
    if [ "$1" != "$2" ]; then
        e2e_fail "$3: expected [$(e2e_short "$1")], got [$(e2e_short "$2")]"
    fi
    e2e_log "ok: $3: [$(e2e_short "$2")]"
}

# e2e_short TEXT - TEXT cut to 300 characters for messages (replies can be 64 KiB)
e2e_short() {
    if [ "${#1}" -gt 300 ]; then
        printf '%s...(%d bytes)' "${1:0:300}" "${#1}"
    else
        printf '%s' "$1"
    fi
}

# e2e_assert_match REGEX ACTUAL WHAT - extended regex, anchored by the caller
e2e_assert_match() {
    if ! [[ $2 =~ $1 ]]; then
        e2e_fail "$3: expected to match /$1/, got [$(e2e_short "$2")]"
    fi
    e2e_log "ok: $3: [$(e2e_short "$2")]"
}

# e2e_track PID NAME - remember a process so e2e_stop_all stops it
e2e_track() {
    E2E_PIDS+=("$1")
    E2E_PIDNAMES+=("$2")
}

# e2e_alive PID - is the process still there (and not a zombie of ours)?
e2e_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ "$state" != Z ]
}

# e2e_kill_wait PID [SECONDS] - SIGTERM, wait up to SECONDS (default 10), then SIGKILL.
# Returns the exit status of the process when it was our child, else 0.
e2e_kill_wait() {
    local pid=$1 limit=${2:-10} i=0 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    while e2e_alive "$pid" && [ "$i" -lt $((limit * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if e2e_alive "$pid"; then
        e2e_log "pid $pid did not exit after SIGTERM within ${limit}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    return "$rc"
}

# e2e_untrack PID - forget a process that was stopped on purpose
e2e_untrack() {
    local i
    for i in "${!E2E_PIDS[@]}"; do
        if [ "${E2E_PIDS[$i]}" = "$1" ]; then
            unset "E2E_PIDS[$i]" "E2E_PIDNAMES[$i]"
        fi
    done
}

# e2e_stop_all - stop every Postfix instance and every tracked process, newest first
e2e_stop_all() {
    local d i pids
    for d in "${E2E_POSTFIX_DIRS[@]}"; do
        e2e_postfix_stop_dir "$d"
    done
    E2E_POSTFIX_DIRS=()
    pids=("${!E2E_PIDS[@]}")
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local k=${pids[$i]}
        if e2e_alive "${E2E_PIDS[$k]}"; then
            e2e_kill_wait "${E2E_PIDS[$k]}" 10 || true
        fi
    done
    E2E_PIDS=()
    E2E_PIDNAMES=()
}

# e2e_cleanup - EXIT trap: stop everything; keep the directory when something failed
e2e_cleanup() {
    local rc=$?
    trap - EXIT
    e2e_stop_all
    if [ "$rc" -ne 0 ] || [ "$E2E_FAILED" -ne 0 ] || [ "$E2E_KEEP" = 1 ]; then
        if [ "$rc" -ne 0 ] || [ "$E2E_FAILED" -ne 0 ]; then
            e2e_dump_logs
        fi
        e2e_log "files kept in $E2E_TMP"
    else
        rm -rf "$E2E_TMP"
    fi
    exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# e2e_dump_logs - the tail of every log under the run directory, for a failed scenario
e2e_dump_logs() {
    local f
    for f in $(find "$E2E_TMP" -name '*.log' -o -name maillog 2>/dev/null | sort); do
        [ -s "$f" ] || continue
        printf -- '----- %s (last 40 lines)\n' "$f" >&2
        # postfix-script's ownership warnings about a private queue are noise here
        grep -v -e 'warning: not owned by root' -e 'warning: group or other writable' "$f" |
            tail -n 40 | cut -c 1-400 >&2
    done
}

# e2e_port_open PORT - does something accept TCP connections on 127.0.0.1:PORT?
e2e_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# e2e_port_used PORT - is PORT a local port of any IPv4/IPv6 TCP socket (any state)?
e2e_port_used() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# e2e_free_port VAR - set VAR to a TCP port on 127.0.0.1 that no socket uses and that
# we did not hand out before (a variable, not $(...): the list must survive).
# Ports come from below the kernel's ephemeral range, so no outgoing connection
# can be holding one. XXX a port is only probed, not held: another program could
# take it before our server binds.
e2e_free_port() {
    local p lo=32768 span
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    [ "$lo" -gt 12000 ] || lo=32768
    span=$((lo - 10000))
    for _ in $(seq 1 500); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % span))
        case "$E2E_PORTS" in *" $p "*) continue ;; esac
        if ! e2e_port_used "$p" && ! e2e_port_open "$p"; then
            E2E_PORTS="$E2E_PORTS$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    e2e_fail "no free port found"
}

# e2e_wait_port PORT PID WHAT - wait until PORT accepts connections; fail if PID dies first
e2e_wait_port() {
    local port=$1 pid=$2 what=$3 i=0
    while ! e2e_port_open "$port"; do
        if [ -n "$pid" ] && ! e2e_alive "$pid"; then
            e2e_fail "$what (pid $pid) exited before listening on port $port"
        fi
        if [ "$i" -ge $((E2E_START_TIMEOUT * 10)) ]; then
            e2e_fail "$what does not answer on port $port after ${E2E_START_TIMEOUT}s"
        fi
        sleep 0.1
        i=$((i + 1))
    done
}

# e2e_need CMD... - fail early and clearly when a tool is missing
e2e_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || e2e_fail "$c not found (run tests/run-all.sh once to install it)"
    done
}

# ---------------------------------------------------------------- Redis

# e2e_start_redis - redis-server on a free port; sets REDIS_PORT, REDIS_PID
e2e_start_redis() {
    e2e_need redis-server redis-cli
    local d=$E2E_TMP/redis i=0
    mkdir -p "$d"
    e2e_free_port REDIS_PORT
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no --save '' \
        --appendonly no --dir "$d" --logfile "$d/redis.log" >/dev/null 2>&1 &
    REDIS_PID=$!
    e2e_track "$REDIS_PID" redis
    until [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
        e2e_alive "$REDIS_PID" || e2e_fail "redis-server exited; see $d/redis.log"
        [ "$i" -lt $((E2E_START_TIMEOUT * 10)) ] || e2e_fail "redis-server does not answer"
        sleep 0.1
        i=$((i + 1))
    done
    e2e_log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

# e2e_stop_redis - stop our redis-server (SIGTERM, by pid)
e2e_stop_redis() {
    e2e_kill_wait "$REDIS_PID" 10 || true
    e2e_untrack "$REDIS_PID"
    e2e_log "redis-server pid $REDIS_PID stopped"
}

# e2e_redis CMD... - redis-cli against our server
e2e_redis() {
    redis-cli -p "$REDIS_PORT" "$@"
}

# ---------------------------------------------------------------- slapd

# e2e_prepare_slapd [GLOBAL-LINE...] - a private OpenLDAP directory in $E2E_TMP/slapd
# (suffix dc=example,dc=test, rootdn cn=admin,dc=example,dc=test with password
# "secret", anonymous read) loaded offline from tests/ldap/users.ldif; extra
# global slapd.conf lines (e.g. "idletimeout 2") are added. Sets SLAPD_DIR.
e2e_prepare_slapd() {
    e2e_need /usr/sbin/slapd /usr/sbin/slapadd
    SLAPD_DIR=$E2E_TMP/slapd
    mkdir -p "$SLAPD_DIR/db"
    {
        local s l
        for s in core cosine nis inetorgperson misc; do
            echo "include /etc/ldap/schema/$s.schema"
        done
        echo "modulepath /usr/lib/ldap"
        echo "moduleload back_mdb"
        echo "pidfile $SLAPD_DIR/slapd.pid"
        for l in "$@"; do
            echo "$l"
        done
        echo "database mdb"
        echo "maxsize 10485760"
        echo 'suffix "dc=example,dc=test"'
        echo 'rootdn "cn=admin,dc=example,dc=test"'
        echo "rootpw secret"
        echo "directory $SLAPD_DIR/db"
        echo "index objectClass,mail eq"
        echo "access to * by * read"
    } >"$SLAPD_DIR/slapd.conf"
    /usr/sbin/slapadd -q -f "$SLAPD_DIR/slapd.conf" -l "$E2E_TOP/tests/ldap/users.ldif" \
        >"$SLAPD_DIR/slapadd.log" 2>&1 || e2e_fail "slapadd failed: $(cat "$SLAPD_DIR/slapadd.log")"
}

# e2e_start_slapd - slapd in the foreground (so SLAPD_PID is slapd itself, for
# SIGSTOP/SIGKILL) on ldap://127.0.0.1:SLAPD_PORT/ (chosen when unset) for the
# directory of e2e_prepare_slapd; waits until it answers
e2e_start_slapd() {
    [ -n "${SLAPD_PORT:-}" ] || e2e_free_port SLAPD_PORT
    /usr/sbin/slapd -d 0 -f "$SLAPD_DIR/slapd.conf" -h "ldap://127.0.0.1:$SLAPD_PORT/" \
        >>"$SLAPD_DIR/slapd.log" 2>&1 &
    SLAPD_PID=$!
    e2e_track "$SLAPD_PID" slapd
    e2e_wait_port "$SLAPD_PORT" "$SLAPD_PID" slapd
    e2e_log "slapd pid $SLAPD_PID on 127.0.0.1:$SLAPD_PORT"
}

# e2e_stop_slapd [SIGNAL] - stop our slapd (default SIGTERM; KILL for a crash), by pid
e2e_stop_slapd() {
    if [ "${1:-TERM}" = TERM ]; then
        e2e_kill_wait "$SLAPD_PID" 10 || true
    else
        kill -"$1" "$SLAPD_PID" 2>/dev/null || true
        wait "$SLAPD_PID" 2>/dev/null || true
    fi
    e2e_untrack "$SLAPD_PID"
    e2e_log "slapd pid $SLAPD_PID stopped (SIG${1:-TERM})"
}

# ---------------------------------------------------------------- CDB tables

# e2e_make_cdb FILE LINE... - build a tinycdb table from "key value" lines
e2e_make_cdb() {
    local f=$1
    shift
    e2e_need cdb
    printf '%s\n' "$@" | cdb -cm "$f" || e2e_fail "cdb -cm $f failed"
}

# ---------------------------------------------------------------- callahead-policyd

# e2e_policyd_conf FILE [EXTRA-LINE...] - write a daemon config for this run.
# Uses POLICYD_PORT (chosen here when unset), REDIS_PORT when set, and
# E2E_ROUTES (default $E2E_TMP/routes). Extra lines are appended verbatim.
e2e_policyd_conf() {
    local f=$1
    shift
    [ -n "${POLICYD_PORT:-}" ] || e2e_free_port POLICYD_PORT
    : "${E2E_ROUTES:=$E2E_TMP/routes}"
    {
        echo "# written by tests/e2e/lib.sh for $E2E_NAME"
        echo "listen = ${POLICYD_LISTEN:-inet:127.0.0.1:$POLICYD_PORT}"
        echo "route_table = $E2E_ROUTES"
        if [ -n "${REDIS_PORT:-}" ]; then
            echo "redis_server = 127.0.0.1:$REDIS_PORT"
        fi
        local l
        for l in "$@"; do
            echo "$l"
        done
        if [ -n "${E2E_POLICYD_EXTRA:-}" ]; then
            printf '%s\n' "$E2E_POLICYD_EXTRA"
        fi
    } >"$f"
}

# e2e_start_policyd CONF - run "$POLICYD_WRAPPER $POLICYD -f -c CONF" in the background,
# log to $E2E_TMP/policyd.log, wait until POLICYD_PORT answers; sets POLICYD_PID
e2e_start_policyd() {
    local conf=$1 wrapper=()
    [ -x "$POLICYD" ] || e2e_fail "$POLICYD is not built (set E2E_BUILD or POLICYD)"
    read -r -a wrapper <<<"$POLICYD_WRAPPER"
    POLICYD_LOG=$E2E_TMP/policyd.log
    echo "=== start: ${wrapper[*]} $POLICYD -f -c $conf" >>"$POLICYD_LOG"
    "${wrapper[@]}" "$POLICYD" -f -c "$conf" >>"$POLICYD_LOG" 2>&1 &
    POLICYD_PID=$!
    e2e_track "$POLICYD_PID" callahead-policyd
    e2e_wait_port "$POLICYD_PORT" "$POLICYD_PID" callahead-policyd
    e2e_log "callahead-policyd pid $POLICYD_PID on 127.0.0.1:$POLICYD_PORT${POLICYD_WRAPPER:+ under ${wrapper[0]}}"
}

# e2e_policyd_reload CONF WHAT - SIGHUP the daemon and wait (at most 30 s, valgrind
# is slow) for "reloaded CONF" in its log; a refused or failed reload fails at once
e2e_policyd_reload() {
    local conf=$1 what=$2 mark _ said
    mark=$(($(stat -c %s "$POLICYD_LOG") + 1))
    kill -HUP "$POLICYD_PID"
    for _ in $(seq 1 300); do
        said=$(tail -c +"$mark" "$POLICYD_LOG")
        if grep -qF "reloaded $conf" <<<"$said"; then
            e2e_log "ok: reloaded with $what"
            return 0
        fi
        grep -q "reload refused\|reload failed" <<<"$said" &&
            e2e_fail "reload with $what: $(grep "reload" <<<"$said")"
        sleep 0.1
    done
    e2e_fail "no \"reloaded\" with $what within 30 s; the daemon logged [$(tail -c +"$mark" "$POLICYD_LOG")]"
}

# e2e_stop_policyd - SIGTERM; the daemon must exit 0 (under valgrind or ASan a
# memory error or leak makes the exit status non-zero, and the scenario fails)
e2e_stop_policyd() {
    local rc=0
    e2e_kill_wait "$POLICYD_PID" 60 || rc=$?
    e2e_untrack "$POLICYD_PID"
    if [ "$rc" -ne 0 ]; then
        e2e_fail "callahead-policyd exited with status $rc after SIGTERM (see $POLICYD_LOG)"
    fi
    e2e_log "ok: callahead-policyd pid $POLICYD_PID exited 0 after SIGTERM"
}

# e2e_policy_query [ATTR=VALUE...] - one request on a new TCP connection to the
# daemon; prints the action (the text after "action=") or "<closed>" when the
# daemon closed the connection without a reply. recipient=... is required;
# request and protocol_state default to a Postfix RCPT request.
e2e_policy_query() {
    perl -MIO::Socket::INET -e '
        my $port = shift;
        my %a = (request => "smtpd_access_policy", protocol_state => "RCPT",
                 protocol_name => "ESMTP", client_address => "127.0.0.1",
                 sender => "sender\@client.e2e.test", instance => "e2e.$$");
        my @order = qw(request protocol_state protocol_name client_address sender instance);
        for (@ARGV) { my ($k, $v) = split /=/, $_, 2; push @order, $k unless exists $a{$k}; $a{$k} = $v }
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
            or die "connect: $!\n";
        print $s map { "$_=$a{$_}\n" } @order;
        print $s "\n";
        local $SIG{ALRM} = sub { die "timeout waiting for the reply\n" };
        alarm 30;
        my $reply = "";
        while (my $l = <$s>) { last if $l eq "\n"; $reply .= $l }
        if ($reply eq "") { print "<closed>\n"; exit 0 }
        $reply =~ s/^action=//; chomp $reply; print "$reply\n";
    ' "$POLICYD_PORT" "$@"
}

# ---------------------------------------------------------------- smtp-sink next hop

# e2e_start_sink - smtp-sink on a free port accepting all mail and dumping each
# message into $SINK_DIR; sets SINK_PORT, SINK_PID, SINK_DIR
e2e_start_sink() {
    e2e_need smtp-sink
    SINK_DIR=$E2E_TMP/sink
    mkdir -p "$SINK_DIR"
    chown nobody "$SINK_DIR"
    e2e_free_port SINK_PORT
    smtp-sink -u nobody -d "$SINK_DIR/msg." "127.0.0.1:$SINK_PORT" 64 \
        >"$E2E_TMP/sink.log" 2>&1 &
    SINK_PID=$!
    e2e_track "$SINK_PID" smtp-sink
    e2e_wait_port "$SINK_PORT" "$SINK_PID" smtp-sink
    e2e_log "smtp-sink pid $SINK_PID on 127.0.0.1:$SINK_PORT, dumps in $SINK_DIR"
}

# e2e_wait_delivery PATTERN [SECONDS] - wait until a message dumped by smtp-sink contains
# PATTERN (fixed string); prints the file name
e2e_wait_delivery() {
    local pat=$1 limit=${2:-30} i=0 f
    while [ "$i" -lt $((limit * 10)) ]; do
        f=$(grep -rlF -- "$pat" "$SINK_DIR" 2>/dev/null | head -n 1)
        if [ -n "$f" ]; then
            echo "$f"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# ---------------------------------------------------------------- Postfix

# e2e_start_postfix POLICY [RELAY-DOMAINS] - a private Postfix instance in
# $E2E_TMP/postfix: smtpd on 127.0.0.1:SMTP_PORT with
#   smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service { POLICY, ... }
# (POLICY is "inet:127.0.0.1:P" or "unix:private/NAME") and every relay domain
# (default "example.test other.test") routed to the smtp-sink (start it first).
# Sets SMTP_PORT, PF_DIR, PF_QUEUE, PF_MAILLOG.
e2e_start_postfix() {
    local policy=$1 domains=${2:-example.test other.test} d tmaps=""
    e2e_need postfix postconf script
    PF_DIR=$E2E_TMP/postfix
    PF_QUEUE=$PF_DIR/queue
    PF_MAILLOG=$PF_DIR/log/maillog
    e2e_free_port SMTP_PORT
    mkdir -p "$PF_DIR/log" "$PF_QUEUE" "$PF_DIR/data"
    chown postfix "$PF_DIR/data"
    for d in $domains; do
        tmaps="$tmaps {$d = smtp:[127.0.0.1]:$SINK_PORT}"
    done
    {
        echo "# private Postfix instance for $E2E_NAME (tests/e2e/lib.sh)"
        e2e_postfix_main_cf_base "$PF_DIR" mx.e2e.test e2e.test
        cat <<EOF
relay_domains = $domains
transport_maps = inline:{$tmaps }
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service { $policy, timeout=10s, default_action=DEFER_IF_PERMIT }
EOF
    } >"$PF_DIR/main.cf"
    e2e_postfix_launch "$PF_DIR" "$SMTP_PORT" postfix
    e2e_log "postfix (config $PF_DIR) smtpd on 127.0.0.1:$SMTP_PORT, policy $policy"
}

# e2e_postfix_main_cf_base DIR HOSTNAME DOMAIN - the main.cf lines every private
# instance shares (queue, data and logs under DIR, loopback only, no local
# delivery, no DNS, no TLS, no doc files: with postfix-doc installed,
# set-permissions would chown the README files Debian ships gzipped and stop);
# callers add their relay and restriction lines
e2e_postfix_main_cf_base() {
    cat <<EOF
compatibility_level = 3.6
queue_directory = $1/queue
data_directory = $1/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = $2
mydomain = $3
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
readme_directory = no
html_directory = no
maillog_file = $1/log/maillog
maillog_file_prefixes = $1/log
EOF
}

# e2e_postfix_launch DIR PORT LABEL - write DIR/master.cf (smtpd on PORT), start the
# instance, remember it for the cleanup, and wait until its smtpd answers
e2e_postfix_launch() {
    local dir=$1 port=$2 label=$3
    e2e_postfix_master_cf "$port" >"$dir/master.cf"
    script -qec "postfix -c '$dir' set-permissions" /dev/null >"$dir/log/setup.log" 2>&1 ||
        e2e_fail "$label set-permissions failed: $(cat "$dir/log/setup.log")"
    script -qec "postfix -c '$dir' start" /dev/null >>"$dir/log/setup.log" 2>&1 ||
        e2e_fail "$label start failed: $(cat "$dir/log/setup.log")"
    E2E_POSTFIX_DIRS+=("$dir")
    e2e_wait_port "$port" "" "$label smtpd"
}

# e2e_postfix_master_cf PORT - master.cf of a private instance with smtpd on 127.0.0.1:PORT
# (one template, tests/e2e/postfix-master.cf, shared with the benchmarks)
e2e_postfix_master_cf() {
    sed "s/^SMTPD_LISTEN /127.0.0.1:$1 /" "$E2E_TOP/tests/e2e/postfix-master.cf"
}

# e2e_postfix_stop_dir DIR - "postfix -c DIR stop", then make sure its master is gone
e2e_postfix_stop_dir() {
    local d=$1 pid i=0
    pid=$(tr -dc 0-9 <"$d/queue/pid/master.pid" 2>/dev/null)
    script -qec "postfix -c '$d' stop" /dev/null >>"$d/log/setup.log" 2>&1 || true
    if [ -n "$pid" ]; then
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            script -qec "postfix -c '$d' abort" /dev/null >/dev/null 2>&1 || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
}

# e2e_smtp_rcpt [SWAKS-OPTION...] RCPT[,RCPT...] - one SMTP session to our
# Postfix that stops after RCPT; prints the reply to each RCPT TO, one per line
e2e_smtp_rcpt() {
    local out
    e2e_need swaks
    out=$(swaks --server "127.0.0.1:$SMTP_PORT" --helo client.e2e.test \
        --from sender@client.e2e.test --timeout 60 --quit-after RCPT "${@:1:$#-1}" \
        --to "${!#}" 2>&1)
    printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
    printf '%s\n' "$out" | awk '/^ *-> RCPT TO:/ { want = 1; next }
        want && /^ *<(-|\*\*) / { sub(/^ *<(-|\*\*) +/, ""); print; want = 0 }'
}

# e2e_smtp_send RCPT MARKER - a whole message with MARKER in its body; prints
# swaks' last server reply line (the answer to QUIT) and returns swaks' status
e2e_smtp_send() {
    local out rc=0
    e2e_need swaks
    out=$(swaks --server "127.0.0.1:$SMTP_PORT" --helo client.e2e.test \
        --from sender@client.e2e.test --to "$1" --timeout 60 \
        --header "Subject: callahead e2e $E2E_NAME" --body "marker $2" 2>&1) || rc=$?
    printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
    printf '%s\n' "$out" | awk '/^ *-> \./ { want = 1; next }
        want && /^ *<(-|\*\*) / { sub(/^ *<(-|\*\*) +/, ""); print; want = 0 }'
    return "$rc"
}

# ---------------------------------------------------------------- the example site

# e2e_example_tables - the tables most scenarios use: $E2E_TMP/users.cdb knows only
# alice@example.test; the route table verifies example.test against it and leaves
# every other domain to the MTA. Sets E2E_ROUTES and E2E_CDB.
e2e_example_tables() {
    E2E_CDB=$E2E_TMP/users.cdb
    E2E_ROUTES=$E2E_TMP/routes
    e2e_make_cdb "$E2E_CDB" 'alice@example.test OK'
    printf '%s\n' "# route table for $E2E_NAME" \
        "example.test   cdb:$E2E_CDB" \
        "*              dunno" >"$E2E_ROUTES"
}

# e2e_unknown_reply ADDR - what an SMTP client must see at RCPT TO for an address the
# table does not know: Postfix puts "<ADDR>: Recipient address rejected: " before
# the text of the daemon's "550 5.1.1 ..." action, so the daemon's reason text
# must not repeat it. One place, should the wording ever change.
e2e_unknown_reply() {
    printf '550 5.1.1 <%s>: Recipient address rejected: User unknown' "$1"
}

# e2e_proc_established PORT - number of established TCP connections whose local port is PORT
e2e_proc_established() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "01" { n++ } END { print n + 0 }' /proc/net/tcp
}

# e2e_wait_redis_key KEY [SECONDS] - wait until KEY exists in our Redis; prints its value
e2e_wait_redis_key() {
    local key=$1 limit=${2:-10} i=0
    while [ "$i" -lt $((limit * 10)) ]; do
        if [ "$(e2e_redis EXISTS "$key" 2>/dev/null)" = 1 ]; then
            e2e_redis GET "$key"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
