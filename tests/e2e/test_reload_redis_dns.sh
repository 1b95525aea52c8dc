#!/bin/bash
# test_reload_redis_dns.sh - a SIGHUP whose Redis settings name a host resolves the name
# without blocking the loop, through the configured dns_servers, before the reload applies
# (and start-up resolves a name the same way: the daemon starts on a name only the private
# resolver knows):
#   1. redis_server = a name only the private resolver (dnsmasq) knows: the reload applies
#      and new verdicts land in that Redis;
#   2. redis_server = a name asked of a resolver that never answers (a UDP port that drops
#      every query): policy requests sent meanwhile are answered at once (each well under
#      dns_timeout), the reload is then refused naming the host, and verdicts stay where
#      they were;
#   3. a second SIGHUP while a lookup runs is remembered, and the file read again once the
#      first is done: the first is refused, the second (a name that resolves) applies;
#   4. SIGTERM while a lookup runs: the daemon abandons the reload and exits 0 (clean under
#      ASan and valgrind).
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_need perl
e2e_example_tables
e2e_start_redis
A_PORT=$REDIS_PORT
e2e_start_redis
B_PORT=$REDIS_PORT
e2e_start_redis
C_PORT=$REDIS_PORT
e2e_start_dnsmasq --host-record=redis-a.e2e.test,127.0.0.1 --host-record=redis-b.e2e.test,127.0.0.1 --host-record=redis-c.e2e.test,127.0.0.1
# the resolver that never answers: a UDP socket nobody reads
e2e_free_port HOLE_PORT
perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
        Proto => "udp") or die "blackhole: $!\n";
    sleep 3600;
' "$HOLE_PORT" &
HOLE_PID=$!
e2e_track "$HOLE_PID" blackhole-resolver
CONF=$E2E_TMP/callahead.conf
COMMON=("max_invalid_per_client = 1000000" "redis_timeout = 500ms" "dns_timeout = 3s")
unset REDIS_PORT # the configurations below name their Redis themselves
conf() { e2e_policyd_conf "$CONF" "${COMMON[@]}" "$@"; }
conf "redis_server = redis-a.e2e.test:$A_PORT" "dns_servers = 127.0.0.1:$DNS_PORT"
e2e_start_policyd "$CONF"
grep -qF "redis-a.e2e.test resolved to 127.0.0.1" "$POLICYD_LOG" ||
    e2e_fail "start-up did not resolve redis-a.e2e.test through dns_servers: $(cat "$POLICYD_LOG")"

mark() { MARK=$(($(stat -c %s "$POLICYD_LOG") + 1)); }
since() { tail -c +"$MARK" "$POLICYD_LOG"; }
# wait_since TEXT - until the log holds TEXT (fixed string) after the last mark (20 s)
wait_since() {
    local _
    for _ in $(seq 1 200); do
        since | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    e2e_fail "the daemon did not log [$1]; it logged [$(since)]"
}
# wait_key PORT KEY - until KEY is in the Redis on PORT (20 s)
wait_key() {
    local _
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$1" EXISTS "$2")" = 1 ] && return 0
        sleep 0.1
    done
    e2e_fail "no key $2 in the Redis on port $1"
}
N=0
# ask - one request for a new unknown address; must be the table's 550; sets ADDR, ASK_MS
ask() {
    local t0 got
    N=$((N + 1))
    ADDR=u$N@example.test
    t0=$(e2e_now_ms)
    got=$(e2e_policy_query recipient="$ADDR")
    ASK_MS=$(($(e2e_now_ms) - t0))
    e2e_assert_match "^550 " "$got" "the answer for $ADDR"
}

ask
wait_key "$A_PORT" "callahead:rcpt:$ADDR"

# 1. a name the private resolver answers with 127.0.0.1: applied, verdicts land there
conf "redis_server = redis-b.e2e.test:$B_PORT" "dns_servers = 127.0.0.1:$DNS_PORT"
mark
kill -HUP "$POLICYD_PID"
wait_since "reloaded $CONF"
since | grep -q 'reload refused' && e2e_fail "reload refused: $(since | grep 'reload refused')"
since | grep -qF "redis-b.e2e.test resolved to 127.0.0.1" ||
    e2e_fail "the daemon did not say where redis-b.e2e.test resolved: $(since)"
ask
wait_key "$B_PORT" "callahead:rcpt:$ADDR"
e2e_assert_eq 0 "$(redis-cli -p "$A_PORT" EXISTS "callahead:rcpt:$ADDR")" "$ADDR not in the old Redis"

# 2. a resolver that never answers: requests are answered at once meanwhile, then refused
conf "redis_server = redis-c.e2e.test:$C_PORT" "dns_servers = 127.0.0.1:$HOLE_PORT"
mark
T0=$(e2e_now_ms)
kill -HUP "$POLICYD_PID"
wait_since "resolving the Redis host names"
SLOWEST=0
while ! since | grep -q 'reload refused'; do
    ask
    [ "$ASK_MS" -gt "$SLOWEST" ] && SLOWEST=$ASK_MS
    [ $(($(e2e_now_ms) - T0)) -lt 60000 ] || e2e_fail "no reload refusal within 60 s: $(since)"
    sleep 0.1
done
WAITED=$(($(e2e_now_ms) - T0))
e2e_assert_lt 1000 "$SLOWEST" "slowest answer (ms) while the reload's lookup ran (dns_timeout 3 s)"
[ "$N" -ge 5 ] || e2e_fail "only $N requests were sent while the lookup ran"
e2e_log "ok: the refusal came $WAITED ms after SIGHUP, $N answers meanwhile"
since | grep 'reload refused' | grep -qF 'redis-c.e2e.test' ||
    e2e_fail "the refusal does not name the host: $(since | grep 'reload refused')"
since | grep -q "reloaded $CONF" && e2e_fail "the reload was applied: $(since)"
ask
wait_key "$B_PORT" "callahead:rcpt:$ADDR"
e2e_assert_eq 0 "$(redis-cli -p "$C_PORT" DBSIZE)" "keys in the Redis of the refused reload"

# 3. SIGHUP while resolving: remembered, the file read again once the first is refused
mark
kill -HUP "$POLICYD_PID"
wait_since "resolving the Redis host names"
conf "redis_server = redis-c.e2e.test:$C_PORT" "dns_servers = 127.0.0.1:$DNS_PORT"
kill -HUP "$POLICYD_PID"
kill -HUP "$POLICYD_PID"
wait_since "reloading again once that is done"
wait_since "reloaded $CONF"
e2e_assert_eq 1 "$(since | grep -c 'reload refused')" "refused reloads (the first one)"
since | grep 'reload refused' | grep -qF 'redis-c.e2e.test' ||
    e2e_fail "the refusal does not name the host: $(since | grep 'reload refused')"
e2e_assert_eq 1 "$(since | grep -c "reloaded $CONF")" "reloads applied (the remembered one, once)"
ask
wait_key "$C_PORT" "callahead:rcpt:$ADDR"

# 4. SIGTERM while a lookup runs: the reload is abandoned, the exit clean
conf "redis_server = redis-b.e2e.test:$B_PORT" "dns_servers = 127.0.0.1:$HOLE_PORT"
mark
kill -HUP "$POLICYD_PID"
wait_since "resolving the Redis host names"
e2e_stop_policyd
since | grep -qF "reload waiting for Redis host names is abandoned" ||
    e2e_fail "the daemon did not say it abandoned the reload: $(since)"
