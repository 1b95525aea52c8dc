#!/bin/bash
# test_ldap_milter.sh - ldap: routes through the milter path: Postfix smtpd_milters,
# callahead-milter, callahead-policyd and a real slapd (tests/ldap/users.ldif). The
# directory's verdicts reach the SMTP client as they do through check_policy_service:
# found, no entry, disabled, a wildcard that must match nothing, and a stopped slapd
# answered with a temporary failure at the LDAP deadline.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

e2e_need swaks
e2e_prepare_slapd
e2e_start_slapd
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "example.test   ldap:corp" "*              dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" \
    "ttl_tempfail = 0" \
    "ldap_corp_server_host = ldap://127.0.0.1:$SLAPD_PORT" \
    "ldap_corp_search_base = dc=example,dc=test" \
    "ldap_corp_query_filter = (|(mail=%s)(mailLocalAddress=%s))" \
    "ldap_corp_disabled_attribute = employeeType" \
    "ldap_corp_disabled_value = disabled" \
    "ldap_corp_timeout = 1s"
e2e_free_port MPORT
e2e_milter_conf "$CONF" "$MPORT" "milter_timeout = 8s"
e2e_start_sink
e2e_start_policyd "$CONF"
e2e_start_milter "$CONF" "$MPORT"
e2e_start_postfix_milter "$MPORT"

e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "entry found, via the milter"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt robert@example.test)" "alternate address"
e2e_assert_eq "$(e2e_unknown_reply nobody@example.test)" "$(e2e_smtp_rcpt nobody@example.test)" \
    "no entry, via the milter"
e2e_assert_match '^550 5\.2\.1 <carol@example\.test>: .*Mailbox disabled' \
    "$(e2e_smtp_rcpt carol@example.test)" "disabled account, via the milter"
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_smtp_rcpt 'user*@example.test')" "a wildcard matches nothing"

kill -STOP "$SLAPD_PID"
e2e_assert_match '^4[0-9][0-9] ' "$(e2e_smtp_rcpt user020@example.test)" \
    "slapd stopped: a temporary failure"
kill -CONT "$SLAPD_PID"
e2e_stop_milter "$MILTER_PID" callahead-milter
e2e_stop_policyd
