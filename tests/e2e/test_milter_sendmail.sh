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

# Sendmail writes "<address>... " before a milter's text; what follows is the
# code, status and text a Postfix client of the policy path sees after "<address>: "
# (before a 4xx Sendmail writes nothing, so there the milter names the address as Postfix does)
pf=$(e2e_unknown_reply bob@example.test)
e2e_assert_eq "550 5.1.1 <bob@example.test>... ${pf#*>: }" "$(e2e_sm_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> through Sendmail"
e2e_assert_eq "250 2.1.5 <alice@example.test>... Recipient ok" \
    "$(e2e_sm_rcpt alice@example.test)" "RCPT TO:<alice@example.test> through Sendmail"
e2e_assert_eq "250 2.1.5 <anyone@other.test>... Recipient ok" \
    "$(e2e_sm_rcpt anyone@other.test)" "RCPT TO:<anyone@other.test> (route * dunno)"
# A hostile recipient: '%' must reach the client as it was written, once
e2e_assert_eq "550 5.1.1 <100%x@example.test>... ${pf#*>: }" \
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

# One good and one bad recipient: the message goes to the good one only
marker="mixed-$$-$RANDOM"
out=$(swaks --server "127.0.0.1:$SM_PORT" --helo client.e2e.test --from sender@client.e2e.test \
    --to alice@example.test,bob@example.test --timeout 60 --body "marker $marker" 2>&1)
printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
printf '%s\n' "$out" | grep -q '^<\*\* *550 5\.1\.1 <bob@example\.test>' ||
    e2e_fail "bob was not rejected in the mixed message"
printf '%s\n' "$out" | grep -Eq '^<- +250 2\.0\.0 .* Message accepted' ||
    e2e_fail "the mixed message was not accepted for alice"
f=$(e2e_wait_delivery "$marker" 60) || e2e_fail "the mixed message never reached the next hop"
rcpts=$(sed -n 's/^X-Rcpt-Args: //p' "$f" | tr '\n' ' ')
e2e_assert_eq "<alice@example.test> " "$rcpts" "envelope recipients at the next hop"

# policyd stopped: every RCPT waits at most milter_timeout (3 s), then 4xx;
# two sessions at once, so Sendmail (and the milter) serve in parallel
kill -STOP "$POLICYD_PID"
start=$(date +%s%N)
e2e_sm_rcpt bob@example.test >"$E2E_TMP/stopped2.txt" &
p2=$!
r=$(e2e_sm_rcpt bob@example.test)
wait "$p2"
ms=$((($(date +%s%N) - start) / 1000000))
e2e_assert_eq "451 4.3.0 <bob@example.test>: Recipient address rejected: Recipient address verification is unavailable" \
    "$r" "RCPT TO:<bob@example.test> with policyd stopped"
e2e_assert_eq "$r" "$(cat "$E2E_TMP/stopped2.txt")" "the parallel session with policyd stopped"
[ "$ms" -ge 2500 ] && [ "$ms" -lt 8000 ] || e2e_fail "two sessions took ${ms} ms with milter_timeout = 3s"
e2e_log "ok: two parallel sessions answered 451 in ${ms} ms"
# Sendmail still serves new sessions at once (MAIL needs no policy answer)
start=$(date +%s%N)
out=$(swaks --server "127.0.0.1:$SM_PORT" --helo client.e2e.test --from sender@client.e2e.test \
    --to x@example.test --quit-after MAIL --timeout 30 2>&1)
ms=$((($(date +%s%N) - start) / 1000000))
printf '%s\n' "$out" | grep -q '^<- *250 2\.1\.0 <sender@client\.e2e\.test>\.\.\. Sender ok' ||
    e2e_fail "Sendmail did not answer MAIL while policyd is stopped"
[ "$ms" -lt 2000 ] || e2e_fail "a session up to MAIL took ${ms} ms while policyd is stopped"
e2e_log "ok: a new session reached MAIL in ${ms} ms while policyd is stopped"
kill -CONT "$POLICYD_PID"
e2e_assert_eq "550 5.1.1 <bob@example.test>... ${pf#*>: }" "$(e2e_sm_rcpt bob@example.test)" \
    "RCPT TO:<bob@example.test> once policyd runs again"

# policyd killed: milter_default_action = tempfail, answered at once
kill -KILL "$POLICYD_PID"
wait "$POLICYD_PID" 2>/dev/null
e2e_untrack "$POLICYD_PID"
start=$(date +%s%N)
e2e_assert_eq "451 4.3.0 <bob@example.test>: Recipient address rejected: Recipient address verification is unavailable" \
    "$(e2e_sm_rcpt bob@example.test)" "RCPT TO:<bob@example.test> with policyd killed"
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 2500 ] || e2e_fail "the tempfail with policyd killed took ${ms} ms"

e2e_stop_milter "$MILTER_PID" callahead-milter
