#!/bin/bash
# test_callout_fairness.sh - one tarpitting next hop must not starve the others:
#   - 200 lookups of distinct addresses at a next hop that holds every RCPT for 20 s,
#     with max_probes = 20 (so at most 4 probes for one destination);
#   - a new address at a healthy next hop is then answered at once (DUNNO), not after the
#     answer budget (DEFER);
#   - the tarpitted lookups get tempfail within their budget, and the daemon never holds
#     more than its per-destination share of sessions at the tarpit;
#   - the metrics show the queue: 4 probing and 196 waiting, then, once every client has
#     had its answer, the 196 queued probes dropped (nobody waits for them) and 4 running.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_testserver TARPIT "# a next hop that takes 20 s for every RCPT
delay rcpt 20000
rcpt * 250 2.1.5 Ok"
e2e_start_testserver HEALTHY "rcpt * 250 2.1.5 Ok"
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "slow.test   smtp:[127.0.0.1]:$TARPIT_PORT" \
    "fast.test   smtp:[127.0.0.1]:$HEALTHY_PORT" "*           dunno" >"$E2E_ROUTES"
e2e_need curl curl
e2e_free_port STATS_PORT
e2e_policyd_conf "$E2E_TMP/callahead.conf" "answer_budget = 3000ms" "max_probes = 20" \
    "stats_listen = inet:127.0.0.1:$STATS_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_wait_port "$STATS_PORT" "$POLICYD_PID" "stats_listen"

# metric NAME - its value in a fresh scrape of /metrics
metric() {
    curl -sS "http://127.0.0.1:$STATS_PORT/metrics" | awk -v s="$1" '$1 == s { print $2 }'
}

# 200 connections, one distinct slow.test recipient each, all sent before any reply is read
perl -MIO::Socket::INET -MIO::Select -e '
    my ($port, $n, $out) = @ARGV;
    my @socks;
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 10)
            or die "connect $i: $!\n";
        print $s "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n",
            "client_address=127.0.0.1\nsender=s\@client.e2e.test\n",
            "recipient=user$i\@slow.test\n\n";
        $s->flush;
        push @socks, $s;
    }
    my $sel = IO::Select->new(@socks);
    my %buf;
    my $deadline = time + 30;
    open my $fh, ">", $out or die "$out: $!\n";
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $r = sysread($s, my $chunk, 4096);
            $buf{$s} .= $chunk if $r;
            if (!$r || $buf{$s} =~ /\n\n/) {
                $sel->remove($s);
                my $a = $buf{$s} // "<closed>";
                $a =~ s/^action=//; $a =~ s/\n.*//s;
                print $fh "$a\n";
            }
        }
    }
    print $fh "<no reply>\n" for $sel->handles;
' "$POLICYD_PORT" 200 "$E2E_TMP/slow.out" &
slow=$!
sleep 0.5

t0=$(e2e_now_ms)
r=$(e2e_policy_query recipient=new@fast.test)
ms=$(($(e2e_now_ms) - t0))
e2e_assert_eq DUNNO "$r" "new@fast.test while slow.test is tarpitted"
e2e_assert_lt 1000 "$ms" "ms until new@fast.test was answered"
e2e_assert_eq 1 "$(e2e_ts_stat "$HEALTHY_STATS" rcpt)" "RCPTs at the healthy next hop"
sessions=$(e2e_ts_stat "$TARPIT_STATS" connections)
e2e_assert_lt 5 "$sessions" "sessions opened at the tarpit (max_probes 20: 4 per destination)"
e2e_assert_eq "4 196" "$(metric callahead_probes_running) $(metric callahead_probes_queued)" \
    "probes running and queued while the tarpit holds its share"

wait "$slow" || e2e_fail "the slow.test lookups failed"
e2e_assert_eq "200" "$(grep -c '^DEFER_IF_PERMIT 4\.' "$E2E_TMP/slow.out")" \
    "tempfail answers for the 200 tarpitted lookups"
e2e_assert_eq "4 0 196" "$(metric callahead_probes_running) $(metric callahead_probes_queued) \
$(metric callahead_probes_dropped_total)" "running, queued and dropped once every client left"
e2e_stop_policyd
