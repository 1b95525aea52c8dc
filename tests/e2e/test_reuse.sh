#!/bin/bash
# test_reuse.sh - Postfix keeps its policy connection open and sends every RCPT
# of a session (and of the next sessions) over it: all of them are answered,
# in order, and smtpd holds one connection to the daemon, not one per RCPT.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

rej() { e2e_unknown_reply "$1"; }
expected="$(rej bob@example.test)
250 2.1.5 Ok
250 2.1.5 Ok
$(rej dave@example.test)
250 2.1.5 Ok
$(rej bob@example.test)
$(rej erin@example.test)"
for s in 1 2 3; do
    e2e_assert_eq "$expected" \
        "$(e2e_smtp_rcpt bob@example.test,alice@example.test,carol@other.test,dave@example.test,alice@example.test,bob@example.test,erin@example.test)" \
        "seven RCPTs in session $s"
done
n=$(grep -c ': reject: RCPT from .*: 550 5.1.1 <' "$PF_MAILLOG")
e2e_assert_eq 12 "$n" "rejections logged by Postfix"
# Postfix's smtpd keeps the policy connection after the session (smtpd_policy_service_max_idle)
n=$(e2e_proc_established "$POLICYD_PORT")
e2e_assert_eq 1 "$n" "established connections to the daemon after three sessions"

e2e_stop_policyd
