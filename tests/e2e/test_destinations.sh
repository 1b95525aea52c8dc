#!/bin/bash
# test_destinations.sh - per-destination probes and circuit breakers, as an operator sees
# them through "callahead show", "callahead stats" (and --json) and /metrics, against a
# running daemon with a real Redis:
#   - a next hop that holds every RCPT for 30 s, with max_probes = 10 (2 per destination)
#     and 7 lookups of distinct addresses waiting: 2 probing and 5 queued there;
#   - a next hop that refuses connections, with breaker_failures=2 breaker_time=4s: after
#     two lookups its breaker is open with its failures and the seconds until retry, and
#     once the open time is over it is half-open;
#   - show DOMAIN names the destination the domain routes to; a dunno domain has none;
#   - stats lists the destinations busiest first (destN_*), --json is valid JSON with the
#     same numbers, and /metrics has the callahead_destination_* series with the same
#     numbers and still passes the strict parser and promtool.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"
e2e_need curl curl

e2e_start_testserver TARPIT "# a next hop that takes 30 s for every RCPT
delay rcpt 30000
rcpt * 250 2.1.5 Ok"
e2e_free_port DEAD_PORT # nothing listens there: every connection is refused
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "slow.test   smtp:[127.0.0.1]:$TARPIT_PORT" \
    "dead.test   smtp:[127.0.0.1]:$DEAD_PORT breaker_failures=2 breaker_time=4s" \
    "*           dunno" >"$E2E_ROUTES"
e2e_free_port STATS_PORT
CTL=$E2E_TMP/control
e2e_policyd_conf "$E2E_TMP/callahead.conf" "answer_budget = 20000ms" "max_probes = 10" \
    "control_socket = $CTL" "stats_listen = inet:127.0.0.1:$STATS_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_wait_port "$STATS_PORT" "$POLICYD_PID" "stats_listen"
SLOW="smtp:[127.0.0.1]:$TARPIT_PORT"
DEAD="smtp:[127.0.0.1]:$DEAD_PORT"

# ca ARGS... - run callahead against our daemon; output in $out, exit status in $rc
ca() {
    rc=0
    out=$("$CALLAHEAD" -c "$E2E_TMP/callahead.conf" "$@" 2>&1) || rc=$?
}
# field NAME - the value of NAME= in $out
field() {
    sed -n "s/^$1=//p" <<<"$out"
}

# ---- the refusing next hop: two failures open its breaker
for u in a b; do
    r=$(e2e_policy_query "recipient=$u@dead.test")
    e2e_assert_match '^DEFER_IF_PERMIT 4\.' "$r" "$u@dead.test while its next hop refuses"
done
ca show dead.test
e2e_assert_eq 0 "$rc" "show dead.test: exit status ($out)"
e2e_assert_eq "$DEAD" "$(field destination)" "show dead.test: destination"
e2e_assert_eq open "$(field breaker)" "show dead.test: breaker"
e2e_assert_eq 2 "$(field breaker_failures)" "show dead.test: breaker failures"
retry=$(field breaker_retry_in)
e2e_assert_match '^[1-4]$' "$retry" "show dead.test: seconds until retry"
e2e_assert_eq "0 0 0" "$(field destination_flights) $(field destination_running) \
$(field destination_queued)" "show dead.test: flights, running, queued"
ca show someone@dead.test
e2e_assert_eq open "$(field breaker)" "show someone@dead.test: breaker of the address's domain"

ca show other.test
e2e_assert_eq none "$(field destination)" "show other.test: a dunno domain has no destination"
e2e_assert_eq "" "$(field breaker)" "show other.test: no breaker"

# ---- the tarpit: 7 distinct lookups, 2 probe slots for one destination
for i in 1 2 3 4 5 6 7; do
    e2e_policy_query "recipient=user$i@slow.test" >"$E2E_TMP/slow$i.out" 2>&1 &
done
sleep 1

ca show slow.test
e2e_assert_eq "$SLOW" "$(field destination)" "show slow.test: destination"
e2e_assert_eq "7 2 5" "$(field destination_flights) $(field destination_running) \
$(field destination_queued)" "show slow.test: flights, running, queued"
e2e_assert_eq closed "$(field breaker)" "show slow.test: breaker"
e2e_assert_eq 0 "$(field breaker_failures)" "show slow.test: breaker failures"

ca stats
e2e_assert_eq 0 "$rc" "stats: exit status ($out)"
e2e_assert_eq "2 2" "$(field destinations) $(field destinations_shown)" "stats: destinations"
e2e_assert_eq "$SLOW 7 2 5 closed" "$(field dest1_name) $(field dest1_flights) \
$(field dest1_running) $(field dest1_queued) $(field dest1_breaker)" "stats: the busiest first"
e2e_assert_eq "$DEAD 0 0 open 2" "$(field dest2_name) $(field dest2_flights) \
$(field dest2_queued) $(field dest2_breaker) $(field dest2_breaker_failures)" "stats: the open breaker"
e2e_assert_match '^[0-4]$' "$(field dest2_breaker_retry_in)" "stats: seconds until retry"
e2e_assert_eq "" "$(field dest3_name)" "stats: nothing beyond the destinations there are"

ca stats --json
jq -e . >/dev/null <<<"$out" || e2e_fail "stats --json is not JSON: $out"
e2e_assert_eq "$SLOW 2 5 $DEAD open" "$(jq -r '"\(.dest1_name) \(.dest1_running) \(.dest1_queued) \(.dest2_name) \(.dest2_breaker)"' <<<"$out")" \
    "stats --json: per-destination numbers"

curl -sS -o "$E2E_TMP/metrics.txt" "http://127.0.0.1:$STATS_PORT/metrics" || e2e_fail "GET /metrics"
series=$(perl "$E2E_TOP/tests/e2e/prom_strict.pl" <"$E2E_TMP/metrics.txt") ||
    e2e_fail "the exposition does not parse (kept in $E2E_TMP/metrics.txt)"
if command -v promtool >/dev/null; then
    promtool check metrics <"$E2E_TMP/metrics.txt" >"$E2E_TMP/promtool.out" 2>&1 ||
        e2e_fail "promtool check metrics: $(cat "$E2E_TMP/promtool.out")"
    [ ! -s "$E2E_TMP/promtool.out" ] || e2e_fail "promtool lint: $(cat "$E2E_TMP/promtool.out")"
fi
# val SERIES - the value of one series in the scrape
val() {
    awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print "<missing>" }' <<<"$series"
}
e2e_assert_eq 2 "$(val callahead_destinations)" "metrics: destinations"
e2e_assert_eq "2 5" "$(val "callahead_destination_probes_running{destination=\"$SLOW\"}") \
$(val "callahead_destination_probes_queued{destination=\"$SLOW\"}")" "metrics: tarpit running, queued"
e2e_assert_eq "0 1 0" "$(val "callahead_destination_breaker_state{destination=\"$DEAD\",state=\"closed\"}") \
$(val "callahead_destination_breaker_state{destination=\"$DEAD\",state=\"open\"}") \
$(val "callahead_destination_breaker_state{destination=\"$DEAD\",state=\"half-open\"}")" \
    "metrics: the refusing next hop's breaker state"
e2e_assert_eq 1 "$(val "callahead_destination_breaker_state{destination=\"$SLOW\",state=\"closed\"}")" \
    "metrics: the tarpit's breaker state"
e2e_assert_eq 2 "$(val "callahead_destination_breaker_failures{destination=\"$DEAD\"}")" \
    "metrics: the refusing next hop's failures"
e2e_assert_eq 1 "$(val callahead_breakers_open)" "metrics: breakers open"

# ---- the open time passes: half-open until a probe decides
sleep 5
ca show dead.test
e2e_assert_eq half-open "$(field breaker)" "show dead.test after breaker_time"
e2e_assert_eq 0 "$(field breaker_retry_in)" "show dead.test: nothing left to wait"

e2e_stop_policyd
