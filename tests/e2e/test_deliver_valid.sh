#!/bin/bash
# test_deliver_valid.sh - a known recipient is accepted at RCPT and the message is
# delivered to the loopback next hop; in a message to a known and an unknown
# recipient only the known one is accepted and delivered.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

marker="deliver-$$-$RANDOM"
reply=$(e2e_smtp_send alice@example.test "$marker") || e2e_fail "swaks failed: $reply"
e2e_assert_match '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "$reply" "end of DATA for alice"
f=$(e2e_wait_delivery "$marker" 30) || e2e_fail "no message with $marker reached smtp-sink"
e2e_log "ok: delivered to the next hop: $f"
grep -q '^To: alice@example.test' "$f" || e2e_fail "dumped message lacks To: alice@example.test"
grep -q 'to=<alice@example.test>, relay=127.0.0.1\[127.0.0.1\]:'"$SINK_PORT"'.*status=sent' \
    "$PF_MAILLOG" || e2e_fail "Postfix did not log status=sent to the sink for alice"

# One transaction, two recipients: bob refused at RCPT, alice delivered.
marker2="mixed-$$-$RANDOM"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --helo client.e2e.test --from sender@client.e2e.test \
    --to bob@example.test,alice@example.test --body "marker $marker2" --timeout 60 2>&1)
printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
grep -qF "<** $(e2e_unknown_reply bob@example.test)" <<<"$out" ||
    e2e_fail "bob not rejected in the mixed transaction"
grep -q 'queued as' <<<"$out" || e2e_fail "the mixed transaction was not queued"
f2=$(e2e_wait_delivery "$marker2" 30) || e2e_fail "no message with $marker2 reached smtp-sink"
e2e_log "ok: mixed transaction delivered: $f2"
n=$(grep -c "to=<alice@example.test>.*status=sent" "$PF_MAILLOG")
e2e_assert_eq 2 "$n" "deliveries to alice logged by Postfix"
n=$(grep -c "to=<bob@example.test>.*status=sent" "$PF_MAILLOG")
e2e_assert_eq 0 "$n" "deliveries to bob logged by Postfix"

e2e_stop_policyd
