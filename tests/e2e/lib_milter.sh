# shellcheck shell=bash
# tests/e2e/lib_milter.sh - helpers for the callahead-milter scenarios, sourced
# after lib.sh: start the milter, drive it with miltertest, and run a private
# Sendmail 8.17 unpacked from the Debian packages beside Postfix.
#
# Environment (besides lib.sh's):
#   MILTER            the milter binary (default: $E2E_BUILD/callahead-milter)
#   MILTER_WRAPPER    command prefix for the milter (valgrind ...)
#   MILTER_DEBUG      1 (default): run the milter with -D; 0: info lines only
#   E2E_SENDMAIL_CACHE where the unpacked Sendmail packages are kept between runs
#                     (default /var/tmp/callahead-e2e-sendmail)
#   SM_EXTRA_MC       more .mc lines for e2e_start_sendmail (before the MAILER line)
#   SM_LISTEN_QUEUE   Sendmail's listen queue (DAEMON_OPTIONS Listen=, default 10)

: "${MILTER:=$E2E_BUILD/callahead-milter}"
: "${MILTER_WRAPPER:=}"
: "${E2E_SENDMAIL_CACHE:=/var/tmp/callahead-e2e-sendmail}"

# e2e_milter_conf FILE PORT [EXTRA-LINE...] - a milter section for FILE: appends
# milter_listen on 127.0.0.1:PORT and milter_policy_service pointing at policyd
e2e_milter_conf() {
    local f=$1 port=$2 l
    shift 2
    {
        echo "milter_listen = inet:$port@127.0.0.1"
        echo "milter_policy_service = inet:127.0.0.1:$POLICYD_PORT"
        for l in "$@"; do
            echo "$l"
        done
    } >>"$f"
}

# e2e_start_milter CONF PORT|PATH [NAME] - run the milter in the foreground (log in
# $E2E_TMP/NAME.log, default milter) and wait until it listens on 127.0.0.1:PORT
# or on the unix socket PATH; sets MILTER_PID (and NAME_PID)
e2e_start_milter() {
    local conf=$1 where=$2 name=${3:-milter} wrapper=() i=0
    [ -x "$MILTER" ] || e2e_fail "$MILTER is not built (configure found no libmilter?)"
    read -r -a wrapper <<<"$MILTER_WRAPPER"
    local debug=-D
    [ "${MILTER_DEBUG:-1}" = 1 ] || debug=
    # shellcheck disable=SC2086
    "${wrapper[@]}" "$MILTER" -f $debug -c "$conf" >>"$E2E_TMP/$name.log" 2>&1 &
    MILTER_PID=$!
    printf -v "${name}_PID" '%s' "$MILTER_PID"
    e2e_track "$MILTER_PID" "$name"
    case "$where" in
    /*)
        # a new socket file: the milter's own, once it answers
        until [ -S "$where" ] && e2e_port_unix_open "$where"; do
            e2e_alive "$MILTER_PID" || e2e_fail "$name exited before listening on $where"
            [ "$i" -lt $((E2E_START_TIMEOUT * 10)) ] || e2e_fail "$name does not listen on $where"
            sleep 0.1
            i=$((i + 1))
        done
        ;;
    *) e2e_wait_port "$where" "$MILTER_PID" "$name" ;;
    esac
    e2e_log "callahead-milter ($name) pid $MILTER_PID on $where"
}

# e2e_port_unix_open PATH - does something accept connections on the unix socket PATH?
e2e_port_unix_open() {
    perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1' "$1"
}

# e2e_stop_milter PID NAME - SIGTERM; libmilter takes up to about 5 s; must exit 0
e2e_stop_milter() {
    local rc=0
    e2e_kill_wait "$1" 20 || rc=$?
    e2e_untrack "$1"
    [ "$rc" -eq 0 ] || e2e_fail "$2 exited with status $rc after SIGTERM"
    e2e_log "ok: $2 pid $1 exited 0 after SIGTERM"
}

# e2e_miltertest PORT|SOCKET CLIENT-IP AUTH RCPT... - one milter session through
# miltertest (tests/e2e/milter_session.lua) to 127.0.0.1:PORT or to SOCKET
# (unix:PATH): connect from CLIENT-IP, MAIL with {auth_authen}=AUTH (empty:
# none), one RCPT each; prints one reply name (continue, replycode,
# tempfail, reject, accept, ...) per recipient
e2e_miltertest() {
    local sock=$1 ip=$2 auth=$3
    shift 3
    e2e_need miltertest
    case "$sock" in *:*) ;; *) sock="inet:$sock@127.0.0.1" ;; esac
    MT_SOCKET="$sock" MT_CLIENT_IP="$ip" MT_AUTH="$auth" MT_RCPTS="$*" \
        miltertest -s "$E2E_TOP/tests/e2e/milter_session.lua" 2>>"$E2E_TMP/miltertest.log" |
        tee -a "$E2E_TMP/miltertest.log" | sed -n 's/^reply //p'
}

# e2e_milter_logged NAME PATTERN - did milter NAME log a line matching PATTERN (grep -E)?
e2e_milter_logged() {
    grep -Eq -- "$2" "$E2E_TMP/$1.log"
}

# ---------------------------------------------------------------- Sendmail

# e2e_sendmail_fetch - Sendmail 8.17 unpacked (not installed: it conflicts with
# Postfix as a package) into $E2E_SENDMAIL_CACHE/root; downloads the Debian
# packages once. Sets SENDMAIL_ROOT.
e2e_sendmail_fetch() {
    local d=$E2E_SENDMAIL_CACHE f lockfd
    SENDMAIL_ROOT=$d/root
    # Scenarios of two suites running at once (tests/run-all.sh runs the ASan
    # pass beside the other) fetch and unpack once, not over each other; the
    # lock goes with the scenario's shell, also when it fails.
    mkdir -p "$d" || e2e_fail "cannot create $d"
    exec {lockfd}>"$d/.lock"
    flock "$lockfd" || e2e_fail "cannot lock $d/.lock"
    if [ -x "$SENDMAIL_ROOT/usr/libexec/sendmail/sendmail" ] &&
        [ -f "$SENDMAIL_ROOT/usr/share/sendmail/cf/m4/cf.m4" ]; then
        exec {lockfd}>&-
        return 0
    fi
    e2e_need apt-get dpkg m4 unshare
    mkdir -p "$d/debs"
    (cd "$d/debs" && apt-get download sendmail-bin sendmail-cf sendmail-base) \
        >>"$E2E_TMP/sendmail-fetch.log" 2>&1 ||
        { apt-get update >>"$E2E_TMP/sendmail-fetch.log" 2>&1 &&
            (cd "$d/debs" && apt-get download sendmail-bin sendmail-cf sendmail-base) \
            >>"$E2E_TMP/sendmail-fetch.log" 2>&1; } ||
        e2e_fail "cannot download the Sendmail packages (see sendmail-fetch.log)"
    for f in "$d"/debs/*.deb; do
        dpkg -x "$f" "$SENDMAIL_ROOT" || e2e_fail "dpkg -x $f failed"
    done
    [ -x "$SENDMAIL_ROOT/usr/libexec/sendmail/sendmail" ] || e2e_fail "no sendmail binary in $f"
    exec {lockfd}>&-
}

# e2e_start_sendmail MILTER-PORT|local:PATH [F-FLAGS] - a private Sendmail on a free port
# (SM_PORT) relaying example.test and other.test to the smtp-sink, with
# callahead-milter as its only INPUT_MAIL_FILTER (F=T by default: tempfail
# when the milter is down) and the timeouts of contrib/sendmail/callahead.mc.
# Sets SM_PORT, SM_PID, SM_DIR.
e2e_start_sendmail() {
    local mport=$1 flags=${2:-T} i=0 msock
    case "$mport" in *:*) msock=$mport ;; *) msock="inet:$mport@127.0.0.1" ;; esac
    e2e_sendmail_fetch
    SM_DIR=$E2E_TMP/sendmail
    mkdir -p "$SM_DIR/mqueue"
    chmod 755 "$SM_DIR"
    chmod 700 "$SM_DIR/mqueue"
    : >"$SM_DIR/aliases"
    printf 'hosts files\naliases files\n' >"$SM_DIR/service.switch"
    printf '%s\n' "example.test smtp:[127.0.0.1]:$SINK_PORT" \
        "other.test smtp:[127.0.0.1]:$SINK_PORT" >"$SM_DIR/mailertable.txt"
    e2e_free_port SM_PORT
    cat >"$SM_DIR/e2e.mc" <<EOM
divert(0)dnl
include(\`$SENDMAIL_ROOT/usr/share/sendmail/cf/m4/cf.m4')dnl
OSTYPE(\`linux')dnl
define(\`confDONT_PROBE_INTERFACES',\`True')dnl
define(\`confDOMAIN_NAME',\`mx.sm.test')dnl
define(\`confSERVICE_SWITCH_FILE',\`$SM_DIR/service.switch')dnl
define(\`ALIAS_FILE',\`$SM_DIR/aliases')dnl
define(\`QUEUE_DIR',\`$SM_DIR/mqueue')dnl
define(\`confPID_FILE',\`$SM_DIR/sendmail.pid')dnl
define(\`STATUS_FILE',\`$SM_DIR/sendmail.st')dnl
define(\`confMILTER_LOG_LEVEL',\`6')dnl
define(\`SMART_HOST', \`smtp:[127.0.0.1]')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
define(\`SMTP_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
DAEMON_OPTIONS(\`Family=inet, Name=MTA, Port=$SM_PORT, Addr=127.0.0.1, Listen=${SM_LISTEN_QUEUE:-10}')dnl
INPUT_MAIL_FILTER(\`callahead', \`S=$msock, F=$flags, T=S:10s;R:10s;E:5m')dnl
FEATURE(\`accept_unresolvable_domains')dnl
RELAY_DOMAIN(\`example.test other.test')dnl
${SM_EXTRA_MC:-}
MAILER(\`smtp')dnl
EOM
    m4 "$SM_DIR/e2e.mc" >"$SM_DIR/e2e.cf" 2>"$SM_DIR/m4.log" || e2e_fail "m4 failed: $(cat "$SM_DIR/m4.log")"
    # unshare -u: a qualified host name of its own, or Sendmail waits 60 s to qualify ours
    unshare -u sh -c "hostname mx.sm.test; exec $SENDMAIL_ROOT/usr/libexec/sendmail/sendmail \
        -C $SM_DIR/e2e.cf -bD -O LogLevel=14" >"$SM_DIR/sendmail.log" 2>&1 &
    SM_PID=$!
    e2e_track "$SM_PID" sendmail
    e2e_wait_port "$SM_PORT" "$SM_PID" sendmail
    e2e_log "sendmail pid $SM_PID on 127.0.0.1:$SM_PORT, milter $msock F=$flags"
}

# e2e_sm_rcpt RCPT[,RCPT...] [SWAKS-OPTION...] - one SMTP session to our
# Sendmail that stops after RCPT; prints the reply to each RCPT TO
e2e_sm_rcpt() {
    local out rcpts=$1
    shift
    out=$(swaks --server "127.0.0.1:$SM_PORT" --helo client.e2e.test \
        --from sender@client.e2e.test --timeout 60 --quit-after RCPT "$@" \
        --to "$rcpts" 2>&1)
    printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
    printf '%s\n' "$out" | awk '/^ *-> RCPT TO:/ { want = 1; next }
        want && /^ *<(-|\*\*) / { sub(/^ *<(-|\*\*) +/, ""); print; want = 0 }'
}

# ---------------------------------------------------------------- Postfix smtpd_milters

# e2e_start_postfix_milter MILTER-PORT - a private Postfix instance (as
# e2e_start_postfix, same relay domains and smtp-sink next hop) whose smtpd asks
# callahead-milter and no policy service. Sets SMTP_PORT, PF_DIR, PF_MAILLOG.
e2e_start_postfix_milter() {
    local mport=$1 domains="example.test other.test" d tmaps=""
    e2e_need postfix postconf script
    PF_DIR=$E2E_TMP/postfix
    PF_MAILLOG=$PF_DIR/log/maillog
    e2e_free_port SMTP_PORT
    mkdir -p "$PF_DIR/log" "$PF_DIR/queue" "$PF_DIR/data"
    chown postfix "$PF_DIR/data"
    for d in $domains; do
        tmaps="$tmaps {$d = smtp:[127.0.0.1]:$SINK_PORT}"
    done
    {
        echo "# private Postfix instance with smtpd_milters for $E2E_NAME (tests/e2e/lib_milter.sh)"
        e2e_postfix_main_cf_base "$PF_DIR" mx.e2e.test e2e.test
        cat <<EOF2
relay_domains = $domains
transport_maps = inline:{$tmaps }
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination
smtpd_milters = inet:127.0.0.1:$mport
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 10s
milter_command_timeout = 30s
EOF2
    } >"$PF_DIR/main.cf"
    e2e_postfix_launch "$PF_DIR" "$SMTP_PORT" postfix
    e2e_log "postfix (config $PF_DIR) smtpd on 127.0.0.1:$SMTP_PORT, smtpd_milters inet:127.0.0.1:$mport"
}

# ---------------------------------------------------------------- verdict checks
# The same checks for each MTA in front of callahead-milter (MTA: postfix, as
# e2e_start_postfix_milter; sendmail, as e2e_start_sendmail), with a policyd
# serving e2e_example_tables and milter_timeout = 3s: the verdicts, a message
# with a good and a bad recipient, policyd stopped, resumed and killed.

# e2e_milter_rcpt MTA RCPT - the reply to RCPT TO:<RCPT> through MTA
e2e_milter_rcpt() {
    case "$1" in
    postfix) e2e_smtp_rcpt "$2" ;;
    sendmail) e2e_sm_rcpt "$2" ;;
    *) e2e_fail "e2e_milter_rcpt: unknown MTA $1" ;;
    esac
}

# e2e_milter_expect MTA reject|ok|tempfail RCPT - the reply MTA gives at RCPT TO:<RCPT>
# when the milter rejects with the policy path's reply (Sendmail writes "<address>... "
# where Postfix writes "<address>: "), accepts, or tempfails (before a 4xx Sendmail
# writes nothing, so there the milter names the address as Postfix does)
e2e_milter_expect() {
    local pf
    case "$1:$2" in
    postfix:reject) e2e_unknown_reply "$3" ;;
    sendmail:reject)
        pf=$(e2e_unknown_reply "$3")
        printf '550 5.1.1 <%s>... %s' "$3" "${pf#*>: }"
        ;;
    postfix:ok) printf '250 2.1.5 Ok' ;;
    sendmail:ok) printf '250 2.1.5 <%s>... Recipient ok' "$3" ;;
    *:tempfail)
        printf '451 4.3.0 <%s>: Recipient address rejected: Recipient address verification is unavailable' "$3"
        ;;
    *) e2e_fail "e2e_milter_expect: unknown case $1:$2" ;;
    esac
}

# e2e_milter_check_verdicts MTA - unknown rejected with the policy path's code,
# status and text, known accepted, a dunno route accepted
e2e_milter_check_verdicts() {
    e2e_assert_eq "$(e2e_milter_expect "$1" reject bob@example.test)" \
        "$(e2e_milter_rcpt "$1" bob@example.test)" "RCPT TO:<bob@example.test> through $1"
    e2e_assert_eq "$(e2e_milter_expect "$1" ok alice@example.test)" \
        "$(e2e_milter_rcpt "$1" alice@example.test)" "RCPT TO:<alice@example.test> through $1"
    e2e_assert_eq "$(e2e_milter_expect "$1" ok anyone@other.test)" \
        "$(e2e_milter_rcpt "$1" anyone@other.test)" "RCPT TO:<anyone@other.test> (route * dunno)"
}

# e2e_milter_check_mixed MTA PORT - one message to a good and a bad recipient
# through MTA on 127.0.0.1:PORT is accepted and reaches the next hop for the
# good one only
e2e_milter_check_mixed() {
    local mta=$1 port=$2 marker out f rcpts queued
    marker="mixed-$$-$RANDOM"
    out=$(swaks --server "127.0.0.1:$port" --helo client.e2e.test --from sender@client.e2e.test \
        --to alice@example.test,bob@example.test --timeout 60 --body "marker $marker" 2>&1)
    printf '%s\n' "$out" >>"$E2E_TMP/swaks.log"
    printf '%s\n' "$out" | grep -q '^<\*\* *550 5\.1\.1 <bob@example\.test>' ||
        e2e_fail "bob was not rejected in the mixed message"
    case "$mta" in
    postfix) queued='^<- +250 2\.0\.0 Ok: queued as ' ;;
    *) queued='^<- +250 2\.0\.0 .* Message accepted' ;;
    esac
    printf '%s\n' "$out" | grep -Eq "$queued" || e2e_fail "the mixed message was not accepted for alice"
    f=$(e2e_wait_delivery "$marker" 60) || e2e_fail "the mixed message never reached the next hop"
    case "$mta" in
    # Postfix's smtp client adds ORCPT and the like after the address
    postfix) rcpts=$(sed -n 's/^X-Rcpt-Args: \(<[^>]*>\).*/\1/p' "$f" | tr '\n' ' ') ;;
    *) rcpts=$(sed -n 's/^X-Rcpt-Args: //p' "$f" | tr '\n' ' ') ;;
    esac
    e2e_assert_eq "<alice@example.test> " "$rcpts" "envelope recipients at the next hop"
}

# e2e_milter_check_stopped MTA - policyd stopped (SIGSTOP; it stays stopped):
# two sessions at once each get the tempfail within milter_timeout (3 s), so
# MTA and the milter serve in parallel
e2e_milter_check_stopped() {
    local mta=$1 start p2 r ms want
    want=$(e2e_milter_expect "$mta" tempfail bob@example.test)
    kill -STOP "$POLICYD_PID"
    start=$(date +%s%N)
    e2e_milter_rcpt "$mta" bob@example.test >"$E2E_TMP/stopped2.txt" &
    p2=$!
    r=$(e2e_milter_rcpt "$mta" bob@example.test)
    wait "$p2"
    ms=$((($(date +%s%N) - start) / 1000000))
    e2e_assert_eq "$want" "$r" "RCPT TO:<bob@example.test> with policyd stopped"
    e2e_assert_eq "$want" "$(cat "$E2E_TMP/stopped2.txt")" "the parallel session with policyd stopped"
    if [ "$ms" -lt 2500 ] || [ "$ms" -ge 8000 ]; then
        e2e_fail "two sessions took ${ms} ms with milter_timeout = 3s"
    fi
    e2e_log "ok: two parallel sessions answered 451 in ${ms} ms"
}

# e2e_milter_check_resumed MTA - policyd continued (SIGCONT): verdicts again
e2e_milter_check_resumed() {
    kill -CONT "$POLICYD_PID"
    e2e_assert_eq "$(e2e_milter_expect "$1" reject bob@example.test)" \
        "$(e2e_milter_rcpt "$1" bob@example.test)" "RCPT TO:<bob@example.test> once policyd runs again"
}

# e2e_milter_check_killed MTA - policyd killed: the milter's default action
# (tempfail) at once
e2e_milter_check_killed() {
    local start ms
    kill -KILL "$POLICYD_PID"
    wait "$POLICYD_PID" 2>/dev/null
    e2e_untrack "$POLICYD_PID"
    start=$(date +%s%N)
    e2e_assert_eq "$(e2e_milter_expect "$1" tempfail bob@example.test)" \
        "$(e2e_milter_rcpt "$1" bob@example.test)" "RCPT TO:<bob@example.test> with policyd killed"
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$ms" -lt 2500 ] || e2e_fail "the tempfail with policyd killed took ${ms} ms"
}
