#!/bin/bash
# test_reload_listen.sh - a SIGHUP applies a changed "listen": an added inet and
# unix listener answer, a removed one stops accepting while a connection it
# accepted before goes on answering, and an address that cannot be bound (a
# port another server holds) refuses the reload as a whole: nothing changes,
# not even a route change in the same file.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_start_policyd "$CONF"
A_PORT=$POLICYD_PORT
e2e_free_port B_PORT
SOCK=$E2E_TMP/policy.sock

# reload - SIGHUP; wait for "reloaded" or a refusal; prints the log since
reload() {
    local mark _
    mark=$(($(stat -c %s "$POLICYD_LOG") + 1))
    kill -HUP "$POLICYD_PID"
    for _ in $(seq 1 50); do
        tail -c +"$mark" "$POLICYD_LOG" | grep -q -e 'info: reloaded' -e 'reload refused' &&
            break
        sleep 0.1
    done
    tail -c +"$mark" "$POLICYD_LOG"
}

# query_on PORT ARGS - e2e_policy_query against another port
query_on() {
    local POLICYD_PORT=$1
    shift
    e2e_policy_query "$@"
}

# query_unix PATH RCPT - one request over a unix socket; prints the action
query_unix() {
    perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!\n";
        print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=$ARGV[1]\n\n";
        alarm 30;
        my $r = ""; while (my $l = <$s>) { last if $l eq "\n"; $r .= $l }
        $r =~ s/^action=//; chomp $r; print "$r\n";' "$1" "$2"
}

# Add a second inet listener and a unix one.
POLICYD_LISTEN="inet:127.0.0.1:$A_PORT inet:127.0.0.1:$B_PORT unix:$SOCK" e2e_policyd_conf "$CONF"
out=$(reload)
case $out in *'reloaded'*) ;; *) e2e_fail "reload adding listeners: [$out]" ;; esac
e2e_assert_match '^550 ' "$(query_on "$B_PORT" recipient=bob@example.test)" "bob on the added port"
e2e_assert_match '^550 ' "$(query_unix "$SOCK" bob@example.test)" "bob on the added unix socket"
e2e_assert_match '^550 ' "$(query_on "$A_PORT" recipient=bob@example.test)" "bob on the first port"

# A connection accepted on A before A is removed: it must go on answering.
coproc HELD { perl -MIO::Socket::INET -e '
    $| = 1;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ARGV[0]) or die "connect: $!\n";
    print "connected\n";
    while (my $rcpt = <STDIN>) {
        chomp $rcpt;
        print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=$rcpt\n\n";
        my $r = ""; while (my $l = <$s>) { last if $l eq "\n"; $r .= $l }
        $r = "<closed>\n" if $r eq ""; $r =~ s/^action=//; print $r;
    }' "$A_PORT"; }
read -r -t 10 line <&"${HELD[0]}" || e2e_fail "the held connection did not connect"
echo alice@example.test >&"${HELD[1]}"
read -r -t 10 line <&"${HELD[0]}" || e2e_fail "no answer on the held connection"
e2e_assert_eq DUNNO "$line" "alice on the held connection before the reload"

# Remove A and the unix socket.
POLICYD_LISTEN="inet:127.0.0.1:$B_PORT" e2e_policyd_conf "$CONF"
out=$(reload)
case $out in *'reloaded'*) ;; *) e2e_fail "reload removing listeners: [$out]" ;; esac
case $out in *"no longer listening on inet:127.0.0.1:$A_PORT"*) ;;
*) e2e_fail "the removed listener is not logged: [$out]" ;; esac
e2e_port_open "$A_PORT" && e2e_fail "port $A_PORT still accepts after its removal"
[ -e "$SOCK" ] && e2e_fail "the removed unix socket $SOCK is still there"
e2e_log "ok: port $A_PORT and $SOCK closed for new connections"
echo bob@example.test >&"${HELD[1]}"
read -r -t 10 line <&"${HELD[0]}" || e2e_fail "no answer on the held connection after the reload"
e2e_assert_match '^550 ' "$line" "bob on the connection held across the removal of its listener"
exec {HELD[1]}>&-
e2e_assert_match '^550 ' "$(query_on "$B_PORT" recipient=bob@example.test)" "bob on the kept port"

# A port that is taken refuses the reload; the route change in the same file is not applied.
e2e_start_redis # something that holds a port
printf '%s\n' "example.test   cdb:$E2E_CDB" "other.test     reject" "*              dunno" \
    >"$E2E_TMP/routes.new"
printf '%s\n' "listen = inet:127.0.0.1:$B_PORT inet:127.0.0.1:$REDIS_PORT" \
    "route_table = $E2E_TMP/routes.new" >"$CONF"
out=$(reload)
case $out in
*"reload refused, keeping the running configuration: inet:127.0.0.1:$REDIS_PORT"*) ;;
*) e2e_fail "a listener that cannot be bound did not refuse the reload: [$out]" ;;
esac
case $out in *'reloaded'*) e2e_fail "logged reloaded for a refused reload: [$out]" ;; esac
e2e_log "ok: refused: $(printf '%s' "$out" | grep refused)"
e2e_assert_eq DUNNO "$(query_on "$B_PORT" recipient=carol@other.test)" \
    "carol@other.test (the route change of the refused file is not applied)"
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died on the refused reload"

POLICYD_PORT=$B_PORT
e2e_stop_policyd
