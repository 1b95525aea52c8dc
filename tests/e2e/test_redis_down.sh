#!/bin/bash
# test_redis_down.sh - Redis is killed mid-test: answers go on (bob still 550,
# alice still accepted, a never-seen address verified from the table), and when
# Redis comes back on its port the daemon reconnects and writes verdicts again.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_start_redis
e2e_policyd_conf "$E2E_TMP/callahead.conf" "redis_reconnect_max = 1s" "redis_timeout = 500ms"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

BOB=$(e2e_unknown_reply bob@example.test)
e2e_assert_eq "$BOB" "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test>, Redis up"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "RCPT TO:<alice@example.test>, Redis up"
e2e_wait_redis_key callahead:rcpt:bob@example.test 10 >/dev/null || e2e_fail "bob never reached Redis"

e2e_log "killing redis-server pid $REDIS_PID with SIGKILL"
kill -KILL "$REDIS_PID"
e2e_stop_redis

e2e_assert_eq "$BOB" "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test>, Redis down"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" \
    "RCPT TO:<alice@example.test>, Redis down"
e2e_assert_eq "$(e2e_unknown_reply dave@example.test)" \
    "$(e2e_smtp_rcpt dave@example.test)" "RCPT TO:<dave@example.test> (never seen), Redis down"
# Several sessions in a row while Redis stays down: no stall, no crash.
for i in 1 2 3; do
    e2e_assert_eq "250 2.1.5 Ok
$(e2e_unknown_reply "down$i@example.test")" \
        "$(e2e_smtp_rcpt alice@example.test,down$i@example.test)" "session $i while Redis is down"
done
e2e_alive "$POLICYD_PID" || e2e_fail "callahead-policyd died while Redis was down"

# Redis comes back on the same port: verdicts are written again after the reconnect.
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no --save '' --appendonly no \
    --dir "$E2E_TMP/redis" --logfile "$E2E_TMP/redis/redis2.log" >/dev/null 2>&1 &
REDIS_PID=$!
e2e_track "$REDIS_PID" redis
e2e_wait_port "$REDIS_PORT" "$REDIS_PID" redis-server
found=""
for i in $(seq 1 40); do
    e2e_policy_query "recipient=back$i@example.test" >/dev/null
    if [ "$(e2e_redis EXISTS "callahead:rcpt:back$i@example.test")" = 1 ]; then
        found=back$i
        break
    fi
    sleep 0.25
done
[ -n "$found" ] || e2e_fail "no verdict reached the restarted Redis within 10s"
e2e_assert_match '^invalid 550 [0-9]+ cdb 5\.1\.1 User unknown$' \
    "$(e2e_redis GET "callahead:rcpt:$found@example.test")" "verdict written after the reconnect"

e2e_stop_policyd
