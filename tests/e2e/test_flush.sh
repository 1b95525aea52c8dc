#!/bin/bash
# test_flush.sh - "callahead show" and "callahead flush" with two daemons sharing one real
# Redis (two MX hosts), and a scripted SMTP next hop:
#   - show reports what the in-process cache (L1) and Redis hold, with age and TTL;
#   - a flush of an address on daemon A removes it from Redis and from the L1 of daemon B
#     (through the Redis flush channel): B's next lookup goes to the next hop again;
#   - a flush of a domain, of every invalid verdict (1500 keys: several SCAN batches) and
#     of everything removes exactly those keys and leaves the others (other domains,
#     valid verdicts, probe locks);
#   - a daemon whose subscription was cut (Redis restarted) drops its L1 once it is back;
#   - with Redis down a flush reaches only the local daemon, and says so (exit 75).
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_start_testserver HOP "# next hop for $E2E_NAME: knows only carol
rcpt carol@dept.test 250 2.1.5 carol is here
rcpt * 550 5.1.1 no such user here"
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "dept.test   smtp:[127.0.0.1]:$HOP_PORT" "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "control_socket = $E2E_TMP/ctl-a"
e2e_start_policyd "$E2E_TMP/callahead.conf"
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" \
    -e "s|^control_socket = .*|control_socket = $E2E_TMP/ctl-b|" "$E2E_TMP/callahead.conf" \
    >"$E2E_TMP/callahead2.conf"
e2e_start_policyd2 "$E2E_TMP/callahead2.conf" "$POLICYD2_PORT"

# ca A|B ARGS... - callahead against daemon A or B; output in $out, exit status in $rc
ca() {
    local sock=$E2E_TMP/ctl-a
    [ "$1" = B ] && sock=$E2E_TMP/ctl-b
    shift
    rc=0
    out=$("$CALLAHEAD" -s "$sock" "$@" 2>&1) || rc=$?
}
field() {
    sed -n "s/^$1=//p" <<<"$out"
}
# wait_log FILE REGEX - until a line matches (10 s)
wait_log() {
    local i=0
    until grep -qE "$2" "$1"; do
        [ "$i" -lt 100 ] || e2e_fail "no line matching /$2/ in $1"
        sleep 0.1
        i=$((i + 1))
    done
}
wait_log "$POLICYD_LOG" 'redis subscription callahead:flush: subscribed'
wait_log "$POLICYD2_LOG" 'redis subscription callahead:flush: subscribed'

# --- show, and a flush of one address reaching the other daemon's L1
ca B verify dave@dept.test
e2e_assert_eq no "$(field cached)" "B: first lookup of dave goes to the next hop ($out)"
ca B verify dave@dept.test
e2e_assert_eq l1 "$(field cached)" "B: second lookup of dave from its L1"
ca A verify dave@dept.test
e2e_assert_eq redis "$(field cached)" "A: dave from Redis"
e2e_assert_eq 1 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "one RCPT at the next hop for dave"

ca B show Dave@dept.test
e2e_assert_eq 0 "$rc" "B: show exit status ($out)"
e2e_assert_eq dave@dept.test "$(field key)" "show: the cache key"
e2e_assert_match '^invalid 550 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 5\.1\.1 no such user here$' \
    "$(field l1)" "show: B's L1 holds dave"
e2e_assert_match '^[0-9]+$' "$(field l1_ttl)" "show: L1 TTL"
[ "$(field l1_ttl)" -le 60 ] || e2e_fail "L1 TTL $(field l1_ttl) above cache_l1_ttl"
e2e_assert_match '^invalid 550 ' "$(field redis)" "show: Redis holds dave"
ttl=$(field redis_ttl)
if [ "$ttl" -le 60 ] || [ "$ttl" -gt $((3 * 86400)) ]; then
    e2e_fail "show: Redis TTL $ttl is not ttl_invalid's"
fi
e2e_assert_eq none "$(field as_given_l1)" "show: nothing under the key as given (Dave@)"

ca A flush dave@dept.test
e2e_assert_eq 0 "$rc" "A: flush dave exit status ($out)"
e2e_assert_eq 1 "$(field redis_deleted)" "flush dave: Redis keys deleted"
e2e_assert_eq 2 "$(field daemons_notified)" "flush dave: both daemons got the message"
e2e_assert_eq 1 "$(field l1_dropped)" "flush dave: A's own L1 entry"
wait_log "$POLICYD2_LOG" 'flush address dave@dept.test from the flush channel: 1 in-process'
ca B show dave@dept.test
e2e_assert_eq none "$(field l1)" "B's L1 no longer holds dave"
e2e_assert_eq none "$(field redis)" "Redis no longer holds dave"
ca B verify dave@dept.test
e2e_assert_eq no "$(field cached)" "B: dave goes to the next hop again"
e2e_assert_eq 2 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "a second RCPT at the next hop for dave"

# --- a domain: its addresses and its facts go, other domains stay
for a in x1 x2 carol; do
    ca B verify "$a@dept.test"
done
e2e_redis SET callahead:rcpt:someone@other.test "invalid 550 1 cdb 5.1.1 User unknown" >/dev/null
e2e_redis SET callahead:dom:dept.test "valid 0 1 smtp accept-all" >/dev/null
# dave (verified again above), x1, x2, carol, the other domain's key and the domain fact
e2e_assert_eq 6 "$(e2e_redis --scan --pattern 'callahead:*' | wc -l)" "keys before the domain flush"
ca A flush dept.test
e2e_assert_eq 0 "$rc" "flush dept.test exit status ($out)"
e2e_assert_eq 5 "$(field redis_deleted)" "flush dept.test: 4 addresses and the domain fact"
e2e_assert_eq "callahead:rcpt:someone@other.test" "$(e2e_redis --scan --pattern 'callahead:*')" \
    "only the other domain's key is left"
wait_log "$POLICYD2_LOG" 'flush domain dept.test from the flush channel: 4 in-process'
ca B show x1@dept.test
e2e_assert_eq none "$(field l1)" "B's L1 no longer holds x1"

# --- every invalid verdict: 1500 invalid and 300 valid keys, several SCAN batches
now=$(date +%s)
{
    for i in $(seq 1 1500); do
        printf 'SET callahead:rcpt:u%d@bulk.test "invalid 550 %d cdb 5.1.1 User unknown"\n' "$i" "$now"
    done
    for i in $(seq 1 300); do
        printf 'SET callahead:rcpt:v%d@bulk.test "valid 250 %d cdb OK"\n' "$i" "$now"
    done
    printf 'SET callahead:lock:v1@bulk.test token PX 600000\n'
} | e2e_redis >/dev/null
ca A flush --invalid
e2e_assert_eq 0 "$rc" "flush --invalid exit status ($out)"
e2e_assert_eq 1501 "$(field redis_deleted)" "flush --invalid: 1500 bulk keys and other.test's"
e2e_assert_eq 0 "$(e2e_redis --scan --pattern 'callahead:rcpt:u*' | wc -l)" "invalid keys left"
e2e_assert_eq 300 "$(e2e_redis --scan --pattern 'callahead:rcpt:v*' | wc -l)" "valid keys left"
grep -q 'control: flush invalid: ' "$POLICYD_LOG" || e2e_fail "no log line for flush --invalid"

# --- everything but the probe locks
ca A flush --all
e2e_assert_eq 0 "$rc" "flush --all exit status ($out)"
e2e_assert_eq 300 "$(field redis_deleted)" "flush --all: the valid keys"
e2e_assert_eq "callahead:lock:v1@bulk.test" "$(e2e_redis --scan --pattern 'callahead:*')" \
    "only the probe lock is left"

# --- a daemon cut off from the channel drops its L1 when it is back
ca B verify y@dept.test
ca B verify y@dept.test
e2e_assert_eq l1 "$(field cached)" "B: y in its L1"
e2e_stop_redis
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no --save '' --appendonly no \
    --dir "$E2E_TMP/redis" --logfile "$E2E_TMP/redis/redis2.log" >/dev/null 2>&1 &
REDIS_PID=$!
e2e_track "$REDIS_PID" "redis (restarted)"
wait_log "$POLICYD2_LOG" 'flush channel \(re\)subscribed: [0-9]+ in-process entries dropped'
ca B show y@dept.test
e2e_assert_eq none "$(field l1)" "B's L1 no longer holds y after the resubscription"

# --- Redis down: the flush reaches only this daemon, and says so
ca A verify z@dept.test
e2e_stop_redis
ca A flush z@dept.test
e2e_assert_eq 75 "$rc" "flush with Redis down: exit status ($out)"
e2e_assert_match 'only this daemon' "$out" "flush with Redis down: message"
ca A show z@dept.test
e2e_assert_eq none "$(field l1)" "A's L1 was flushed all the same"
e2e_assert_match '^error: ' "$(field redis)" "show with Redis down"

# malformed flush requests
ca A flush 'not a domain!'
e2e_assert_eq 64 "$rc" "flush of a word with a space: usage"
ca A flush '[300.1.1.1]'
e2e_assert_eq 65 "$rc" "flush of a bad domain literal: refused ($out)"

e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "second daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"
e2e_stop_policyd
e2e_log "ok: show and flush across two daemons"
