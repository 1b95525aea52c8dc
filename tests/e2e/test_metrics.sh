#!/bin/bash
# test_metrics.sh - Prometheus exposition on stats_listen, with a real Redis:
#   - GET /metrics answers text format 0.0.4 that passes a strict parser of ours
#     (tests/e2e/prom_strict.pl) and "promtool check metrics" (package prometheus, installed
#     by tests/run-all.sh; skipped when missing);
#   - after a known sequence of policy requests the verdict counters and the
#     latency histogram by source hold exactly those requests;
#   - callahead_redis_up follows Redis going away;
#   - other paths are 404, other methods 501, a body 413, and policy traffic goes on.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need curl curl
e2e_start_redis
e2e_example_tables
e2e_free_port STATS_PORT
e2e_policyd_conf "$E2E_TMP/callahead.conf" "stats_listen = inet:127.0.0.1:$STATS_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_wait_port "$STATS_PORT" "$POLICYD_PID" "stats_listen"
URL=http://127.0.0.1:$STATS_PORT/metrics

# scrape - GET /metrics into $E2E_TMP/metrics.txt, check it strictly, series in $series
scrape() {
    curl -sS -o "$E2E_TMP/metrics.txt" -D "$E2E_TMP/metrics.hdr" "$URL" || e2e_fail "GET $URL failed"
    grep -qi '^content-type: text/plain; version=0.0.4' "$E2E_TMP/metrics.hdr" ||
        e2e_fail "Content-Type is not the text format: $(cat "$E2E_TMP/metrics.hdr")"
    series=$(perl "$E2E_TOP/tests/e2e/prom_strict.pl" <"$E2E_TMP/metrics.txt") ||
        e2e_fail "the exposition does not parse (kept in $E2E_TMP/metrics.txt)"
    if command -v promtool >/dev/null; then
        # promtool prints lint advice on stdout and exits 0 when the format is right
        promtool check metrics <"$E2E_TMP/metrics.txt" >"$E2E_TMP/promtool.out" 2>&1 ||
            e2e_fail "promtool check metrics: $(cat "$E2E_TMP/promtool.out")"
        [ ! -s "$E2E_TMP/promtool.out" ] || e2e_fail "promtool lint: $(cat "$E2E_TMP/promtool.out")"
    fi
}
# val SERIES - the value of one series in the last scrape
val() {
    awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print "<missing>" }' <<<"$series"
}

scrape
e2e_assert_eq 1 "$(val callahead_redis_up)" "redis up"
e2e_assert_eq 0 "$(val 'callahead_verdicts_total{verdict="invalid"}')" "no invalid verdict yet"

e2e_policy_query recipient=alice@example.test >/dev/null
e2e_policy_query recipient=alice@example.test >/dev/null
e2e_policy_query recipient=bob@example.test >/dev/null
e2e_policy_query recipient=eve@example.test >/dev/null
e2e_policy_query recipient=mallory@example.test >/dev/null
e2e_policy_query recipient=carol@other.test >/dev/null
e2e_policy_query request=junk recipient=x@example.test >/dev/null

scrape
e2e_assert_eq 7 "$(val callahead_policy_requests_total)" "requests"
e2e_assert_eq 6 "$(val callahead_lookups_total)" "lookups"
e2e_assert_eq 2 "$(val 'callahead_verdicts_total{verdict="valid"}')" "valid verdicts"
e2e_assert_eq 3 "$(val 'callahead_verdicts_total{verdict="invalid"}')" "invalid verdicts"
e2e_assert_eq 1 "$(val 'callahead_verdicts_total{verdict="unknown"}')" "unknown verdicts"
e2e_assert_eq 5 "$(val 'callahead_verdict_duration_seconds_count{source="cdb"}')" \
    "latency samples from the table"
e2e_assert_eq 1 "$(val 'callahead_verdict_duration_seconds_count{source="static"}')" \
    "latency samples from the route"
e2e_assert_eq 0 "$(val 'callahead_verdict_duration_seconds_count{source="smtp"}')" \
    "no latency samples from callouts"
# a table lookup takes well under 100 ms: every sample is in the le="0.1" bucket
e2e_assert_eq 5 "$(val 'callahead_verdict_duration_seconds_bucket{le="0.1",source="cdb"}')" \
    "table answers under 100 ms"

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$STATS_PORT/other")
e2e_assert_eq 404 "$code" "GET /other"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL")
e2e_assert_eq 501 "$code" "POST /metrics (libevent: method not implemented)"
code=$(curl -s -o /dev/null -w '%{http_code}' --data x "$URL")
e2e_assert_eq 413 "$code" "a request with a body"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "policy still answers"

e2e_stop_redis
i=0
while scrape && [ "$(val callahead_redis_up)" != 0 ]; do
    [ "$i" -lt 100 ] || e2e_fail "callahead_redis_up stays $(val callahead_redis_up) with Redis gone"
    sleep 0.1
    i=$((i + 1))
done
e2e_log "ok: callahead_redis_up 0 with Redis gone"

e2e_stop_policyd
e2e_log "ok: Prometheus exposition"
