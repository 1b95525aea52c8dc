#!/bin/bash
# test_callout_tarpit.sh - a tarpitting next hop (RCPT reply held 4 s) against
# answer_budget = 1000ms:
#   - the client gets tempfail (DEFER_IF_PERMIT 4.x) after about 1 s, not 4;
#   - the callout goes on and its verdict lands in Redis when the next hop answers;
#   - the retry gets the definitive answer from the cache at once, and no second probe;
#   - the same through a real Postfix front: 450 at RCPT first, 550 on the retry.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver TARPIT "# a next hop that takes 4 s for every RCPT
delay rcpt 4000
rcpt alice@dept.test 250 2.1.5 Ok
rcpt * 550 5.1.1 User unknown here"
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "dept.test   smtp:[127.0.0.1]:$TARPIT_PORT" "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "answer_budget = 1000ms"
e2e_start_policyd "$E2E_TMP/callahead.conf"

tempfail='DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: verification in progress, try again later'

# check_tarpit ADDR ANSWER - tempfail within the budget, then ANSWER from the cache;
# sets V to the verdict found in Redis (no $(...): a failed check must end the scenario)
check_tarpit() {
    local addr=$1 answer=$2 t0 ms r v rcpts
    rcpts=$(e2e_ts_stat "$TARPIT_STATS" rcpt)
    t0=$(e2e_now_ms)
    r=$(e2e_policy_query recipient="$addr")
    ms=$(($(e2e_now_ms) - t0))
    e2e_assert_eq "$tempfail" "$r" "first answer for $addr (budget passed)"
    e2e_assert_lt 2500 "$ms" "ms until the first answer for $addr"
    [ "$ms" -ge 900 ] || e2e_fail "answered in $ms ms: the tarpit was not waited for at all?"
    # the budget's tempfail is no verdict about the address: nothing cached yet
    v=$(e2e_redis GET "callahead:rcpt:$addr")
    e2e_assert_eq "" "$v" "callahead:rcpt:$addr right after the budget passed"
    # the probe goes on: the verdict appears when the next hop answers (~4 s)
    local i=0
    while [ "$i" -lt 100 ]; do
        v=$(e2e_redis GET "callahead:rcpt:$addr")
        [ -n "$v" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$v" ] || e2e_fail "no verdict for $addr in Redis 10 s after the budget passed"
    e2e_log "ok: verdict in Redis after about $((ms + i * 100)) ms: $v"
    V=$v
    t0=$(e2e_now_ms)
    r=$(e2e_policy_query recipient="$addr")
    ms=$(($(e2e_now_ms) - t0))
    e2e_assert_eq "$answer" "$r" "retry for $addr"
    e2e_assert_lt 500 "$ms" "ms for the retry (from the cache)"
    e2e_assert_eq $((rcpts + 1)) "$(e2e_ts_stat "$TARPIT_STATS" rcpt)" "RCPTs at the tarpit for $addr"
}

check_tarpit bob@dept.test "550 5.1.1 User unknown"
e2e_assert_match '^invalid 550 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 5\.1\.1 User unknown here$' "$V" \
    "redis-cli GET callahead:rcpt:bob@dept.test"
check_tarpit alice@dept.test DUNNO
e2e_assert_match '^valid 250 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 2\.1\.5 Ok$' "$V" \
    "redis-cli GET callahead:rcpt:alice@dept.test"
l=$(e2e_wait_log 'recipient=<bob@dept\.test> verdict=tempfail .*ms=[0-9.]+ reason=.* action=DEFER_IF_PERMIT' 1) ||
    e2e_fail "no tempfail decision logged for bob"
e2e_log "ok: $l"

# Through a real Postfix: the client sees 450 (DEFER_IF_PERMIT) first, 550 on its retry.
e2e_start_sink
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT" dept.test
t0=$(e2e_now_ms)
r=$(e2e_smtp_rcpt carol@dept.test)
ms=$(($(e2e_now_ms) - t0))
e2e_assert_eq "450 4.1.1 <carol@dept.test>: Recipient address rejected: Recipient address verification failed: verification in progress, try again later" \
    "$r" "Postfix RCPT TO:<carol@dept.test> while the next hop tarpits"
e2e_assert_lt 4000 "$ms" "ms for the whole swaks session (connect, EHLO, MAIL, RCPT)"
e2e_wait_redis_key callahead:rcpt:carol@dept.test 10 >/dev/null ||
    e2e_fail "no verdict for carol in Redis after the tarpit answered"
e2e_assert_eq "$(e2e_unknown_reply carol@dept.test)" "$(e2e_smtp_rcpt carol@dept.test)" \
    "Postfix RCPT TO:<carol@dept.test> on the retry"

e2e_stop_policyd
