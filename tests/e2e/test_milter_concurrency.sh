#!/bin/bash
# test_milter_concurrency.sh - 200 parallel SMTP sessions through a real
# Sendmail 8.17 and callahead-milter, 3 recipients each, half of them valid:
# every verdict is counted and must be the expected one for its own address
# (no lost or crossed answers between sessions or libmilter threads).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib_milter.sh
. "$(dirname "$0")/lib_milter.sh"

SESSIONS=${MILTER_LOAD_SESSIONS:-200}
RCPTS=3
E2E_CDB=$E2E_TMP/users.cdb
E2E_ROUTES=$E2E_TMP/routes
lines=()
for ((i = 1; i <= SESSIONS; i++)); do
    for ((j = 1; j <= RCPTS; j++)); do
        (((i + j) % 2 == 0)) && lines+=("user${i}x$j@example.test OK")
    done
done
e2e_make_cdb "$E2E_CDB" "${lines[@]}"
printf '%s\n' "example.test   cdb:$E2E_CDB" "*  dunno" >"$E2E_ROUTES"
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"
e2e_free_port MPORT
e2e_milter_conf "$CONF" "$MPORT" "milter_max_inflight = $((SESSIONS * 2))"
e2e_start_sink
e2e_start_policyd "$CONF"
# the milter logs one line per recipient at info; debug would be 10 per recipient
MILTER_DEBUG=0 e2e_start_milter "$CONF" "$MPORT"
# Sendmail: room for every session at once (listen queue, no load-average refusal)
SM_EXTRA_MC="define(\`confREFUSE_LA', \`1000')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confDELAY_LA', \`1000')dnl
define(\`confMAX_DAEMON_CHILDREN', \`0')dnl" SM_LISTEN_QUEUE=512 e2e_start_sendmail "$MPORT"

start=$(date +%s)
out=$(perl "$E2E_TOP/tests/e2e/milter_load.pl" 127.0.0.1 "$SM_PORT" "$SESSIONS" "$RCPTS")
secs=$(($(date +%s) - start))
printf '%s\n' "$out" >"$E2E_TMP/load.txt"
total=$((SESSIONS * RCPTS))
valid=$(( (total + 1) / 2 ))
# (i + j) even: for 3 recipients per session, sessions alternate 1 and 2 valid ones
valid=0
for ((i = 1; i <= SESSIONS; i++)); do
    for ((j = 1; j <= RCPTS; j++)); do (((i + j) % 2 == 0)) && valid=$((valid + 1)); done
done
e2e_assert_eq "valid=$valid invalid=$((total - valid)) other=0 mismatch=0" "$(head -n 1 <<<"$out")" \
    "$SESSIONS parallel sessions x $RCPTS recipients through Sendmail + milter (${secs}s)"
n=$(grep -c 'milter: recipient=<user' "$E2E_TMP/milter.log")
e2e_assert_eq "$total" "$n" "recipients the milter logged"
e2e_stop_milter "$MILTER_PID" callahead-milter
