#!/bin/bash
# test_ldap_stats.sh - the LDAP pool of an ldap: route in "callahead stats"
# (and --json) and in the Prometheus exposition (checked by
# tests/e2e/prom_strict.pl), against a real slapd: connections and searches
# counted after known lookups; a search in flight while slapd is stopped
# (SIGSTOP), then its timeout and error, the stuck connection dropped and a
# reconnect after SIGCONT; slapd killed: connect failures and the backoff.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need curl curl
CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"
e2e_prepare_slapd
e2e_start_slapd

E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "example.test   ldap:corp" "*              dunno" >"$E2E_ROUTES"
CTL=$E2E_TMP/control
CONF=$E2E_TMP/callahead.conf
e2e_free_port STATS_PORT
e2e_policyd_conf "$CONF" \
    "ttl_tempfail = 0" \
    "control_socket = $CTL" \
    "stats_listen = inet:127.0.0.1:$STATS_PORT" \
    "ldap_corp_server_host = ldap://127.0.0.1:$SLAPD_PORT" \
    "ldap_corp_search_base = dc=example,dc=test" \
    "ldap_corp_query_filter = (mail=%s)" \
    "ldap_corp_domain = example.test" \
    "ldap_corp_timeout = 1500ms" \
    "ldap_corp_pool_size = 2"
e2e_start_policyd "$CONF"
e2e_wait_port "$STATS_PORT" "$POLICYD_PID" "stats_listen"
URL=http://127.0.0.1:$STATS_PORT/metrics

# ca ARGS... - run callahead against our daemon; output in $out, exit status in $rc
ca() {
    rc=0
    out=$("$CALLAHEAD" -c "$CONF" "$@" 2>&1) || rc=$?
}
# pool WHAT - "callahead stats" now, the value of pool1_WHAT
pool() {
    ca stats
    [ "$rc" = 0 ] || e2e_fail "callahead stats failed ($rc): $out"
    sed -n "s/^pool1_$1=//p" <<<"$out"
}
# scrape - GET /metrics, check it strictly; the series in $series
scrape() {
    curl -sS -o "$E2E_TMP/metrics.txt" "$URL" || e2e_fail "GET $URL failed"
    series=$(perl "$E2E_TOP/tests/e2e/prom_strict.pl" <"$E2E_TMP/metrics.txt") ||
        e2e_fail "the exposition does not parse (kept in $E2E_TMP/metrics.txt)"
    if command -v promtool >/dev/null; then
        # promtool prints lint advice on stdout and exits 0 when the format is right
        promtool check metrics <"$E2E_TMP/metrics.txt" >"$E2E_TMP/promtool.out" 2>&1 ||
            e2e_fail "promtool check metrics: $(cat "$E2E_TMP/promtool.out")"
        [ ! -s "$E2E_TMP/promtool.out" ] || e2e_fail "promtool lint: $(cat "$E2E_TMP/promtool.out")"
    fi
}
# val METRIC [EXTRA-LABELS] - the value of the pool's series of METRIC in the last scrape
val() {
    local s="$1{route_line=\"1\",source=\"ldap:corp\"${2:+,$2}}"
    awk -v s="$s" '$1 == s { print $2; found = 1 } END { if (!found) print "<missing>" }' \
        <<<"$series"
}

# before any lookup: the pool is there, empty
ca stats
e2e_assert_eq 1 "$(sed -n 's/^pools=//p' <<<"$out")" "stats: one pool"
e2e_assert_eq ldap:corp "$(pool source)" "stats: the pool's source"
e2e_assert_eq 1 "$(pool route_line)" "stats: the pool's route line"
e2e_assert_eq 0 "$(pool connections_ready)" "stats: no connection before a lookup"
e2e_assert_eq 0 "$(pool requests)" "stats: no search before a lookup"

e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "alice found"
e2e_assert_match '^(REJECT|550) ' "$(e2e_policy_query recipient=nobody@example.test)" "nobody"
e2e_assert_eq 2 "$(pool requests)" "stats: two searches"
e2e_assert_eq 0 "$(pool errors)" "stats: no error"
e2e_assert_eq 1 "$(pool connections_ready)" "stats: one connection for serial lookups"
e2e_assert_eq 0 "$(pool connections_connecting)" "stats: none connecting"
e2e_assert_eq 0 "$(pool inflight)" "stats: nothing in flight"
e2e_assert_eq 0 "$(pool reconnects)" "stats: no reconnect"
e2e_assert_eq no "$(pool backoff)" "stats: no backoff"
ca stats --json
perl -MJSON::PP -e 'my $j = decode_json(join "", <STDIN>);
    die "pool1_requests\n" unless $j->{pool1_requests} =~ /^\d+$/ && $j->{pool1_requests} == 2;
    die "pool1_source\n" unless $j->{pool1_source} eq "ldap:corp";' <<<"$out" ||
    e2e_fail "stats --json lacks the pool: $out"
scrape
e2e_assert_eq 2 "$(val callahead_ldap_pool_searches_total)" "metrics: two searches"
e2e_assert_eq 1 "$(val callahead_ldap_pool_connections 'state="ready"')" "metrics: one ready"
e2e_assert_eq 0 "$(val callahead_ldap_pool_connections 'state="connecting"')" \
    "metrics: none connecting"
e2e_assert_eq 0 "$(val callahead_ldap_pool_search_errors_total)" "metrics: no error"
e2e_log "ok: pool counted after two lookups"

# slapd stopped: the search stays in flight until its deadline, then counts as a timeout
kill -STOP "$SLAPD_PID"
e2e_log "slapd stopped (SIGSTOP)"
e2e_policy_query recipient=user010@example.test >"$E2E_TMP/stopped.out" &
query_pid=$!
sleep 0.5
e2e_assert_eq 1 "$(pool inflight)" "stats: one search in flight while slapd is stopped"
scrape
e2e_assert_eq 1 "$(val callahead_ldap_pool_searches_inflight)" "metrics: one in flight"
wait "$query_pid"
e2e_assert_match '^DEFER' "$(cat "$E2E_TMP/stopped.out")" "tempfail while slapd is stopped"
e2e_assert_eq 0 "$(pool inflight)" "stats: nothing in flight after the deadline"
e2e_assert_eq 1 "$(pool timeouts)" "stats: one timeout"
e2e_assert_eq 1 "$(pool errors)" "stats: one error"
kill -CONT "$SLAPD_PID"
ok=0
for _ in $(seq 1 40); do
    [ "$(e2e_policy_query recipient=user011@example.test)" = DUNNO ] && ok=1 && break
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "no LDAP verdict after SIGCONT"
e2e_assert_match '^[1-9]' "$(pool drops)" "stats: the stuck connection dropped"
e2e_assert_match '^[1-9]' "$(pool reconnects)" "stats: a reconnect after SIGCONT"
scrape
e2e_assert_eq 1 "$(val callahead_ldap_pool_search_timeouts_total)" "metrics: one timeout"
e2e_assert_match '^[1-9]' "$(val callahead_ldap_pool_reconnects_total)" "metrics: reconnects"
e2e_log "ok: in flight, timeout, drop and reconnect counted"

# slapd killed: the connection is lost, new ones fail, the pool backs off
e2e_stop_slapd KILL
e2e_assert_match '^DEFER' "$(e2e_policy_query recipient=user012@example.test)" "slapd killed"
e2e_assert_match '^[1-9]' "$(pool connect_failures)" "stats: connect failures"
e2e_assert_eq 0 "$(pool connections_ready)" "stats: no ready connection"
scrape
e2e_assert_match '^[1-9]' "$(val callahead_ldap_pool_connect_failures_total)" \
    "metrics: connect failures"
e2e_assert_match '^[01]$' "$(val callahead_ldap_pool_backoff)" "metrics: backoff gauge"
e2e_log "ok: connect failures counted with slapd down"
e2e_stop_policyd
