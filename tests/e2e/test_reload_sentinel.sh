#!/bin/bash
# test_reload_sentinel.sh - a SIGHUP moves the shared cache between a plain Redis and a
# Sentinel set, without dropping a policy connection. Real servers on loopback, all with a
# password: a plain Redis C, a master M with its replica R, and three sentinels watching M as
# e2emaster. Under a steady trickle of requests on one kept-open connection (every request
# must be answered, with the right verdict):
#   1. redis_server = C  ->  redis_sentinels + redis_master_name: new verdicts land in M, the
#      master the sentinels name, none in C any more, and no connection of ours is left on C;
#      Then only redis_timeout changes: the flush subscription hands over without a gap;
#   2. M is killed: the failover is followed (new verdicts on the promoted R within a loose
#      bound, measured and printed);
#   3. redis_master_name changed to a name the sentinels do not know: applied, as at start-up
#      (where the same name starts the daemon, since the sentinels are asked only on the
#      loop): the log names the master and why, answers go on from the tables and the
#      in-process cache, nothing is written to R, and our connections to R and the old
#      name's subscriptions on the sentinels are closed. Once the sentinels are told to
#      monitor that name, the daemon finds its master without another reload;
#   4. back to redis_server = C: new verdicts land in C again, none in R, and no connection
#      of ours is left on R or on the sentinels.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"
# shellcheck source=tests/e2e/lib_sentinel.sh
. "$(dirname "$0")/lib_sentinel.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
MASTER=e2emaster
e2e_example_tables # example.test from a CDB table that knows only alice

e2e_auth_redis plain C
e2e_auth_redis master M
e2e_auth_redis replica R --replicaof 127.0.0.1 "$M"
e2e_wait_replica "$R"
e2e_start_sentinels "$MASTER" "$M" 1

CONF=$E2E_TMP/callahead.conf
CTL=$E2E_TMP/ctl
COMMON=("control_socket = $CTL" "max_invalid_per_client = 1000000" "redis_timeout = 500ms"
    "redis_reconnect_max = 500ms" "redis_password = $E2E_REDIS_PW")
SENT=("redis_sentinels = $SENTINELS" "redis_master_name = $MASTER")
REDIS_PORT=$C
e2e_policyd_conf "$CONF" "${COMMON[@]}"
e2e_start_policyd "$CONF"

mark() { MARK=$(($(stat -c %s "$POLICYD_LOG") + 1)); }
MARK=1
# wait_log TEXT - until the daemon's log holds TEXT (fixed string) after the last mark (20 s)
wait_log() {
    local _
    for _ in $(seq 1 200); do
        tail -c +"$MARK" "$POLICYD_LOG" | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    e2e_fail "the daemon did not log [$1]; it logged [$(tail -c +"$MARK" "$POLICYD_LOG")]"
}
# wait_switch_subs - until the six +switch-master subscriptions of the configuration the last
# reload applied are confirmed (20 s)
wait_switch_subs() {
    local _
    for _ in $(seq 1 200); do
        [ "$(tail -c +"$MARK" "$POLICYD_LOG" | grep -c 'redis subscription +switch-master: subscribed')" -ge 6 ] &&
            return 0
        sleep 0.1
    done
    e2e_fail "the +switch-master subscriptions were not confirmed: $(tail -c +"$MARK" "$POLICYD_LOG" | grep switch-master)"
}
# reload - SIGHUP with the current $CONF; fail unless it was applied
reload() {
    mark
    kill -HUP "$POLICYD_PID"
    wait_log "reloaded $CONF"
    if tail -c +"$MARK" "$POLICYD_LOG" | grep -q 'reload refused\|reload failed'; then
        e2e_fail "reload not applied: $(tail -c +"$MARK" "$POLICYD_LOG" | grep 'reload')"
    fi
}
# ours PORT - connections to the Redis on PORT other than redis-cli's own, the replicas' and
# the sentinels'
ours() {
    e2e_rcli "$1" CLIENT LIST | grep -v 'cmd=client\|flags=S\|name=sentinel-' | grep -c . ||
        true
}
# wait_ours PORT N - until the Redis on PORT has N connections of ours (20 s)
wait_ours() {
    local _
    for _ in $(seq 1 200); do
        [ "$(ours "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    e2e_fail "the Redis on port $1 has $(ours "$1") connections of ours, not $2:
$(e2e_rcli "$1" CLIENT LIST)"
}
# subs - our +switch-master subscriptions, summed over the three sentinels (each daemon in
# Sentinel mode keeps two on every sentinel: the cache connection's and the flush channel's)
subs() {
    local sp n=0
    for sp in $SPORTS; do
        n=$((n + $(e2e_rcli "$sp" CLIENT LIST | grep 'cmd=subscribe' | grep -vc 'name=sentinel-')))
    done
    echo "$n"
}
# wait_subs N - until subs is N (20 s)
wait_subs() {
    local _
    for _ in $(seq 1 200); do
        [ "$(subs)" = "$1" ] && return 0
        sleep 0.1
    done
    e2e_fail "the sentinels have $(subs) subscriptions of ours, not $1"
}
# nkeys PORT - the trickle's verdicts in the Redis on PORT
nkeys() { e2e_rcli "$1" --scan --pattern 'callahead:rcpt:t*@example.test' | wc -l; }
# wait_keys PORT N - until the Redis on PORT holds more than N of the trickle's verdicts (20 s)
wait_keys() {
    local _
    for _ in $(seq 1 200); do
        [ "$(nkeys "$1")" -gt "$2" ] && return 0
        sleep 0.1
    done
    e2e_fail "no new verdict in the Redis on port $1 (still $(nkeys "$1"))"
}
# maxkey PORT - the highest request number among the trickle's verdicts in the Redis on PORT
maxkey() {
    e2e_rcli "$1" --scan --pattern 'callahead:rcpt:t*@example.test' |
        sed -n 's/^callahead:rcpt:t\([0-9]*\)@example\.test$/\1/p' | sort -n | tail -n 1 |
        grep . || echo 0
}
redis_state() { "$CALLAHEAD" -s "$CTL" stats | sed -n 's/^redis=//p'; }

# The trickle: one policy connection kept open, a request every 50 ms, each a new address the
# table does not know (answered 550 and written to the cache) and every fifth alice (answered
# DUNNO, valid), until told to stop. A closed connection or a wrong reply stops it with an
# error, which fails the scenario.
trickle() {
    perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
        my ($port, $stop, $count) = @ARGV;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
            or die "trickle: connect: $!\n";
        my $n = 0;
        while (!-e $stop) {
            $n++;
            my $rcpt = $n % 5 == 0 ? "alice\@example.test" : "t$n\@example.test";
            print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n",
                "client_address=127.0.0.1\nsender=s\@client.e2e.test\nrecipient=$rcpt\n\n";
            local $SIG{ALRM} = sub { die "trickle: no reply to request $n within 30 s\n" };
            alarm 30;
            my $reply = "";
            while (my $l = <$s>) { last if $l eq "\n"; $reply .= $l }
            alarm 0;
            die "trickle: connection closed at request $n\n" if $reply eq "";
            my $want = $n % 5 == 0 ? qr/^action=DUNNO\n?$/ : qr/^action=550 5\.1\.1 /;
            die "trickle: request $n ($rcpt) answered [$reply]\n" unless $reply =~ $want;
            open(my $f, ">", "$count.new") or die; print $f "$n\n"; close $f;
            rename("$count.new", $count);
            sleep 0.05;
        }
        print "trickle: $n requests answered on one connection\n";
    ' "$POLICYD_PORT" "$E2E_TMP/trickle.stop" "$E2E_TMP/trickle.count"
}
answered() { cat "$E2E_TMP/trickle.count" 2>/dev/null || echo 0; }
# wait_more N - until the trickle has had N more answers (30 s)
wait_more() {
    local from _
    from=$(answered)
    for _ in $(seq 1 300); do
        [ "$(answered)" -ge $((from + $1)) ] && return 0
        e2e_alive "$TRICKLE_PID" || e2e_fail "the trickle client stopped"
        sleep 0.1
    done
    e2e_fail "the trickle got no $1 more answers (at $(answered))"
}

wait_log 'redis subscription callahead:flush: subscribed'
trickle &
TRICKLE_PID=$!
e2e_track "$TRICKLE_PID" trickle
wait_more 10
wait_keys "$C" 0
e2e_assert_eq 2 "$(ours "$C")" "connections to C (cache and flush channel)"
e2e_log "ok: verdicts in the plain Redis C; $(answered) answered"

# --- 1. from C to the Sentinel set
REDIS_PORT=
e2e_policyd_conf "$CONF" "${COMMON[@]}" "${SENT[@]}"
reload
wait_log 'reload: redis_server, redis_sentinels, redis_master_name changed: the cache moves to the master of sentinels'
wait_log "redis: the sentinels name 127.0.0.1:$M as the master"
wait_log 'redis subscription callahead:flush: subscribed'
wait_ours "$C" 0
wait_switch_subs
wait_subs 6
c_before=$(nkeys "$C")
m_before=$(nkeys "$M")
wait_more 20
wait_keys "$M" "$m_before"
e2e_assert_eq "$c_before" "$(nkeys "$C")" "verdicts in C after the move to the sentinels"
e2e_assert_eq 2 "$(ours "$M")" "connections to the master M"
e2e_assert_eq connected "$(redis_state)" "redis in callahead stats"
e2e_log "ok: new verdicts in the sentinels' master M ($(nkeys "$M")), none in C, C closed"

# only a timeout changes, in Sentinel mode: the flush channel stays, the old subscription hands
# over to the new one, and the old connections (to M and to the sentinels) are closed
COMMON=("${COMMON[@]/redis_timeout = 500ms/redis_timeout = 400ms}")
e2e_policyd_conf "$CONF" "${COMMON[@]}" "${SENT[@]}"
reload
wait_log 'reload: redis_timeout changed: the cache moves to the master of sentinels'
wait_log 'no flush was missed, the in-process cache is kept'
wait_switch_subs
wait_subs 6
wait_ours "$M" 2
m_before=$(nkeys "$M")
wait_more 10
wait_keys "$M" "$m_before"
e2e_log "ok: a timeout change in Sentinel mode handed the flush channel over, M still used"

# --- 2. a failover after the reload is followed. With N0 answered once M is dead, request
# N0 + 2 and later were sent after the kill, so their verdicts on R were written there by us,
# not copied from M.
t0=$(e2e_now_ms)
kill -KILL "$M_PID"
wait "$M_PID" 2>/dev/null
n0=$(answered)
e2e_untrack "$M_PID"
e2e_log "master 127.0.0.1:$M killed after request $n0"
mark
for _ in $(seq 1 400); do
    [ "$(maxkey "$R")" -gt $((n0 + 1)) ] && break
    sleep 0.05
done
t1=$(e2e_now_ms)
[ "$(maxkey "$R")" -gt $((n0 + 1)) ] ||
    e2e_fail "no new verdict on the promoted master 20 s after the kill: $(grep -i redis "$POLICYD_LOG" | tail -5)"
e2e_assert_match '^role:master' "$(e2e_rcli "$R" INFO replication | tr -d '\r' | grep '^role:')" \
    "role of the old replica"
e2e_log "ok: new verdicts on the promoted master R $((t1 - t0)) ms after the master was killed"
e2e_assert_lt 20000 $((t1 - t0)) "ms from the kill to a new verdict on R"
wait_log 'redis subscription callahead:flush: subscribed'
wait_more 10

# --- 3. a master name the sentinels do not know: applied as at start-up, answers go on
e2e_policyd_conf "$CONF" "${COMMON[@]}" "redis_sentinels = $SENTINELS" \
    "redis_master_name = latermaster"
reload
wait_log 'reload: redis_master_name changed: the cache moves to the master of sentinels'
wait_log ': does not know this master'
wait_log 'redis: no master from the sentinels; last known (master not yet known): no sentinel told where master latermaster is'
wait_ours "$R" 0
wait_switch_subs
wait_subs 6 # the old master name's subscriptions are closed, the new name's are open
r_before=$(nkeys "$R")
wait_more 20
e2e_assert_eq "$r_before" "$(nkeys "$R")" "verdicts in R with an unknown master name"
e2e_assert_eq disconnected "$(redis_state)" "redis in callahead stats"
e2e_log "ok: an unknown master name: logged, answered from the tables, nothing written to R"

# start-up with the same file does the same: it starts, answers and logs the same lines
P2_LOG=$E2E_TMP/policyd2.log
P2_PORT=
e2e_free_port P2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$P2_PORT/" -e '/^control_socket = /d' \
    "$CONF" >"$E2E_TMP/callahead2.conf"
"$POLICYD" -f -c "$E2E_TMP/callahead2.conf" >"$P2_LOG" 2>&1 &
P2_PID=$!
e2e_track "$P2_PID" "second callahead-policyd"
e2e_wait_port "$P2_PORT" "$P2_PID" "second callahead-policyd"
e2e_assert_match '^550 5\.1\.1 ' "$(POLICYD_PORT=$P2_PORT e2e_policy_query recipient=s2@example.test)" \
    "the second daemon's answer"
for _ in $(seq 1 200); do
    grep -qF 'no sentinel told where master latermaster is' "$P2_LOG" && break
    sleep 0.1
done
grep -qF 'no sentinel told where master latermaster is' "$P2_LOG" ||
    e2e_fail "start-up with the unknown name did not log it: $(tail -5 "$P2_LOG")"
e2e_kill_wait "$P2_PID" 30 || e2e_fail "the second daemon exited non-zero"
e2e_untrack "$P2_PID"
e2e_log "ok: start-up with the unknown name behaves as the reload does"

# once the sentinels are told about the name, the daemon finds its master without a reload
mark
for sp in $SPORTS; do
    e2e_assert_eq OK "$(e2e_rcli "$sp" SENTINEL MONITOR latermaster 127.0.0.1 "$R" 2)" \
        "SENTINEL MONITOR latermaster on $sp"
    e2e_rcli "$sp" SENTINEL SET latermaster auth-pass "$E2E_REDIS_PW" >/dev/null
done
wait_log "redis: the sentinels name 127.0.0.1:$R as the master"
wait_log 'redis subscription callahead:flush: subscribed'
wait_keys "$R" "$r_before"
wait_ours "$R" 2
e2e_log "ok: the name became known to the sentinels: verdicts in R again, without a reload"

# --- 4. back to the plain Redis C
REDIS_PORT=$C
e2e_policyd_conf "$CONF" "${COMMON[@]}"
reload
wait_log "reload: redis_server, redis_sentinels, redis_master_name changed: the cache moves to 127.0.0.1:$C"
wait_log 'redis subscription callahead:flush: subscribed'
wait_ours "$R" 0
wait_subs 0
r_before=$(nkeys "$R")
c_before=$(nkeys "$C")
wait_more 20
wait_keys "$C" "$c_before"
e2e_assert_eq 2 "$(ours "$C")" "connections to C"
e2e_assert_eq "$r_before" "$(nkeys "$R")" "verdicts in R after the move back to C"
e2e_log "ok: back on C: new verdicts there, none in R"

touch "$E2E_TMP/trickle.stop"
wait "$TRICKLE_PID" || e2e_fail "the trickle client failed (see above)"
e2e_untrack "$TRICKLE_PID"
e2e_log "ok: $(answered) requests answered on one connection across four reloads and a failover"
e2e_assert_eq 0 "$(grep -c 'reload refused\|reload failed' "$POLICYD_LOG")" "refused reloads"
e2e_stop_policyd
