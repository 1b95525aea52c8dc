#!/bin/bash
# test_reload_redis.sh - a SIGHUP moves the shared cache to another Redis (redis_server,
# redis_key_prefix, redis_db) without dropping a policy connection. Under a steady trickle of
# requests on one kept-open connection: every request is answered, new verdicts (and the
# harvest counters) land in the new Redis under the new prefix and database and none in the
# old one, the old Redis sees no connection of ours any more, a flush published on the new
# Redis reaches the daemon (one on the old does not), and the control socket's flush works
# there. Then a move to a Redis that is down (answers go on from the tables; the daemon
# connects once it is up), to no Redis at all, and back. Real redis-server instances.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
e2e_example_tables
# cached.test is verified by a callout (to a port nobody listens on), so its lookups go through
# the cache; a CDB table is always asked directly
e2e_free_port DEAD_PORT
printf '%s\n' "example.test   cdb:$E2E_CDB" "cached.test    smtp:[127.0.0.1]:$DEAD_PORT" \
    "*              dunno" >"$E2E_ROUTES"
e2e_start_redis
A_PORT=$REDIS_PORT
e2e_start_redis
B_PORT=$REDIS_PORT
e2e_free_port C_PORT # a Redis started only later
CONF=$E2E_TMP/callahead.conf
CTL=$E2E_TMP/ctl
COMMON=("control_socket = $CTL" "max_invalid_per_client = 1000000" "redis_timeout = 500ms"
    "redis_reconnect_max = 500ms")
REDIS_PORT=$A_PORT
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
# reload - SIGHUP with the current $CONF; fail unless it was applied
reload() {
    mark
    kill -HUP "$POLICYD_PID"
    wait_log "reloaded $CONF"
    if tail -c +"$MARK" "$POLICYD_LOG" | grep -q 'reload refused\|reload failed'; then
        e2e_fail "reload not applied: $(tail -c +"$MARK" "$POLICYD_LOG" | grep 'reload')"
    fi
}
# ours PORT - connections to the Redis on PORT other than redis-cli's own
ours() {
    redis-cli -p "$1" CLIENT LIST | grep -vc 'cmd=client' || true
}
# wait_ours PORT N - until the Redis on PORT has N connections of ours (20 s)
wait_ours() {
    local _
    for _ in $(seq 1 200); do
        [ "$(ours "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    e2e_fail "the Redis on port $1 has $(ours "$1") connections of ours, not $2:
$(redis-cli -p "$1" CLIENT LIST)"
}
# wait_key PORT DB PATTERN - until a key matching PATTERN is in database DB on PORT (20 s)
wait_key() {
    local _
    for _ in $(seq 1 200); do
        [ -n "$(redis-cli -p "$1" -n "$2" --scan --pattern "$3" 2>/dev/null | head -n 1)" ] &&
            return 0
        sleep 0.1
    done
    e2e_fail "no key $3 in database $2 of the Redis on port $1"
}
nkeys() { redis-cli -p "$1" -n "$2" --scan --pattern "$3" | wc -l; }
# cached ADDR - where the daemon's answer for ADDR came from (callahead verify: no, l1, redis)
cached() {
    "$CALLAHEAD" -s "$CTL" verify "$1" | sed -n 's/^cached=//p'
}

# The trickle: one policy connection kept open, a request every 50 ms for a new address the
# table does not know (so each one is verified and written to the cache), until told to stop.
# Every reply must be a 550; a closed connection or another reply fails it.
trickle() {
    perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
        my ($port, $stop, $count) = @ARGV;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
            or die "trickle: connect: $!\n";
        my $n = 0;
        while (!-e $stop) {
            $n++;
            print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n",
                "client_address=127.0.0.1\nsender=s\@client.e2e.test\n",
                "recipient=t$n\@example.test\n\n";
            local $SIG{ALRM} = sub { die "trickle: no reply to request $n within 30 s\n" };
            alarm 30;
            my $reply = "";
            while (my $l = <$s>) { last if $l eq "\n"; $reply .= $l }
            alarm 0;
            die "trickle: connection closed at request $n\n" if $reply eq "";
            die "trickle: request $n answered [$reply]\n" unless $reply =~ /^action=550 /;
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
wait_key "$A_PORT" 0 'callahead:rcpt:t*@example.test'
wait_key "$A_PORT" 0 'callahead:harvest:*'
e2e_assert_eq 2 "$(ours "$A_PORT")" "connections to A (cache and flush channel)"
e2e_log "ok: verdicts and harvest counts in A; $(answered) answered"

# --- A to B, another prefix and database
REDIS_PORT=$B_PORT
e2e_policyd_conf "$CONF" "${COMMON[@]}" "redis_key_prefix = rr:" "redis_db = 3"
reload
wait_log 'reload: redis_server, redis_db, redis_key_prefix changed'
wait_log 'redis subscription rr:flush: subscribed'
wait_ours "$A_PORT" 0
e2e_log "ok: no connection of ours left on A"
a_before=$(nkeys "$A_PORT" 0 'callahead:rcpt:t*')
wait_more 20
wait_key "$B_PORT" 3 'rr:rcpt:t*@example.test'
wait_key "$B_PORT" 3 'rr:harvest:*'
e2e_assert_eq "$a_before" "$(nkeys "$A_PORT" 0 'callahead:rcpt:t*')" "verdicts in A after the switch"
e2e_assert_eq 0 "$(redis-cli -p "$B_PORT" -n 0 DBSIZE)" "keys in B's database 0"
e2e_assert_eq 2 "$(ours "$B_PORT")" "connections to B"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=carol@example.test)" "carol"
wait_key "$B_PORT" 3 'rr:rcpt:carol@example.test'
e2e_assert_eq 0 "$(redis-cli -p "$A_PORT" EXISTS callahead:rcpt:carol@example.test)" "carol in A"
e2e_log "ok: new verdicts in B (database 3, prefix rr:), none in A"

# A flush published on B reaches the daemon's L1; one published on A does not.
now=$(date +%s)
redis-cli -p "$B_PORT" -n 3 SET rr:rcpt:zed@cached.test "valid 250 $now smtp ok" EX 600 >/dev/null
e2e_assert_eq redis "$(cached zed@cached.test)" "zed, first asked (B's forged valid)"
redis-cli -p "$B_PORT" -n 3 DEL rr:rcpt:zed@cached.test >/dev/null
e2e_assert_eq l1 "$(cached zed@cached.test)" "zed, asked again"
mark
redis-cli -p "$A_PORT" PUBLISH callahead:flush "address zed@cached.test" >/dev/null
redis-cli -p "$A_PORT" PUBLISH rr:flush "address zed@cached.test" >/dev/null
e2e_assert_eq l1 "$(cached zed@cached.test)" "zed after a flush published on A"
redis-cli -p "$B_PORT" PUBLISH rr:flush "address zed@cached.test" >/dev/null
wait_log 'flush address zed@cached.test from the flush channel'
e2e_assert_eq no "$(cached zed@cached.test)" "zed after B's flush (asked the next hop)"
e2e_log "ok: a flush on B reached the daemon, one on A did not"
# the control socket's flush deletes in B
"$CALLAHEAD" -s "$CTL" flush carol@example.test >/dev/null || e2e_fail "callahead flush failed"
e2e_assert_eq 0 "$(redis-cli -p "$B_PORT" -n 3 EXISTS rr:rcpt:carol@example.test)" \
    "carol in B after callahead flush"

# --- only a timeout changes: new connections, but the flush channel stays, so the old
# subscription listens until the new one is up and the in-process cache is kept
redis-cli -p "$B_PORT" -n 3 SET rr:rcpt:kept@cached.test "valid 250 $now smtp ok" EX 600 >/dev/null
e2e_assert_eq redis "$(cached kept@cached.test)" "kept, first asked"
redis-cli -p "$B_PORT" -n 3 DEL rr:rcpt:kept@cached.test >/dev/null
e2e_policyd_conf "$CONF" "${COMMON[@]/redis_timeout = 500ms/redis_timeout = 400ms}" \
    "redis_key_prefix = rr:" "redis_db = 3"
reload
wait_log 'no flush was missed, the in-process cache is kept'
e2e_assert_eq l1 "$(cached kept@cached.test)" "kept, after a reload of redis_timeout"
wait_ours "$B_PORT" 2
wait_more 5
e2e_log "ok: a timeout change kept the L1 and closed the old connections"

# --- to a Redis that is down: answers go on; once it is up the daemon connects
REDIS_PORT=$C_PORT
e2e_policyd_conf "$CONF" "${COMMON[@]}"
reload
wait_ours "$B_PORT" 0
wait_more 10
mkdir -p "$E2E_TMP/redis-c"
redis-server --bind 127.0.0.1 --port "$C_PORT" --daemonize no --save '' --appendonly no \
    --dir "$E2E_TMP/redis-c" --logfile "$E2E_TMP/redis-c/redis.log" >/dev/null 2>&1 &
C_PID=$!
e2e_track "$C_PID" redis-c
wait_key "$C_PORT" 0 'callahead:rcpt:t*@example.test'
wait_ours "$C_PORT" 2
e2e_log "ok: answered while C was down, connected once it came up"

# --- to no Redis (the L1 is kept), and back to B's database 0
redis-cli -p "$C_PORT" SET callahead:rcpt:kept@cached.test "valid 250 $now smtp ok" EX 600 \
    >/dev/null
wait_log 'redis subscription callahead:flush: subscribed'
e2e_assert_eq redis "$(cached kept@cached.test)" "kept, from C"
REDIS_PORT=
e2e_policyd_conf "$CONF" "${COMMON[@]}"
reload
wait_ours "$C_PORT" 0
c_before=$(nkeys "$C_PORT" 0 'callahead:rcpt:t*')
wait_more 10
e2e_assert_eq "$c_before" "$(nkeys "$C_PORT" 0 'callahead:rcpt:t*')" "verdicts in C without Redis"
e2e_assert_eq l1 "$(cached kept@cached.test)" "kept, after the move to no Redis"
REDIS_PORT=$B_PORT
e2e_policyd_conf "$CONF" "${COMMON[@]}"
reload
wait_key "$B_PORT" 0 'callahead:rcpt:t*@example.test'
wait_ours "$B_PORT" 2
e2e_log "ok: no Redis and back"

# --- a Redis that cannot be set up refuses the reload as a whole: B stays in use
b_before=$(nkeys "$B_PORT" 0 'callahead:rcpt:t*')
REDIS_PORT=
e2e_policyd_conf "$CONF" "${COMMON[@]}" "redis_server = no-such-host.invalid:6379" \
    "ttl_invalid = 1h"
mark
kill -HUP "$POLICYD_PID"
wait_log 'reload refused, keeping the running configuration: redis: cannot resolve no-such-host.invalid'
wait_more 10
[ "$(nkeys "$B_PORT" 0 'callahead:rcpt:t*')" -gt "$b_before" ] || e2e_fail "no new verdicts in B"
ttl=$(redis-cli -p "$B_PORT" TTL "callahead:rcpt:t$(answered)@example.test")
[ "$ttl" -gt 3600 ] || e2e_fail "the refused file's ttl_invalid was applied (TTL $ttl)"
e2e_assert_eq 2 "$(ours "$B_PORT")" "connections to B after the refused reload"
e2e_log "ok: an unresolvable redis_server refused the reload, B kept"

touch "$E2E_TMP/trickle.stop"
wait "$TRICKLE_PID" || e2e_fail "the trickle client failed (see above)"
e2e_untrack "$TRICKLE_PID"
[ "$(answered)" -ge 60 ] || e2e_fail "only $(answered) requests answered"
e2e_assert_eq 1 "$(grep -c 'reload refused\|reload failed' "$POLICYD_LOG")" "refused reloads"
e2e_stop_policyd
