#!/bin/bash
# contrib/try-it.sh - run callahead for real on this machine, in about a minute.
#
# On a fresh Debian 12, as root, from a clone in any directory: installs the
# build and runtime packages, builds in ./_build, then starts on 127.0.0.1 only
# (free ports, one temporary directory) a private redis-server, callahead-policyd
# with a CDB table that knows alice@example.test, an smtp-sink as the next hop,
# and a private Postfix whose smtpd asks callahead through check_policy_service.
# swaks then shows one rejected and one accepted recipient, redis-cli shows the
# cached verdicts, and the log files are listed. Then the milter path: a
# private Sendmail 8.17 (unpacked from the Debian packages, beside Postfix)
# with callahead-milter asking the same policyd rejects bob and accepts alice. With a terminal it waits for
# Enter before stopping; otherwise it stops at once. Everything it started is
# stopped by pid on exit, also on failure; the logs stay for reading.
# Exit status: 0 when the demo showed the expected results, 1 otherwise.
set -u -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

PACKAGES="build-essential autoconf automake libtool pkg-config libevent-dev libhiredis-dev libssl-dev
  libmilter-dev libcriterion-dev libcdb-dev libc-ares-dev libidn2-dev tinycdb libldap-dev redis-server postfix slapd
  ldap-utils swaks miltertest"

# say - a section heading (bold on a terminal)
say() {
    if [ -t 1 ]; then
        printf '\n\033[1m== %s\033[0m\n' "$*"
    else
        printf '\n== %s\n' "$*"
    fi
}
die() {
    printf 'try-it: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run me as root (I install packages and start a private Postfix)"

# --- 1. packages (apt-get update only when something is missing)
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix and slapd would ask questions; we run private instances, not the system ones.
    printf '%s\n' 'postfix postfix/main_mailer_type select No configuration' \
        'postfix postfix/mailname string localhost' 'slapd slapd/no_configuration boolean true' |
        debconf-set-selections
    apt-get update -q || die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing || die "apt-get install failed"
else
    say "packages: all present"
fi

# --- 2. build in ./_build (out of tree; the source tree stays clean)
say "building in $top/_build"
autoreconf -fi || die "autoreconf failed"
mkdir -p _build
(cd _build && { [ -f Makefile ] || ../configure >configure.out 2>&1 || {
    tail -n 20 configure.out
    exit 1
}; } && make -j"$(nproc)" callahead-policyd callahead-milter) || die "build failed"

# --- 3. servers, through the same helpers the end-to-end tests use
export E2E_BUILD=$top/_build E2E_KEEP=1
# shellcheck source=tests/e2e/lib.sh
. "$top/tests/e2e/lib.sh"
E2E_NAME=try-it # prefix of the helpers' progress lines
ok=1

e2e_example_tables
say "route table $E2E_ROUTES"
cat "$E2E_ROUTES"
printf 'CDB table %s, made with: printf '\''alice@example.test OK\\n'\'' | cdb -cm %s\n' \
    "$E2E_CDB" "$E2E_CDB"

e2e_start_redis
e2e_start_sink
e2e_policyd_conf "$E2E_TMP/callahead.conf"
e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"
say "callahead.conf (non-default parameters: callahead-policyd -n)"
"$POLICYD" -c "$E2E_TMP/callahead.conf" -n
say "Postfix's policy hook (postconf -c $PF_DIR smtpd_recipient_restrictions)"
postconf -c "$PF_DIR" smtpd_recipient_restrictions

# --- 4. one rejected, one accepted recipient
say "swaks: RCPT TO:<bob@example.test> (not in the table)"
swaks --server "127.0.0.1:$SMTP_PORT" --helo client.example --from sender@client.example \
    --to bob@example.test --quit-after RCPT --timeout 30 2>&1 | tee "$E2E_TMP/swaks-bob.txt"
bob=$(awk '/-> RCPT TO:/ { getline; sub(/^ *<(-|\*\*) +/, ""); print; exit }' "$E2E_TMP/swaks-bob.txt")
if [[ $bob =~ ^550\ 5\.1\.1\ \<bob@example\.test\>:\ Recipient\ address\ rejected:\ .*User\ unknown$ ]]; then
    echo ">>> bob@example.test rejected at RCPT TO, as expected"
else
    echo ">>> UNEXPECTED reply for bob@example.test: [$bob]"
    ok=0
fi

say "swaks: a message to alice@example.test (in the table)"
swaks --server "127.0.0.1:$SMTP_PORT" --helo client.example --from sender@client.example \
    --to alice@example.test --header 'Subject: hello from try-it' --body "try-it $$" \
    --timeout 30 2>&1 | tee "$E2E_TMP/swaks-alice.txt"
alice=$(awk '/-> RCPT TO:/ { getline; sub(/^ *<(-|\*\*) +/, ""); print; exit }' "$E2E_TMP/swaks-alice.txt")
if [ "$alice" = "250 2.1.5 Ok" ] && f=$(e2e_wait_delivery "try-it $$" 30); then
    echo ">>> alice@example.test accepted and delivered to the next hop: $f"
else
    echo ">>> UNEXPECTED: alice@example.test: RCPT reply [$alice], delivered: ${f:-no}"
    ok=0
fi

# --- 5. the same through Sendmail and callahead-milter
# shellcheck source=tests/e2e/lib_milter.sh
. "$top/tests/e2e/lib_milter.sh"
e2e_free_port MILTER_PORT
cp "$E2E_TMP/callahead.conf" "$E2E_TMP/milter.conf"
e2e_milter_conf "$E2E_TMP/milter.conf" "$MILTER_PORT"
e2e_start_milter "$E2E_TMP/milter.conf" "$MILTER_PORT"
say "Sendmail 8.17 (unpacked into $E2E_SENDMAIL_CACHE, not installed) with callahead-milter"
e2e_start_sendmail "$MILTER_PORT"
grep INPUT_MAIL_FILTER "$SM_DIR/e2e.mc"
for rcpt in bob@example.test alice@example.test; do
    say "swaks via Sendmail: RCPT TO:<$rcpt>"
    swaks --server "127.0.0.1:$SM_PORT" --helo client.example --from sender@client.example \
        --to "$rcpt" --quit-after RCPT --timeout 30 2>&1 | tee "$E2E_TMP/swaks-sm-$rcpt.txt"
done
smbob=$(awk '/-> RCPT TO:/ { getline; sub(/^ *<(-|\*\*) +/, ""); print; exit }' "$E2E_TMP/swaks-sm-bob@example.test.txt")
smalice=$(awk '/-> RCPT TO:/ { getline; sub(/^ *<(-|\*\*) +/, ""); print; exit }' "$E2E_TMP/swaks-sm-alice@example.test.txt")
if [[ $smbob =~ ^550\ 5\.1\.1\ \<bob@example\.test\>\.\.\.\ Recipient\ address\ rejected:\ .*User\ unknown$ ]] &&
    [[ $smalice =~ ^250\ 2\.1\.5\  ]]; then
    echo ">>> through Sendmail too: bob rejected, alice accepted"
else
    echo ">>> UNEXPECTED via Sendmail: bob [$smbob], alice [$smalice]"
    ok=0
fi

# --- 6. the cache, as a postmaster sees it
say "redis-cli -p $REDIS_PORT --scan --pattern 'callahead:*'"
sleep 0.3
keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'callahead:*' | sort)
for k in $keys; do
    printf '%s = "%s" (expires in %ss)\n' "$k" "$(redis-cli -p "$REDIS_PORT" GET "$k")" \
        "$(redis-cli -p "$REDIS_PORT" TTL "$k")"
done
if ! grep -qx 'callahead:rcpt:bob@example.test' <<<"$keys"; then
    echo ">>> UNEXPECTED: no callahead:rcpt:bob@example.test in Redis"
    ok=0
fi

say "logs"
echo "callahead-policyd (foreground, -f: stderr) $POLICYD_LOG; without -f it logs to syslog (mail)"
echo "Postfix                                    $PF_MAILLOG"
echo "redis-server                               $E2E_TMP/redis/redis.log"
echo "next hop (smtp-sink) messages              $SINK_DIR/"
echo "callahead-milter (-f: stderr)              $E2E_TMP/milter.log"
echo "--- $POLICYD_LOG:"
cat "$POLICYD_LOG"

if [ "$ok" = 1 ]; then
    say "result: the demo showed what it should"
else
    say "result: something was not as expected (see above)"
fi
if [ -t 0 ]; then
    printf '\nEverything is running: Postfix smtpd on 127.0.0.1:%s, callahead-policyd on 127.0.0.1:%s,\n' \
        "$SMTP_PORT" "$POLICYD_PORT"
    printf 'Redis on 127.0.0.1:%s. Try: swaks --server 127.0.0.1:%s --to someone@example.test\n' \
        "$REDIS_PORT" "$SMTP_PORT"
    printf 'Press Enter to stop everything. '
    read -r _
fi
echo "stopping; the logs stay in $E2E_TMP"
[ "$ok" = 1 ]
