#!/bin/bash
# test_pipelined.sh - a client that writes 5,000 requests in one go (Postfix
# never does; a hostile or broken client may) and reads nothing for two
# seconds: the daemon answers one request at a time, pauses reading while a
# line's worth waits unparsed, and when the client reads, every request has
# exactly one reply, in order. A second client is answered meanwhile.
# (The kernel's loopback buffers, up to 4 MB, absorb these replies, so the
# write-when-full path is not forced here.)
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_policyd "$E2E_TMP/callahead.conf"

out=$(perl -MIO::Socket::INET -e '
    use strict; use warnings;
    my $port = shift;
    my $n = 5000;
    use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
    # a small receive buffer, so that the replies we do not read fill the connection
    my $s = IO::Socket::INET->new(Proto => "tcp") or die "socket: $!\n";
    $s->setsockopt(SOL_SOCKET, SO_RCVBUF, 4096) or die "SO_RCVBUF: $!\n";
    $s->connect(pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "connect: $!\n";
    my $all = "";
    for my $i (1 .. $n) {
        my $rcpt = $i % 2 ? "alice\@example.test" : "bob$i\@example.test";
        $all .= "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=$rcpt\n\n";
    }
    # a writer child: the parent must not block writing while the daemon waits for us to read
    my $pid = fork();
    if ($pid == 0) { print $s $all; $s->flush; exit 0 }
    sleep 2;
    # meanwhile another client is served normally
    my $o = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
        or die "connect: $!\n";
    print $o "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=bob\@example.test\n\n";
    my $other = <$o>; chomp $other;
    print "other: $other\n";
    local $SIG{ALRM} = sub { print "timeout\n"; exit 1 }; alarm 30;
    my ($dunno, $reject, $bad, $got) = (0, 0, 0, 0);
    while ($got < $n) {
        my $l = <$s>;
        last unless defined $l;
        my $e = <$s>;
        last unless defined $e;
        $got++;
        my $want = $got % 2 ? "DUNNO" : "550";
        if ($l =~ /^action=DUNNO$/) { $dunno++; $bad++ if $want ne "DUNNO" }
        elsif ($l =~ /^action=550 /) { $reject++; $bad++ if $want ne "550" }
        else { $bad++ }
        $bad++ if $e ne "\n";
    }
    waitpid($pid, 0);
    print "replies: $got dunno: $dunno reject: $reject out_of_order: $bad\n";
' "$POLICYD_PORT") || e2e_fail "pipelining client failed: $out"

e2e_assert_match '^other: action=550 ' "$(echo "$out" | sed -n 's/^\(other: .*\)/\1/p')" \
    "second client answered while the first one was not reading"
e2e_assert_eq 'replies: 5000 dunno: 2500 reject: 2500 out_of_order: 0' \
    "$(echo "$out" | grep '^replies:')" "5,000 pipelined requests, 5,000 replies in order"
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died"
e2e_stop_policyd
