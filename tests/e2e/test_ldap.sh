#!/bin/bash
# test_ldap.sh - ldap: routes end to end: a real slapd (tests/ldap/users.ldif),
# callahead-policyd, a private Postfix and swaks. Entries found, missing,
# disabled and by an alternate address; filter metacharacters in addresses;
# slapd stopped (SIGSTOP) answers 4xx at the LDAP deadline while a CDB route
# keeps answering at once; slapd killed answers 4xx, and verdicts come back
# when it is restarted; "-t" checks the source's parameters with file:line.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need swaks
e2e_prepare_slapd
e2e_start_slapd

E2E_CDB=$E2E_TMP/users.cdb
E2E_ROUTES=$E2E_TMP/routes
e2e_make_cdb "$E2E_CDB" 'alice@other.test OK'
printf '%s\n' "# route table for $E2E_NAME" \
    "example.test   ldap:corp" \
    "other.test     cdb:$E2E_CDB" \
    "*              dunno" >"$E2E_ROUTES"

CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" \
    "ttl_tempfail = 0" \
    "# an LDAP source, as a Postfix ldap_table(5) map would say it" \
    "ldap_corp_server_host = ldap://127.0.0.1:$SLAPD_PORT" \
    "ldap_corp_search_base = dc=example,dc=test" \
    "ldap_corp_query_filter = (|(mail=%s)(mailLocalAddress=%s))" \
    "ldap_corp_domain = example.test" \
    "ldap_corp_disabled_attribute = employeeType" \
    "ldap_corp_disabled_value = disabled" \
    "ldap_corp_timeout = 1500ms" \
    "ldap_corp_pool_size = 2"

out=$("$POLICYD" -c "$CONF" -t 2>&1) || e2e_fail "-t refused a good LDAP source: [$out]"
e2e_log "ok: -t accepts the source"

e2e_start_sink
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$CONF"

e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "entry found by mail"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt robert@example.test)" "found by mailLocalAddress"
e2e_assert_eq "$(e2e_unknown_reply nobody@example.test)" "$(e2e_smtp_rcpt nobody@example.test)" \
    "no entry"
e2e_assert_eq '550 5.2.1 <carol@example.test>: Recipient address rejected: Mailbox disabled' \
    "$(e2e_smtp_rcpt carol@example.test)" "disabled account"
# metacharacters are values, not filter syntax: nothing matches the wildcard
for a in '*@example.test' 'user*@example.test' 'user0*@example.test' 'a*@example.test'; do
    e2e_assert_match '^550 5\.1\.1 ' "$(e2e_smtp_rcpt "$a")" "injection attempt $a"
done
# parentheses need a quoted local part (Postfix hands the unquoted form to the
# policy service, which calls it malformed and leaves it to Postfix): ask directly
for a in '"*)(uid=*"@example.test' '"*)(|(mail=*"@example.test' '"a*(b)*"@example.test'; do
    e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query "recipient=$a")" "injection attempt $a"
done
e2e_assert_eq DUNNO "$(e2e_policy_query 'recipient="a*(b)\\c"@example.test')" \
    "an address of metacharacters finds its own entry"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@other.test)" "cdb route beside ldap"

# slapd stopped: the LDAP lookup waits for its deadline only, the CDB route does not wait
kill -STOP "$SLAPD_PID"
e2e_log "slapd stopped (SIGSTOP)"
start=$(date +%s%N)
e2e_smtp_rcpt user010@example.test >"$E2E_TMP/stopped.out" &
swaks_pid=$!
sleep 0.3
t0=$(date +%s%N)
e2e_assert_eq "$(e2e_unknown_reply bob@other.test)" "$(e2e_smtp_rcpt bob@other.test)" \
    "cdb route while slapd is stopped"
cdb_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$cdb_ms" -lt 1000 ] || e2e_fail "the cdb route took ${cdb_ms}ms while slapd was stopped"
wait "$swaks_pid"
ldap_ms=$((($(date +%s%N) - start) / 1000000))
e2e_assert_match '^4[0-9][0-9] 4\.[0-9.]+ <user010@example\.test>: ' \
    "$(cat "$E2E_TMP/stopped.out")" "ldap route while slapd is stopped"
grep -q 'recipient=<user010@example.test> verdict=tempfail source=ldap:corp.*Directory unavailable' \
    "$POLICYD_LOG" || e2e_fail "no tempfail line for user010 in $POLICYD_LOG"
[ "$ldap_ms" -lt 6000 ] || e2e_fail "the ldap deadline was not kept: ${ldap_ms}ms"
e2e_log "ok: cdb answered in ${cdb_ms}ms, ldap tempfailed in ${ldap_ms}ms"
kill -CONT "$SLAPD_PID"

# the stuck connection was dropped; a fresh one answers
ok=0
for _ in $(seq 1 40); do
    if [ "$(e2e_smtp_rcpt user011@example.test)" = '250 2.1.5 Ok' ]; then
        ok=1
        break
    fi
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "no LDAP verdict after SIGCONT"
e2e_log "ok: slapd answers again after SIGCONT"

# slapd killed: tempfail; restarted on the same port: verdicts again
e2e_stop_slapd KILL
e2e_assert_match '^4[0-9][0-9] ' "$(e2e_smtp_rcpt user012@example.test)" "slapd killed"
e2e_start_slapd
ok=0
for _ in $(seq 1 60); do
    if [ "$(e2e_smtp_rcpt user013@example.test)" = '250 2.1.5 Ok' ]; then
        ok=1
        break
    fi
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "no LDAP verdict after slapd came back"
e2e_log "ok: recovered after slapd was restarted"
grep -q 'ldap:corp' "$POLICYD_LOG" || e2e_fail "no ldap:corp log line in $POLICYD_LOG"

# SIGHUP applies a changed source: with the alias attribute only, bob (found by mail
# until now, and never asked yet so nothing is cached) has no entry
sed -i 's/^ldap_corp_query_filter = .*/ldap_corp_query_filter = (mailLocalAddress=%s)/' "$CONF"
kill -HUP "$POLICYD_PID"
ok=0
for _ in $(seq 1 50); do
    grep -q 'reloaded' "$POLICYD_LOG" && ok=1 && break
    sleep 0.1
done
[ "$ok" = 1 ] || e2e_fail "no reload line in $POLICYD_LOG"
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" "$(e2e_smtp_rcpt bob@example.test)" \
    "a reloaded query_filter applies"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt robert@example.test)" "alias after the reload"

# -t names the file and line of a parameter it cannot accept
echo "ldap_corp_chase_referrals = yes" >>"$CONF"
line=$(wc -l <"$CONF")
out=$("$POLICYD" -c "$CONF" -t 2>&1) && e2e_fail "-t accepted chase_referrals = yes"
grep -qF "$CONF:$line: ldap_corp_chase_referrals: must be no" <<<"$out" ||
    e2e_fail "-t said [$out]"
e2e_log "ok: -t refuses chase_referrals with file:line"
e2e_stop_policyd
