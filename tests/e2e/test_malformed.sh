#!/bin/bash
# test_malformed.sh - hostile input on raw policy connections: a line with no '=',
# a 64 KiB line and a NUL byte each get no reply and the connection is closed,
# while a well-formed connection opened before them still gets its answers
# (two requests on it) from the same daemon, which keeps running.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_policyd "$E2E_TMP/callahead.conf"

out=$(perl -MIO::Socket::INET -e '
    use strict; use warnings;
    $SIG{PIPE} = "IGNORE";
    my $port = shift;
    sub conn { IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
        or die "connect: $!\n" }
    # read_reply - everything up to the empty line, or "<closed>" on EOF/reset, "<timeout>" after 10s
    sub read_reply {
        my $s = shift; my $r = "";
        my $ok = eval {
            local $SIG{ALRM} = sub { die "timeout\n" }; alarm 10;
            while (1) {
                my $l = <$s>;
                if (!defined $l) { $r = "<closed>" . ($r eq "" ? "" : " after [$r]"); last }
                last if $l eq "\n";
                $r .= $l;
            }
            alarm 0; 1;
        };
        return "<timeout>" unless $ok;
        chomp $r; return $r;
    }
    my $req = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        . "client_address=127.0.0.1\nsender=s\@client.e2e.test\n";
    my $good = conn();
    print $good $req;  # half a request: the rest comes after the attacks
    $good->flush;

    my $a = conn(); print $a "this line has no equals sign\n\n"; $a->flush;
    print "no-equals: ", read_reply($a), "\n";

    my $b = conn(); print $b "recipient=" . ("a" x 65536) . "\@example.test\n\n"; $b->flush;
    print "64KiB-line: ", read_reply($b), "\n";

    my $c = conn(); print $c $req . "recipient=bob\0\@example.test\n\n"; $c->flush;
    print "nul-byte: ", read_reply($c), "\n";

    my $d = conn(); print $d "\n"; $d->flush;
    print "empty-request: ", read_reply($d), "\n";

    print $good "recipient=bob\@example.test\n\n"; $good->flush;
    print "good-1: ", read_reply($good), "\n";
    print $good $req . "recipient=alice\@example.test\n\n"; $good->flush;
    print "good-2: ", read_reply($good), "\n";
' "$POLICYD_PORT" 2>&1)
printf '%s\n' "$out" >"$E2E_TMP/malformed.out"
e2e_assert_eq '<closed>' "$(sed -n 's/^no-equals: //p' <<<"$out")" "a line without '='"
e2e_assert_eq '<closed>' "$(sed -n 's/^64KiB-line: //p' <<<"$out")" "a 64 KiB line"
e2e_assert_eq '<closed>' "$(sed -n 's/^nul-byte: //p' <<<"$out")" "a NUL byte in a value"
e2e_assert_eq '<closed>' "$(sed -n 's/^empty-request: //p' <<<"$out")" "an empty line before any attribute"
e2e_assert_match '^action=550 5\.1\.1 (.* )?User unknown$' "$(sed -n 's/^good-1: //p' <<<"$out")" \
    "the earlier well-formed connection, first request (bob)"
e2e_assert_eq 'action=DUNNO' "$(sed -n 's/^good-2: //p' <<<"$out")" \
    "the same connection, second request (alice)"

e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "a new connection afterwards"
e2e_stop_policyd
