#!/bin/bash
# test_milter_socket.sh - callahead-milter's unix socket: created with
# milter_socket_mode, a live milter's socket is never taken over by a second
# instance, a crashed milter's stale socket is replaced, a path that is not a
# socket is never removed, and SIGTERM exits 0 and removes the socket. Started
# without -f, the command returns once the milter listens (0) or with its
# reason (1), and milter_pidfile is locked against a second instance.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
SOCK=$E2E_TMP/milter.sock
e2e_policyd_conf "$CONF"
{
    echo "milter_listen = unix:$SOCK"
    echo "milter_socket_mode = 0600"
    echo "milter_policy_service = inet:127.0.0.1:$POLICYD_PORT"
} >>"$CONF"
e2e_start_policyd "$CONF"
e2e_start_milter "$CONF" "$SOCK" first
e2e_assert_eq "600" "$(stat -c %a "$SOCK")" "socket mode (milter_socket_mode = 0600)"
e2e_assert_eq "continue replycode" "$(echo $(e2e_miltertest "unix:$SOCK" 127.0.0.1 "" \
    alice@example.test bob@example.test))" "verdicts over the unix socket"

# a second instance must not steal a live socket
rc=0
timeout 20 "$MILTER" -f -c "$CONF" >"$E2E_TMP/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || e2e_fail "a second milter started on a live socket"
grep -q 'another milter is listening' "$E2E_TMP/second.log" ||
    e2e_fail "the second milter did not say why: $(cat "$E2E_TMP/second.log")"
e2e_assert_eq "replycode" "$(e2e_miltertest "unix:$SOCK" 127.0.0.1 "" bob@example.test)" \
    "the first milter still answers"

# a crashed milter leaves a stale socket: the next start replaces it
kill -KILL "$first_PID"
wait "$first_PID" 2>/dev/null
e2e_untrack "$first_PID"
[ -S "$SOCK" ] || e2e_fail "SIGKILL left no socket (the stale case is not tested)"
e2e_start_milter "$CONF" "$SOCK" third
e2e_assert_eq "replycode" "$(e2e_miltertest "unix:$SOCK" 127.0.0.1 "" bob@example.test)" \
    "a milter on the replaced stale socket"

# SIGTERM: exit 0, socket gone
e2e_stop_milter "$third_PID" third
[ ! -e "$SOCK" ] || e2e_fail "the socket is still there after SIGTERM"

# a path that is not a socket is refused and left alone
echo precious >"$SOCK"
rc=0
timeout 20 "$MILTER" -f -c "$CONF" >"$E2E_TMP/file.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || e2e_fail "the milter started over a regular file"
e2e_assert_eq precious "$(cat "$SOCK")" "the regular file at milter_listen"
grep -q 'is not a socket' "$E2E_TMP/file.log" || e2e_fail "no reason given: $(cat "$E2E_TMP/file.log")"

# without -f: the command waits until the milter listens, then exits 0
rm -f "$SOCK"
PIDF=$E2E_TMP/milter.pid
sed "s|^milter_listen = .*|&\nmilter_pidfile = $PIDF|" "$CONF" >"$E2E_TMP/daemon.conf"
"$MILTER" -c "$E2E_TMP/daemon.conf" >"$E2E_TMP/daemon.log" 2>&1 || e2e_fail "daemon start failed: $(cat "$E2E_TMP/daemon.log")"
dpid=$(tr -dc 0-9 <"$PIDF")
[ -n "$dpid" ] && e2e_alive "$dpid" || e2e_fail "no running milter in the pidfile"
e2e_track "$dpid" milter-daemon
[ -S "$SOCK" ] || e2e_fail "the command returned before the socket existed"
e2e_assert_eq "replycode" "$(e2e_miltertest "unix:$SOCK" 127.0.0.1 "" bob@example.test)" \
    "the detached milter answers as soon as its start command returned"
rc=0
"$MILTER" -c "$E2E_TMP/daemon.conf" >"$E2E_TMP/daemon2.log" 2>&1 || rc=$?
e2e_assert_eq 1 "$rc" "exit status of a second detached start with the same pidfile"
grep -q "$dpid" "$E2E_TMP/daemon2.log" || e2e_fail "the second start did not name the running pid: $(cat "$E2E_TMP/daemon2.log")"
kill -TERM "$dpid"
i=0
while e2e_alive "$dpid" && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
e2e_alive "$dpid" && e2e_fail "the detached milter did not stop on SIGTERM"
e2e_untrack "$dpid"
[ ! -e "$SOCK" ] || e2e_fail "the detached milter left its socket"
e2e_log "ok: detached milter stopped on SIGTERM"

# a start that fails after detaching still reports why, with status 1
echo precious >"$SOCK"
rc=0
"$MILTER" -c "$E2E_TMP/daemon.conf" >"$E2E_TMP/daemon3.log" 2>&1 || rc=$?
e2e_assert_eq 1 "$rc" "exit status of a detached start over a regular file"
grep -q 'is not a socket' "$E2E_TMP/daemon3.log" || e2e_fail "no reason given: $(cat "$E2E_TMP/daemon3.log")"
