#!/bin/bash
# test_reload_delimiter.sh - a SIGHUP applies recipient_delimiter without a
# restart: lookups after the reload split user-ext with the new delimiter, both
# in the CDB backend's own user+ext then user fallback and in the verifier's
# fold_subaddress (seen in the Redis cache key), and the old delimiter no
# longer splits. Real redis-server.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

E2E_CDB=$E2E_TMP/users.cdb
E2E_ROUTES=$E2E_TMP/routes
e2e_make_cdb "$E2E_CDB" 'alice@example.test OK' 'alice@fold.test OK' 'bob@fold.test OK'
printf '%s\n' "example.test   cdb:$E2E_CDB" "fold.test      cdb:$E2E_CDB fold_subaddress=yes" \
    "*              dunno" >"$E2E_ROUTES"
e2e_start_redis
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" "recipient_delimiter = +"
e2e_start_policyd "$CONF"

# reload - SIGHUP and wait until the daemon logs that it reloaded (fail on a refusal)
reload() {
    local mark _
    mark=$(($(stat -c %s "$POLICYD_LOG") + 1))
    kill -HUP "$POLICYD_PID"
    for _ in $(seq 1 50); do
        tail -c +"$mark" "$POLICYD_LOG" | grep -q -e 'info: reloaded' -e 'reload refused' && break
        sleep 0.1
    done
    if tail -c +"$mark" "$POLICYD_LOG" | grep -q 'reload refused'; then
        e2e_fail "reload refused: $(tail -c +"$mark" "$POLICYD_LOG" | grep 'reload refused')"
    fi
    tail -c +"$mark" "$POLICYD_LOG" | grep -q 'reloaded' || e2e_fail "no reload logged"
}

e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice+news@example.test)" "alice+news before"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=alice-news@example.test)" "alice-news before"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice+a@fold.test)" "alice+a@fold.test before"
e2e_wait_redis_key callahead:rcpt:alice@fold.test >/dev/null ||
    e2e_fail "alice+a@fold.test not cached as alice@fold.test: $(e2e_redis --scan | head -5)"

e2e_policyd_conf "$CONF" "recipient_delimiter = -"
reload

e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice-sales@example.test)" \
    "alice-sales after the reload (cdb fallback with the new delimiter)"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=alice+sales@example.test)" \
    "alice+sales after the reload (+ no longer a delimiter)"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=bob-b@fold.test)" "bob-b@fold.test after"
e2e_wait_redis_key callahead:rcpt:bob@fold.test >/dev/null ||
    e2e_fail "bob-b@fold.test not cached as bob@fold.test: $(e2e_redis --scan | head -5)"
e2e_log "ok: fold_subaddress strips with the new delimiter"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=alice+c@fold.test)" "alice+c@fold.test after"
e2e_wait_redis_key 'callahead:rcpt:alice+c@fold.test' >/dev/null ||
    e2e_fail "alice+c@fold.test not cached whole: $(e2e_redis --scan | head -5)"
e2e_log "ok: + is no longer stripped"

e2e_stop_policyd
