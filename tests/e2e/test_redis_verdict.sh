#!/bin/bash
# test_redis_verdict.sh - verdicts land in Redis under callahead:rcpt:<address>
# as the readable "<kind> <code> <time> <source> <text>" string with a TTL, a
# second lookup is answered from the cache, and a garbage value planted in Redis
# is not trusted (the table decides again).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
e2e_start_redis
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

now=$(date +%s)
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" \
    "$(e2e_smtp_rcpt bob@example.test)" "RCPT TO:<bob@example.test>"
v=$(e2e_wait_redis_key callahead:rcpt:bob@example.test 10) ||
    e2e_fail "no key callahead:rcpt:bob@example.test in Redis: $(e2e_redis --scan)"
e2e_assert_match '^invalid 550 [0-9]+ cdb 5\.1\.1 User unknown$' "$v" \
    "redis-cli GET callahead:rcpt:bob@example.test"
t=$(awk '{ print $3 }' <<<"$v")
if [ "$t" -lt $((now - 5)) ] || [ "$t" -gt $((now + 60)) ]; then
    e2e_fail "verdict time $t is not now ($now)"
fi
ttl=$(e2e_redis TTL callahead:rcpt:bob@example.test)
[ "$ttl" -gt 0 ] || e2e_fail "callahead:rcpt:bob@example.test has no TTL ($ttl)"
e2e_log "ok: TTL of the invalid verdict: ${ttl}s"

e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "RCPT TO:<alice@example.test>"
v=$(e2e_wait_redis_key callahead:rcpt:alice@example.test 10) ||
    e2e_fail "no key callahead:rcpt:alice@example.test in Redis"
e2e_assert_match '^valid [0-9]+ [0-9]+ cdb( .*)?$' "$v" "redis-cli GET callahead:rcpt:alice@example.test"
ttl=$(e2e_redis TTL callahead:rcpt:alice@example.test)
[ "$ttl" -gt 0 ] || e2e_fail "callahead:rcpt:alice@example.test has no TTL ($ttl)"

# Unrouted domains (verdict unknown) are not cached.
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt carol@other.test)" "RCPT TO:<carol@other.test>"
sleep 0.5
e2e_assert_eq 0 "$(e2e_redis EXISTS callahead:rcpt:carol@other.test)" "unknown verdict not cached"

# Hostile cache content: a planted garbage value must not turn into an answer.
e2e_redis SET callahead:rcpt:mallory@example.test "valid; this is not a verdict" >/dev/null
e2e_redis SET callahead:rcpt:trent@example.test "$(printf 'invalid 550 1 cdb \r\n\001x')" >/dev/null
e2e_assert_eq "$(e2e_unknown_reply mallory@example.test)" \
    "$(e2e_smtp_rcpt mallory@example.test)" "RCPT TO:<mallory@example.test> with garbage in Redis"
r=$(e2e_smtp_rcpt trent@example.test)
e2e_assert_match '^550 5\.1\.1 <trent@example\.test>: Recipient address rejected: ' "$r" \
    "RCPT TO:<trent@example.test> with control bytes in Redis"
e2e_assert_eq 1 "$(e2e_redis PING | grep -c PONG)" "Redis still answers"

e2e_stop_policyd
