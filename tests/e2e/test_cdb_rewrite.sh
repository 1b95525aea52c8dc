#!/bin/bash
# test_cdb_rewrite.sh - a CDB table rewritten in place under load (issue 6,
# defect 1). "cp big.cdb sig.cdb; cp small.cdb sig.cdb" in a loop, as a
# postmaster's script or configuration management would, while policy
# requests for random addresses run. The daemon must stay up (a mapped table
# died of SIGBUS here), never defer once a good version was read, and
# user0@sig.test, valid in both versions, must never be refused.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need cdb
E2E_ROUTES=$E2E_TMP/routes
SIG=$E2E_TMP/sig.cdb
seq 0 199999 | awk '{ print "user" $1 "@sig.test OK big" }' | cdb -cm "$E2E_TMP/big.cdb" ||
    e2e_fail "cannot build big.cdb"
e2e_make_cdb "$E2E_TMP/small.cdb" 'user0@sig.test OK small'
cp "$E2E_TMP/big.cdb" "$SIG"
printf '%s\n' "sig.test   cdb:$SIG" "*          dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=user5@sig.test)" "user5 before the rewrites"

# the writer: in place, as cp does (open with O_TRUNC, write), until told to stop
# (300 rounds at most); every round ends with small.cdb in place
(
    for _ in $(seq 300); do
        [ -e "$E2E_TMP/stop" ] && break
        cp "$E2E_TMP/big.cdb" "$SIG"
        cp "$E2E_TMP/small.cdb" "$SIG"
    done
) &
WRITER=$!
e2e_track "$WRITER" "cp loop"

# the reader: one connection, requests one after the other for 6 seconds, and
# on a slow machine (valgrind, load) on until 100 were answered DUNNO (60 s at most)
counts=$(perl -MIO::Socket::INET -e '
    my $port = shift;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
        or die "connect: $!\n";
    my %n = (dunno => 0, reject => 0, defer => 0, other => 0, user0_refused => 0, closed => 0);
    my ($end, $cap) = (time + 6, time + 60);
    srand(42);
    while (time < $end || ($n{dunno} < 100 && time < $cap)) {
        for my $rcpt ("user" . int(rand(200000)) . "\@sig.test", "user0\@sig.test") {
            print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=$rcpt\n\n";
            my $reply = "";
            while (my $l = <$s>) { last if $l eq "\n"; $reply .= $l }
            if ($reply eq "") { $n{closed}++; last }
            $reply =~ s/^action=//; chomp $reply;
            if ($reply eq "DUNNO") { $n{dunno}++ }
            elsif ($reply =~ /^5/) { $n{reject}++; $n{user0_refused}++ if $rcpt =~ /^user0@/ }
            elsif ($reply =~ /^DEFER/) { $n{defer}++; $n{user0_refused}++ if $rcpt =~ /^user0@/ }
            else { $n{other}++ }
        }
        last if $n{closed};
    }
    print join(" ", map { "$_=$n{$_}" } sort keys %n), "\n";
' "$POLICYD_PORT")
e2e_log "answers during the rewrites: $counts"
touch "$E2E_TMP/stop"
wait "$WRITER"
e2e_untrack "$WRITER"

e2e_alive "$POLICYD_PID" || e2e_fail "callahead-policyd died while the table was rewritten ($counts)"
case " $counts " in
*" closed=0 "*) ;;
*) e2e_fail "the daemon closed the connection during the rewrites: $counts" ;;
esac
e2e_assert_match ' defer=0 ' " $counts " "no tempfail once a good version was read"
e2e_assert_match ' user0_refused=0 ' " $counts " "user0@sig.test, valid in every version"
e2e_assert_match ' dunno=[1-9][0-9]{2,} ' " $counts " "enough lookups were answered"
# the table settles on its last version (small: only user0) after check_interval
# (1 s): asked until it has, with seconds of slack for a loaded machine or valgrind
# (a local table is always asked, so an early answer is not cached)
settle=$((SECONDS + 20))
r=$(e2e_policy_query recipient=user5@sig.test)
while [[ ! $r =~ ^550\ 5\.1\.1\  ]] && [ "$SECONDS" -lt "$settle" ]; do
    sleep 0.2
    r=$(e2e_policy_query recipient=user5@sig.test)
done
e2e_assert_match '^550 5\.1\.1 ' "$r" "user5 once small.cdb is in place"
e2e_stop_policyd
