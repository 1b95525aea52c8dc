#!/bin/bash
# tests/bench/idle_rss.sh - how much memory callahead-policyd needs per idle connection,
# and whether every one of them is still answered: N connections opened and left idle
# (as N smtpd processes between RCPTs would), the daemon's resident set read from
# /proc/PID/status, then one request sent on every connection and the answers counted.
#
# Why a script of its own: memory per connection does not depend on CPU speed or on what
# else runs on the machine, so unlike the throughput figures it can be taken anywhere;
# and 100,000 connections need more than one loopback source address (each has about
# 28,000 ephemeral ports), which the throughput clients do not do.
#
# Servers: a private redis-server and callahead-policyd on 127.0.0.1 (tests/e2e/lib.sh),
# a CDB route (alice@example.test valid), stopped by pid on exit. The client is perl:
# it only opens, holds, and then uses each connection once.
#
# Environment (optional): IDLE="10000 100000" connection counts; BUILD=DIR a build dir
# holding callahead-policyd (default ./_build).
# Prints one row per count: RSS before, with the connections idle, the difference per
# connection, and how many of them got an answer afterwards.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
IDLE=${IDLE:-10000 100000}
export E2E_BUILD=${BUILD:-$SRCDIR/_build}

maxn=0
for n in $IDLE; do [ "$n" -gt "$maxn" ] && maxn=$n; done
# the daemon and the client each hold up to maxn descriptors: raise the limit as far as
# this machine lets us (the hard limit needs CAP_SYS_RESOURCE); counts that do not fit
# are reported as skipped, not measured
want=$((maxn + 10000))
ulimit -Hn "$want" 2>/dev/null || true
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$want
[ "$hard" -ge "$want" ] || want=$hard
ulimit -n "$want"
fits=$((want - 1000))
[ "$fits" -lt "$maxn" ] || fits=$maxn

# shellcheck source=tests/e2e/lib.sh
. "$SRCDIR/tests/e2e/lib.sh"
e2e_need perl cdb
e2e_start_redis
e2e_example_tables
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF" "max_connections = $((fits + 100))"
e2e_start_policyd "$CONF"

# rss_kib PID - resident set size in KiB
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

printf '%-8s %12s %12s %14s %12s %10s\n' idle rss_before_kib rss_idle_kib bytes_per_conn answered \
    seconds
for n in $IDLE; do
    if [ "$n" -gt "$fits" ]; then
        printf '%-8d skipped: the descriptor limit here is %s (ulimit -Hn), raising it needs CAP_SYS_RESOURCE\n' \
            "$n" "$hard"
        continue
    fi
    before=$(rss_kib "$POLICYD_PID")
    t0=$(date +%s)
    # the holder: opens N connections (25,000 per loopback source address), says
    # "open N", waits for a line on stdin, sends one request on each, counts the answers
    coproc HOLDER {
        perl -MIO::Socket::INET -e '
            $| = 1;
            my ($port, $n) = @ARGV;
            my @s;
            for my $i (0 .. $n - 1) {
                my $src = "127.0.0." . (1 + int($i / 25000));
                my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port,
                    LocalAddr => $src, Timeout => 30) or die "connect $i from $src: $!\n";
                push @s, $c;
            }
            print "open ", scalar(@s), "\n";
            my $go = <STDIN>;
            my $req = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                . "client_address=127.0.0.1\nsender=sender\@client.bench.test\n"
                . "recipient=alice\@example.test\n\n";
            for my $c (@s) { $c->autoflush(1); print $c $req }
            my $ok = 0;
            local $SIG{ALRM} = sub { print "answered $ok\n"; exit 1 };
            alarm 120;
            for my $c (@s) {
                my $r = "";
                while (my $l = <$c>) { last if $l eq "\n"; $r .= $l }
                $ok++ if $r =~ /^action=/;
            }
            print "answered $ok\n";
        ' "$POLICYD_PORT" "$n" 2>&1
    }
    read -r -t 600 word opened <&"${HOLDER[0]}" || e2e_fail "the holder did not open $n connections"
    [ "$word" = open ] || e2e_fail "holder: $word $opened"
    sleep 2 # the daemon has accepted them all
    idle=$(rss_kib "$POLICYD_PID")
    echo go >&"${HOLDER[1]}"
    read -r -t 300 _ answered <&"${HOLDER[0]}" || answered=0
    wait "$HOLDER_PID" 2>/dev/null || true
    awk -v n="$n" -v b="$before" -v i="$idle" -v a="$answered" -v s=$(($(date +%s) - t0)) \
        'BEGIN { printf "%-8d %12d %12d %14.0f %12s %10d\n", n, b, i, (i - b) * 1024 / n,
            a "/" n, s }'
    sleep 2 # the daemon frees the closed connections
done
printf 'policyd VmHWM (peak) %s kB; %s\n' "$(awk '/^VmHWM:/ { print $2 }' "/proc/$POLICYD_PID/status")" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')"
