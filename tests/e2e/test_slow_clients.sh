#!/bin/bash
# test_slow_clients.sh - Slowloris: with max_connections = 20, forty clients that each
# trickle one byte of a request every half second hold far more than every slot. A
# legitimate client must still be answered at once (the least recently active slow
# connection makes room), each slow client must be cut off within request_timeout of
# its first byte, and the evictions must be logged once per interval, not per client.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_policyd_conf "$E2E_TMP/callahead.conf" "max_connections = 20" "request_timeout = 2s"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# slow clients for 6 s, and on a slow machine (valgrind, load) on until the daemon
# has closed all of them (60 s at most); prints how many were closed by the daemon
# and how long the longest-lived one lasted after its first byte
perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
    $SIG{PIPE} = "IGNORE";
    my ($port, $n) = @ARGV;
    my $req = "request=smtpd_access_policy\n";
    my (@s, @t0);
    for my $i (0 .. $n - 1) {
        $s[$i] = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 5)
            or die "connect: $!\n";
        $s[$i]->blocking(0);
    }
    my ($closed, $longest, $end, $cap) = (0, 0, time + 6, time + 60);
    my @off = (0) x $n;
    while (time < $end || ($closed < $n && time < $cap)) {
        for my $i (0 .. $n - 1) {
            next unless $s[$i];
            my $buf;
            my $r = sysread($s[$i], $buf, 1);
            my $w = defined $r && $r == 0 ? undef : syswrite($s[$i], substr($req, $off[$i]++ % length($req), 1));
            $t0[$i] //= time;
            if ((defined $r && $r == 0) || !defined $w) {
                my $lived = time - $t0[$i];
                $longest = $lived if $lived > $longest;
                $closed++; undef $s[$i];
            }
        }
        sleep 0.5;
    }
    printf "closed=%d longest=%.1f\n", $closed, $longest;' "$POLICYD_PORT" 40 >"$E2E_TMP/slow.out" 2>&1 &
SLOW=$!
e2e_track "$SLOW" "slow clients"
sleep 1.5
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=bob@example.test)" \
    "a legitimate client is answered while slow clients fill the table"
sleep 1
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "and another one"
wait "$SLOW"
e2e_untrack "$SLOW"
out=$(cat "$E2E_TMP/slow.out")
e2e_log "slow clients: $out"
e2e_assert_match '^closed=40 ' "$out" "every slow client was cut off"
longest=$(sed -n 's/.*longest=\([0-9]*\).*/\1/p' <<<"$out")
# request_timeout = 2s from the first byte (+ half a second of client polling), with
# 3 s of slack for a slow daemon; the clients trickle for at least 6 s, so a client
# the timeout missed would live longer than that
[ "$longest" -le 5 ] || e2e_fail "a slow client lived ${longest}s after its first byte"
lines=$(grep -c 'connection limit 20 reached' "$POLICYD_LOG" || true)
if [ "$lines" -lt 1 ] || [ "$lines" -gt 2 ]; then
    e2e_fail "$lines eviction lines logged (want 1 or 2)"
fi
e2e_log "ok: $lines eviction line(s) logged"
e2e_stop_policyd
