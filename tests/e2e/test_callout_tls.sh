#!/bin/bash
# test_callout_tls.sh - STARTTLS on callouts (route option tls=none|may|encrypt),
# against a real back-end Postfix with a self-signed certificate made here, and
# against our scripted next hop that offers STARTTLS and then breaks the handshake:
#   - back end at smtpd_tls_security_level = may: the default (tls=may) probes over
#     TLS (the back end logs "TLS connection established"); a second lookup reuses
#     the session (RSET, no new connection) and so stays in TLS; tls=none probes in
#     plaintext; tls=encrypt with the certificate as tls_ca_file checks the chain and
#     the next hop's address; the same with another CA is a tempfail, no RCPT sent;
#   - back end at smtpd_tls_security_level = encrypt: tls=none gets 530 at MAIL, a
#     tempfail; tls=may works, in TLS;
#   - a next hop that says "220" to STARTTLS and then answers the ClientHello with
#     plain text: tls=may logs the failed handshake and answers from a plaintext
#     connection; tls=encrypt is a tempfail with no MAIL or RCPT sent; a next hop that
#     does not offer STARTTLS: tls=encrypt is a tempfail, tls=may answers.
# shellcheck source=tests/e2e/lib_callout.sh
. "$(dirname "$0")/lib_callout.sh"

e2e_need openssl

# reply_next_hop_text = yes: a tempfail says why
tf='^DEFER_IF_PERMIT 4\.1\.1 Recipient address verification failed: '
# the daemon drops the "<addr>: Recipient address rejected: " the front Postfix adds itself
unknown() { printf '550 5.1.1 User unknown in relay recipient table'; }

# a self-signed certificate for the back end: CN and SAN name it 127.0.0.1 (the
# next hop of an smtp:[127.0.0.1] route), and an unrelated second CA
certs=$E2E_TMP/certs
mkdir -p "$certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=backend.dept.test" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:backend.dept.test" \
    -keyout "$certs/backend.key" -out "$certs/backend.pem" >"$certs/openssl.log" 2>&1 ||
    e2e_fail "openssl req failed: $(cat "$certs/openssl.log")"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
    -keyout "$certs/other.key" -out "$certs/other.pem" >>"$certs/openssl.log" 2>&1 ||
    e2e_fail "openssl req failed: $(cat "$certs/openssl.log")"

e2e_start_sink
e2e_start_backend_postfix dept.test alice
cp "$certs/backend.key" "$certs/backend.pem" "$BACK_DIR/"
chmod 600 "$BACK_DIR/backend.key"
# smtpd's TLS needs tlsmgr (entropy, session cache); the shared template has none
postconf -c "$BACK_DIR" -M "tlsmgr/unix=tlsmgr unix - - n 1000? 1 tlsmgr" ||
    e2e_fail "cannot add tlsmgr to the back end's master.cf"

# backend_tls LEVEL - the back end's smtpd_tls_security_level, with our certificate
backend_tls() {
    local kv
    for kv in "smtpd_tls_security_level = $1" "smtpd_tls_cert_file = $BACK_DIR/backend.pem" \
        "smtpd_tls_key_file = $BACK_DIR/backend.key" "smtpd_tls_loglevel = 1"; do
        postconf -c "$BACK_DIR" -e "$kv" || e2e_fail "postconf -e $kv"
    done
    script -qec "postfix -c '$BACK_DIR' reload" /dev/null >>"$BACK_DIR/log/setup.log" 2>&1 ||
        e2e_fail "back-end reload failed"
    sleep 1
    e2e_log "back end: smtpd_tls_security_level = $1"
}

# run_with_route OPTIONS - restart the daemon with "dept.test smtp:[127.0.0.1]:BACK OPTIONS"
run_with_route() {
    printf '%s\n' "# route table for $E2E_NAME" \
        "dept.test   smtp:[127.0.0.1]:$BACK_PORT $1" \
        "may.test    smtp:[127.0.0.1]:$BROKEN_PORT tls=may" \
        "enc.test    smtp:[127.0.0.1]:$BROKEN_PORT tls=encrypt" \
        "plain.test  smtp:[127.0.0.1]:$PLAIN_PORT tls=encrypt" \
        "plainmay.test smtp:[127.0.0.1]:$PLAIN_PORT" \
        "*           dunno" >"$E2E_ROUTES"
    [ -z "${POLICYD_PID:-}" ] || e2e_stop_policyd
    e2e_start_policyd "$E2E_TMP/callahead.conf"
    e2e_log "route: dept.test smtp:[127.0.0.1]:$BACK_PORT $1"
}

tls_count() { grep -c 'TLS connection established from' "$BACK_MAILLOG" 2>/dev/null || true; }
rcpt_count() { grep -c "RCPT from .*<$1>" "$BACK_MAILLOG" 2>/dev/null || true; }

e2e_start_testserver BROKEN "# offers STARTTLS, says 220, then answers the handshake with text
ehlo 250 broken.test\nPIPELINING\nSTARTTLS
starttls 220 2.0.0 Ready to start TLS
rcpt bob@may.test 550 5.1.1 No such user"
e2e_start_testserver PLAIN "# no STARTTLS
ehlo 250 plain.test\nPIPELINING
rcpt bob@plainmay.test 550 5.1.1 No such user"
E2E_ROUTES=$E2E_TMP/routes
# a TLS handshake under valgrind can take longer than the default 5 s budget
e2e_policyd_conf "$E2E_TMP/callahead.conf" "reply_next_hop_text = yes" "answer_budget = 30000"

# ---- back end with STARTTLS offered (may)
backend_tls may
run_with_route ""
t0=$(e2e_settle_count tls_count)
c0=$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")
e2e_assert_eq "$(unknown bob@dept.test)" "$(e2e_policy_query recipient=bob@dept.test)" "bob (default tls=may)"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@dept.test)" "alice (default tls=may, pooled session)"
e2e_assert_eq $((t0 + 1)) "$(e2e_settle_count tls_count)" "TLS sessions at the back end (default tls=may)"
e2e_assert_eq $((c0 + 1)) "$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")" \
    "connections for two lookups (the second reuses the TLS session)"
e2e_log "ok: $(grep 'TLS connection established from' "$BACK_MAILLOG" | tail -n 1)"

run_with_route "tls=none"
t0=$(e2e_settle_count tls_count)
c0=$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")
e2e_assert_eq "$(unknown carol@dept.test)" "$(e2e_policy_query recipient=carol@dept.test)" "carol (tls=none)"
e2e_assert_eq $((c0 + 1)) "$(e2e_settle_count e2e_postfix_connects "$BACK_MAILLOG")" "connections (tls=none)"
e2e_assert_eq "$t0" "$(e2e_settle_count tls_count)" "TLS sessions at the back end (tls=none)"

run_with_route "tls=encrypt tls_ca_file=$certs/backend.pem"
t0=$(e2e_settle_count tls_count)
e2e_assert_eq "$(unknown dave@dept.test)" "$(e2e_policy_query recipient=dave@dept.test)" \
    "dave (tls=encrypt, verified chain and address)"
e2e_assert_eq $((t0 + 1)) "$(e2e_settle_count tls_count)" "TLS sessions (tls=encrypt)"

run_with_route "tls=encrypt tls_ca_file=$certs/other.pem"
e2e_assert_match "${tf}TLS handshake with next hop failed: certificate check failed: self-signed certificate$" "$(e2e_policy_query recipient=erin@dept.test)" "erin (tls=encrypt, untrusted certificate)"
l=$(e2e_wait_log 'TLS handshake failed \(tls=encrypt\): certificate check failed' 5) ||
    e2e_fail "no log of the failed certificate check"
e2e_log "ok: $l"
e2e_assert_eq 0 "$(e2e_settle_count rcpt_count erin@dept.test)" "RCPTs for erin at the back end"

run_with_route "tls=encrypt tls_verify=ca tls_ca_file=$certs/backend.pem helo_name=probe.dept.test"
e2e_assert_eq "$(unknown frank@dept.test)" "$(e2e_policy_query recipient=frank@dept.test)" "frank (tls_verify=ca)"

# ---- back end that requires TLS (encrypt)
backend_tls encrypt
run_with_route "tls=none"
e2e_assert_match "${tf}next hop refused MAIL FROM:<>: 530 5\.7\.0 Must issue a STARTTLS command first$" "$(e2e_policy_query recipient=gina@dept.test)" "gina (tls=none, back end requires TLS)"
run_with_route "tls=may"
t0=$(e2e_settle_count tls_count)
e2e_assert_eq "$(unknown hank@dept.test)" "$(e2e_policy_query recipient=hank@dept.test)" "hank (tls=may, back end requires TLS)"
e2e_assert_eq DUNNO "$(e2e_policy_query recipient=alice@dept.test)" "alice (tls=may, back end requires TLS)"
e2e_assert_eq $((t0 + 1)) "$(e2e_settle_count tls_count)" "TLS sessions (back end requires TLS)"

# ---- a next hop whose TLS is broken, and one without STARTTLS
e2e_assert_eq "550 5.1.1 No such user" "$(e2e_policy_query recipient=bob@may.test)" "bob@may.test (broken TLS, tls=may)"
l=$(e2e_wait_log 'TLS handshake failed, retrying in plaintext \(tls=may\)' 5) ||
    e2e_fail "no log of the failed handshake"
e2e_log "ok: $l"
e2e_assert_eq 2 "$(e2e_ts_stat "$BROKEN_STATS" connections)" "connections to the broken next hop (TLS, then plaintext)"
e2e_assert_eq 1 "$(e2e_ts_stat "$BROKEN_STATS" starttls)" "STARTTLS commands at the broken next hop"
e2e_assert_eq 1 "$(e2e_ts_stat "$BROKEN_STATS" rcpt)" "RCPTs at the broken next hop"

e2e_assert_match "${tf}TLS handshake with next hop failed: .*wrong version number$" "$(e2e_policy_query recipient=bob@enc.test)" "bob@enc.test (broken TLS, tls=encrypt)"
e2e_assert_eq 2 "$(e2e_ts_stat "$BROKEN_STATS" starttls)" "STARTTLS commands at the broken next hop"
e2e_assert_eq 1 "$(e2e_ts_stat "$BROKEN_STATS" mail)" "MAIL commands at the broken next hop (none in plaintext for encrypt)"
e2e_assert_eq 1 "$(e2e_ts_stat "$BROKEN_STATS" rcpt)" "RCPTs at the broken next hop (none for encrypt)"

e2e_assert_match "${tf}next hop does not offer STARTTLS \(tls=encrypt\)$" "$(e2e_policy_query recipient=bob@plain.test)" "bob@plain.test (no STARTTLS, tls=encrypt)"
e2e_wait_log 'does not offer STARTTLS, and tls=encrypt' 5 >/dev/null || e2e_fail "no log of the missing STARTTLS"
e2e_assert_eq 0 "$(e2e_ts_stat "$PLAIN_STATS" rcpt)" "RCPTs at the next hop without STARTTLS (tls=encrypt)"
e2e_assert_eq "550 5.1.1 No such user" "$(e2e_policy_query recipient=bob@plainmay.test)" "bob@plainmay.test (no STARTTLS, tls=may)"
e2e_assert_eq 1 "$(e2e_ts_stat "$PLAIN_STATS" rcpt)" "RCPTs at the next hop without STARTTLS (tls=may)"

e2e_stop_policyd
