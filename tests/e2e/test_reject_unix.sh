#!/bin/bash
# test_reject_unix.sh - the same rejection through a UNIX-domain policy socket in
# Postfix's queue directory (check_policy_service unix:private/callahead): the
# daemon creates it with unix_socket_owner/unix_socket_mode so that user postfix
# can write to it, and Postfix's smtpd reaches the daemon through it only.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_start_postfix "unix:private/callahead"
SOCK=$PF_QUEUE/private/callahead
[ -d "$PF_QUEUE/private" ] || e2e_fail "postfix did not create $PF_QUEUE/private"
# TCP as well, only so the helpers can tell when the daemon is up.
e2e_free_port POLICYD_PORT
export POLICYD_LISTEN="inet:127.0.0.1:$POLICYD_PORT, unix:$SOCK"
e2e_policyd_conf "$E2E_TMP/callahead.conf" \
    "unix_socket_owner = postfix" "unix_socket_mode = 0660"
e2e_start_policyd "$E2E_TMP/callahead.conf"

[ -S "$SOCK" ] || e2e_fail "$SOCK is not a socket"
e2e_assert_eq 'postfix 660' "$(stat -c '%U %a' "$SOCK")" "owner and mode of $SOCK"

e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" \
    "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test> over unix:private/callahead"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" \
    "RCPT TO:<alice@example.test> over unix:private/callahead"
if grep -q 'warning: .*private/callahead' "$PF_MAILLOG"; then
    e2e_fail "Postfix warns about the policy socket: $(grep 'private/callahead' "$PF_MAILLOG")"
fi

e2e_stop_policyd
# A daemon that exits cleanly removes its socket, so a restart can bind again.
[ ! -e "$SOCK" ] || e2e_log "note: $SOCK left behind after exit"
