#!/bin/bash
# test_reload_callout.sh - a SIGHUP applies dns_servers and max_probes:
#   - dns_servers switched from one private resolver (dnsmasq) to another: the
#     same domain's MX now resolves through the new one to another next hop;
#   - max_probes lowered to 1 (max_probes_per_destination fixed at 10, so only
#     the global limit can hold them back): three lookups at once against a
#     next hop that answers RCPT slowly are probed one at a time (the next hop
#     never sees two sessions at once; before the reload it saw three).
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver MX1 "# mx.dept.test as the first resolver knows it
rcpt * 550 5.1.1 mx1 does not know this user" 127.0.0.1
e2e_start_testserver MX2 "# mx.dept.test as the second resolver knows it
rcpt * 550 5.1.1 mx2 does not know this user" 127.0.0.2 "$MX1_PORT"
e2e_start_testserver SLOW "# a next hop that takes a second per RCPT
delay rcpt 1000
rcpt * 550 5.1.1 slow does not know this user" 127.0.0.3 "$MX1_PORT"
P=$MX1_PORT
e2e_start_dnsmasq --mx-host=dept.test,mx.dept.test,10 --host-record=mx.dept.test,127.0.0.1
DNS1=$DNS_PORT
e2e_start_dnsmasq --mx-host=dept.test,mx.dept.test,10 --host-record=mx.dept.test,127.0.0.2
DNS2=$DNS_PORT
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "dept.test   smtp:mx port=$P" \
    "slow.test   smtp:[127.0.0.3]:$P" \
    "*           dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
conf() {
    e2e_policyd_conf "$CONF" "reply_next_hop_text = yes" "answer_budget = 15s" \
        "max_probes_per_destination = 10" "$@"
}
conf "dns_servers = 127.0.0.1:$DNS1" "max_probes = 100"
e2e_start_policyd "$CONF"

# reload - SIGHUP and wait for the daemon to log that the reload was applied
reload() {
    local n
    n=$(e2e_policyd_log_count 'info: reloaded ')
    kill -HUP "$POLICYD_PID"
    for _ in $(seq 1 50); do
        [ "$(e2e_policyd_log_count 'info: reloaded ')" -gt "$n" ] && return 0
        sleep 0.1
    done
    e2e_fail "the reload was not applied: $(tail -n 3 "$POLICYD_LOG")"
}

e2e_assert_eq "550 5.1.1 mx1 does not know this user" \
    "$(e2e_policy_query recipient=bob@dept.test)" "bob@dept.test through the first resolver"

conf "dns_servers = 127.0.0.1:$DNS2" "max_probes = 100"
reload
e2e_assert_eq "550 5.1.1 mx2 does not know this user" \
    "$(e2e_policy_query recipient=carol@dept.test)" "carol@dept.test through the second resolver"
e2e_assert_eq 1 "$(e2e_ts_stat "$MX1_STATS" rcpt)" "RCPTs at mx1 (only bob's)"
e2e_assert_eq 1 "$(e2e_ts_stat "$MX2_STATS" rcpt)" "RCPTs at mx2 (only carol's)"

# three_at_once TAG - three lookups of different addresses at once; each must be answered
three_at_once() {
    local a pids=()
    for a in 1 2 3; do
        e2e_policy_query "recipient=$1$a@slow.test" >"$E2E_TMP/$1$a.out" &
        pids+=($!)
    done
    wait "${pids[@]}"
    for a in 1 2 3; do
        e2e_assert_eq "550 5.1.1 slow does not know this user" "$(cat "$E2E_TMP/$1$a.out")" \
            "$1$a@slow.test"
    done
}

# max_probes = 100: the three probes run side by side
three_at_once before
e2e_assert_eq 3 "$(e2e_ts_stat "$SLOW_STATS" concurrent_max)" \
    "sessions at once at the slow next hop with max_probes = 100"

# max_probes = 1 on a second next hop address (a fresh counter): one probe at a time
e2e_stop_testserver SLOW
e2e_start_testserver SLOW "# a next hop that takes a second per RCPT
delay rcpt 1000
rcpt * 550 5.1.1 slow does not know this user" 127.0.0.3 "$P"
conf "dns_servers = 127.0.0.1:$DNS2" "max_probes = 1"
reload
three_at_once after
e2e_assert_eq 1 "$(e2e_ts_stat "$SLOW_STATS" concurrent_max)" \
    "sessions at once at the slow next hop with max_probes = 1"
e2e_assert_eq 3 "$(e2e_ts_stat "$SLOW_STATS" rcpt)" "RCPTs at the slow next hop"

e2e_stop_policyd
