#!/bin/bash
# test_reload_syslog.sh - the daemon in the background, logging to syslog: a
# SIGHUP that changes syslog_name and syslog_facility reopens syslog, and the
# lines from then on carry the new name and facility. The syslog socket is
# ours: the daemon runs in a private mount namespace (unshare) whose /dev is
# a fresh tmpfs with null, zero, random and urandom bound from the real one
# and log pointing at a datagram socket this script reads. Nothing outside
# the namespace changes.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_need unshare mount
e2e_example_tables
SYSLOG_SOCK=$E2E_TMP/syslog.sock
SYSLOG_OUT=$E2E_TMP/syslog.txt
: >"$SYSLOG_OUT"
perl -MIO::Socket::UNIX -MSocket -e '
    my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $ARGV[0]) or die "bind: $!\n";
    open(my $o, ">>", $ARGV[1]) or die "$ARGV[1]: $!\n";
    $o->autoflush(1);
    while (defined $s->recv(my $m, 65536)) { print $o "$m\n" }
' "$SYSLOG_SOCK" "$SYSLOG_OUT" &
SYSLOG_PID=$!
e2e_track "$SYSLOG_PID" "syslog reader"
for _ in $(seq 1 50); do
    [ -S "$SYSLOG_SOCK" ] && break
    sleep 0.1
done
[ -S "$SYSLOG_SOCK" ] || e2e_fail "the syslog reader did not bind $SYSLOG_SOCK"

CONF=$E2E_TMP/callahead.conf
PIDFILE=$E2E_TMP/policyd.pid
e2e_policyd_conf "$CONF" "pidfile = $PIDFILE" "syslog_name = callahead-one"
mkdir -p "$E2E_TMP/olddev"
# the daemon detaches; the starting command returns once it listens
unshare --mount --propagation private sh -ec '
    mount --bind /dev "$1/olddev"
    mount -t tmpfs -o mode=0755 tmpfs /dev
    for n in null zero random urandom; do
        : >"/dev/$n"
        mount --bind "$1/olddev/$n" "/dev/$n"
    done
    ln -s "$2" /dev/log
    exec "$3" -c "$4"
' sh "$E2E_TMP" "$SYSLOG_SOCK" "$POLICYD" "$CONF" || e2e_fail "the daemon did not start"
POLICYD_PID=$(cat "$PIDFILE")
e2e_track "$POLICYD_PID" callahead-policyd
e2e_log "callahead-policyd pid $POLICYD_PID in the background, syslog to $SYSLOG_SOCK"

# wait_syslog REGEX - wait until a syslog line matches REGEX (extended)
wait_syslog() {
    for _ in $(seq 1 50); do
        if grep -qE -- "$1" "$SYSLOG_OUT"; then
            e2e_log "ok: syslog [$(grep -E -- "$1" "$SYSLOG_OUT" | tail -n 1)]"
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "no syslog line matches [$1]; got: $(tail -n 5 "$SYSLOG_OUT")"
}

# <22> = mail.info, <158> = local3.info
wait_syslog "^<22>.* callahead-one\\[$POLICYD_PID\\]: callahead-policyd .* started"
e2e_policyd_conf "$CONF" "pidfile = $PIDFILE" "syslog_name = callahead-two" \
    "syslog_facility = local3"
kill -HUP "$POLICYD_PID"
wait_syslog "^<158>.* callahead-two\\[$POLICYD_PID\\]: reloaded $CONF"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=bob@example.test)" "bob after the reload"
wait_syslog "^<158>.* callahead-two\\[$POLICYD_PID\\]: .*recipient=<bob@example\\.test> verdict=invalid"
# a second reload frees the configuration that named the identity before
kill -HUP "$POLICYD_PID"
for _ in $(seq 1 50); do
    [ "$(grep -c 'callahead-two.*: reloaded ' "$SYSLOG_OUT")" -ge 2 ] && break
    sleep 0.1
done
[ "$(grep -c 'callahead-two.*: reloaded ' "$SYSLOG_OUT")" -ge 2 ] || e2e_fail "no second reload"
e2e_assert_match '^550 ' "$(e2e_policy_query recipient=dave@example.test)" "dave"
wait_syslog "^<158>.* callahead-two\\[$POLICYD_PID\\]: .*recipient=<dave@example\\.test> verdict=invalid"

# not our child (it detached): its exit status is not ours to read, its last log line is
e2e_kill_wait "$POLICYD_PID" 30 || true
e2e_untrack "$POLICYD_PID"
wait_syslog "^<158>.* callahead-two\\[$POLICYD_PID\\]: stopped"
[ -e "$PIDFILE" ] && e2e_fail "the pidfile is left"
e2e_log "ok: the daemon stopped"
