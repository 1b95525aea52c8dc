#!/bin/bash
# test_control.sh - the control socket and the callahead command against a running
# daemon with a real Redis and a real SMTP next hop:
#   - verify: valid (table), invalid (table), unrouted, a cold callout then the same
#     address from the in-process cache, and --refresh going to the next hop again;
#     each with its exit status (0 valid, 1 invalid, 2 tempfail, 3 unknown);
#   - stats: counters move by exactly what a known sequence of policy requests did;
#     --json is valid JSON;
#   - a user other than root and the daemon's is refused (SO_PEERCRED) even when the
#     socket file's mode lets anyone connect; with control_socket_group and mode 0660
#     the group's members are served;
#   - malformed control requests (unknown command, NUL byte, bad spacing, a line over
#     the limit, a connection that sends half a line and waits, a 17th connection) get a
#     clear error or are cut off, and policy requests keep being answered meanwhile.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

CALLAHEAD=${CALLAHEAD:-$E2E_BUILD/callahead}
[ -x "$CALLAHEAD" ] || e2e_fail "$CALLAHEAD is not built"

e2e_start_testserver HOP "# next hop for $E2E_NAME: knows only carol
rcpt carol@dept.test 250 2.1.5 carol is here
rcpt * 550 5.1.1 no such user here"
e2e_start_redis
e2e_example_tables
printf '%s\n' "example.test   cdb:$E2E_CDB" "dept.test   smtp:[127.0.0.1]:$HOP_PORT" \
    "*              dunno" >"$E2E_ROUTES"
CTL=$E2E_TMP/control
e2e_policyd_conf "$E2E_TMP/callahead.conf" "control_socket = $CTL" "control_socket_mode = 0666"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# ca ARGS... - run callahead against our daemon; output in $out, exit status in $rc
ca() {
    rc=0
    out=$("$CALLAHEAD" -c "$E2E_TMP/callahead.conf" "$@" 2>&1) || rc=$?
}
# field NAME - the value of NAME= in $out
field() {
    sed -n "s/^$1=//p" <<<"$out"
}

ca verify alice@example.test
e2e_assert_eq 0 "$rc" "verify alice: exit status ($out)"
e2e_assert_eq valid "$(field verdict)" "verify alice: verdict"
e2e_assert_eq cdb "$(field source)" "verify alice: source"
e2e_assert_eq "$E2E_ROUTES:1" "$(field route)" "verify alice: route"
e2e_assert_eq DUNNO "$(field reply)" "verify alice: reply"
e2e_assert_match '^[0-9]+\.[0-9]$' "$(field ms)" "verify alice: ms"

ca verify Bob@Example.Test --sender s@client.test --client 192.0.2.1
e2e_assert_eq 1 "$rc" "verify bob: exit status ($out)"
e2e_assert_eq invalid "$(field verdict)" "verify bob: verdict"
e2e_assert_eq bob@example.test "$(field key)" "verify bob: key"
e2e_assert_eq '550 5.1.1 User unknown' "$(field reply)" "verify bob: reply"
e2e_assert_eq s@client.test "$(field sender)" "verify bob: sender echoed"
e2e_assert_eq 192.0.2.1 "$(field client)" "verify bob: client echoed"

ca verify carol@other.test
e2e_assert_eq 3 "$rc" "verify unrouted: exit status ($out)"
e2e_assert_eq unknown "$(field verdict)" "verify unrouted: verdict"
e2e_assert_eq "$E2E_ROUTES:3" "$(field route)" "verify unrouted: the catch-all route"

ca verify '<>'
e2e_assert_eq 1 "$rc" "verify of a null address: exit status ($out)"

# a cold callout, then the in-process cache, then --refresh asks the next hop again
ca verify dave@dept.test
e2e_assert_eq 1 "$rc" "verify dave (callout): exit status ($out)"
e2e_assert_eq no "$(field cached)" "verify dave: first answer from the next hop"
e2e_assert_match '^smtp' "$(field source)" "verify dave: source"
e2e_assert_eq "$E2E_ROUTES:2" "$(field route)" "verify dave: route"
e2e_assert_eq 1 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "one RCPT at the next hop"
ca verify dave@dept.test
e2e_assert_eq l1 "$(field cached)" "verify dave again: from the in-process cache ($out)"
e2e_assert_eq 1 "$rc" "verify dave again: exit status"
e2e_assert_eq 1 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "still one RCPT at the next hop"
ca verify dave@dept.test --refresh
e2e_assert_eq no "$(field cached)" "verify --refresh: not from a cache ($out)"
e2e_assert_eq yes "$(field refresh)" "verify --refresh: reported"
e2e_assert_eq 2 "$(e2e_ts_stat "$HOP_STATS" rcpt)" "--refresh asked the next hop again"
ca verify carol@dept.test
e2e_assert_eq 0 "$rc" "verify carol (callout): exit status ($out)"

# tempfail: a next hop that is not there
dead=$(e2e_free_port DEADPORT && echo "$DEADPORT")
printf '%s\n' "example.test   cdb:$E2E_CDB" "dept.test   smtp:[127.0.0.1]:$HOP_PORT" \
    "dead.test   smtp:[127.0.0.1]:$dead" "*              dunno" >"$E2E_ROUTES"
# wait for the reload to be applied, not a fixed time (valgrind, a loaded machine)
reloads=$(e2e_policyd_log_count 'info: reloaded ')
kill -HUP "$POLICYD_PID"
for _ in $(seq 1 300); do
    [ "$(e2e_policyd_log_count 'info: reloaded ')" -gt "$reloads" ] && break
    sleep 0.1
done
[ "$(e2e_policyd_log_count 'info: reloaded ')" -gt "$reloads" ] ||
    e2e_fail "the reload was not applied: $(tail -n 3 "$POLICYD_LOG")"
ca verify x@dead.test
e2e_assert_eq 2 "$rc" "verify at a dead next hop: exit status ($out)"
e2e_assert_eq tempfail "$(field verdict)" "verify at a dead next hop: verdict"

# stats: a known sequence of policy requests moves the counters by exactly that
ca stats
e2e_assert_eq 0 "$rc" "stats: exit status ($out)"
before=$out
stat_of() { sed -n "s/^$1=//p" <<<"$2"; }
e2e_assert_eq connected "$(stat_of redis "$before")" "stats: redis"
e2e_policy_query recipient=alice@example.test >/dev/null
e2e_policy_query recipient=bob@example.test >/dev/null
e2e_policy_query recipient=eve@example.test >/dev/null
e2e_policy_query recipient=someone@other.test >/dev/null
e2e_policy_query recipient=dave@dept.test >/dev/null
ca stats
after=$out
delta() { echo $(($(stat_of "$1" "$after") - $(stat_of "$1" "$before"))); }
e2e_assert_eq 5 "$(delta requests)" "stats: requests moved by 5"
e2e_assert_eq 5 "$(delta lookups)" "stats: lookups moved by 5"
e2e_assert_eq 1 "$(delta verdict_valid)" "stats: valid moved by 1"
e2e_assert_eq 3 "$(delta verdict_invalid)" "stats: invalid moved by 3"
e2e_assert_eq 1 "$(delta verdict_unknown)" "stats: unknown moved by 1"
e2e_assert_eq 1 "$(delta cache_l1_hits)" "stats: one in-process cache hit (dave)"
e2e_assert_eq 0 "$(delta probes)" "stats: no probe"
e2e_assert_eq 1 "$(delta control_requests)" "stats: the one stats request between"
ca stats --json
e2e_assert_eq 0 "$rc" "stats --json: exit status"
perl -MJSON::PP -e 'my $j = decode_json(join "", <STDIN>);
    die "requests is not a number\n" unless $j->{requests} =~ /^\d+$/ && !ref $j->{requests};
    die "redis is not a string\n" unless $j->{redis} eq "connected";' <<<"$out" ||
    e2e_fail "stats --json is not the expected JSON: $out"
ca verify bob@example.test --json
perl -MJSON::PP -e 'my $j = decode_json(join "", <STDIN>);
    die "verdict\n" unless $j->{verdict} eq "invalid"' <<<"$out" ||
    e2e_fail "verify --json is not the expected JSON: $out"

# a user who is neither root nor the daemon's user is refused, though the mode lets it in
chmod 0755 "$E2E_TMP"
rc=0
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$CALLAHEAD" -s "$CTL" verify alice@example.test 2>&1) || rc=$?
e2e_assert_eq 77 "$rc" "nobody is refused: exit status ($out)"
e2e_assert_match 'permission denied' "$out" "nobody is refused: message"
grep -q 'control: refused uid [0-9]* pid' "$POLICYD_LOG" || e2e_fail "no log line for the refusal"

# with control_socket_group and mode 0660 that group's members are served, others not
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" \
    -e "s|^control_socket = .*|control_socket = $E2E_TMP/ctl-group|" \
    -e "s|^control_socket_mode = .*|control_socket_mode = 0660\ncontrol_socket_group = nogroup|" \
    "$E2E_TMP/callahead.conf" >"$E2E_TMP/callahead2.conf"
e2e_start_policyd2 "$E2E_TMP/callahead2.conf" "$POLICYD2_PORT"
e2e_assert_eq "660 nogroup" "$(stat -c '%a %G' "$E2E_TMP/ctl-group")" "the group socket's mode and group"
rc=0
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$CALLAHEAD" -s "$E2E_TMP/ctl-group" verify alice@example.test 2>&1) || rc=$?
e2e_assert_eq 0 "$rc" "a member of control_socket_group is served ($out)"
rc=0
out=$(setpriv --reuid=nobody --regid=daemon --clear-groups \
    "$CALLAHEAD" -s "$E2E_TMP/ctl-group" verify alice@example.test 2>&1) || rc=$?
e2e_assert_eq 77 "$rc" "a user outside the group cannot even connect ($out)"
e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "second daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"

# a daemon that drops root (user = nobody) keeps a control socket its user can use
POLICYD2_PORT=
e2e_free_port POLICYD2_PORT
sed -e "s/^listen = .*/listen = inet:127.0.0.1:$POLICYD2_PORT/" \
    -e "s|^control_socket = .*|control_socket = $E2E_TMP/ctl-nobody|" \
    -e "s|^control_socket_mode = .*|control_socket_mode = 0600\nuser = nobody|" \
    "$E2E_TMP/callahead.conf" >"$E2E_TMP/callahead3.conf"
e2e_start_policyd2 "$E2E_TMP/callahead3.conf" "$POLICYD2_PORT"
e2e_assert_eq "600 nobody" "$(stat -c '%a %U' "$E2E_TMP/ctl-nobody")" \
    "the control socket belongs to the user the daemon runs as"
rc=0
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$CALLAHEAD" -s "$E2E_TMP/ctl-nobody" verify alice@example.test 2>&1) || rc=$?
e2e_assert_eq 0 "$rc" "the daemon's own user is served ($out)"
e2e_kill_wait "$POLICYD2_PID" 30 || e2e_fail "third daemon exited non-zero"
e2e_untrack "$POLICYD2_PID"

# raw control requests: ctl_raw PERL-STRING - send it, print the reply (up to the empty line)
ctl_raw() {
    perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!\n";
        print $s eval $ARGV[1];
        local $SIG{ALRM} = sub { print "<timeout>\n"; exit 0 };
        alarm 10;
        my $r = "";
        while (my $l = <$s>) { last if $l eq "\n"; $r .= $l }
        print $r eq "" ? "<closed>\n" : $r;' "$CTL" "$1"
}
e2e_assert_eq $'status=error\nerror=unknown command (verify, show, flush, stats)' "$(ctl_raw '"bogus\n"')" \
    "unknown command"
e2e_assert_match '^status=error' "$(ctl_raw '"verify a\0b\@example.test\n"')" "NUL byte"
e2e_assert_match 'error=malformed request' "$(ctl_raw '"verify  alice\@example.test\n"')" \
    "two spaces"
e2e_assert_match 'error=malformed request' "$(ctl_raw '"verify \x01\n"')" "control byte"
e2e_assert_match 'error=empty request' "$(ctl_raw '"\n"')" "empty line"
e2e_assert_match 'error=verify: unknown' "$(ctl_raw '"verify a\@example.test nonsense=1\n"')" \
    "unknown verify option"
e2e_assert_eq $'status=error\nerror=request line too long' "$(ctl_raw '"x" x 100000')" \
    "a line over the limit"
# two requests on one connection are answered in order
two=$(ctl_raw '"stats\nverify alice\@example.test\n"')
e2e_assert_match '^status=ok' "$two" "pipelined: first reply"

# a control client that sends half a line and waits does not hold up policy requests
perl -MIO::Socket::UNIX -e '
    my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die; print $s "ver"; sleep 20' "$CTL" &
holder=$!
e2e_track "$holder" "half-line control client"
sleep 0.3
e2e_assert_eq "$(e2e_unknown_reply bob@example.test | sed 's/^550 5.1.1 <[^>]*>: Recipient address rejected: /550 5.1.1 /')" \
    "$(e2e_policy_query recipient=bob@example.test)" "policy answered with a control client waiting"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" "policy still answers"
ca stats
e2e_assert_eq 0 "$rc" "the daemon still answers the control socket"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
e2e_untrack "$holder"

# at most 16 control connections: the 17th is told so, policy traffic goes on
perl -MIO::Socket::UNIX -e '
    my @s = map { IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!\n" } 1 .. 16;
    sleep 20' "$CTL" &
holder=$!
e2e_track "$holder" "16 idle control clients"
# until the daemon has taken all 16 (the holder starting and the daemon accepting
# may be slow): asked again every 0.2 s, 30 s at most
ca stats
for _ in $(seq 1 150); do
    [ "$rc" -eq 65 ] && break
    sleep 0.2
    ca stats
done
e2e_assert_eq 65 "$rc" "the 17th control connection: exit status ($out)"
e2e_assert_match 'too many control connections' "$out" "the 17th control connection: message"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@example.test)" \
    "policy answers with every control slot taken"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
e2e_untrack "$holder"
# the daemon sees the 16 closes in its own time: asked until a slot is free, 30 s at most
ca stats
for _ in $(seq 1 150); do
    [ "$rc" -eq 0 ] && break
    sleep 0.2
    ca stats
done
e2e_assert_eq 0 "$rc" "control slots free again once those clients are gone"

# no daemon on the socket: 69; usage errors: 64
rc=0
"$CALLAHEAD" -s "$E2E_TMP/nothing-here" stats >/dev/null 2>&1 || rc=$?
e2e_assert_eq 69 "$rc" "no daemon: exit status"
rc=0
"$CALLAHEAD" -s "$CTL" verify 'a b@example.test' >/dev/null 2>&1 || rc=$?
e2e_assert_eq 64 "$rc" "an address with a space: usage"
rc=0
"$CALLAHEAD" -s "$CTL" frobnicate >/dev/null 2>&1 || rc=$?
e2e_assert_eq 64 "$rc" "unknown command: usage"

e2e_stop_policyd
e2e_log "ok: control socket and callahead"
