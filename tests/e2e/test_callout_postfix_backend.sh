#!/bin/bash
# test_callout_postfix_backend.sh - call-forward verification against a real
# back-end Postfix that knows its users (relay_recipient_maps), behind a real
# front Postfix whose check_policy_service asks callahead-policyd, route
# "dept.test smtp:[127.0.0.1]:BACKPORT":
#   - unknown recipient rejected at RCPT with the back end's own text
#     (reply_next_hop_text = yes), known one accepted and delivered through the
#     back end to the sink;
#   - verdicts readable with redis-cli (callahead:rcpt:<address>);
#   - a restarted daemon (empty in-process cache) answers from Redis without
#     touching the back end (its smtpd logs no new session and no new RCPT);
#   - with reply_next_hop_text = no the client sees "User unknown" and nothing of
#     the back end (neither its text nor its address), both from the cache and
#     from a fresh callout.
#   - session reuse as the back end sees it: 20 callouts, every other one for
#     an unknown user, take 2 sessions; each has one MAIL FROM and no RSET, takes
#     at most 8 rejected RCPTs (max_rejects_per_session, below Postfix's
#     smtpd_soft_error_limit of 10), and Postfix never logs improper pipelining.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_start_sink
e2e_start_backend_postfix dept.test alice k1 k2 k3 k4 k5 k6 k7 k8 k9 k10
e2e_start_redis
E2E_ROUTES=$E2E_TMP/routes
printf '%s\n' "# route table for $E2E_NAME" \
    "dept.test   smtp:[127.0.0.1]:$BACK_PORT" \
    "*           dunno" >"$E2E_ROUTES"
e2e_policyd_conf "$E2E_TMP/callahead.conf" "reply_next_hop_text = yes"
e2e_policyd_conf "$E2E_TMP/callahead-quiet.conf" "reply_next_hop_text = no"
e2e_start_front_postfix "inet:127.0.0.1:$POLICYD_PORT" dept.test "$BACK_PORT"
e2e_start_policyd "$E2E_TMP/callahead.conf"

# What the back end itself says for an unknown user (asked directly, once).
direct=$(swaks --server "127.0.0.1:$BACK_PORT" --helo probe.e2e.test --from probe@e2e.test --to bob@dept.test \
    --quit-after RCPT --timeout 30 2>&1 | sed -n 's/^ *<\*\* //p' | tail -n 1)
backend_text='<bob@dept.test>: Recipient address rejected: User unknown in relay recipient table'
e2e_assert_eq "550 5.1.1 $backend_text" "$direct" "back end's own RCPT reply for bob"
conn0=$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")

# Unknown: rejected at the front's RCPT with the back end's text. The front Postfix
# puts its own "<addr>: Recipient address rejected: " before the policy text, so the
# daemon drops the same words from the back end's text: they appear once.
e2e_assert_eq "550 5.1.1 $backend_text" \
    "$(e2e_smtp_rcpt bob@dept.test)" "front RCPT TO:<bob@dept.test>"
v=$(e2e_wait_redis_key callahead:rcpt:bob@dept.test 10) ||
    e2e_fail "no callahead:rcpt:bob@dept.test in Redis: $(e2e_redis --scan | tr '\n' ' ')"
e2e_assert_match "^invalid 550 [0-9]+ smtp:\[127\.0\.0\.1\]:$BACK_PORT 5\.1\.1 <bob@dept\.test>: Recipient address rejected: User unknown in relay recipient table$" \
    "$v" "redis-cli GET callahead:rcpt:bob@dept.test"
ttl=$(e2e_redis TTL callahead:rcpt:bob@dept.test)
[ "$ttl" -gt 3600 ] || e2e_fail "invalid verdict TTL $ttl, expected the 3d default"
e2e_log "ok: TTL of bob's verdict ${ttl}s"

# Known: accepted at RCPT, then a whole message goes front -> back end -> sink.
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@dept.test)" "front RCPT TO:<alice@dept.test>"
v=$(e2e_wait_redis_key callahead:rcpt:alice@dept.test 10) || e2e_fail "no verdict for alice in Redis"
e2e_assert_match "^valid 250 [0-9]+ smtp:\[127\.0\.0\.1\]:$BACK_PORT 2\.1\.5 Ok$" "$v" \
    "redis-cli GET callahead:rcpt:alice@dept.test"
marker="callout-$$-$RANDOM"
reply=$(e2e_smtp_send alice@dept.test "$marker") || e2e_fail "swaks failed: $reply"
e2e_assert_match '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "$reply" "end of DATA for alice at the front"
f=$(e2e_wait_delivery "$marker" 30) || e2e_fail "no message with $marker reached the sink"
e2e_log "ok: delivered through the back end to the sink: $f"
grep -q "to=<alice@dept.test>, relay=127.0.0.1\[127.0.0.1\]:$BACK_PORT,.*status=sent" "$PF_MAILLOG" ||
    e2e_fail "the front did not relay alice's message to the back end"
grep -q "to=<alice@dept.test>, relay=127.0.0.1\[127.0.0.1\]:$SINK_PORT,.*status=sent" "$BACK_MAILLOG" ||
    e2e_fail "the back end did not deliver alice's message to the sink"

# The back end saw bob's RCPT exactly twice: our direct probe and one callout.
# NOQUEUE, or the queue id of a pooled session's open transaction (after a valid RCPT)
n=$(e2e_settle_count grep -c '[0-9A-Z]*: reject: RCPT from .*<bob@dept.test>' "$BACK_MAILLOG")
e2e_assert_eq 2 "$n" "RCPTs for bob seen by the back end (direct + one callout)"
conn1=$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")
e2e_log "back-end smtpd sessions: $conn0 before the callouts, $conn1 after callouts and delivery"

# Restart the daemon: its in-process cache is gone, Redis must answer, the back end
# must not hear of it.
e2e_stop_policyd
e2e_start_policyd "$E2E_TMP/callahead.conf"
e2e_assert_eq "550 5.1.1 $backend_text" \
    "$(e2e_smtp_rcpt bob@dept.test)" "front RCPT TO:<bob@dept.test> after a restart"
e2e_assert_eq '250 2.1.5 Ok' "$(e2e_smtp_rcpt alice@dept.test)" \
    "front RCPT TO:<alice@dept.test> after a restart"
l=$(e2e_wait_log 'recipient=<bob@dept\.test> verdict=invalid .*cached=redis' 5) ||
    e2e_fail "daemon did not log bob's verdict as cached=redis"
e2e_log "ok: $l"
e2e_wait_log 'recipient=<alice@dept\.test> verdict=valid .*cached=redis' 5 >/dev/null ||
    e2e_fail "daemon did not log alice's verdict as cached=redis"
sleep 1
e2e_assert_eq "$conn1" "$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")" \
    "back-end smtpd sessions after the cached lookups"
e2e_assert_eq 2 "$(grep -c '[0-9A-Z]*: reject: RCPT from .*<bob@dept.test>' "$BACK_MAILLOG")" \
    "RCPTs for bob seen by the back end after the cached lookup"

# reply_next_hop_text = no (the default): "User unknown", nothing from the back end.
e2e_stop_policyd
e2e_start_policyd "$E2E_TMP/callahead-quiet.conf"
r=$(e2e_smtp_rcpt bob@dept.test)
e2e_assert_eq "$(e2e_unknown_reply bob@dept.test)" "$r" "quiet RCPT TO:<bob@dept.test> (cached)"
r=$(e2e_smtp_rcpt carol@dept.test)
e2e_assert_eq "$(e2e_unknown_reply carol@dept.test)" "$r" "quiet RCPT TO:<carol@dept.test> (callout)"
case "$r" in
*relay*recipient*table* | *127.0.0.1* | *backend* | *"$BACK_PORT"*)
    e2e_fail "reply leaks the back end: $r"
    ;;
esac
l=$(e2e_wait_log 'recipient=<carol@dept\.test> verdict=invalid source=smtp:\[127\.0\.0\.1\]:[0-9]+ code=550 cached=no' 5) ||
    e2e_fail "daemon did not log carol's callout"
e2e_log "ok: the log keeps the next hop: $l"
e2e_assert_match '^invalid 550 [0-9]+ smtp:\[127\.0\.0\.1\]:[0-9]+ 5\.1\.1 <carol@dept\.test>: Recipient address rejected: User unknown in relay recipient table$' \
    "$(e2e_redis GET callahead:rcpt:carol@dept.test)" "redis-cli GET callahead:rcpt:carol@dept.test"

# Session reuse, as the back end's smtpd logs it at each disconnect ("mail=1 rcpt=8/16
# ..."). A fresh daemon, so no session of the lookups above is in its pool.
e2e_stop_policyd
e2e_settle_count grep -c 'postfix/smtpd\[[0-9]*\]: disconnect from' "$BACK_MAILLOG" >/dev/null
mark=$(wc -l <"$BACK_MAILLOG")
e2e_start_policyd "$E2E_TMP/callahead.conf"
for i in $(seq 1 10); do
    e2e_assert_eq DUNNO "$(e2e_policy_query recipient="k$i@dept.test")" "known k$i@dept.test"
    e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient="n$i@dept.test")" \
        "unknown n$i@dept.test"
done
e2e_stop_policyd # closes its pooled session
sleep 1
e2e_settle_count wc -l "$BACK_MAILLOG" >/dev/null
tail -n +"$((mark + 1))" "$BACK_MAILLOG" >"$E2E_TMP/reuse.maillog"
e2e_assert_eq 2 "$(grep -c 'postfix/smtpd\[[0-9]*\]: connect from' "$E2E_TMP/reuse.maillog")" \
    "back-end sessions for 20 callouts, 10 rejected (8 rejections retire a session)"
disc=$(grep 'postfix/smtpd\[[0-9]*\]: disconnect from' "$E2E_TMP/reuse.maillog")
e2e_log "back end: $(printf '%s' "$disc" | sed 's/.*disconnect from [^ ]* //' | tr '\n' ';')"
e2e_assert_eq 2 "$(printf '%s\n' "$disc" | grep -c ' mail=1 ')" "sessions with exactly one MAIL FROM"
e2e_assert_eq 0 "$(printf '%s\n' "$disc" | grep -c ' rset=')" "sessions that sent RSET"
printf '%s\n' "$disc" | sed -n 's/.* rcpt=\([0-9]*\)\/\([0-9]*\).*/\1 \2/p' >"$E2E_TMP/reuse.rcpts"
e2e_assert_eq 20 "$(awk '{ n += $2 } END { print n + 0 }' "$E2E_TMP/reuse.rcpts")" "RCPTs over both sessions"
e2e_assert_eq 0 "$(awk '$2 - $1 > 8' "$E2E_TMP/reuse.rcpts" | wc -l)" \
    "sessions with more than 8 rejected RCPTs"
e2e_assert_eq 0 "$(grep -c 'improper command pipelining' "$E2E_TMP/reuse.maillog")" \
    "improper command pipelining warnings of the back end"
