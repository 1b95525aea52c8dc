#!/bin/bash
# test_callout_smtputf8.sh - RFC 6531 recipients through a real front Postfix
# (check_policy_service asks callahead-policyd) to two real back-end Postfix
# instances:
#   - utf8.test -> a back end with smtputf8_enable = yes that knows the UTF-8
#     mailbox jörg: the front passes the UTF-8 recipient to the policy service
#     unchanged, the callout asks with MAIL FROM:<> SMTPUTF8, the known
#     mailbox is accepted (verdict valid), an unknown UTF-8 one rejected
#     (verdict invalid, the back end's 5.1.1);
#   - ascii.test -> a back end with smtputf8_enable = no (no SMTPUTF8 in its
#     EHLO reply): a UTF-8 local part is not asked at all (no RCPT reaches
#     it), the verdict is unknown with the reason logged, the front gets DUNNO
#     and accepts; an ASCII recipient on the same back end is still verified;
#   - an IDN domain, given as U-labels and as A-labels, is one cache key.
# The SMTP client side is a short perl dialogue: swaks cannot send SMTPUTF8.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_need perl

# start_backend NAME "DOMAIN..." SMTPUTF8 USER... - a private back-end Postfix
# like e2e_start_backend_postfix, in $E2E_TMP/NAME, with smtputf8_enable =
# SMTPUTF8, knowing USER@ each DOMAIN; sets PORT_<NAME> and LOG_<NAME>
start_backend() {
    local name=$1 domains=$2 utf8=$3 dir=$E2E_TMP/$1 u d map="" tmaps="" port
    shift 3
    mkdir -p "$dir/log" "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    e2e_free_port port
    for d in $domains; do
        for u in "$@"; do
            map="$map {$u@$d = ok}"
        done
        tmaps="$tmaps {$d = smtp:[127.0.0.1]:$SINK_PORT}"
    done
    {
        echo "# private back-end Postfix for $E2E_NAME: smtputf8_enable = $utf8"
        e2e_postfix_main_cf_base "$dir" "backend.${domains%% *}" "${domains%% *}"
        cat <<EOF
smtputf8_enable = $utf8
relay_domains = $domains
relay_recipient_maps = inline:{$map }
transport_maps = inline:{$tmaps }
EOF
    } >"$dir/main.cf"
    e2e_postfix_launch "$dir" "$port" "back-end postfix $name"
    printf -v "PORT_$name" '%s' "$port"
    printf -v "LOG_$name" '%s' "$dir/log/maillog"
    e2e_log "back-end postfix $name on 127.0.0.1:$port, smtputf8_enable = $utf8, knows: $*"
}

# rcpt ADDR - one SMTPUTF8 session at the front up to RCPT; prints the RCPT reply
rcpt() {
    perl -MIO::Socket::INET -e '
        my ($port, $rcpt) = @ARGV;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 30)
            or die "connect: $!\n";
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 60;
        sub reply { my $r = ""; while (my $l = <$s>) { $r = $l; last if $l =~ /^\d{3} / } $r =~ s/\r?\n$//; $r }
        sub cmd { print $s "$_[0]\r\n"; reply() }
        reply();
        my $e = cmd("EHLO client.e2e.test");
        my $m = cmd("MAIL FROM:<sender\@client.e2e.test> SMTPUTF8");
        die "MAIL refused: $m\n" unless $m =~ /^250/;
        print cmd("RCPT TO:<$rcpt>"), "\n";
        cmd("QUIT");
    ' "$SMTP_PORT" "$1"
}

U=$(printf 'j\303\266rg')          # jörg, UTF-8
IDN=$(printf 'b\303\274cher.test') # bücher.test; A-label xn--bcher-kva.test
# the policy log line shows the request's recipient with non-ASCII bytes as '?'
UL='j\?\?rg'

e2e_start_sink
start_backend utf8 "utf8.test xn--bcher-kva.test" yes "$U" alice
start_backend ascii ascii.test no alice
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "utf8.test    smtp:[127.0.0.1]:$PORT_utf8" \
    "ascii.test   smtp:[127.0.0.1]:$PORT_ascii" \
    "$IDN  smtp:[127.0.0.1]:$PORT_utf8" \
    "*            dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "reply_next_hop_text = yes"
# the front only reaches RCPT here: where it would relay to does not matter
SINK_PORT=$PORT_utf8 e2e_start_postfix "inet:127.0.0.1:$POLICYD_PORT" "utf8.test ascii.test"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# The back end with SMTPUTF8: known UTF-8 mailbox accepted, unknown rejected.
e2e_assert_eq '250 2.1.5 Ok' "$(rcpt "$U@utf8.test")" "front RCPT TO:<$U@utf8.test>"
l=$(e2e_wait_log "recipient=<$UL@utf8\.test> verdict=valid source=smtp:\[127\.0\.0\.1\]:$PORT_utf8 code=250" 10) ||
    e2e_fail "daemon did not log a valid callout verdict for <$U@utf8.test>"
e2e_log "ok: the front passed the UTF-8 recipient, the callout said valid: $l"
v=$(e2e_wait_redis_key "callahead:rcpt:$U@utf8.test" 10) || e2e_fail "no verdict for $U in Redis"
e2e_assert_match '^valid 250 ' "$v" "redis-cli GET callahead:rcpt:$U@utf8.test"

r=$(rcpt "j${U#j}x@utf8.test")
e2e_assert_match '^550 5\.1\.1 ' "$r" "front RCPT TO:<${U}x@utf8.test>"
e2e_wait_log "recipient=<${UL}x@utf8\.test> verdict=invalid source=smtp:\[127\.0\.0\.1\]:$PORT_utf8 code=550" 10 >/dev/null ||
    e2e_fail "daemon did not log an invalid callout verdict for <${U}x@utf8.test>"
# NOQUEUE, or the queue id of a pooled session's open transaction (after a valid RCPT)
n=$(e2e_settle_count grep -c "[0-9A-Z]*: reject: RCPT from .*<${U}x@utf8.test>.*User unknown" "$LOG_utf8")
e2e_assert_eq 1 "$n" "RCPTs for ${U}x seen by the SMTPUTF8 back end"
e2e_log "ok: unknown UTF-8 mailbox rejected by the back end and at the front: $r"

# The back end without SMTPUTF8: the UTF-8 recipient is unknown (DUNNO), not asked.
e2e_assert_eq '250 2.1.5 Ok' "$(rcpt "$U@ascii.test")" "front RCPT TO:<$U@ascii.test> (DUNNO)"
l=$(e2e_wait_log "recipient=<$UL@ascii\.test> verdict=unknown source=smtp:\[127\.0\.0\.1\]:$PORT_ascii" 10) ||
    e2e_fail "daemon did not log an unknown verdict for <$U@ascii.test>"
e2e_log "ok: $l"
l=$(e2e_wait_log "callout rcpt=<$U@ascii\.test> .*does not offer SMTPUTF8" 5) ||
    e2e_fail "daemon did not log why <$U@ascii.test> was not verified"
e2e_log "ok: reason logged: $l"
n=$(e2e_settle_count grep -c "RCPT from .*<$U@ascii.test>" "$LOG_ascii")
e2e_assert_eq 0 "$n" "RCPTs for $U seen by the back end without SMTPUTF8"
r=$(rcpt bob@ascii.test)
e2e_assert_match '^550 5\.1\.1 ' "$r" "front RCPT TO:<bob@ascii.test> (still verified)"
e2e_wait_log "recipient=<bob@ascii\.test> verdict=invalid source=smtp:\[127\.0\.0\.1\]:$PORT_ascii code=550" 10 >/dev/null ||
    e2e_fail "daemon did not verify bob@ascii.test"

# An IDN domain: U-labels and A-labels are one address, one verdict, one callout.
r=$(e2e_policy_query "recipient=alice@$IDN")
e2e_log "policy answer for alice@$IDN: $r"
e2e_wait_log "recipient=<alice@b\?\?cher\.test> verdict=valid .* cached=no" 10 >/dev/null ||
    e2e_fail "no callout logged for alice@$IDN under its A-label form"
r2=$(e2e_policy_query "recipient=alice@XN--BCHER-KVA.test")
e2e_assert_eq "$r" "$r2" "policy answer for the A-label form"
e2e_wait_log "recipient=<alice@XN--BCHER-KVA\.test> verdict=valid .* cached=(l1|redis)" 10 >/dev/null ||
    e2e_fail "the A-label form was not answered from the U-label form's verdict"
e2e_redis GET callahead:rcpt:alice@xn--bcher-kva.test | grep -q . ||
    e2e_fail "no verdict under the A-label key in Redis"

e2e_stop_policyd
