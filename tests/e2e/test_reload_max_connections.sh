#!/bin/bash
# test_reload_max_connections.sh - a SIGHUP that changes max_connections is
# applied without a restart: with the limit at 2, a third idle client takes the
# slot of the least recently active one (connections_evicted counts it); after
# a reload to 10, four idle clients all stay; after a reload back to 2, the four
# open ones are kept (a lower limit closes nothing at once) and a newcomer is
# answered after closing as many idle ones as it takes to fit under the limit.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_example_tables
CONF=$E2E_TMP/callahead.conf
CTL=$E2E_TMP/control
e2e_policyd_conf "$CONF" "control_socket = $CTL" "max_connections = 2"
e2e_start_policyd "$CONF"

evicted() {
    "$CALLAHEAD" -c "$CONF" stats | sed -n 's/^connections_evicted=//p'
}
# reload_to N - rewrite the file with max_connections = N and reload
reload_to() {
    e2e_policyd_conf "$CONF" "control_socket = $CTL" "max_connections = $1"
    e2e_policyd_reload "$CONF" "max_connections = $1"
}
# hold N SECONDS - N idle policy connections, opened 0.1 s apart, held SECONDS
hold() {
    perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
        my ($port, $n, $t) = @ARGV; my @s;
        for (1 .. $n) {
            push @s, IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port,
                                           Timeout => 5) or die "connect: $!\n";
            sleep 0.1;
        }
        sleep $t;' "$POLICYD_PORT" "$1" "$2" &
    HOLD=$!
    e2e_track "$HOLD" "idle clients"
    sleep $(("$1" / 10 + 1))
}
unhold() {
    kill "$HOLD" 2>/dev/null
    wait "$HOLD" 2>/dev/null
    e2e_untrack "$HOLD"
    sleep 0.5
}

hold 3 30
e2e_assert_eq 2 "$(e2e_proc_established "$POLICYD_PORT")" "open connections with max_connections = 2"
e2e_assert_eq 1 "$(evicted)" "evictions with 3 idle clients and max_connections = 2"
unhold

reload_to 10
hold 4 30
e2e_assert_eq 4 "$(e2e_proc_established "$POLICYD_PORT")" "open connections after a reload to 10"
e2e_assert_eq 1 "$(evicted)" "no eviction with 4 idle clients and max_connections = 10"

reload_to 2
e2e_assert_eq 4 "$(e2e_proc_established "$POLICYD_PORT")" "a lower limit closes no connection"
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=bob@example.test)" \
    "a newcomer over the lowered limit is answered"
# the newcomer closed the three least recently active idle clients to fit under 2
e2e_assert_eq 4 "$(evicted)" "idle clients closed for the newcomer over the lowered limit"
e2e_assert_eq 1 "$(e2e_proc_established "$POLICYD_PORT")" \
    "open connections once the newcomer is answered and gone"
unhold
e2e_stop_policyd
