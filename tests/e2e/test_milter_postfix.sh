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

e2e_milter_check_verdicts postfix
# ('%' in a recipient is Postfix's percent hack, a relay attempt: see test_milter_sendmail)
e2e_milter_logged milter 'recipient=<bob@example.test> .*reply=reject 550' ||
    e2e_fail "the milter did not log the rejection"
e2e_milter_check_mixed postfix "$SMTP_PORT"
e2e_milter_check_stopped postfix
e2e_milter_check_resumed postfix
e2e_milter_check_killed postfix

e2e_stop_milter "$MILTER_PID" callahead-milter
