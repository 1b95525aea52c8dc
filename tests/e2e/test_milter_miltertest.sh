#!/bin/bash
# test_milter_miltertest.sh - callahead-milter driven by miltertest against a
# real callahead-policyd: a known recipient continues, an unknown one gets a
# reply code (550 with policyd's text), a recipient policyd cannot verify gets
# a 4xx, an authenticated sender and a client in milter_skip_networks are not
# verified; above milter_max_inflight a recipient gets an immediate 451; and
# with policyd gone the milter answers milter_default_action (tempfail: 451
# quickly; continue: continue).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

e2e_example_tables
printf '%s\n' "example.test   cdb:$E2E_CDB" "broken.test    cdb:$E2E_TMP/missing.cdb" \
    "*              dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
cp "$CONF" "$E2E_TMP/open.conf"
e2e_free_port MPORT
e2e_free_port MPORT_OPEN
e2e_milter_conf "$CONF" "$MPORT" "milter_skip_networks = 10.0.0.0/8" "milter_timeout = 2s"
e2e_milter_conf "$E2E_TMP/open.conf" "$MPORT_OPEN" "milter_default_action = continue"
e2e_free_port MPORT_CAP
e2e_policyd_conf "$E2E_TMP/cap.conf"
e2e_milter_conf "$E2E_TMP/cap.conf" "$MPORT_CAP" "milter_max_inflight = 1" "milter_timeout = 3s"
e2e_start_policyd "$CONF"
e2e_start_milter "$CONF" "$MPORT" milter
e2e_start_milter "$E2E_TMP/open.conf" "$MPORT_OPEN" milter_open
e2e_start_milter "$E2E_TMP/cap.conf" "$MPORT_CAP" milter_cap

r=$(e2e_miltertest "$MPORT" 127.0.0.1 "" alice@example.test bob@example.test x@broken.test \
    anyone@other.test)
e2e_assert_eq "continue replycode replycode continue" "$(echo $r)" \
    "alice valid, bob unknown, broken.test tempfail, other.test unrouted"
# miltertest does not show the reply itself; the milter's decision log does
e2e_milter_logged milter 'recipient=<bob@example.test> .*answer="550 5\.1\.1 User unknown" reply=reject 550 ' ||
    e2e_fail "bob was not rejected with 550 and policyd's text"
e2e_milter_logged milter 'recipient=<x@broken.test> .*reply=tempfail 450 ' ||
    e2e_fail "x@broken.test was not deferred with 450"

e2e_assert_eq "continue" "$(e2e_miltertest "$MPORT" 127.0.0.1 alice bob@example.test)" \
    "authenticated sender (milter_skip_authenticated = yes)"
e2e_assert_eq "continue" "$(e2e_miltertest "$MPORT" 10.1.2.3 "" bob@example.test)" \
    "client 10.1.2.3 in milter_skip_networks"
e2e_assert_eq "replycode" "$(e2e_miltertest "$MPORT" 192.0.2.1 "" bob@example.test)" \
    "client 192.0.2.1 outside milter_skip_networks"

# milter_max_inflight = 1: with one query stuck (policyd stopped), the next
# recipient is answered at once instead of tying up another thread
kill -STOP "$POLICYD_PID"
e2e_miltertest "$MPORT_CAP" 127.0.0.1 "" bob@example.test >"$E2E_TMP/stuck.txt" &
stuck=$!
i=0
until grep -q 'sending -> reading' "$E2E_TMP/milter_cap.log"; do
    [ "$i" -lt 50 ] || e2e_fail "the first query never started"
    sleep 0.1
    i=$((i + 1))
done
start=$(date +%s%N)
e2e_assert_eq "replycode" "$(e2e_miltertest "$MPORT_CAP" 127.0.0.1 "" alice@example.test)" \
    "a second recipient above milter_max_inflight"
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 1500 ] || e2e_fail "the recipient above the cap waited ${ms} ms"
e2e_milter_logged milter_cap 'recipient=<alice@example.test> more than milter_max_inflight=1' ||
    e2e_fail "the cap was not logged"
wait "$stuck"
e2e_assert_eq "replycode" "$(cat "$E2E_TMP/stuck.txt")" "the stuck query after milter_timeout"
e2e_milter_logged milter_cap 'recipient=<bob@example.test> .*policy-failure.* reply=tempfail 451' ||
    e2e_fail "the stuck query did not end in 451"
kill -CONT "$POLICYD_PID"
e2e_assert_eq "continue" "$(e2e_miltertest "$MPORT_CAP" 127.0.0.1 "" alice@example.test)" \
    "below the cap again once policyd answers"

# policyd gone: the default action, answered at once (connection refused)
e2e_stop_policyd
start=$(date +%s%N)
e2e_assert_eq "replycode" "$(e2e_miltertest "$MPORT" 127.0.0.1 "" bob@example.test)" \
    "policyd down, milter_default_action = tempfail"
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 3000 ] || e2e_fail "the tempfail took ${ms} ms"
e2e_milter_logged milter 'recipient=<bob@example.test> .*policy-failure.* reply=tempfail 451 ' ||
    e2e_fail "no 451 logged for policyd down"
e2e_milter_logged milter 'warning: policy service inet:127\.0\.0\.1:[0-9]+: connect' ||
    e2e_fail "the failure to reach policyd was not logged"
e2e_assert_eq "continue continue" \
    "$(echo $(e2e_miltertest "$MPORT_OPEN" 127.0.0.1 "" bob@example.test alice@example.test))" \
    "policyd down, milter_default_action = continue"
# logged once per interval, not once per recipient
n=$(grep -c 'warning: policy service' "$E2E_TMP/milter_open.log")
e2e_assert_eq 1 "$n" "failure lines logged for two failed recipients"

e2e_stop_milter "$milter_cap_PID" milter_cap
e2e_stop_milter "$milter_open_PID" milter_open
e2e_stop_milter "$milter_PID" milter
