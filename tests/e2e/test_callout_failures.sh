#!/bin/bash
# test_callout_failures.sh - next hops that misbehave, and the safety switches:
#   - garbage at RCPT, 421 at RCPT, a disconnect at RCPT: tempfail, never a 5xx,
#     cached briefly if at all, and the daemon keeps serving;
#   - circuit breaker (breaker_failures=2 breaker_time=30s): against a closed port,
#     two tempfails open it ("keeps failing" in the log), the third lookup is
#     answered by the breaker at once; against a next hop that hangs up at the
#     greeting, the breaker's answer opens no session;
#   - accept-all detection (accept_all_check=yes) against a next hop that accepts
#     everything: DUNNO, callahead:dom:<domain> = "unknown ...", a random local part
#     probed once, later addresses of the domain answered without a probe;
#   - dry_run = yes: DUNNO for an address the next hop refuses (and for a tempfail),
#     while the log says what would have been answered.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver GARBAGE "# answers RCPT with a line that is not SMTP
raw rcpt this is not an SMTP reply\r\n"
e2e_start_testserver F421 "# shuts down at RCPT
rcpt * 421 4.3.2 service shutting down"
e2e_start_testserver DISC "# hangs up instead of answering RCPT
disconnect rcpt"
e2e_start_testserver HANGUP "# hangs up instead of the greeting
disconnect greeting"
e2e_start_testserver ACCEPTALL "# accepts every recipient
rcpt * 250 2.1.5 Ok"
e2e_start_testserver REJECT "# knows only alice
rcpt alice@rej.test 250 2.1.5 Ok
rcpt * 550 5.1.1 no such user"
e2e_free_port CLOSED_PORT
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "garbage.test  smtp:[127.0.0.1]:$GARBAGE_PORT" \
    "f421.test     smtp:[127.0.0.1]:$F421_PORT" \
    "disc.test     smtp:[127.0.0.1]:$DISC_PORT" \
    "closed.test   smtp:[127.0.0.1]:$CLOSED_PORT breaker_failures=2 breaker_time=30s" \
    "hangup.test   smtp:[127.0.0.1]:$HANGUP_PORT breaker_failures=2 breaker_time=30s" \
    "aa.test       smtp:[127.0.0.1]:$ACCEPTALL_PORT accept_all_check=yes" \
    "rej.test      smtp:[127.0.0.1]:$REJECT_PORT" \
    "*             dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_policyd_conf "$E2E_TMP/callahead-dry.conf" "dry_run = yes"
e2e_start_policyd "$E2E_TMP/callahead.conf"

tempfail='DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: try again later'

# ---- broken next hops: tempfail, never 5xx
for d in garbage f421 disc; do
    var=$(tr '[:lower:]' '[:upper:]' <<<"$d")_STATS
    for u in u1 u2; do
        r=$(e2e_policy_query recipient="$u@$d.test")
        e2e_assert_eq "$tempfail" "$r" "$u@$d.test"
    done
    e2e_assert_eq 2 "$(e2e_ts_stat "${!var}" rcpt)" "RCPTs the $d next hop got"
    # cached briefly (ttl_tempfail, 60 s) or not at all, and never as invalid
    v=$(e2e_redis GET "callahead:rcpt:u1@$d.test")
    if [ -n "$v" ]; then
        e2e_assert_match '^tempfail ' "$v" "redis-cli GET callahead:rcpt:u1@$d.test"
        ttl=$(e2e_redis TTL "callahead:rcpt:u1@$d.test")
        [ "$ttl" -le 60 ] || e2e_fail "tempfail for u1@$d.test cached for ${ttl}s"
    fi
    # the same address again: still tempfail (a cached 4xx never becomes a 5xx)
    e2e_assert_eq "$tempfail" "$(e2e_policy_query recipient="u1@$d.test")" "u1@$d.test again"
    e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died after the $d next hop"
done
l=$(e2e_wait_log 'recipient=<u1@garbage\.test> verdict=tempfail source=smtp' 1) ||
    e2e_fail "no tempfail decision logged for the garbage next hop"
e2e_log "ok: $l"
e2e_assert_eq "$(e2e_ts_stat "$F421_STATS" connections)" "$(e2e_ts_stat "$F421_STATS" rcpt)" \
    "sessions = RCPTs at the 421 next hop (a 421 ends the session, no reuse)"
# still serving, and still right
e2e_assert_eq "550 5.1.1 User unknown" "$(e2e_policy_query recipient=bob@rej.test)" \
    "bob@rej.test after the broken next hops"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@rej.test)" "alice@rej.test"

# ---- circuit breaker against a closed port
for u in a b; do
    e2e_assert_eq "$tempfail" "$(e2e_policy_query recipient="$u@closed.test")" "$u@closed.test (refused)"
done
l=$(e2e_wait_log "next hop for .*keeps failing" 2) || e2e_fail "no \"keeps failing\" line after 2 failures"
e2e_log "ok: $l"
e2e_assert_match "smtp:\[127\.0\.0\.1\]:$CLOSED_PORT|closed\.test" "$l" "the breaker line names the next hop"
t0=$(e2e_now_ms)
r=$(e2e_policy_query recipient=c@closed.test)
ms=$(($(e2e_now_ms) - t0))
e2e_assert_match '^DEFER_IF_PERMIT 4\.4\.1 Recipient address verification failed: next hop unavailable \(it kept failing\), retrying it in (29|30) s$' \
    "$r" "c@closed.test (breaker open)"
e2e_assert_lt 500 "$ms" "ms for the breaker's answer"
l=$(e2e_wait_log 'recipient=<c@closed\.test> verdict=tempfail source=breaker ' 1) ||
    e2e_fail "c@closed.test not logged as answered by the breaker"
e2e_log "ok: $l"
e2e_assert_eq 1 "$(e2e_policyd_log_count 'keeps failing')" "\"keeps failing\" lines (logged once)"

# ---- the same against a next hop that hangs up at the greeting: no third session
for u in a b; do
    e2e_assert_eq "$tempfail" "$(e2e_policy_query recipient="$u@hangup.test")" "$u@hangup.test"
done
e2e_assert_eq 2 "$(e2e_ts_stat "$HANGUP_STATS" connections)" "sessions at the hang-up next hop"
r=$(e2e_policy_query recipient=c@hangup.test)
e2e_assert_match '^DEFER_IF_PERMIT 4\.4\.1 .*next hop unavailable \(it kept failing\)' "$r" \
    "c@hangup.test (breaker open)"
sleep 0.3
e2e_assert_eq 2 "$(e2e_ts_stat "$HANGUP_STATS" connections)" "sessions at the hang-up next hop after c"
# the other next hops are not affected by these breakers
e2e_assert_eq "550 5.1.1 User unknown" "$(e2e_policy_query recipient=carol@rej.test)" "carol@rej.test"

# ---- accept-all detection
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=somebody-$RANDOM@aa.test)" "random address @aa.test"
v=$(e2e_wait_redis_key callahead:dom:aa.test 5) || e2e_fail "no callahead:dom:aa.test in Redis"
e2e_assert_match '^unknown ' "$v" "redis-cli GET callahead:dom:aa.test"
e2e_assert_match '^unknown 250 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ accept-all: a random local part was accepted$' \
    "$v" "redis-cli GET callahead:dom:aa.test, exactly"
ttl=$(e2e_redis TTL callahead:dom:aa.test)
if [ "$ttl" -le 3600 ] || [ "$ttl" -gt 86400 ]; then
    e2e_fail "callahead:dom:aa.test TTL $ttl, expected 1d"
fi
e2e_assert_eq 2 "$(e2e_ts_stat "$ACCEPTALL_STATS" rcpt)" "RCPTs at the accept-all next hop (address + random)"
e2e_assert_match '^callahead-check-[0-9a-f]{16}@aa\.test$' "$(e2e_ts_stat "$ACCEPTALL_STATS" last_rcpt)" \
    "the random local part probed"
e2e_wait_log 'domain aa\.test: next hop .* accepts every address' 1 >/dev/null ||
    e2e_fail "accept-all not logged"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=other@aa.test)" "other@aa.test (domain known accept-all)"
e2e_assert_eq 2 "$(e2e_ts_stat "$ACCEPTALL_STATS" rcpt)" "RCPTs at the accept-all next hop after other@"

# ---- dry_run: log what would be refused, answer DUNNO
e2e_stop_policyd
e2e_start_policyd "$E2E_TMP/callahead-dry.conf"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=dan@rej.test)" "dan@rej.test in dry_run"
l=$(e2e_wait_log 'recipient=<dan@rej\.test> verdict=invalid ' 2) || e2e_fail "dan's verdict not logged"
e2e_assert_match 'action=550 5\.1\.1 User unknown \(dry_run: answering DUNNO\)$' "$l" "dry_run log line for dan"
e2e_assert_match '^invalid 550 ' "$(e2e_redis GET callahead:rcpt:dan@rej.test)" \
    "dan's verdict is cached in dry_run too"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=u3@f421.test)" "u3@f421.test (tempfail) in dry_run"
l=$(e2e_wait_log 'recipient=<u3@f421\.test> verdict=tempfail ' 2) || e2e_fail "u3's verdict not logged"
e2e_assert_match 'action=DEFER_IF_PERMIT .*\(dry_run: answering DUNNO\)$' "$l" "dry_run log line for u3"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@rej.test)" "alice@rej.test in dry_run"

e2e_stop_policyd
