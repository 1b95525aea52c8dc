#!/bin/bash
# test_startup.sh - start-up and instance safety of a daemon started in the background
# (no -f), the way an init script does it:
#  - relative -c, route_table, pidfile and unix socket work after the daemon detached
#    (its working directory is "/"), also for a SIGHUP reload of the relative route table;
#  - the starting command returns only once the daemon listens (a query right after it
#    is answered) and returns non-zero with the reason when start-up fails later on,
#    leaving no pidfile or socket file behind, and with its sockets closed;
#  - a second instance is refused (locked pidfile; a unix socket that answers) and the
#    first one's socket stays intact; a daemon that stops removes only its own socket file.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
D=$E2E_TMP/inst
mkdir -p "$D"
e2e_free_port PORT_A
e2e_free_port PORT_B
cp "$E2E_ROUTES" "$D/routes"

# unix_query SOCKET RCPT - one request over a unix socket; the action, or <closed>/<error>
unix_query() {
    perl -MIO::Socket::UNIX -e '
        my ($path, $rcpt) = @ARGV;
        my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM)
            or do { print "<error: $!>\n"; exit 0 };
        print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=$rcpt\n\n";
        local $SIG{ALRM} = sub { print "<timeout>\n"; exit 0 }; alarm 10;
        my $r = ""; while (my $l = <$s>) { last if $l eq "\n"; $r .= $l }
        if ($r eq "") { print "<closed>\n"; exit 0 }
        $r =~ s/^action=//; chomp $r; print "$r\n";' "$1" "$2"
}

# start_bg DIR CONF - the daemon in the background from DIR, as "callahead-policyd -c CONF";
# sets RC and OUT (its stderr and stdout)
start_bg() {
    RC=0
    OUT=$(cd "$1" && "$POLICYD" -c "$2" 2>&1) || RC=$?
}

# --- relative paths, readiness, background start
cat >"$D/a.conf" <<EOC
listen = inet:127.0.0.1:$PORT_A, unix:policy.sock
route_table = routes
pidfile = a.pid
EOC
start_bg "$D" a.conf
e2e_assert_eq 0 "$RC" "background start with relative paths exits 0 [$OUT]"
[ -s "$D/a.pid" ] || e2e_fail "no pidfile $D/a.pid when the start command returned"
PID_A=$(cat "$D/a.pid")
e2e_track "$PID_A" "callahead-policyd A"
POLICYD_PORT=$PORT_A
# no waiting: the start command returned, so the daemon listens
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=bob@example.test)" \
    "answered right after the start command returned (relative route table)"
e2e_assert_match '^550 5\.1\.1 ' "$(unix_query "$D/policy.sock" bob@example.test)" \
    "the relative unix socket answers"

# reload: the relative route_table still means $D/routes
printf '%s\n' '* dunno' >"$D/routes"
kill -HUP "$PID_A"
for _ in $(seq 50); do
    [ "$(e2e_policy_query recipient=bob@example.test)" = DUNNO ] && break
    sleep 0.1
done
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=bob@example.test)" \
    "SIGHUP reloaded the relative route table"
e2e_alive "$PID_A" || e2e_fail "daemon A died on reload"

# --- a second instance with the same configuration: refused by the pidfile lock
start_bg "$D" a.conf
[ "$RC" -ne 0 ] || e2e_fail "a second instance with the same pidfile started (exit 0)"
e2e_assert_match 'pidfile .*a\.pid is locked by a running instance \(pid '"$PID_A"'\)' "$OUT" \
    "the second instance says why it refused"
e2e_assert_eq "$PID_A" "$(cat "$D/a.pid")" "the pidfile still names the first instance"

# --- a second instance on the same unix socket (other pidfile and port): refused
cat >"$D/b.conf" <<EOC
listen = inet:127.0.0.1:$PORT_B, unix:policy.sock
route_table = routes
pidfile = b.pid
EOC
start_bg "$D" b.conf
[ "$RC" -ne 0 ] || e2e_fail "a second instance took over the live unix socket (exit 0)"
e2e_assert_match 'another server is listening on this socket' "$OUT" \
    "the second instance refuses to replace a socket that answers"
[ ! -e "$D/b.pid" ] || e2e_fail "the refused instance left $D/b.pid behind"
e2e_assert_eq DUNNO "$(unix_query "$D/policy.sock" bob@example.test)" \
    "the first instance's unix socket still answers"

# --- the socket file was replaced behind A's back: A's stop must not remove B's socket
rm -f "$D/policy.sock"
start_bg "$D" b.conf
e2e_assert_eq 0 "$RC" "instance B starts once the path is free [$OUT]"
PID_B=$(cat "$D/b.pid")
e2e_track "$PID_B" "callahead-policyd B"
e2e_kill_wait "$PID_A" 10 || true
e2e_untrack "$PID_A"
[ ! -e "$D/a.pid" ] || e2e_fail "A left its pidfile behind after SIGTERM"
[ -S "$D/policy.sock" ] || e2e_fail "stopping A removed B's socket file"
e2e_assert_eq DUNNO "$(unix_query "$D/policy.sock" bob@example.test)" \
    "B still answers on its socket after A stopped"
e2e_kill_wait "$PID_B" 10 || true
e2e_untrack "$PID_B"
[ ! -e "$D/policy.sock" ] || e2e_fail "B did not remove its own socket file"
[ ! -e "$D/b.pid" ] || e2e_fail "B left its pidfile behind"

# --- a start that fails after detaching: non-zero exit with the reason, no pidfile
cat >"$D/c.conf" <<EOC
listen = inet:127.0.0.1:$PORT_A, unix:c.sock
route_table = routes
pidfile = c.pid
user = no-such-user-e2e
EOC
start_bg "$D" c.conf
[ "$RC" -ne 0 ] || e2e_fail "a failed background start exited 0"
e2e_assert_match 'no-such-user-e2e' "$OUT" "the failed start reports its reason"
[ ! -e "$D/c.pid" ] || e2e_fail "the failed start left a stale pidfile"
[ ! -e "$D/c.sock" ] || e2e_fail "the failed start left its socket file behind"
if e2e_port_open "$PORT_A"; then
    e2e_fail "something listens on $PORT_A after the failed start"
fi
e2e_log "ok: failed start exit $RC, no pidfile"
