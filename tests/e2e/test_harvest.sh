#!/bin/bash
# test_harvest.sh - the per-client harvest limit with two daemons sharing one real Redis:
#   - a client sending 50 invalid RCPTs to daemon A gets 550 for the first
#     max_invalid_per_client and harvest_action for the rest, also for an address that
#     exists; daemon B limits it too at once (the penalty travels on the Redis channel);
#   - its whole /24 (harvest_ipv4_prefix = 24) is limited with it, a client in another
#     network is not, nor a request with a sasl_username, nor an exempt network;
#   - the decision lines carry the client and the harvest counter; show and stats see it;
#   - the penalty expires.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_start_redis
e2e_example_tables
e2e_policyd_conf "$E2E_TMP/callahead.conf" "control_socket = $E2E_TMP/ctl-a" \
    "max_invalid_per_client = 5" "harvest_window = 10m" "harvest_penalty = 4s" \
    "harvest_ipv4_prefix = 24" "harvest_exempt_networks = 203.0.113.0/24"
e2e_start_policyd "$E2E_TMP/callahead.conf"
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" \
    -e "s|^control_socket = .*|control_socket = $E2E_TMP/ctl-b|" "$E2E_TMP/callahead.conf" \
    >"$E2E_TMP/callahead2.conf"
e2e_start_policyd2 "$E2E_TMP/callahead2.conf" "$POLICYD2_PORT"
HARVEST='450 4.7.1 Too many invalid recipients from your network, try again later'
UNKNOWN='550 5.1.1 User unknown'

# q PORT CLIENT RCPT [ATTR=VALUE...] - one policy request; prints the action
q() {
    local port=$1 client=$2 rcpt=$3
    shift 3
    POLICYD_PORT=$port e2e_policy_query client_address="$client" recipient="$rcpt" "$@"
}
wait_log() {
    local i=0
    until grep -qE "$2" "$1"; do
        [ "$i" -lt 100 ] || e2e_fail "no line matching /$2/ in $1"
        sleep 0.1
        i=$((i + 1))
    done
}
wait_log "$POLICYD2_LOG" 'redis subscription callahead:flush: subscribed'

for i in $(seq 1 50); do
    q "$POLICYD_PORT" 192.0.2.10 "user$i@example.test"
done >"$E2E_TMP/a.out"
e2e_assert_eq "5 $UNKNOWN
45 $HARVEST" "$(sort "$E2E_TMP/a.out" | uniq -c | sed 's/^ *//' | sort -r)" \
    "50 invalid RCPTs from 192.0.2.10 at daemon A"
e2e_assert_eq "$HARVEST" "$(q "$POLICYD_PORT" 192.0.2.10 alice@example.test)" \
    "A: an existing address from the limited client"
e2e_assert_eq "$HARVEST" "$(q "$POLICYD_PORT" 192.0.2.77 alice@example.test)" \
    "A: another client in the same /24"
grep -qE 'recipient=<user5@example.test> verdict=invalid .* client=192\.0\.2\.10 harvest=5/5 action=550' \
    "$POLICYD_LOG" || e2e_fail "no decision line with the harvest counter"
grep -qE 'harvest: client network 192\.0\.2\.0/24: 6 invalid recipients' "$POLICYD_LOG" ||
    e2e_fail "no log line for the penalty"

wait_log "$POLICYD2_LOG" 'harvest: client network 192\.0\.2\.0/24 blocked for [0-9]+ s by another host'
e2e_assert_eq "$HARVEST" "$(q "$POLICYD2_PORT" 192.0.2.10 alice@example.test)" \
    "B: the client limited on A is limited on B"
e2e_assert_eq "$HARVEST" "$(q "$POLICYD2_PORT" 192.0.2.10 bob@example.test)" "B: and for bob"

# unaffected: another network, an authenticated request, an exempt network
e2e_assert_eq DUNNO "$(q "$POLICYD_PORT" 198.51.100.20 alice@example.test)" "A: another network"
e2e_assert_eq "$UNKNOWN" "$(q "$POLICYD2_PORT" 198.51.100.20 bob@example.test)" "B: another network"
e2e_assert_eq DUNNO "$(q "$POLICYD_PORT" 192.0.2.10 alice@example.test sasl_username=alice)" \
    "A: an authenticated request from the limited client"
for i in $(seq 1 10); do
    q "$POLICYD_PORT" 203.0.113.5 "x$i@example.test"
done >"$E2E_TMP/exempt.out"
e2e_assert_eq "10 $UNKNOWN" "$(sort "$E2E_TMP/exempt.out" | uniq -c | sed 's/^ *//')" \
    "an exempt network is never limited"

# visible in show and stats
out=$("$CALLAHEAD" -s "$E2E_TMP/ctl-b" show 192.0.2.10)
e2e_assert_match 'harvest=blocked' "$out" "show on B"
e2e_assert_match 'harvest_network=192\.0\.2\.0/24' "$out" "show: the network"
out=$("$CALLAHEAD" -s "$E2E_TMP/ctl-a" stats)
e2e_assert_match 'harvest_penalties=1' "$out" "stats on A: penalties"
e2e_assert_match 'harvest_refused=47' "$out" "stats on A: refused requests (45 + 2)"
e2e_assert_match 'harvest_blocked_networks=1' "$out" "stats on A: blocked networks"

# callahead verify --client shows the reply that client would get, and counts nothing
out=$("$CALLAHEAD" -s "$E2E_TMP/ctl-a" verify alice@example.test --client 192.0.2.10)
e2e_assert_match "reply=$HARVEST" "$out" "verify --client of a limited client"
e2e_assert_match 'harvest=blocked' "$out" "verify --client says why"
out=$("$CALLAHEAD" -s "$E2E_TMP/ctl-a" verify alice@example.test --client 198.51.100.20)
e2e_assert_match 'reply=DUNNO' "$out" "verify --client of another client"

# the penalty expires
sleep 4.5
e2e_assert_eq DUNNO "$(q "$POLICYD_PORT" 192.0.2.10 alice@example.test)" "A: after the penalty"
e2e_assert_eq DUNNO "$(q "$POLICYD2_PORT" 192.0.2.10 alice@example.test)" "B: after the penalty"

e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "second daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"
e2e_stop_policyd
e2e_log "ok: harvest limit shared by two daemons"
