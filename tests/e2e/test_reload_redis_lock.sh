#!/bin/bash
# test_reload_redis_lock.sh - a callout in progress across a SIGHUP that moves the cache to
# another Redis and key prefix: its probe lock, taken on the old Redis as
# callahead:lock:<address>, is released there (compare-and-delete with its token) when the
# verdict comes, not left to expire after flight_timeout; the verdict itself is stored in the
# new Redis; the old Redis keeps our cache connection only until that release. Real
# redis-server instances and our scripted next hop, which holds the RCPT reply for 8 s (the
# answer is then a tempfail after answer_budget, and the probe goes on into the cache).
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver HOP "# a slow next hop for $E2E_NAME
delay rcpt 8000
rcpt * 550 5.1.1 no such user here"
e2e_start_redis
A_PORT=$REDIS_PORT
e2e_start_redis
B_PORT=$REDIS_PORT
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "dept.test   smtp:[127.0.0.1]:$HOP_PORT" "*           dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
REDIS_PORT=$A_PORT
e2e_policyd_conf "$CONF"
e2e_start_policyd "$CONF"
e2e_wait_log 'redis subscription callahead:flush: subscribed' >/dev/null ||
    e2e_fail "no flush subscription on A"

# ours PORT - connections to the Redis on PORT other than redis-cli's own
ours() {
    redis-cli -p "$1" CLIENT LIST | grep -vc 'cmd=client' || true
}
# wait_until TEXT CMD... - until CMD succeeds (20 s)
wait_until() {
    local what=$1 _
    shift
    for _ in $(seq 1 200); do
        "$@" && return 0
        sleep 0.1
    done
    e2e_fail "$what: not within 20 s"
}
a_has_lock() { [ "$(redis-cli -p "$A_PORT" EXISTS callahead:lock:bob@dept.test)" = 1 ]; }
a_lock_gone() { [ "$(redis-cli -p "$A_PORT" EXISTS callahead:lock:bob@dept.test)" = 0 ]; }
a_has_ours() { [ "$(ours "$A_PORT")" = "$1" ]; }

e2e_policy_query recipient=bob@dept.test >"$E2E_TMP/bob.reply" &
QUERY_PID=$!
wait_until "the probe lock on A" a_has_lock
pttl=$(redis-cli -p "$A_PORT" PTTL callahead:lock:bob@dept.test)
e2e_log "ok: bob's probe lock on A, PTTL ${pttl}ms"

REDIS_PORT=$B_PORT
e2e_policyd_conf "$CONF" "redis_key_prefix = rr:"
mark=$(($(stat -c %s "$POLICYD_LOG") + 1))
kill -HUP "$POLICYD_PID"
reloaded() { tail -c +"$mark" "$POLICYD_LOG" | grep -q -e "reloaded $CONF" -e 'reload refused'; }
wait_until "the reload" reloaded
if tail -c +"$mark" "$POLICYD_LOG" | grep -q 'reload refused\|reload failed'; then
    e2e_fail "reload not applied: $(tail -c +"$mark" "$POLICYD_LOG" | grep reload)"
fi
# the flush subscription moved at once; the cache connection waits for the lock's release
wait_until "A down to the connection the lock was taken on" a_has_ours 1
a_has_lock || e2e_fail "the lock on A went away before the probe finished"

wait "$QUERY_PID" || e2e_fail "the query for bob failed"
e2e_assert_match '^(550 |DEFER_IF_PERMIT )' "$(cat "$E2E_TMP/bob.reply")" "bob's answer"
wait_until "the lock on A released" a_lock_gone
e2e_log "ok: the lock taken on A was released on A (it had ${pttl}ms left)"
wait_until "no connection of ours on A" a_has_ours 0
b_has_verdict() { [ "$(redis-cli -p "$B_PORT" EXISTS rr:rcpt:bob@dept.test)" = 1 ]; }
wait_until "bob's verdict in B" b_has_verdict
e2e_assert_match '^invalid 550 ' "$(redis-cli -p "$B_PORT" GET rr:rcpt:bob@dept.test)" \
    "bob's verdict in B under the new prefix"
e2e_assert_eq 0 "$(redis-cli -p "$A_PORT" EXISTS callahead:rcpt:bob@dept.test)" "bob's verdict in A"
e2e_assert_eq 0 "$(redis-cli -p "$B_PORT" EXISTS rr:lock:bob@dept.test)" "a lock in B"
e2e_stop_policyd
