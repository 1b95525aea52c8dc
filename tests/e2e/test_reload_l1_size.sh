#!/bin/bash
# test_reload_l1_size.sh - a SIGHUP that changes cache_l1_size is applied
# without a restart: a smaller size evicts the least recently used verdicts at
# once (the most recent one stays),
# a larger one lets the cache grow again. The daemon runs without Redis, so
# the in-process cache is the whole cache and its count is exact ("callahead
# stats", cache_l1_entries).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
CTL=$E2E_TMP/control
e2e_policyd_conf "$CONF" "control_socket = $CTL" "cache_l1_size = 1000"
e2e_start_policyd "$CONF"

# counter NAME - one counter from "callahead stats"
counter() {
    "$CALLAHEAD" -c "$CONF" stats | sed -n "s/^$1=//p"
}
# l1_of USER - the in-process cache's verdict for USER@example.test ("none" when not there)
l1_of() {
    "$CALLAHEAD" -c "$CONF" show "$1@example.test" | sed -n 's/^l1=//p'
}
# reload_to SIZE - rewrite the file with cache_l1_size = SIZE and reload
reload_to() {
    e2e_policyd_conf "$CONF" "control_socket = $CTL" "cache_l1_size = $1"
    e2e_policyd_reload "$CONF" "cache_l1_size = $1"
}

for u in bob carol dave erin; do
    e2e_assert_match '^550 ' "$(e2e_policy_query recipient=$u@example.test)" "$u before the reload"
done
e2e_assert_eq 4 "$(counter cache_l1_entries)" "verdicts cached before the reload"

reload_to 1
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on the reload"
e2e_assert_eq 1 "$(counter cache_l1_entries)" "verdicts cached after shrinking to 1"
e2e_assert_match '^invalid 550 ' "$(l1_of erin)" "erin (the most recent) in the in-process cache"
e2e_assert_eq none "$(l1_of bob)" "bob (the least recent) in the in-process cache"
e2e_assert_eq none "$(l1_of dave)" "dave in the in-process cache"

reload_to 1000
for u in frank grace heidi; do
    e2e_assert_match '^550 ' "$(e2e_policy_query recipient=$u@example.test)" "$u after growing"
done
e2e_assert_eq 4 "$(counter cache_l1_entries)" "verdicts cached after growing to 1000"

e2e_stop_policyd
