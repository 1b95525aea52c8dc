# tests/e2e/lib_callout.sh - helpers for the SMTP callout scenarios (issue 3), on top of lib.sh.
# shellcheck shell=bash
#
# Sourced by tests/e2e/test_callout_*.sh. Adds the servers a callout needs on
# loopback: our scripted next hop (tests/e2e/smtp_testserver, a check program
# in the build directory), a second, BACK-END Postfix that knows its users, a
# FRONT Postfix whose relay domains go to that back end, and dnsmasq serving MX
# records. Everything runs under lib.sh's temporary directory and is stopped by
# pid (Postfix by "postfix -c DIR stop") by lib.sh's EXIT trap.
#
# Environment (besides lib.sh's):
#   SMTP_TESTSERVER  the scripted next hop (default: $E2E_BUILD/tests/e2e/smtp_testserver)
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${SMTP_TESTSERVER:=$E2E_BUILD/tests/e2e/smtp_testserver}"

# e2e_now_ms - wall clock in milliseconds, for latency assertions
e2e_now_ms() {
    local t
    t=$(date +%s%N)
    echo $((t / 1000000))
}

# e2e_assert_lt LIMIT VALUE WHAT - integer VALUE < LIMIT
e2e_assert_lt() {
    if [ "$2" -ge "$1" ]; then
        e2e_fail "$3: expected < $1, got $2"
    fi
    e2e_log "ok: $3: $2 (< $1)"
}

# ---------------------------------------------------------------- smtp_testserver

# e2e_start_testserver VAR SCRIPT-TEXT [BIND-ADDR [PORT]] - our scripted next hop.
# Writes SCRIPT-TEXT to $E2E_TMP/VAR.script, starts the server on PORT (default:
# a free one, chosen by the server itself and read from its port file) and sets
# VAR_PORT, VAR_PID, VAR_STATS (its counters file, see e2e_ts_stat) and VAR_LOG.
e2e_start_testserver() {
    local var=$1 script=$2 addr=${3:-127.0.0.1} port=${4:-0} pid i=0
    [ -x "$SMTP_TESTSERVER" ] ||
        e2e_fail "$SMTP_TESTSERVER is not built (make check TESTS= in the build directory)"
    local base=$E2E_TMP/$var
    printf '%s\n' "$script" >"$base.script"
    rm -f "$base.port" "$base.stats"
    "$SMTP_TESTSERVER" -b "$addr" -p "$port" -P "$base.port" -S "$base.stats" \
        -s "$base.script" >"$base.log" 2>&1 &
    pid=$!
    e2e_track "$pid" "smtp_testserver $var"
    while [ ! -s "$base.port" ]; do
        e2e_alive "$pid" || e2e_fail "smtp_testserver $var exited: $(cat "$base.log")"
        [ "$i" -lt $((E2E_START_TIMEOUT * 10)) ] || e2e_fail "smtp_testserver $var wrote no port"
        sleep 0.05
        i=$((i + 1))
    done
    port=$(tr -dc 0-9 <"$base.port")
    printf -v "${var}_PORT" '%s' "$port"
    printf -v "${var}_PID" '%s' "$pid"
    printf -v "${var}_STATS" '%s' "$base.stats"
    printf -v "${var}_LOG" '%s' "$base.log"
    E2E_PORTS="$E2E_PORTS$port "
    e2e_log "smtp_testserver $var pid $pid on $addr:$port"
}

# e2e_stop_testserver VAR - stop the server started as VAR (by pid)
e2e_stop_testserver() {
    local pidvar=${1}_PID
    e2e_kill_wait "${!pidvar}" 10 || true
    e2e_untrack "${!pidvar}"
    e2e_log "smtp_testserver $1 pid ${!pidvar} stopped"
}

# e2e_ts_stat STATSFILE NAME - one counter of a test server (connections, rcpt, mail,
# ehlo, concurrent_max, last_rcpt, ...); 0 when the file is not there yet
e2e_ts_stat() {
    local v
    v=$(awk -v k="$2" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$1" 2>/dev/null)
    printf '%s\n' "${v:-0}"
}

# ---------------------------------------------------------------- dnsmasq

# e2e_start_dnsmasq RECORD-OPTION... - dnsmasq on 127.0.0.1:DNS_PORT (UDP and TCP)
# authoritative for .test only (--local=/test/: everything else NXDOMAIN, nothing
# forwarded), with the given --mx-host/--host-record options. Sets DNS_PORT, DNS_PID.
e2e_start_dnsmasq() {
    e2e_need dnsmasq
    local d=$E2E_TMP/dnsmasq
    mkdir -p "$d"
    e2e_free_port DNS_PORT
    dnsmasq --keep-in-foreground --port="$DNS_PORT" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --no-poll --conf-file=/dev/null \
        --pid-file="$d/dnsmasq.pid" --user=root --group=root --log-facility="$d/dnsmasq.log" \
        --local=/test/ "$@" >"$d/dnsmasq-stderr.log" 2>&1 &
    DNS_PID=$!
    e2e_track "$DNS_PID" dnsmasq
    e2e_wait_port "$DNS_PORT" "$DNS_PID" dnsmasq
    e2e_log "dnsmasq pid $DNS_PID on 127.0.0.1:$DNS_PORT"
}

# ---------------------------------------------------------------- Postfix pair

# e2e_start_backend_postfix DOMAIN USER... - the BACK-END Postfix: a second private
# instance in $E2E_TMP/backend that relays DOMAIN to the smtp-sink (start it first)
# but knows its users: relay_recipient_maps lists USER@DOMAIN, so any other
# recipient gets "550 5.1.1 <addr>: Recipient address rejected: User unknown in
# relay recipient table" at RCPT. Sets BACK_PORT, BACK_DIR, BACK_MAILLOG.
e2e_start_backend_postfix() {
    local domain=$1 u map=""
    shift
    e2e_need postfix script
    BACK_DIR=$E2E_TMP/backend
    BACK_MAILLOG=$BACK_DIR/log/maillog
    e2e_free_port BACK_PORT
    mkdir -p "$BACK_DIR/log" "$BACK_DIR/queue" "$BACK_DIR/data"
    chown postfix "$BACK_DIR/data"
    for u in "$@"; do
        map="$map {$u@$domain = ok}"
    done
    {
        echo "# private back-end Postfix for $E2E_NAME (tests/e2e/lib_callout.sh): knows its users"
        e2e_postfix_main_cf_base "$BACK_DIR" "backend.$domain" "$domain"
        cat <<EOF
relay_domains = $domain
relay_recipient_maps = inline:{$map }
transport_maps = inline:{ {$domain = smtp:[127.0.0.1]:$SINK_PORT} }
EOF
    } >"$BACK_DIR/main.cf"
    e2e_postfix_launch "$BACK_DIR" "$BACK_PORT" "back-end postfix"
    e2e_log "back-end postfix (config $BACK_DIR) on 127.0.0.1:$BACK_PORT knows: $*"
}

# e2e_start_front_postfix POLICY DOMAIN NEXTHOP-PORT - the FRONT Postfix: lib.sh's
# e2e_start_postfix, relaying DOMAIN to 127.0.0.1:NEXTHOP-PORT (the back end)
# instead of the smtp-sink. lib.sh routes its relay domains to $SINK_PORT, so
# the call gets SINK_PORT=NEXTHOP-PORT for its duration; the result is checked.
e2e_start_front_postfix() {
    local policy=$1 domain=$2 port=$3 tm
    SINK_PORT=$port e2e_start_postfix "$policy" "$domain"
    tm=$(postconf -c "$PF_DIR" -h transport_maps)
    [[ $tm == *"$domain = smtp:[127.0.0.1]:$port"* ]] ||
        e2e_fail "front postfix does not relay $domain to port $port: transport_maps = $tm"
}

# e2e_postfix_connects MAILLOG - number of SMTP sessions an instance's smtpd accepted
# ("connect from" lines; postlogd writes them asynchronously: see e2e_settle_count)
e2e_postfix_connects() {
    grep -c 'postfix/smtpd\[[0-9]*\]: connect from' "$1" 2>/dev/null || true
}

# e2e_settle_count CMD... - run CMD until its output is the same twice 0.5 s apart
# (at most 10 s); prints it. For counters fed by asynchronous log writers.
e2e_settle_count() {
    local a b i=0
    a=$("$@")
    while [ "$i" -lt 20 ]; do
        sleep 0.5
        b=$("$@")
        [ "$a" = "$b" ] && break
        a=$b
        i=$((i + 1))
    done
    printf '%s\n' "$a"
}

# e2e_policyd_log_count REGEX - lines of the daemon log matching REGEX (extended)
e2e_policyd_log_count() {
    grep -cE -- "$1" "$POLICYD_LOG" 2>/dev/null || true
}

# e2e_wait_log REGEX [SECONDS] - wait until the daemon log has a line matching REGEX; prints it
e2e_wait_log() {
    local re=$1 limit=${2:-10} i=0 l
    while [ "$i" -lt $((limit * 10)) ]; do
        l=$(grep -E -- "$re" "$POLICYD_LOG" 2>/dev/null | tail -n 1)
        if [ -n "$l" ]; then
            printf '%s\n' "$l"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# ---------------------------------------------------------------- policy clients

# e2e_policy_query_many N PORT [ATTR=VALUE...] - N policy requests at once: opens N TCP
# connections to 127.0.0.1:PORT, sends one request on each (all written before any
# reply is read), then prints each action (as e2e_policy_query does), one per line,
# in connection order. "<closed>" for a connection closed without a reply.
e2e_policy_query_many() {
    perl -MIO::Socket::INET -MIO::Select -e '
        my $n = shift; my $port = shift;
        my %a = (request => "smtpd_access_policy", protocol_state => "RCPT",
                 protocol_name => "ESMTP", client_address => "127.0.0.1",
                 sender => "sender\@client.e2e.test", instance => "e2e.$$");
        my @order = qw(request protocol_state protocol_name client_address sender instance);
        for (@ARGV) { my ($k, $v) = split /=/, $_, 2; push @order, $k unless exists $a{$k}; $a{$k} = $v }
        my $req = join("", map { "$_=$a{$_}\n" } @order) . "\n";
        my (@socks, %buf, %done);
        for my $i (1 .. $n) {
            my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
                or die "connect $i: $!\n";
            push @socks, $s;
        }
        # every request leaves before the first reply is read: the lookups overlap
        print {$_} $req for @socks;
        $_->flush for @socks;
        my $sel = IO::Select->new(@socks);
        my $deadline = time + 30;
        while ($sel->count && time < $deadline) {
            for my $s ($sel->can_read(1)) {
                my $r = sysread($s, my $chunk, 4096);
                $buf{$s} .= $chunk if $r;
                if (!$r || $buf{$s} =~ /\n\n/) { $sel->remove($s); $done{$s} = 1 }
            }
        }
        for my $s (@socks) {
            my $b = $buf{$s} // "";
            if ($b =~ /^action=(.*?)\n\n/s) { print "$1\n" }
            elsif (!$done{$s}) { print "<timeout>\n" }
            else { print "<closed>\n" }
        }
    ' "$@"
}

# e2e_policy_query_port PORT [ATTR=VALUE...] - e2e_policy_query against another daemon
e2e_policy_query_port() {
    # shellcheck disable=SC2034 # read by e2e_policy_query (dynamic scope)
    local POLICYD_PORT=$1
    shift
    e2e_policy_query "$@"
}

# e2e_start_policyd2 CONF PORT - a second daemon (another policyd host sharing the Redis)
# listening as CONF says on PORT; logs to $E2E_TMP/policyd2.log. Sets POLICYD2_PID,
# POLICYD2_LOG. Stopped by pid like everything else.
e2e_start_policyd2() {
    local conf=$1 port=$2
    [ -x "$POLICYD" ] || e2e_fail "$POLICYD is not built (set E2E_BUILD or POLICYD)"
    POLICYD2_LOG=$E2E_TMP/policyd2.log
    echo "=== start: $POLICYD -f -c $conf" >>"$POLICYD2_LOG"
    "$POLICYD" -f -c "$conf" >>"$POLICYD2_LOG" 2>&1 &
    POLICYD2_PID=$!
    e2e_track "$POLICYD2_PID" "callahead-policyd (second)"
    e2e_wait_port "$port" "$POLICYD2_PID" "second callahead-policyd"
    e2e_log "second callahead-policyd pid $POLICYD2_PID on 127.0.0.1:$port"
}
