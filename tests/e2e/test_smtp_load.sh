#!/bin/bash
# test_smtp_load.sh - the benchmark's SMTP load generator (tests/bench/smtp_load) counts
# what the server answered and refuses to yield figures from a broken run: every
# message accepted by an accept-all smtp-sink, every RCPT refused by one that rejects
# RCPT, exit 1 on a reply that is not SMTP, and exit 1 when nothing answers at all.
# The goodput figures of docs/BENCHMARKS.md rest on these counts.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LOAD=$E2E_BUILD/tests/bench/smtp_load
[ -x "$LOAD" ] || e2e_fail "$LOAD is not built"
e2e_need smtp-sink perl

# val FILE KEY - a "key: value" line of smtp_load's output
val() { sed -n "s/^$2: //p" "$1"; }

# 1. accept-all next hop: every message that ended was accepted, valid or invalid
e2e_start_sink
out=$E2E_TMP/accept.out
"$LOAD" -p "$SINK_PORT" -c 10 -t 1 -i 50 -M 3 >"$out" 2>"$E2E_TMP/accept.err" ||
    e2e_fail "smtp_load against smtp-sink exited $?: $(cat "$E2E_TMP/accept.err")"
m=$(val "$out" messages)
[ "$m" -gt 100 ] || e2e_fail "only $m messages in a second against smtp-sink"
e2e_assert_eq "$m" $(($(val "$out" accepted_valid) + $(val "$out" accepted_invalid))) \
    "every message accepted by smtp-sink"
valid=$(val "$out" accepted_valid)
if [ "$valid" -le $((m / 4)) ] || [ "$valid" -ge $((m * 3 / 4)) ]; then
    e2e_fail "50% invalid asked, $valid of $m valid"
fi
e2e_assert_eq "0" "$(val "$out" errors)" "errors against smtp-sink"
e2e_assert_match "^latency_ms rcpt: n [1-9][0-9]* p50 " "$(grep '^latency_ms rcpt:' "$out")" \
    "RCPT latencies recorded"

# 2. a next hop that rejects every RCPT: all refused at RCPT, none accepted, no DATA
e2e_free_port REJ_PORT
smtp-sink -u nobody -f RCPT "127.0.0.1:$REJ_PORT" 64 >"$E2E_TMP/rej.log" 2>&1 &
e2e_track $! smtp-sink-reject
e2e_wait_port "$REJ_PORT" "" "smtp-sink -f RCPT"
out=$E2E_TMP/reject.out
"$LOAD" -p "$REJ_PORT" -c 10 -t 1 -i 25 -M 3 >"$out" 2>"$E2E_TMP/reject.err" ||
    e2e_fail "smtp_load against smtp-sink -f RCPT exited $?: $(cat "$E2E_TMP/reject.err")"
m=$(val "$out" messages)
[ "$m" -gt 0 ] || e2e_fail "no message against smtp-sink -f RCPT"
e2e_assert_eq "$m" $(($(val "$out" rcpt_rejected_valid) + $(val "$out" rcpt_rejected_invalid))) \
    "every RCPT refused"
e2e_assert_eq "0 0" "$(val "$out" accepted_valid) $(val "$out" accepted_invalid)" \
    "nothing accepted"
e2e_assert_match "^latency_ms data: n 0 " "$(grep '^latency_ms data:' "$out")" "no DATA sent"

# 3. a server whose reply to EHLO is not SMTP: exit 1, and the reason on stderr
e2e_free_port BAD_PORT
perl -MIO::Socket::INET -e '
    $SIG{PIPE} = "IGNORE"; # the port probe closes before the reply
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
        Listen => 64, ReuseAddr => 1) or die "listen: $!";
    while (my $c = $l->accept) {
        $c->autoflush(1);
        print $c "220 bad.test ESMTP\r\n";
        my $cmd = <$c>;
        print $c "hello there\r\n";
        close $c;
    }' "$BAD_PORT" >"$E2E_TMP/bad.log" 2>&1 &
e2e_track $! bad-server
e2e_wait_port "$BAD_PORT" "" "bad server"
rc=0
"$LOAD" -p "$BAD_PORT" -c 2 -t 0.5 >"$E2E_TMP/bad.out" 2>"$E2E_TMP/bad.err" || rc=$?
e2e_assert_eq 1 "$rc" "exit status after a reply that is not SMTP"
e2e_assert_match "not an SMTP reply: hello there" "$(head -1 "$E2E_TMP/bad.err")" \
    "the reason on stderr"

# 4. nothing listening: refusals are counted, and no figures (exit 1)
e2e_free_port NONE_PORT
rc=0
"$LOAD" -p "$NONE_PORT" -c 2 -t 0.5 >"$E2E_TMP/none.out" 2>"$E2E_TMP/none.err" || rc=$?
e2e_assert_eq 1 "$rc" "exit status when nothing answers"
[ "$(val "$E2E_TMP/none.out" refused)" -gt 0 ] || e2e_fail "no refusal counted"
e2e_log "ok: $(val "$E2E_TMP/none.out" refused) refusals counted"
