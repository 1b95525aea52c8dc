#!/bin/bash
# test_reload_ttl.sh - a SIGHUP applies the cache TTLs (ttl_*, refresh_*, cache_l1_ttl) without
# a restart: verdicts stored after the reload get the new TTL in Redis, verdicts stored before
# keep theirs, and the reload is logged as applied, not refused. Real redis-server.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_redis
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_start_policyd "$CONF"

# key_ttl KEY - wait for KEY in Redis; print its TTL
key_ttl() {
    local _
    for _ in $(seq 1 50); do
        if [ "$(e2e_redis EXISTS "$1")" = 1 ]; then
            e2e_redis TTL "$1"
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "no key $1 in Redis: $(e2e_redis --scan | head -5)"
}

e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob before the reload"
ttl=$(key_ttl callahead:rcpt:bob@example.test)
[ "$ttl" -gt 86400 ] || e2e_fail "bob's invalid verdict has TTL $ttl, expected the 3d default"

e2e_policyd_conf "$CONF" "ttl_invalid = 1h" "refresh_invalid = 10m" "cache_l1_ttl = 30s"
mark=$(($(stat -c %s "$POLICYD_LOG") + 1))
kill -HUP "$POLICYD_PID"
for _ in $(seq 1 50); do
    tail -c +"$mark" "$POLICYD_LOG" | grep -q -e '^callahead: info: reloaded' -e 'reload refused' && break
    sleep 0.1
done
if tail -c +"$mark" "$POLICYD_LOG" | grep -q 'reload refused'; then
    e2e_fail "reload refused: $(tail -c +"$mark" "$POLICYD_LOG" | grep 'reload refused')"
fi
tail -c +"$mark" "$POLICYD_LOG" | grep -q 'reloaded' || e2e_fail "no reload logged"

e2e_assert_match '^550 ' "$(e2e_policy_query recipient=carol@example.test)" "carol after the reload"
ttl=$(key_ttl callahead:rcpt:carol@example.test)
if [ "$ttl" -gt 3600 ] || [ "$ttl" -lt 3500 ]; then
    e2e_fail "carol's verdict has TTL $ttl, expected the new ttl_invalid of 1h"
fi
e2e_log "ok: carol cached with the new ttl_invalid, TTL ${ttl}s"
ttl=$(e2e_redis TTL callahead:rcpt:bob@example.test)
[ "$ttl" -gt 86400 ] || e2e_fail "bob's earlier verdict changed its TTL to $ttl"
e2e_log "ok: bob keeps the TTL he was stored with (${ttl}s)"

e2e_stop_policyd
