#!/bin/bash
# test_redis_sentinel.sh - the shared cache behind Redis Sentinel: two redis-server (one a
# replica), three sentinels and two daemons on loopback, all with a password, database 3.
#   - the daemons find the master through the sentinels and write verdicts to it (AUTH, SELECT);
#   - under steady policy load the master is killed (SIGKILL): every request is still answered,
#     with the right verdict, while the sentinels fail over;
#   - new verdicts reach the promoted master within a bounded time (measured and printed);
#   - the second daemon, sharing the sentinel set, follows too and answers from what the
#     first one wrote to the new master (cached=redis).
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"
# shellcheck source=tests/e2e/lib_sentinel.sh
. "$(dirname "$0")/lib_sentinel.sh"

PW=$E2E_REDIS_PW
MASTER=e2emaster

e2e_auth_redis master M
e2e_auth_redis replica R --replicaof 127.0.0.1 "$M"
e2e_wait_replica "$R"
e2e_start_sentinels "$MASTER" "$M" 1
e2e_log "the replica is 127.0.0.1:$R"

# the next hop knows only alice; a callout route, because verdicts of local tables are never
# read back from the cache (the table is faster), and the second daemon must read them
e2e_start_testserver HOP "# next hop for $E2E_NAME: knows only alice
rcpt alice@example.test 250 2.1.5 alice is here
rcpt * 550 5.1.1 no such user here"
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "example.test   smtp:[127.0.0.1]:$HOP_PORT" "*              dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "redis_sentinels = $SENTINELS" \
    "redis_master_name = $MASTER" "redis_password = $PW" "redis_db = 3" \
    "redis_reconnect_max = 2s" "control_socket = $E2E_TMP/ctl-a"
e2e_start_policyd "$E2E_TMP/callahead.conf"
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" \
    -e "s|^control_socket = .*|control_socket = $E2E_TMP/ctl-b|" "$E2E_TMP/callahead.conf" \
    >"$E2E_TMP/callahead2.conf"
e2e_start_policyd2 "$E2E_TMP/callahead2.conf" "$POLICYD2_PORT"

# wait_key PORT KEY SECONDS - until KEY exists in database 3 of the Redis on PORT
wait_key() {
    local i=0
    while [ "$i" -lt $(($3 * 20)) ]; do
        [ "$(e2e_rcli "$1" -n 3 EXISTS "$2")" = 1 ] && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

VALID=$(e2e_policy_query recipient=alice@example.test)
INVALID=$(e2e_policy_query recipient=before@example.test)
e2e_assert_match '^550 5\.1\.1 ' "$INVALID" "verdict for before@example.test"
wait_key "$M" callahead:rcpt:before@example.test 10 ||
    e2e_fail "no verdict in database 3 of the master: $(e2e_rcli "$M" -n 3 --scan | head)"
e2e_assert_eq 0 "$(e2e_rcli "$M" -n 0 DBSIZE)" "keys in database 0 (redis_db = 3 is used)"
e2e_log "ok: the verdict is in database 3 of the master found through the sentinels"

# steady load on daemon A: one connection, a request every 20 ms, each answer logged with
# its address and latency, until $E2E_TMP/stop exists
perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
    my ($port, $stop, $out) = @ARGV;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
        or die "connect: $!\n";
    open(my $fh, ">", $out) or die "$out: $!\n";
    $fh->autoflush(1);
    local $SIG{ALRM} = sub { print $fh "TIMEOUT\n"; exit 1 };
    for (my $i = 0; !-e $stop; $i++) {
        my $rcpt = $i % 5 == 0 ? "alice\@example.test" : "load$i\@example.test";
        my $t0 = time;
        print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n",
            "client_address=127.0.0.1\nsender=s\@client.e2e.test\ninstance=l$i\n",
            "recipient=$rcpt\n\n";
        alarm 10;
        my $reply = "";
        while (my $l = <$s>) { last if $l eq "\n"; $reply .= $l }
        alarm 0;
        $reply = "<closed>" if $reply eq "";
        $reply =~ s/^action=//; chomp $reply;
        printf $fh "%s %.0f %s\n", $rcpt, (time - $t0) * 1000, $reply;
        last if $reply eq "<closed>";
        sleep 0.02;
    }
' "$POLICYD_PORT" "$E2E_TMP/stop" "$E2E_TMP/load.out" &
LOAD_PID=$!
e2e_track "$LOAD_PID" "policy load"
sleep 1

# the failover: kill the master outright
t0=$(e2e_now_ms)
kill -KILL "$M_PID"
wait "$M_PID" 2>/dev/null
e2e_untrack "$M_PID"
e2e_log "master 127.0.0.1:$M killed"

# new verdicts must reach the promoted replica: a fresh address every 100 ms until one is there
k=0
while :; do
    e2e_policy_query "recipient=after$k@example.test" >/dev/null
    if [ "$(e2e_rcli "$R" -n 3 EXISTS "callahead:rcpt:after$k@example.test")" = 1 ]; then
        break
    fi
    [ $(($(e2e_now_ms) - t0)) -lt 20000 ] || e2e_fail "no new verdict on the promoted master 20s after the kill: $(grep -i redis "$POLICYD_LOG" | tail -5)"
    sleep 0.1
    k=$((k + 1))
done
t1=$(e2e_now_ms)
e2e_assert_match '^role:master' "$(e2e_rcli "$R" INFO replication | tr -d '\r' | grep '^role:')" "role of the old replica"
e2e_log "ok: new verdicts on the promoted master $((t1 - t0)) ms after the master was killed"
[ $((t1 - t0)) -lt 10000 ] || e2e_fail "failover took $((t1 - t0)) ms (want < 10000)"

sleep 0.5
: >"$E2E_TMP/stop"
wait "$LOAD_PID" || e2e_fail "the load generator failed: $(tail -3 "$E2E_TMP/load.out")"
e2e_untrack "$LOAD_PID"
total=$(wc -l <"$E2E_TMP/load.out")
[ "$total" -ge 50 ] || e2e_fail "only $total requests under load"
bad=$(awk -v valid="$VALID" '{
        rcpt = $1; $1 = ""; $2 = ""; sub(/^  /, "")
        if (rcpt == "alice@example.test" ? $0 != valid : $0 !~ /^550 5\.1\.1 /) print rcpt, $0
    }' "$E2E_TMP/load.out")
[ -z "$bad" ] || e2e_fail "wrong answers under failover: $(head -5 <<<"$bad")"
slow=$(awk '$2 > 1000' "$E2E_TMP/load.out" | wc -l)
e2e_assert_eq 0 "$slow" "answers slower than 1 s during the failover"
e2e_log "ok: $total requests during the failover, all answered correctly (max $(awk '$2 > m { m = $2 } END { print m + 0 }' "$E2E_TMP/load.out") ms)"

sw=$("$E2E_BUILD/callahead" -s "$E2E_TMP/ctl-a" stats | sed -n 's/^redis_master_switches=//p')
e2e_assert_eq 1 "$sw" "redis_master_switches of the first daemon"

# the second daemon follows the switch too and reads what the first one wrote there
i=0
until "$E2E_BUILD/callahead" -s "$E2E_TMP/ctl-b" stats 2>/dev/null | grep -q '^redis[ :=]*connected'; do
    [ "$i" -lt 300 ] || e2e_fail "the second daemon does not reconnect: $(grep -i redis "$POLICYD2_LOG" | tail -5)"
    sleep 0.1
    i=$((i + 1))
done
r=$(POLICYD_PORT=$POLICYD2_PORT e2e_policy_query "recipient=after$k@example.test")
e2e_assert_match '^550 5\.1\.1 ' "$r" "second daemon's answer for after$k@example.test"
grep -q "recipient=<after$k@example.test> verdict=invalid .*cached=redis" "$POLICYD2_LOG" ||
    e2e_fail "the second daemon did not answer after$k@example.test from the new master: $(grep "after$k@" "$POLICYD2_LOG")"
e2e_log "ok: the second daemon answers from the promoted master (cached=redis)"
grep -q "sentinel reports the master moved to 127.0.0.1:$R\|sentinels name 127.0.0.1:$R as the master" "$POLICYD_LOG" ||
    e2e_fail "no log line about the new master"

# both flush subscriptions (a second connection each) follow the switch as well
for log in "$POLICYD_LOG" "$POLICYD2_LOG"; do
    i=0
    until [ "$(grep -c 'redis subscription callahead:flush: subscribed' "$log")" -ge 2 ]; do
        [ "$i" -lt 300 ] || e2e_fail "the flush subscription did not come back: $(grep -i 'callahead:flush' "$log" | tail -3)"
        sleep 0.1
        i=$((i + 1))
    done
done
t2=$(e2e_now_ms)
e2e_log "ok: both daemons subscribed to the flush channel again, at most $((t2 - t0)) ms after the kill"

e2e_stop_policyd
e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "second daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"
