#!/bin/bash
# test_reload_restart.sh - a SIGHUP that changes a parameter only a restart can
# apply (pidfile) is refused as a whole with one log line naming it: the
# running configuration stays entirely in force (the old Redis and prefix, a
# TTL and delimiter keep being used, and a route change in the same file is
# not applied either, although a reload alone would apply each of them). Once
# pidfile is back, the same route change and the delimiter change reload.
# Real redis-server instances, one per "before" and "after".
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_redis
A_PORT=$REDIS_PORT
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" "recipient_delimiter = +"
e2e_start_policyd "$CONF"
e2e_start_redis # a second Redis, the one the new file names
B_PORT=$REDIS_PORT
e2e_free_port OTHER_PORT

# wait_log TEXT - wait until the daemon's log holds TEXT (fixed string) after the last mark
wait_log() {
    local _
    for _ in $(seq 1 50); do
        if tail -c +"$MARK" "$POLICYD_LOG" | grep -qF -- "$1"; then
            e2e_log "ok: daemon logged [$(tail -c +"$MARK" "$POLICYD_LOG" | grep -F -- "$1" | head -n 1)]"
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "the daemon did not log [$1] within 5s; it logged [$(tail -c +"$MARK" "$POLICYD_LOG")]"
}
mark() { MARK=$(($(stat -c %s "$POLICYD_LOG") + 1)); }

# key_ttl PORT KEY - wait for KEY in the Redis on PORT; print its TTL
key_ttl() {
    local i
    for i in $(seq 1 50); do
        if [ "$(redis-cli -p "$1" EXISTS "$2")" = 1 ]; then
            redis-cli -p "$1" TTL "$2"
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "no key $2 in the Redis on port $1: $(redis-cli -p "$1" --scan | head -5)"
}

e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob before the reload"
ttl=$(key_ttl "$A_PORT" callahead:rcpt:bob@example.test)
[ "$ttl" -gt 86400 ] || e2e_fail "bob's invalid verdict has TTL $ttl, expected the 3d default"
e2e_log "ok: bob cached in the first Redis, TTL ${ttl}s"

# The new file: another Redis and prefix, and changes a SIGHUP could apply on their own
# (a listener, a TTL, the delimiter, a route).
printf '%s\n' "example.test   cdb:$E2E_CDB" "other.test     reject" "*              dunno" \
    >"$E2E_TMP/routes.new"
printf '%s\n' "listen = inet:127.0.0.1:$OTHER_PORT" "route_table = $E2E_TMP/routes.new" \
    "redis_server = 127.0.0.1:$B_PORT" "redis_key_prefix = other:" "ttl_invalid = 1h" \
    "recipient_delimiter = -" "pidfile = $E2E_TMP/other.pid" >"$CONF"
mark
kill -HUP "$POLICYD_PID"
wait_log "reload refused, keeping the running configuration: pidfile changed in $CONF, and this takes effect only at a restart"
if tail -c +"$MARK" "$POLICYD_LOG" | grep -q 'reloaded'; then
    e2e_fail "the daemon logged \"reloaded\" for a refused reload"
fi
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on the refused reload"

# Everything old is still in force.
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=dave@example.test)" "dave after the refusal"
ttl=$(key_ttl "$A_PORT" callahead:rcpt:dave@example.test)
[ "$ttl" -gt 3600 ] || e2e_fail "dave's verdict has TTL $ttl: the new ttl_invalid was applied"
e2e_log "ok: dave cached in the first Redis under callahead:, TTL ${ttl}s"
e2e_assert_eq 0 "$(redis-cli -p "$B_PORT" DBSIZE)" "keys in the second Redis"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice+news@example.test)" \
    "alice+news (delimiter still +)"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=carol@other.test)" \
    "carol@other.test (the route change in the refused file is not applied)"
e2e_port_open "$OTHER_PORT" && e2e_fail "the daemon listens on the new port $OTHER_PORT"

# The restart-only parameter back as it runs: the route and delimiter changes now reload.
REDIS_PORT=$A_PORT
e2e_policyd_conf "$CONF" "recipient_delimiter = -"
sed -i "s|^route_table = .*|route_table = $E2E_TMP/routes.new|" "$CONF"
mark
kill -HUP "$POLICYD_PID"
wait_log "reloaded $CONF"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=carol@other.test)" \
    "carol@other.test after the accepted reload"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice-news@example.test)" \
    "alice-news after the accepted reload (delimiter now -)"

e2e_stop_policyd
