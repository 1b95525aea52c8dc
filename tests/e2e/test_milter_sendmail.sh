#!/bin/bash
# test_milter_sendmail.sh - a real Sendmail 8.17 (unpacked from the Debian
# packages beside Postfix) with callahead-milter as INPUT_MAIL_FILTER, asking a
# real callahead-policyd: an unknown recipient is rejected at RCPT with the
# policy path's code, status and text; a known one is accepted; a message with
# one good and one bad recipient is delivered to the good one only; policyd
# stopped (SIGSTOP) costs a 4xx within milter_timeout while Sendmail keeps
# serving; policyd killed gives milter_default_action (tempfail).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_free_port MPORT
e2e_milter_conf "$CONF" "$MPORT" "milter_timeout = 3s"
e2e_start_sink
e2e_start_policyd "$CONF"
e2e_start_milter "$CONF" "$MPORT"
e2e_start_sendmail "$MPORT"

e2e_milter_check_verdicts sendmail
# A hostile recipient: '%' must reach the client as it was written, once
e2e_assert_eq "$(e2e_milter_expect sendmail reject '100%x@example.test')" \
    "$(e2e_sm_rcpt '100%x@example.test')" "RCPT TO:<100%x@example.test>"

# Per-RCPT latency over the TCP milter socket: 50 RCPTs in one session. Sendmail
# writes a macro packet and the command separately (Nagle), so a milter that asks
# for macros at RCPT waits for a delayed ACK each time: about 40 ms per RCPT.
ms=$(perl -MIO::Socket::INET -MTime::HiRes=time -e '
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ARGV[0]) or die;
    $s->autoflush(1);
    sub reply { while (defined(my $l = <$s>)) { return $l if $l =~ /^\d{3} / } die "eof\n" }
    reply(); print $s "EHLO client.e2e.test\r\n"; reply();
    print $s "MAIL FROM:<sender\@client.e2e.test>\r\n"; reply();
    my $t = time;
    for (1 .. 50) { print $s "RCPT TO:<alice\@example.test>\r\n"; reply() =~ /^250 / or die "rcpt\n" }
    printf "%d\n", (time - $t) * 1000;
    print $s "QUIT\r\n";' "$SM_PORT") || e2e_fail "the 50-RCPT session failed"
[ "$ms" -lt 1000 ] || e2e_fail "50 RCPTs through Sendmail and the milter took ${ms} ms"
e2e_log "ok: 50 RCPTs in one session took ${ms} ms"

e2e_milter_check_mixed sendmail "$SM_PORT"
e2e_milter_check_stopped sendmail
# Sendmail still serves new sessions at once (MAIL needs no policy answer)
start=$(date +%s%N)
out=$(swaks --server "127.0.0.1:$SM_PORT" --helo client.e2e.test --from sender@client.e2e.test \
    --to x@example.test --quit-after MAIL --timeout 30 2>&1)
ms=$((($(date +%s%N) - start) / 1000000))
printf '%s\n' "$out" | grep -q '^<- *250 2\.1\.0 <sender@client\.e2e\.test>\.\.\. Sender ok' ||
    e2e_fail "Sendmail did not answer MAIL while policyd is stopped"
[ "$ms" -lt 2000 ] || e2e_fail "a session up to MAIL took ${ms} ms while policyd is stopped"
e2e_log "ok: a new session reached MAIL in ${ms} ms while policyd is stopped"
e2e_milter_check_resumed sendmail
e2e_milter_check_killed sendmail

e2e_stop_milter "$MILTER_PID" callahead-milter
