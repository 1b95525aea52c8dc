#!/bin/bash
# test_route_check.sh - "callahead-policyd -t" runs exactly the checks start-up
# runs: for each bad route table (an option no backend claims, a typo of a
# known option, a value of the wrong type, a value only the backend's open()
# can judge, an option on a route that takes none, an empty or comments-only
# table) -t fails with "FILE:LINE: reason" naming the option, and starting
# the daemon fails the same way instead of running. A good table passes both.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"

# write_routes LINE... - the route table, example.test first (line 1)
write_routes() {
    printf '%s\n' "example.test   cdb:$E2E_CDB" "$@" >"$E2E_ROUTES"
}

# expect_refused WHAT WANT - -t and start-up both exit non-zero and print WANT (fixed string)
expect_refused() {
    local what=$1 want=$2 out rc
    out=$("$POLICYD" -c "$CONF" -t 2>&1)
    rc=$?
    [ "$rc" -ne 0 ] || e2e_fail "$what: -t accepted it: [$out]"
    grep -qF -- "$want" <<<"$out" || e2e_fail "$what: -t said [$out], wanted [$want]"
    e2e_log "ok: $what: -t exit $rc: [$out]"
    # start-up, in the foreground: must exit with the same message, never listen
    out=$(timeout 20 "$POLICYD" -f -c "$CONF" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
        e2e_fail "$what: the daemon started (exit $rc): [$out]"
    fi
    grep -qF -- "$want" <<<"$out" || e2e_fail "$what: start-up said [$out], wanted [$want]"
    e2e_log "ok: $what: start-up exit $rc"
}

write_routes "x.test smtp:[127.0.0.1]:25 conect_timeout=1s" "* dunno"
expect_refused "misspelt callout option" \
    "$E2E_ROUTES:2: unknown option \"conect_timeout\" for smtp routes (did you mean \"connect_timeout\"?)"

write_routes "x.test smtp:[127.0.0.1]:25 connect_timeout=1s breaker_falures=2" "* dunno"
expect_refused "misspelt generic option" \
    "$E2E_ROUTES:2: unknown option \"breaker_falures\" for smtp routes (did you mean \"breaker_failures\"?)"

write_routes "* dunno" "y.test cdb:$E2E_CDB colour=blue"
expect_refused "option no backend claims" "$E2E_ROUTES:3: unknown option \"colour\" for cdb routes"

write_routes "x.test smtp:mx fold_local=maybe" "* dunno"
expect_refused "bad yes/no value" "$E2E_ROUTES:2: fold_local=maybe: expected yes or no"

write_routes "x.test smtp:mx max_connections=0" "* dunno"
expect_refused "count out of range" "$E2E_ROUTES:2: max_connections=0: expected a number from 1 to"

write_routes "x.test smtp:mx quit_timeout=2hours" "* dunno"
expect_refused "bad duration" "$E2E_ROUTES:2: quit_timeout=2hours: expected a duration"

# a value only the backend's open() judges: -t used to pass it while start-up failed
write_routes "x.test smtp:[127.0.0.1]:25 sender=nobody" "* dunno"
expect_refused "sender without a domain" "$E2E_ROUTES:2: sender=nobody: expected an address"

write_routes "x.test reject note=why"
expect_refused "option on a static route" "$E2E_ROUTES:2: unknown option \"note\" for reject routes"

: >"$E2E_ROUTES"
expect_refused "empty route table" "$E2E_ROUTES:1: no routes"
printf '%s\n' "# everything commented out" "# example.test cdb:$E2E_CDB" "" >"$E2E_ROUTES"
expect_refused "comments-only route table" "$E2E_ROUTES:3: no routes"

# good: the same checks pass, and the daemon starts and answers from that table
write_routes "x.test smtp:[127.0.0.1]:25 connect_timeout=1s breaker_failures=2 fold_local=true" \
    "* dunno"
out=$("$POLICYD" -c "$CONF" -t 2>&1) || e2e_fail "-t refused a good table: [$out]"
e2e_log "ok: good table: -t [$out]"
printf '%s\n' "# verify nothing, on purpose" "* dunno" >"$E2E_TMP/routes.dunno"
e2e_policyd_conf "$CONF" "route_table = $E2E_TMP/routes.dunno"
sed -i "/^route_table = ${E2E_ROUTES//\//\\/}\$/d" "$CONF"
out=$("$POLICYD" -c "$CONF" -t 2>&1) || e2e_fail "-t refused an explicit '* dunno': [$out]"
e2e_log "ok: explicit '* dunno': -t [$out]"
e2e_policyd_conf "$CONF"
e2e_start_policyd "$CONF"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "alice@example.test"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob@example.test"
e2e_stop_policyd
