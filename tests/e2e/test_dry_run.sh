#!/bin/bash
# test_dry_run.sh - dry_run = yes through a real Postfix: an unknown recipient
# that the default configuration rejects with 550 is accepted, and the log
# still says which action would have been answered. A known recipient and an
# unrouted domain are answered as before.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$CONF"

# the default (dry_run = no): the unknown recipient is refused
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> with dry_run = no"
e2e_stop_policyd

# dry_run = yes: the same recipient gets through, with the would-be answer in the log
e2e_policyd_conf "$CONF" "dry_run = yes"
e2e_start_policyd "$CONF"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> with dry_run = yes"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=carol@example.test)" \
    "policy reply for carol@example.test with dry_run = yes"
grep -q 'recipient=<bob@example.test> verdict=invalid .*action=550 5\.1\.1 User unknown (dry_run: answering DUNNO)' \
    "$POLICYD_LOG" || e2e_fail "the log does not say that bob would have been refused with 550"
grep -q 'recipient=<carol@example.test> verdict=invalid .*(dry_run: answering DUNNO)' "$POLICYD_LOG" ||
    e2e_fail "the log does not say that carol would have been refused"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" \
    "RCPT TO:<alice@example.test> with dry_run = yes"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt anyone@other.test)" \
    "RCPT TO:<anyone@other.test> with dry_run = yes"
if grep -q 'recipient=<alice@example.test>.*dry_run' "$POLICYD_LOG"; then
    e2e_fail "dry_run is logged for alice, whom nothing would have refused"
fi
e2e_stop_policyd
