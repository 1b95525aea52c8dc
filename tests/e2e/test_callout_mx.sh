#!/bin/bash
# test_callout_mx.sh - route method smtp:mx against a loopback DNS server
# (dnsmasq, dns_servers = 127.0.0.1:DNSPORT) and two next hops on one port,
# mx1 = 127.0.0.1 and mx2 = 127.0.0.2 (smtp_testserver -b):
#   - MX preference order is honoured whatever order the records come in
#     (dept.test prefers mx1, rev.test prefers mx2);
#   - a domain with no MX falls back to its A record (RFC 5321 5.1);
#   - with the preferred MX down, or saying 421 at the greeting, the next one answers;
#   - an NXDOMAIN domain is invalid (550 5.1.2) without any SMTP session.
# reply_next_hop_text = yes, so each answer names the MX that gave it.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver MX1 "# mx1.dept.test
rcpt alice@dept.test 250 2.1.5 mx1 knows alice
rcpt * 550 5.1.1 mx1 does not know this user" 127.0.0.1
e2e_start_testserver MX2 "# mx2.dept.test, the backup MX, on another loopback address
rcpt alice@dept.test 250 2.1.5 mx2 knows alice
rcpt * 550 5.1.1 mx2 does not know this user" 127.0.0.2 "$MX1_PORT"
e2e_start_testserver BUSY "# mx0.busy.test: refuses service at the greeting
greeting 421 4.3.2 too busy, try the next MX" 127.0.0.3 "$MX1_PORT"
P=$MX1_PORT
# The less preferred record is given first, so a client that ignores the
# preference (and takes the answer's order) picks the wrong host.
e2e_start_dnsmasq \
    --mx-host=dept.test,mx2.dept.test,20 --mx-host=dept.test,mx1.dept.test,10 \
    --mx-host=rev.test,mx1.dept.test,50 --mx-host=rev.test,mx2.dept.test,5 \
    --host-record=mx1.dept.test,127.0.0.1 --host-record=mx2.dept.test,127.0.0.2 \
    --mx-host=busy.test,mx0.busy.test,10 --mx-host=busy.test,mx2.dept.test,20 \
    --host-record=mx0.busy.test,127.0.0.3 \
    --host-record=amx.test,127.0.0.2
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "dept.test   smtp:mx port=$P" \
    "rev.test    smtp:mx port=$P" \
    "amx.test    smtp:mx port=$P" \
    "busy.test   smtp:mx port=$P" \
    "nx.test     smtp:mx port=$P" \
    "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "dns_servers = 127.0.0.1:$DNS_PORT" \
    "reply_next_hop_text = yes" "dns_timeout = 2000ms"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# rcpts - "mx1 mx2" RCPT counters
rcpts() {
    echo "$(e2e_ts_stat "$MX1_STATS" rcpt) $(e2e_ts_stat "$MX2_STATS" rcpt)"
}

e2e_assert_eq "550 5.1.1 mx1 does not know this user" "$(e2e_policy_query recipient=bob@dept.test)" \
    "bob@dept.test (MX 10 = mx1, MX 20 = mx2)"
e2e_assert_eq "1 0" "$(rcpts)" "RCPTs at mx1 mx2"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@dept.test)" "alice@dept.test"
e2e_assert_eq "2 0" "$(rcpts)" "RCPTs at mx1 mx2"
l=$(e2e_wait_log 'recipient=<alice@dept\.test> verdict=valid ' 2) || e2e_fail "alice's decision not logged"
e2e_assert_match "source=smtp:mx\(dept\.test\)|source=[^ ]*(mx1\.dept\.test|127\.0\.0\.1)" "$l" \
    "alice's verdict source names the MX"

e2e_assert_eq "550 5.1.1 mx2 does not know this user" "$(e2e_policy_query recipient=bob@rev.test)" \
    "bob@rev.test (MX 5 = mx2, MX 50 = mx1)"
e2e_assert_eq "2 1" "$(rcpts)" "RCPTs at mx1 mx2"
e2e_assert_eq "bob@rev.test" "$(e2e_ts_stat "$MX2_STATS" last_rcpt)" "last RCPT at mx2"

# no MX record: the A record is the mail server
e2e_assert_eq "550 5.1.1 mx2 does not know this user" "$(e2e_policy_query recipient=bob@amx.test)" \
    "bob@amx.test (no MX, A 127.0.0.2)"
e2e_assert_eq "2 2" "$(rcpts)" "RCPTs at mx1 mx2"

# a 421 greeting from the first MX: the next MX is asked (RFC 5321 5.1)
e2e_assert_eq "550 5.1.1 mx2 does not know this user" "$(e2e_policy_query recipient=bob@busy.test)" \
    "bob@busy.test (MX 10 says 421 at the greeting)"
e2e_assert_eq 1 "$(e2e_ts_stat "$BUSY_STATS" connections)" "sessions at the busy MX"
e2e_assert_eq "2 3" "$(rcpts)" "RCPTs at mx1 mx2"
e2e_assert_eq "bob@busy.test" "$(e2e_ts_stat "$MX2_STATS" last_rcpt)" "last RCPT at mx2"

# the preferred MX goes down: the backup answers
e2e_stop_testserver MX1
e2e_assert_eq "550 5.1.1 mx2 does not know this user" "$(e2e_policy_query recipient=carol@dept.test)" \
    "carol@dept.test with mx1 down"
e2e_assert_eq 4 "$(e2e_ts_stat "$MX2_STATS" rcpt)" "RCPTs at mx2"
e2e_assert_eq "carol@dept.test" "$(e2e_ts_stat "$MX2_STATS" last_rcpt)" "last RCPT at mx2"
# a second one: a dead first MX is not a failed destination (no breaker for dept.test)
e2e_assert_eq "550 5.1.1 mx2 does not know this user" "$(e2e_policy_query recipient=dave@dept.test)" \
    "dave@dept.test with mx1 down"
e2e_assert_eq 5 "$(e2e_ts_stat "$MX2_STATS" rcpt)" "RCPTs at mx2"

# NXDOMAIN: no mail server can exist, every address is invalid, nobody is asked
c2=$(e2e_ts_stat "$MX2_STATS" connections)
r=$(e2e_policy_query recipient=bob@nx.test)
e2e_assert_eq "$c2" "$(e2e_ts_stat "$MX2_STATS" connections)" "sessions at mx2 after the NXDOMAIN lookup"
e2e_assert_match '^invalid 550 [0-9]+ smtp:mx 5\.1\.2 domain has no mail server$' \
    "$(e2e_redis GET callahead:rcpt:bob@nx.test)" "redis-cli GET callahead:rcpt:bob@nx.test"
e2e_assert_match '^550 5\.1\.[0-9]+ domain has no mail server$' "$r" "bob@nx.test (NXDOMAIN) is refused"
# The verdict carries 5.1.2 (bad destination domain, as Postfix says); the client must see
# it. XXX fails as of this writing: policyd's action_invalid "550 5.1.1 %r" drops the
# verdict's own enhanced status (verifier/reply_action.c skip_reason_prefix).
e2e_assert_eq "550 5.1.2 domain has no mail server" "$r" "bob@nx.test (NXDOMAIN), enhanced status"

e2e_stop_policyd
