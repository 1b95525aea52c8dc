#!/bin/bash
# test_sighup.sh - SIGHUP reloads the config and the route table: a new route
# takes effect without a restart; a broken config or a broken route table is
# refused with a "file:line: reason" log line and the old one stays in use, and
# so is an empty or comments-only route table.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
cp "$CONF" "$E2E_TMP/callahead.conf.good"
cp "$E2E_ROUTES" "$E2E_TMP/routes.orig"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$CONF"

CAROL_REJECT='550 5.1.1 <carol@other.test>: Recipient address rejected: '

# wait_action RCPT REGEX WHAT - poll the daemon until RCPT gets an action matching REGEX
wait_action() {
    local a i
    for i in $(seq 1 50); do
        a=$(e2e_policy_query "recipient=$1")
        if [[ $a =~ $2 ]]; then
            e2e_log "ok: $3: [$a]"
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "$3: no action matching /$2/ within 5s, last [$a]"
}

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
    e2e_fail "the daemon did not log [$1] within 5s"
}
mark() { MARK=$(($(stat -c %s "$POLICYD_LOG") + 1)); }

e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt carol@other.test)" "carol@other.test before reload (dunno)"

# 1. A new route: other.test is now rejected outright.
printf '%s\n' "example.test   cdb:$E2E_CDB" "other.test     reject" "*              dunno" >"$E2E_ROUTES"
kill -HUP "$POLICYD_PID"
wait_action carol@other.test '^550 ' "carol@other.test after the reload"
e2e_assert_match "^${CAROL_REJECT//./\\.}" "$(e2e_smtp_rcpt carol@other.test)" \
    "RCPT TO:<carol@other.test> after the reload"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "alice after the reload"

# 2. A broken config: refused, the old one stays.
printf '%s\n' "# broken on purpose" "listen = inet:127.0.0.1:$POLICYD_PORT" \
    "no_such_parameter = 1" >"$CONF"
mark
kill -HUP "$POLICYD_PID"
wait_log "$CONF:3"
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on a broken config"
e2e_assert_match "^${CAROL_REJECT//./\\.}" "$(e2e_smtp_rcpt carol@other.test)" \
    "carol still rejected after the broken config"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@example.test)" "alice after the broken config"

# 3. A good config but a broken route table: refused, the old routes stay.
cp "$E2E_TMP/callahead.conf.good" "$CONF"
printf '%s\n' "example.test   cdb:$E2E_CDB" "other.test     no-such-method:x" "*  dunno" >"$E2E_ROUTES"
mark
kill -HUP "$POLICYD_PID"
wait_log "$E2E_ROUTES:2"
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on a broken route table"
e2e_assert_match "^${CAROL_REJECT//./\\.}" "$(e2e_smtp_rcpt carol@other.test)" \
    "carol still rejected after the broken route table"
e2e_assert_eq "$(e2e_unknown_reply bob@example.test)" \
    "$(e2e_smtp_rcpt bob@example.test)" "bob after the broken route table"

# 3b. An empty route table (a truncated deploy) or one of only comments: refused, the
# old routes stay; it would otherwise turn every verification off without a word.
for empty in '' '# example.test cdb:gone.cdb'; do
    printf '%s' "$empty" >"$E2E_ROUTES"
    mark
    kill -HUP "$POLICYD_PID"
    wait_log "$E2E_ROUTES:1: no routes"
    e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on an empty route table"
    e2e_assert_match '^550 ' "$(e2e_policy_query recipient=carol@other.test)" \
        "carol still rejected after the empty route table [$empty]"
    e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" \
        "bob still verified after the empty route table [$empty]"
done

# 4. Both good again, routes back to the original: other.test is the MTA's again.
cp "$E2E_TMP/routes.orig" "$E2E_ROUTES"
kill -HUP "$POLICYD_PID"
wait_action carol@other.test '^DUNNO$' "carol@other.test after the repaired reload"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt carol@other.test)" "RCPT TO:<carol@other.test> at the end"

# 5. A new table for a new domain, by pointing a route at a new cdb file.
e2e_make_cdb "$E2E_TMP/new.cdb" 'erin@new.test OK'
printf '%s\n' "example.test   cdb:$E2E_CDB" "new.test       cdb:$E2E_TMP/new.cdb" "*  dunno" >"$E2E_ROUTES"
kill -HUP "$POLICYD_PID"
wait_action frank@new.test '^550 ' "frank@new.test (not in new.cdb) after the reload"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=erin@new.test)" "erin@new.test (in new.cdb)"

e2e_stop_policyd
