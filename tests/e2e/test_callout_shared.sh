#!/bin/bash
# test_callout_shared.sh - concurrent lookups of one address share one callout:
#   - 50 simultaneous policy requests for one unknown address make exactly one
#     SMTP session and one RCPT at the next hop (smtp_testserver's counters), and
#     all 50 get the same 550 answer;
#   - the same for a known address (all DUNNO, one RCPT);
#   - two daemons sharing one Redis (two MX hosts): 25 requests at each for a new
#     address still make one RCPT, thanks to the callahead:lock:<address> key.
# The next hop holds every RCPT reply for 1 s so that the requests overlap.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver HOP "# one next hop for $E2E_NAME: slow, knows only alice
delay rcpt 1000
rcpt alice@dept.test 250 2.1.5 alice is here
rcpt * 550 5.1.1 no such user here"
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "dept.test   smtp:[127.0.0.1]:$HOP_PORT" "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# uniq -c of the replies, e.g. "50 550 5.1.1 User unknown"
count_replies() {
    sort | uniq -c | sed 's/^ *//'
}

t0=$(e2e_now_ms)
replies=$(e2e_policy_query_many 50 "$POLICYD_PORT" recipient=bob@dept.test | count_replies)
ms=$(($(e2e_now_ms) - t0))
e2e_assert_eq "50 550 5.1.1 User unknown" "$replies" "50 concurrent answers for bob@dept.test"
e2e_assert_eq 1 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "RCPTs at the next hop for 50 lookups of bob"
e2e_assert_eq 1 "$(e2e_ts_stat "$HOP_STATS" connections)" "sessions at the next hop"
e2e_assert_eq "bob@dept.test" "$(e2e_ts_stat "$HOP_STATS" last_rcpt)" "the address probed"
e2e_assert_lt 5000 "$ms" "ms for 50 concurrent lookups behind one 1 s probe"
e2e_assert_eq 50 "$(e2e_policyd_log_count 'recipient=<bob@dept\.test> verdict=invalid source=smtp:')" \
    "decision lines logged for bob"
e2e_assert_match '^invalid 550 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 5\.1\.1 no such user here$' \
    "$(e2e_redis GET callahead:rcpt:bob@dept.test)" "redis-cli GET callahead:rcpt:bob@dept.test"

replies=$(e2e_policy_query_many 50 "$POLICYD_PORT" recipient=alice@dept.test | count_replies)
e2e_assert_eq "50 DUNNO" "$replies" "50 concurrent answers for alice@dept.test"
e2e_assert_eq 2 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "RCPTs at the next hop after alice's 50 lookups"

# A second daemon on the same Redis: 25 + 25 lookups of carol at once, one probe.
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" "$E2E_TMP/callahead.conf" \
    >"$E2E_TMP/callahead2.conf"
e2e_start_policyd2 "$E2E_TMP/callahead2.conf" "$POLICYD2_PORT"
e2e_policy_query_many 25 "$POLICYD_PORT" recipient=carol@dept.test >"$E2E_TMP/a.out" &
qa=$!
e2e_policy_query_many 25 "$POLICYD2_PORT" recipient=carol@dept.test >"$E2E_TMP/b.out" &
qb=$!
wait "$qa" || e2e_fail "queries to the first daemon failed"
wait "$qb" || e2e_fail "queries to the second daemon failed"
e2e_assert_eq "50 550 5.1.1 User unknown" "$(cat "$E2E_TMP/a.out" "$E2E_TMP/b.out" | count_replies)" \
    "answers of two daemons for carol@dept.test"
e2e_assert_eq 3 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "RCPTs at the next hop after carol's 50 lookups"
e2e_assert_eq "carol@dept.test" "$(e2e_ts_stat "$HOP_STATS" last_rcpt)" "the address probed"
a=$(grep -c 'recipient=<carol@dept\.test> verdict=invalid' "$POLICYD_LOG")
b=$(grep -c 'recipient=<carol@dept\.test> verdict=invalid' "$POLICYD2_LOG")
e2e_assert_eq "25 25" "$a $b" "carol's decision lines in the two daemons' logs"
# the probing daemon released its lock once the verdict was stored
e2e_assert_eq 0 "$(redis-cli -p "$REDIS_PORT" EXISTS callahead:lock:carol@dept.test)" \
    "callahead:lock:carol@dept.test after the verdict"

e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "second daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"
e2e_assert_eq PONG "$(e2e_redis PING)" "Redis still answers"
e2e_stop_policyd
