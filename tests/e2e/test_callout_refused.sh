#!/bin/bash
# test_callout_refused.sh - a next hop that refuses US at RCPT is not saying
# "user unknown" (issue: such refusals were cached as invalid for 3 days).
# A real back-end Postfix with smtpd_delay_reject = yes (its default) reports
# client and relay refusals at RCPT; behind a real front Postfix:
#   - control: its genuine unknown user (550 5.1.1 ... User unknown in relay
#     recipient table) stays invalid, cached for days;
#   - client blocked (550 5.7.1 Client host [127.0.0.1] blocked using
#     zen.spamhaus.org): the client gets a 4xx, never 550, for a real user
#     and an unknown one; Redis holds no invalid verdict; the refusal is
#     logged naming the next hop and its text, and counts for the circuit
#     breaker (breaker_failures=2: "keeps failing", then source=breaker);
#   - relay access denied (554 5.7.1 <x>: Relay access denied): the same.
# Then our scripted next hop for replies WITHOUT an enhanced status code
# (bare_5xx=confirm): "550 No such user here" is tempfail until the same
# next hop has accepted some address, then invalid.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_sink
e2e_start_backend_postfix dept.test alice
e2e_start_testserver BARE "# a next hop whose replies carry no enhanced status code
rcpt known@bare.test 250 Ok
rcpt * 550 No such user here"
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "dept.test   smtp:[127.0.0.1]:$BACK_PORT breaker_failures=2 breaker_time=30s" \
    "bare.test   smtp:[127.0.0.1]:$BARE_PORT" \
    "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "reply_next_hop_text = yes"
e2e_start_front_postfix "inet:127.0.0.1:$POLICYD_PORT" dept.test "$BACK_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# backend_set PARAM=VALUE... - change the back end's main.cf and reload it; the
# daemon is restarted so that no pooled session from before survives (and its
# in-process breaker starts closed)
backend_set() {
    local kv
    for kv in "$@"; do
        postconf -c "$BACK_DIR" -e "$kv" || e2e_fail "postconf -e $kv"
    done
    script -qec "postfix -c '$BACK_DIR' reload" /dev/null >>"$BACK_DIR/log/setup.log" 2>&1 ||
        e2e_fail "back-end reload failed"
    e2e_stop_policyd
    e2e_start_policyd "$E2E_TMP/callahead.conf"
    sleep 1
}

# direct_rcpt RCPT - what the back end itself answers to RCPT TO (a new session)
direct_rcpt() {
    swaks --server "127.0.0.1:$BACK_PORT" --helo probe.e2e.test --from '<>' --to "$1" \
        --quit-after RCPT --timeout 30 2>&1 | sed -n 's/^ *<\*\* //p' | tail -n 1
}

# assert_not_invalid ADDR - Redis holds no invalid verdict for ADDR (a tempfail for at
# most ttl_tempfail, or nothing)
assert_not_invalid() {
    local v ttl
    v=$(e2e_redis GET "callahead:rcpt:$1")
    if [ -n "$v" ]; then
        e2e_assert_match '^tempfail ' "$v" "redis-cli GET callahead:rcpt:$1"
        ttl=$(e2e_redis TTL "callahead:rcpt:$1")
        [ "$ttl" -le 60 ] || e2e_fail "verdict for $1 cached for ${ttl}s: $v"
    fi
    e2e_log "ok: no invalid verdict for $1 in Redis (${v:-nothing})"
}

# ---- control: the back end's genuine unknown user stays invalid
e2e_assert_match '^550 5\.1\.1 <bob@dept\.test>: Recipient address rejected: User unknown in relay recipient table$' \
    "$(e2e_smtp_rcpt bob@dept.test)" "front RCPT TO:<bob@dept.test> (unknown user)"
v=$(e2e_wait_redis_key callahead:rcpt:bob@dept.test 10) || e2e_fail "no verdict for bob in Redis"
e2e_assert_match '^invalid 550(/[a-z]+)? [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 5\.1\.1 ' "$v" "bob's verdict"
ttl=$(e2e_redis TTL callahead:rcpt:bob@dept.test)
[ "$ttl" -gt 86400 ] || e2e_fail "bob's invalid verdict TTL $ttl, expected days"
e2e_wait_log 'recipient=<bob@dept\.test> verdict=invalid ' 2 >/dev/null || e2e_fail "bob's verdict not logged"
invalid0=$(e2e_policyd_log_count 'verdict=invalid')

# ---- the back end blocks our address as a client (reported at RCPT: delayed reject)
backend_set "smtpd_delay_reject = yes" \
    "smtpd_client_restrictions = check_client_access inline:{ {127.0.0.1 = 550 5.7.1 Client host [127.0.0.1] blocked using zen.spamhaus.org} }"
d=$(direct_rcpt alice@dept.test)
e2e_assert_match '^550 5\.7\.1 .*blocked using zen\.spamhaus\.org' "$d" \
    "the back end itself refuses us at RCPT"
for u in alice carol; do
    r=$(e2e_smtp_rcpt "$u@dept.test")
    e2e_assert_match '^4[0-9][0-9] 4\.[0-9]+\.[0-9]+ ' "$r" "front RCPT TO:<$u@dept.test> while we are blocked"
    sleep 0.5
    assert_not_invalid "$u@dept.test"
done
l=$(e2e_wait_log "callout rcpt=<alice@dept\.test> smtp:\[127\.0\.0\.1\]:$BACK_PORT: next hop refuses us .*: 550 5\.7\.1 .*zen\.spamhaus\.org" 2) ||
    e2e_fail "the refusal is not logged as such with the next hop and its text"
e2e_log "ok: $l"
l=$(e2e_wait_log "next hop for .*keeps failing" 2) ||
    e2e_fail "two refusals did not open the circuit breaker"
e2e_log "ok: $l"
r=$(e2e_smtp_rcpt dave@dept.test)
e2e_assert_match '^4[0-9][0-9] ' "$r" "front RCPT TO:<dave@dept.test> with the breaker open"
e2e_wait_log 'recipient=<dave@dept\.test> verdict=tempfail source=breaker ' 2 >/dev/null ||
    e2e_fail "dave not answered by the breaker"
assert_not_invalid dave@dept.test

# ---- the back end no longer relays for the domain: 554 5.7.1 Relay access denied
backend_set "smtpd_client_restrictions =" "relay_domains =" "mynetworks = 192.0.2.0/24" \
    "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"
d=$(direct_rcpt erin@dept.test)
e2e_assert_match '^554 5\.7\.1 <erin@dept\.test>: Relay access denied$' "$d" \
    "the back end itself denies relay at RCPT"
r=$(e2e_smtp_rcpt erin@dept.test)
e2e_assert_match '^4[0-9][0-9] ' "$r" "front RCPT TO:<erin@dept.test> while relay is denied"
sleep 0.5
assert_not_invalid erin@dept.test
e2e_wait_log "next hop refuses us .*: 554 5\.7\.1 <erin@dept\.test>: Relay access denied" 2 >/dev/null ||
    e2e_fail "relay refusal not logged"
e2e_assert_eq "$invalid0" "$(e2e_policyd_log_count 'verdict=invalid')" \
    "invalid verdicts since the back end started refusing us"

# ---- replies without an enhanced status code (our scripted next hop)
r=$(e2e_policy_query recipient=nobody@bare.test)
e2e_assert_match '^DEFER_IF_PERMIT 4\.' "$r" "nobody@bare.test before the next hop accepted anything"
assert_not_invalid nobody@bare.test
e2e_wait_log 'callout rcpt=<nobody@bare\.test> .*550 without an enhanced status code' 2 >/dev/null ||
    e2e_fail "the unconfirmed bare 550 is not logged"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=known@bare.test)" "known@bare.test"
r=$(e2e_policy_query recipient=nobody2@bare.test)
e2e_assert_match '^550 ' "$r" "nobody2@bare.test once the next hop has accepted an address"
v=$(e2e_wait_redis_key callahead:rcpt:nobody2@bare.test 5) || e2e_fail "no verdict for nobody2"
e2e_assert_match '^invalid 550(/[a-z]+)? [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ No such user here$' "$v" \
    "nobody2's verdict"
e2e_assert_eq 3 "$(e2e_ts_stat "$BARE_STATS" rcpt)" "RCPTs at the bare next hop"

e2e_stop_policyd
