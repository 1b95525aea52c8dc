#!/bin/bash
# test_milter_postfix.sh - Postfix smtpd_milters (no check_policy_service) with
# callahead-milter asking a real callahead-policyd: the same verdicts and the
# same reply text as the policy path; a mixed message reaches the good
# recipient only; policyd stopped (SIGSTOP) gives 451 within milter_timeout
# while smtpd keeps serving; policyd killed gives milter_default_action.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_free_port MPORT
e2e_milter_conf "$CONF" "$MPORT" "milter_timeout = 3s"
e2e_start_sink
e2e_start_policyd "$CONF"
e2e_start_milter "$CONF" "$MPORT"
e2e_start_postfix_milter "$MPORT"

e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> through smtpd_milters (the policy path's reply)"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "RCPT TO:<alice@example.test>"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt anyone@other.test)" \
    "RCPT TO:<anyone@other.test> (route * dunno)"
# ('%' in a recipient is Postfix's percent hack, a relay attempt: see test_milter_sendmail)
e2e_milter_logged milter 'recipient=<bob@example.test> .*reply=reject 550' ||
    e2e_fail "the milter did not log the rejection"

# One good and one bad recipient: the message goes to the good one only
marker="mixed-$$-$RANDOM"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --helo client.e2e.test --from sender@client.e2e.test \
    --to alice@example.test,bob@example.test --timeout 60 --body "marker $marker" 2>&1)
printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
printf '%s\n' "$out" | grep -q '^<\*\* *550 5\.1\.1 <bob@example\.test>' ||
    e2e_fail "bob was not rejected in the mixed message"
f=$(e2e_wait_delivery "$marker" 60) || e2e_fail "the mixed message never reached the next hop"
rcpts=$(sed -n 's/^X-Rcpt-Args: \(<[^>]*>\).*/\1/p' "$f" | tr '\n' ' ')
e2e_assert_eq "<alice@example.test> " "$rcpts" "envelope recipients at the next hop"

# policyd stopped: 451 within milter_timeout (3 s), two sessions in parallel
kill -STOP "$POLICYD_PID"
start=$(date +%s%N)
e2e_smtp_rcpt bob@example.test >"$E2E_TMP/stopped2.txt" &
p2=$!
r=$(e2e_smtp_rcpt bob@example.test)
wait "$p2"
ms=$((($(date +%s%N) - start) / 1000000))
want="451 4.3.0 <bob@example.test>: Recipient address rejected: Recipient address verification is unavailable"
e2e_assert_eq "$want" "$r" "RCPT TO:<bob@example.test> with policyd stopped"
e2e_assert_eq "$want" "$(cat "$E2E_TMP/stopped2.txt")" "the parallel session with policyd stopped"
[ "$ms" -ge 2500 ] && [ "$ms" -lt 8000 ] || e2e_fail "two sessions took ${ms} ms with milter_timeout = 3s"
e2e_log "ok: two parallel sessions answered 451 in ${ms} ms"
kill -CONT "$POLICYD_PID"
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> once policyd runs again"

# policyd killed: milter_default_action = tempfail, at once
kill -KILL "$POLICYD_PID"
wait "$POLICYD_PID" 2>/dev/null
e2e_untrack "$POLICYD_PID"
start=$(date +%s%N)
e2e_assert_eq "$want" "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test> with policyd killed"
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 2500 ] || e2e_fail "the tempfail with policyd killed took ${ms} ms"

e2e_stop_milter "$MILTER_PID" callahead-milter
