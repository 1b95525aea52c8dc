#!/bin/bash
# test_reject_tcp.sh - an unknown recipient is rejected at RCPT TO with 550 and our
# text, through Postfix's check_policy_service over TCP; unrouted domains are left
# to Postfix (DUNNO); relaying elsewhere is still refused by Postfix itself.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" \
    "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test> over TCP"
# Domains are case-folded; the reply names the address as the client wrote it.
e2e_assert_eq "$(e2e_unknown_reply Bob@EXAMPLE.test)" \
    "$(e2e_smtp_rcpt Bob@EXAMPLE.test)" "RCPT TO:<Bob@EXAMPLE.test>"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "RCPT TO:<alice@example.test>"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt anyone@other.test)" \
    "RCPT TO:<anyone@other.test> (route * dunno)"
e2e_assert_eq '554 5.7.1 <x@elsewhere.test>: Relay access denied' \
    "$(e2e_smtp_rcpt x@elsewhere.test)" "RCPT TO:<x@elsewhere.test> (not ours)"

# The same answers straight from the policy protocol. Postfix itself puts
# "<address>: Recipient address rejected: " before the text of a "550 ..."
# action, so only the code, the DSN and the reason are pinned down here.
e2e_assert_match '^550 5\.1\.1 (.* )?User unknown$' \
    "$(e2e_policy_query recipient=bob@example.test)" "policy reply for bob"
e2e_assert_eq 'DUNNO' "$(e2e_policy_query recipient=alice@example.test)" "policy reply for alice"
e2e_assert_eq 'DUNNO' "$(e2e_policy_query protocol_state=DATA recipient=bob@example.test)" \
    "policy reply outside RCPT"

grep -q 'NOQUEUE: reject: RCPT from unknown\[127.0.0.1\]: 550 5.1.1 <bob@example.test>' \
    "$PF_MAILLOG" || e2e_fail "Postfix did not log the rejection in $PF_MAILLOG"
e2e_stop_policyd
