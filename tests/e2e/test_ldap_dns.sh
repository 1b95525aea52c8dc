#!/bin/bash
# test_ldap_dns.sh - an LDAP source given by host name: a private dnsmasq
# (dns_servers = 127.0.0.1:DNSPORT, nothing from /etc/hosts) names the
# slapd; "-t" accepts the name, lookups find their entries through it; a
# name that does not exist, then one whose address refuses, are passed over
# in order (the first failure is logged; the pool's log lines are limited to
# one per 10 s); a stopped resolver (SIGSTOP) costs connect_timeout, not the
# loop: a CDB route answers at once meanwhile.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_prepare_slapd
e2e_start_slapd
e2e_start_dnsmasq --host-record=ldap.test,127.0.0.1 --host-record=dead.test,127.0.0.2

E2E_CDB=$E2E_TMP/users.cdb
E2E_ROUTES=$E2E_TMP/routes
e2e_make_cdb "$E2E_CDB" 'alice@other.test OK'
printf '%s\n' "example.test   ldap:corp" "other.test     cdb:$E2E_CDB" \
    "*              dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" \
    "ttl_tempfail = 0" \
    "dns_servers = 127.0.0.1:$DNS_PORT" \
    "ldap_corp_server_host = ldap://nowhere.test:$SLAPD_PORT ldap://dead.test:$SLAPD_PORT ldap://ldap.test:$SLAPD_PORT" \
    "ldap_corp_search_base = dc=example,dc=test" \
    "ldap_corp_domain = example.test" \
    "ldap_corp_timeout = 2s" \
    "ldap_corp_connect_timeout = 500ms"
out=$("$POLICYD" -c "$CONF" -t 2>&1) || e2e_fail "-t refused a source given by name: [$out]"
e2e_log "ok: -t accepts host names"
e2e_start_policyd "$CONF"

e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "found through ldap.test"
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=nobody@example.test)" \
    "no entry, through ldap.test"
grep -q 'nowhere.test.*resolve.*nxdomain' "$POLICYD_LOG" ||
    e2e_fail "no log line for the name that does not exist in $POLICYD_LOG"
e2e_log "ok: names tried in order"

# the resolver stopped: a fresh connection waits connect_timeout per name, other routes do not
e2e_stop_slapd KILL # the pooled connection goes; the next lookup needs the resolver again
e2e_start_slapd
kill -STOP "$DNS_PID"
e2e_log "dnsmasq stopped (SIGSTOP)"
start=$(date +%s%N)
e2e_policy_query recipient=user010@example.test >"$E2E_TMP/stuck.out" &
query_pid=$!
sleep 0.2
t0=$(date +%s%N)
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@other.test)" "cdb while DNS is stuck"
cdb_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$cdb_ms" -lt 500 ] || e2e_fail "the cdb route took ${cdb_ms}ms while DNS was stuck"
wait "$query_pid"
ldap_ms=$((($(date +%s%N) - start) / 1000000))
e2e_assert_match '^DEFER' "$(cat "$E2E_TMP/stuck.out")" "ldap while DNS is stuck"
[ "$ldap_ms" -lt 3000 ] || e2e_fail "the ldap deadline was not kept: ${ldap_ms}ms"
kill -CONT "$DNS_PID"
e2e_log "ok: cdb answered in ${cdb_ms}ms, ldap tempfailed in ${ldap_ms}ms"
e2e_stop_policyd
