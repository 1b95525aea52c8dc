#!/bin/bash
# test_fail_open.sh - fail_open through a real Postfix, for the two ways a
# callout cannot tell: the next hop is down (connection refused) and the next
# hop is too slow for answer_budget. By default both defer the recipient
# (450 4.x, never 550); with fail_open = yes both are accepted (DUNNO). An
# address the next hop knows to be unknown is still refused with 550.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver SLOW "# a next hop that takes 3 s for every RCPT
delay rcpt 3000
rcpt * 550 5.1.1 User unknown here"
e2e_start_testserver FAST "# a next hop that answers at once
rcpt alice@fast.test 250 2.1.5 Ok
rcpt * 550 5.1.1 User unknown here"
e2e_free_port DOWN_PORT # nothing listens there: connection refused
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "down.test   smtp:[127.0.0.1]:$DOWN_PORT" \
    "slow.test   smtp:[127.0.0.1]:$SLOW_PORT" \
    "fast.test   smtp:[127.0.0.1]:$FAST_PORT" "*           dunno" >"$E2E_ROUTES"
e2e_start_sink
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" "answer_budget = 1000ms"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT" "down.test slow.test fast.test"
e2e_start_policyd "$CONF"

# deferred: Postfix turns DEFER_IF_PERMIT into 450 and keeps our text after its prefix
deferred() {
    printf '450 4.1.1 <%s>: Recipient address rejected: ' "$1"
}

# the default (fail_open = no): the recipient is deferred, never refused
r=$(e2e_smtp_rcpt a1@down.test)
e2e_assert_match "^$(deferred 'a1@down\.test')" "$r" "RCPT TO:<a1@down.test> (next hop down)"
r=$(e2e_smtp_rcpt a1@slow.test)
e2e_assert_match "^$(deferred 'a1@slow\.test')" "$r" "RCPT TO:<a1@slow.test> (answer budget)"
e2e_assert_match '^DEFER_IF_PERMIT 4\.' "$(e2e_policy_query recipient=a2@down.test)" \
    "policy reply for a2@down.test"
e2e_assert_eq "550 5.1.1 <bob@fast.test>: Recipient address rejected: User unknown" \
    "$(e2e_smtp_rcpt bob@fast.test)" "RCPT TO:<bob@fast.test> (next hop says unknown)"
e2e_stop_policyd

# fail_open = yes: what cannot be verified gets through; what is unknown does not
e2e_policyd_conf "$CONF" "answer_budget = 1000ms" "fail_open = yes"
e2e_start_policyd "$CONF"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt b1@down.test)" \
    "RCPT TO:<b1@down.test> (next hop down, fail_open = yes)"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt b1@slow.test)" \
    "RCPT TO:<b1@slow.test> (answer budget, fail_open = yes)"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=b2@down.test)" \
    "policy reply for b2@down.test with fail_open = yes"
e2e_assert_eq "550 5.1.1 <carol@fast.test>: Recipient address rejected: User unknown" \
    "$(e2e_smtp_rcpt carol@fast.test)" "RCPT TO:<carol@fast.test> with fail_open = yes"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@fast.test)" "RCPT TO:<alice@fast.test>"
grep -q 'recipient=<b1@down.test> verdict=tempfail .*action=DUNNO' "$POLICYD_LOG" ||
    e2e_fail "the log does not show b1@down.test as a tempfail answered DUNNO"
e2e_stop_policyd
