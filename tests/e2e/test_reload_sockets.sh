#!/bin/bash
# test_reload_sockets.sh - a SIGHUP applies the socket and log settings without
# dropping a connection: control_socket moves (the new path answers "callahead
# stats", the old path is gone), control_socket_mode and unix_socket_mode change
# on sockets that stay open (seen with stat), stats_listen moves (the new port
# serves /metrics, the old one refuses), syslog_name changes the log lines' name;
# a policy client connected across the reload keeps its connection. A control
# socket that cannot be bound (an unknown control_socket_group) refuses the
# reload by name, leaves nothing at the new path and keeps everything running;
# a reload refused later (a broken route table) undoes the socket changes;
# so does a change of pidfile or user, which only a restart can apply, and a
# unix_socket_owner a daemon that dropped root cannot chown to.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need curl curl
CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
CTL1=$E2E_TMP/ctl1
CTL2=$E2E_TMP/ctl2
SOCK=$E2E_TMP/policy.sock
e2e_free_port POLICYD_PORT
e2e_free_port STATS1
e2e_free_port STATS2
POLICYD_LISTEN="inet:127.0.0.1:$POLICYD_PORT unix:$SOCK"
e2e_policyd_conf "$CONF" "control_socket = $CTL1" "control_socket_mode = 0600" \
    "stats_listen = inet:127.0.0.1:$STATS1" "unix_socket_mode = 0660" \
    "pidfile = $E2E_TMP/policyd.pid"
e2e_start_policyd "$CONF"

MARK=1
mark() { MARK=$(($(stat -c %s "$POLICYD_LOG") + 1)); }
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
    e2e_fail "the daemon did not log [$1] within 5s; it logged [$(tail -c +"$MARK" "$POLICYD_LOG")]"
}
ctl_stats() { "$CALLAHEAD" -s "$1" stats 2>&1; }
metrics_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/metrics"; }

ctl_stats "$CTL1" | grep -q '^uptime_seconds=' || e2e_fail "no stats on $CTL1: $(ctl_stats "$CTL1")"
e2e_assert_eq 200 "$(metrics_code "$STATS1")" "GET /metrics on the first stats_listen"
e2e_assert_eq 660 "$(stat -c %a "$SOCK")" "unix listener mode at start"
e2e_assert_eq 600 "$(stat -c %a "$CTL1")" "control socket mode at start"

# a policy client that stays connected across every reload below
exec 7<>"/dev/tcp/127.0.0.1/$POLICYD_PORT"
ask_held() {
    local line action=""
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=%s\n\n' "$1" >&7
    while IFS= read -r -t 10 line <&7; do
        [ -z "$line" ] && break
        action=${line#action=}
    done
    printf '%s\n' "$action"
}
e2e_assert_match '^550 ' "$(ask_held bob@example.test)" "bob on the held connection"

# --- a reload moves the control socket and the stats port, changes modes and the log name
e2e_policyd_conf "$CONF" "control_socket = $CTL2" "control_socket_mode = 0660" \
    "stats_listen = inet:127.0.0.1:$STATS2" "unix_socket_mode = 0666" \
    "pidfile = $E2E_TMP/policyd.pid" "syslog_name = callahead-reloaded"
mark
kill -HUP "$POLICYD_PID"
wait_log "reloaded $CONF"
wait_log "callahead-reloaded: info: reloaded $CONF"
out=$(ctl_stats "$CTL2")
[[ $out == *uptime_seconds=* ]] || e2e_fail "the new control socket $CTL2 does not answer stats: $out"
e2e_log "ok: callahead stats answered on the new control socket"
[ -e "$CTL1" ] && e2e_fail "the old control socket $CTL1 is still there"
e2e_log "ok: the old control socket file is gone"
e2e_assert_eq 660 "$(stat -c %a "$CTL2")" "the new control socket's mode"
e2e_assert_eq 200 "$(metrics_code "$STATS2")" "GET /metrics on the new stats_listen"
e2e_assert_eq 000 "$(metrics_code "$STATS1")" "GET /metrics on the old stats_listen (refused)"
e2e_assert_eq 666 "$(stat -c %a "$SOCK")" "the kept unix listener's mode"
e2e_assert_match '^550 ' "$(ask_held dave@example.test)" "the held connection after the reload"

# mode and group of a control socket that stays where it is
e2e_policyd_conf "$CONF" "control_socket = $CTL2" "control_socket_mode = 0600" \
    "stats_listen = inet:127.0.0.1:$STATS2" "unix_socket_mode = 0666" \
    "pidfile = $E2E_TMP/policyd.pid" "syslog_name = callahead-reloaded"
mark
kill -HUP "$POLICYD_PID"
wait_log "reloaded $CONF"
e2e_assert_eq 600 "$(stat -c %a "$CTL2")" "the kept control socket's new mode"
ctl_stats "$CTL2" | grep -q '^uptime_seconds=' || e2e_fail "no stats on $CTL2 after its mode changed"

# --- a control socket that cannot be made refuses the reload, by name, and leaves no file
e2e_policyd_conf "$CONF" "control_socket = $CTL1" "control_socket_mode = 0660" \
    "control_socket_group = no-such-group-e2e" "stats_listen = inet:127.0.0.1:$STATS1" \
    "unix_socket_mode = 0600" "pidfile = $E2E_TMP/policyd.pid"
mark
kill -HUP "$POLICYD_PID"
wait_log "reload refused, keeping the running configuration: control_socket: unix:$CTL1: unknown group no-such-group-e2e"
[ -e "$CTL1" ] && e2e_fail "the refused reload left a socket file at $CTL1"
e2e_assert_eq 200 "$(metrics_code "$STATS2")" "GET /metrics on the running stats_listen"
e2e_assert_eq 000 "$(metrics_code "$STATS1")" "GET /metrics on the refused stats_listen"
e2e_assert_eq 666 "$(stat -c %a "$SOCK")" "the unix listener's mode after the refusal"
ctl_stats "$CTL2" | grep -q '^uptime_seconds=' || e2e_fail "no stats on $CTL2 after the refusal"

# --- a reload refused after the socket changes were made ready (a broken route table) undoes them
cp "$E2E_ROUTES" "$E2E_TMP/routes.good"
printf 'example.test   nosuchmethod:x\n' >"$E2E_ROUTES"
e2e_policyd_conf "$CONF" "control_socket = $CTL1" "control_socket_mode = 0600" \
    "stats_listen = inet:127.0.0.1:$STATS1" "unix_socket_mode = 0600" \
    "pidfile = $E2E_TMP/policyd.pid" "syslog_name = callahead-reloaded"
mark
kill -HUP "$POLICYD_PID"
wait_log "reload failed, keeping the running configuration: "
e2e_assert_eq 666 "$(stat -c %a "$SOCK")" "the unix listener's mode after a failed reload"
[ -e "$CTL1" ] && e2e_fail "the failed reload left a control socket at $CTL1"
e2e_assert_eq 000 "$(metrics_code "$STATS1")" "the failed reload's stats_listen"
e2e_assert_eq 200 "$(metrics_code "$STATS2")" "the running stats_listen after a failed reload"
ctl_stats "$CTL2" | grep -q '^uptime_seconds=' || e2e_fail "no stats on $CTL2 after a failed reload"
cp "$E2E_TMP/routes.good" "$E2E_ROUTES"

# --- pidfile and user need a restart: refused by name, nothing applied
e2e_policyd_conf "$CONF" "control_socket = $CTL2" "control_socket_mode = 0600" \
    "stats_listen = inet:127.0.0.1:$STATS1" "unix_socket_mode = 0666" \
    "pidfile = $E2E_TMP/other.pid" "user = nobody" "syslog_name = callahead-reloaded"
mark
kill -HUP "$POLICYD_PID"
wait_log "reload refused, keeping the running configuration: user, pidfile changed in $CONF"
e2e_assert_eq 000 "$(metrics_code "$STATS1")" "stats_listen of the refused file not applied"
e2e_assert_eq 200 "$(metrics_code "$STATS2")" "the running stats_listen"
[ -e "$E2E_TMP/other.pid" ] && e2e_fail "the refused reload wrote the new pidfile"
e2e_assert_eq "$POLICYD_PID" "$(cat "$E2E_TMP/policyd.pid")" "the pidfile in force"
e2e_assert_match '^550 ' "$(ask_held erin@example.test)" "the held connection after the refusals"
exec 7>&-
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died"

e2e_stop_policyd
[ -e "$CTL2" ] && e2e_fail "the control socket $CTL2 is left after the daemon stopped"
e2e_log "ok: the control socket was removed at exit"

# --- a daemon that dropped root may not give its unix socket to another user: refused by
# name and why, the file keeps its owner and mode (a chmod before the chown would not)
SOCK3=$E2E_TMP/policy3.sock
POLICYD_LISTEN="inet:127.0.0.1:$POLICYD_PORT unix:$SOCK3"
e2e_policyd_conf "$CONF" "user = nobody" "unix_socket_mode = 0660"
e2e_start_policyd "$CONF"
e2e_assert_eq "660 root" "$(stat -c '%a %U' "$SOCK3")" "unix listener bound as root"
# answered once the event loop runs, and with it the SIGHUP handler (the port opens before)
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob as user nobody"
e2e_policyd_conf "$CONF" "user = nobody" "unix_socket_mode = 0666" "unix_socket_owner = daemon"
mark
kill -HUP "$POLICYD_PID"
wait_log "reload refused, keeping the running configuration: unix_socket_mode, unix_socket_owner: unix:$SOCK3: chown: Operation not permitted (the daemon no longer runs as root: this needs a restart)"
e2e_assert_eq "660 root" "$(stat -c '%a %U' "$SOCK3")" "unix listener after the refusal"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob after the refusal"
e2e_stop_policyd
