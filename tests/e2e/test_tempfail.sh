#!/bin/bash
# test_tempfail.sh - fail closed and fail open. A route whose CDB table is
# missing cannot tell: the recipient is deferred (4xx, never 550) by default,
# accepted with fail_open = yes; and when the daemon itself is gone, Postfix's
# default_action=DEFER_IF_PERMIT defers too.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
printf '%s\n' "example.test   cdb:$E2E_CDB" "broken.test    cdb:$E2E_TMP/missing.cdb" \
    "*              dunno" >"$E2E_ROUTES"
e2e_start_sink
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT" "example.test broken.test other.test"
e2e_start_policyd "$CONF"

r=$(e2e_smtp_rcpt x@broken.test)
e2e_assert_match '^450 4\.1\.1 <x@broken\.test>: Recipient address rejected: ' "$r" \
    "RCPT TO:<x@broken.test> with its table missing (fail closed)"
# What went wrong locally belongs in our log, not in a reply to a stranger.
case "$r" in
*"$E2E_TMP"* | *missing.cdb*) e2e_fail "the SMTP reply discloses a local path: [$r]" ;;
*"<x@broken.test>: Recipient address rejected: <x@broken.test>"*)
    e2e_fail "the SMTP reply repeats Postfix's prefix: [$r]" ;;
esac
grep -q 'missing.cdb' "$POLICYD_LOG" || e2e_fail "the daemon did not log the missing table"
e2e_assert_match '^DEFER_IF_PERMIT 4\.1\.1 ' "$(e2e_policy_query recipient=x@broken.test)" \
    "policy reply for x@broken.test"
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "the working table still rejects bob"

# fail_open = yes: a verification that cannot tell lets the mail through
cp "$CONF" "$CONF.closed"
echo "fail_open = yes" >>"$CONF"
kill -HUP "$POLICYD_PID"
for _ in $(seq 1 50); do
    [ "$(e2e_policy_query recipient=y@broken.test)" = DUNNO ] && break
    sleep 0.1
done
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=z@broken.test)" "policy reply with fail_open = yes"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt w@broken.test)" "RCPT TO:<w@broken.test> with fail_open = yes"
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "fail_open does not let bob through"

# The daemon stopped: Postfix's own default_action decides (DEFER_IF_PERMIT here).
e2e_stop_policyd
r=$(e2e_smtp_rcpt bob@example.test)
e2e_assert_match '^450 4\.[0-9]\.[0-9] <bob@example\.test>: Recipient address rejected: ' "$r" \
    "RCPT TO:<bob@example.test> with the daemon down (default_action=DEFER_IF_PERMIT)"
