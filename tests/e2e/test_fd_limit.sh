#!/bin/bash
# test_fd_limit.sh - out of file descriptors. The daemon runs as an unprivileged user
# with a hard limit of 64 descriptors (so it cannot raise it) and the default
# max_connections = 4096: it must say at start-up that the limit is too low and how
# many connections fit, and count the table as full at that many, so 150 idle
# clients cannot lock a new one out. Then its limit is lowered further behind its
# back (prlimit --pid), so accept() itself fails with EMFILE: the daemon must
# neither spin (CPU time over 2 s stays small) nor flood the log (a few "accept"
# lines at most), and once the idle clients leave a new client is answered.
# Last, a low soft limit under a high hard one is raised at start-up.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need prlimit setpriv
e2e_example_tables
chmod 0644 "$E2E_ROUTES" "$E2E_CDB"
e2e_policyd_conf "$E2E_TMP/callahead.conf"
chmod 0644 "$E2E_TMP/callahead.conf"
# prlimit and setpriv exec the daemon: POLICYD_PID is the daemon itself
ORIG_WRAPPER=$POLICYD_WRAPPER
UNPRIV="setpriv --reuid=65534 --regid=65534 --clear-groups --"
POLICYD_WRAPPER="prlimit --nofile=64:64 $UNPRIV $ORIG_WRAPPER"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_assert_eq 64 "$(awk '/^Max open files/ { print $4 }' "/proc/$POLICYD_PID/limits")" \
    "the daemon's hard descriptor limit"
e2e_assert_match 'open file limit is [0-9]+, below the [0-9]+ that max_connections = 4096' \
    "$(grep 'open file limit' "$POLICYD_LOG")" "start-up says the limit is too low"

# cpu_ticks PID - user + system time of PID in clock ticks
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# idle_clients N SECONDS - N connections that send nothing, held for SECONDS (background)
idle_clients() {
    perl -MIO::Socket::INET -e '
        my ($port, $n, $secs) = @ARGV; my @s;
        for (1 .. $n) {
            my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 5)
                or die "connect $_: $!\n";
            push @s, $c;
        }
        sleep $secs;' "$POLICYD_PORT" "$1" "$2" &
    HOLDER=$!
    e2e_track "$HOLDER" "idle clients"
}

# no_busy_loop - the daemon's CPU time over 2 s stays under 10 % (a busy loop burns ~100 %)
no_busy_loop() {
    local t0 t1 hz
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$POLICYD_PID")
    sleep 2
    t1=$(cpu_ticks "$POLICYD_PID")
    e2e_log "daemon CPU over 2 s $1: $((t1 - t0)) ticks (CLK_TCK $hz)"
    [ $((t1 - t0)) -le $((hz / 5)) ] || e2e_fail "the daemon used $((t1 - t0)) ticks in 2 s $1: busy loop"
}

cap=$(sed -n 's/.*at most \([0-9]*\) policy connections at once.*/\1/p' "$POLICYD_LOG")
if ! { [ -n "$cap" ] && [ "$cap" -gt 0 ] && [ "$cap" -lt 64 ]; }; then
    e2e_fail "no usable connection count logged"
fi
e2e_log "ok: the daemon counts $cap connections as a full table"

# 1. 150 idle clients against a table of $cap: the least active make room, nothing fails
idle_clients 150 4
sleep 1.5
no_busy_loop "with 150 idle clients"
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=bob@example.test)" \
    "a new client is answered while 150 idle clients hold on"
[ "$(grep -c 'accept' "$POLICYD_LOG")" -eq 0 ] || e2e_fail "accept() failed although the table was capped"
lines=$(grep -c 'connection limit [0-9]* reached' "$POLICYD_LOG" || true)
if [ "$lines" -lt 1 ] || [ "$lines" -gt 2 ]; then
    e2e_fail "$lines eviction lines logged (want 1 or 2)"
fi
wait "$HOLDER" 2>/dev/null
e2e_untrack "$HOLDER"

# 2. the limit drops under the daemon's feet: accept() fails with EMFILE
setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --pid "$POLICYD_PID" --nofile=24:24 ||
    e2e_fail "cannot lower the daemon's descriptor limit"
idle_clients 150 5
sleep 1.5
no_busy_loop "with descriptors exhausted"
lines=$(grep -c 'accept' "$POLICYD_LOG" || true)
e2e_log "accept lines in the log: $lines"
[ "$lines" -ge 1 ] || e2e_fail "the descriptor shortage was not logged at all"
[ "$lines" -le 3 ] || e2e_fail "$lines accept lines logged: not rate-limited"
e2e_alive "$POLICYD_PID" || e2e_fail "the daemon died"
wait "$HOLDER" 2>/dev/null
e2e_untrack "$HOLDER"
# the clients left; the daemon accepts again (after its back-off) and answers
r=
for _ in $(seq 50); do
    r=$(e2e_policy_query recipient=bob@example.test 2>/dev/null) && [ -n "$r" ] && break
    sleep 0.1
done
e2e_assert_match '^550 5\.1\.1 ' "$r" "a new client is answered once the idle ones left"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "and the next one"
e2e_stop_policyd

# a low soft limit under a high hard one is raised to what the daemon needs, unprivileged
# (valgrind emulates the descriptor limit for its guest and refuses to raise it: skipped)
case "$ORIG_WRAPPER" in
*valgrind*)
    e2e_log "note: under valgrind, raising the limit is not tested"
    exit 0
    ;;
esac
POLICYD_WRAPPER="prlimit --nofile=64:20000 $UNPRIV $ORIG_WRAPPER"
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_assert_eq "$((4096 + 500 + 64))" "$(awk '/^Max open files/ { print $4 }' "/proc/$POLICYD_PID/limits")" \
    "soft limit raised to max_connections + max_probes + 64"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "answered after raising it"
e2e_stop_policyd

# as root (with CAP_SYS_RESOURCE, which containers often lack) the hard limit is raised too
if prlimit --nofile=64:64 bash -c 'ulimit -Hn 5000' 2>/dev/null; then
    POLICYD_WRAPPER="prlimit --nofile=64:64 -- $ORIG_WRAPPER"
    e2e_start_policyd "$E2E_TMP/callahead.conf"
    soft=$(awk '/^Max open files/ { print $4 }' "/proc/$POLICYD_PID/limits")
    [ "$soft" -ge $((4096 + 500)) ] || e2e_fail "as root the limit stayed at $soft"
    e2e_log "ok: as root the descriptor limit was raised from 64 to $soft"
    e2e_stop_policyd
else
    e2e_log "note: no CAP_SYS_RESOURCE here: raising the hard limit as root is not tested"
fi
