#!/bin/bash
# tests/bench/milter_run.sh - what the milter path costs: RCPT latency for the
# same verdicts through Sendmail + callahead-milter and through Postfix +
# check_policy_service, the milter's own overhead over a direct policy query,
# and whole SMTP sessions/s through Sendmail + milter at 1, 50 and 200
# concurrent sessions. docs/BENCHMARKS.md records the results.
#
# Servers as in the end-to-end tests (tests/e2e/lib.sh, lib_milter.sh): a
# private policyd with a CDB route (alice@example.test valid; bob and every
# userNxM address follow the table), callahead-milter, Sendmail 8.17 unpacked
# from the Debian packages, a private Postfix with check_policy_service, an
# smtp-sink. Not part of "make check": it takes a minute and its figures
# depend on the machine.
#
# Environment: E2E_BUILD (default ./_build, with tests/bench/milter_bench
# built), N (RCPTs per latency run, default 5000), SESSIONS_TOTAL (per
# sessions/s run, default 600), CONCURRENCY ("1 50 200").
set -u
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/lib_milter.sh"
E2E_NAME=milter-bench
N=${N:-5000}
SESSIONS_TOTAL=${SESSIONS_TOTAL:-600}
CONCURRENCY=${CONCURRENCY:-"1 50 200"}
BENCH=$E2E_BUILD/tests/bench/milter_bench
[ -x "$BENCH" ] || e2e_fail "$BENCH not built (make tests/bench/milter_bench)"

E2E_CDB=$E2E_TMP/users.cdb
E2E_ROUTES=$E2E_TMP/routes
lines=("alice@example.test OK")
for ((i = 1; i <= 200; i++)); do
    for ((j = 1; j <= 3; j++)); do (((i + j) % 2 == 0)) && lines+=("user${i}x$j@example.test OK"); done
done
e2e_make_cdb "$E2E_CDB" "${lines[@]}"
printf '%s\n' "example.test   cdb:$E2E_CDB" "*  dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
# two milters on one policyd: TCP (for milter_bench) and a unix socket; MILTER_SOCKET=inet
# gives Sendmail the TCP one instead (see docs/BENCHMARKS.md for why it matters)
e2e_free_port MPORT
cp "$CONF" "$E2E_TMP/unix.conf"
e2e_milter_conf "$CONF" "$MPORT" "milter_max_inflight = 1000"
e2e_milter_conf "$E2E_TMP/unix.conf" 0 "milter_max_inflight = 1000"
# Sendmail refuses a milter socket below a world-writable directory (/tmp)
SOCKDIR=$(mktemp -d /run/callahead-milter-bench.XXXXXX) || e2e_fail "mktemp in /run failed"
trap 'rm -rf "$SOCKDIR"; e2e_cleanup' EXIT
sed -i "s|^milter_listen = .*|milter_listen = unix:$SOCKDIR/milter.sock|" "$E2E_TMP/unix.conf"
e2e_start_sink
e2e_start_policyd "$CONF"
MILTER_DEBUG=0 e2e_start_milter "$CONF" "$MPORT"
MILTER_DEBUG=0 e2e_start_milter "$E2E_TMP/unix.conf" "$SOCKDIR/milter.sock" milter_unix
if [ "${MILTER_SOCKET:-unix}" = inet ]; then SM_MILTER=$MPORT; else SM_MILTER=local:$SOCKDIR/milter.sock; fi
SM_EXTRA_MC="define(\`confREFUSE_LA', \`1000')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confDELAY_LA', \`1000')dnl
define(\`confBAD_RCPT_THROTTLE', \`0')dnl" SM_LISTEN_QUEUE=512 e2e_start_sendmail "$SM_MILTER"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"

echo "== machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== milter protocol vs policy protocol, one connection, $N RCPTs each (p50/p90/p99 in us)"
for a in alice@example.test bob@example.test; do
    d=$("$BENCH" -q "$POLICYD_PORT" -n "$N" -a "$a") || e2e_fail "direct query failed"
    m=$("$BENCH" -p "$MPORT" -n "$N" -a "$a") || e2e_fail "milter query failed"
    echo "direct policyd $a: $d"
    echo "via the milter $a: $m"
    dp=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$d")
    mp=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$m")
    echo "milter overhead at p50 for $a: $(awk -v a="$mp" -v b="$dp" 'BEGIN { printf "%.1f us", a - b }')"
done

# rcpt_latency PORT N ADDR - p50/p90/p99 of N RCPT round trips (sessions of 10 RCPTs; only
# the RCPTs are timed)
rcpt_latency() {
    perl -MIO::Socket::INET -MTime::HiRes=time -e '
        my ($port, $n, $addr) = @ARGV;
        our $s;
        sub reply { my $l; while (defined($l = <$s>)) { return $l if $l =~ /^\d{3} / } die "eof\n" }
        my (@lat, $first);
        for my $i (0 .. $n - 1) {
            if ($i % 10 == 0) {
                # a new session every 10 RCPTs: Postfix hangs up after 20 rejected ones
                if ($i) { print $s "QUIT\r\n"; reply() }
                $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port) or die "connect: $!";
                $s->autoflush(1);
                reply(); print $s "EHLO bench.test\r\n"; reply();
                print $s "MAIL FROM:<s\@bench.test>\r\n"; reply();
            }
            my $t = time; print $s "RCPT TO:<$addr>\r\n"; my $r = reply(); push @lat, (time - $t) * 1e6;
            $first //= $r;
        }
        print $s "QUIT\r\n";
        @lat = sort { $a <=> $b } @lat;
        $first =~ s/\r?\n//;
        printf "n=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f first=[%s]\n", $n, @lat[int($n/2), int($n*0.9), int($n*0.99)], $first;
    ' "$1" "$2" "$3"
}
echo "== RCPT latency over SMTP, $((N / 5)) RCPTs (cdb verdicts); Sendmail's milter socket: ${MILTER_SOCKET:-unix}"
for a in alice@example.test bob@example.test; do
    echo "Sendmail + milter   $a: $(rcpt_latency "$SM_PORT" $((N / 5)) "$a")"
    echo "Postfix + policy    $a: $(rcpt_latency "$SMTP_PORT" $((N / 5)) "$a")"
done

echo "== whole SMTP sessions (EHLO, MAIL, 3 RCPTs half valid, QUIT) through Sendmail + milter"
for c in $CONCURRENCY; do
    rounds=$(((SESSIONS_TOTAL + c - 1) / c))
    start=$(date +%s%N)
    out=$(perl "$E2E_TOP/tests/e2e/milter_load.pl" 127.0.0.1 "$SM_PORT" "$c" 3 "$rounds")
    ns=$(($(date +%s%N) - start))
    echo "concurrency $c: $((c * rounds)) sessions in $((ns / 1000000)) ms = $(awk -v s=$((c * rounds)) -v ns="$ns" 'BEGIN { printf "%.0f", s / (ns / 1e9) }') sessions/s; $(head -n 1 <<<"$out")"
done
e2e_stop_milter "$milter_unix_PID" milter_unix
e2e_stop_milter "$milter_PID" milter
