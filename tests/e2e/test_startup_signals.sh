#!/bin/bash
# test_startup_signals.sh - a SIGHUP that reaches the daemon while it starts
# is handled once its loop runs, as a reload, instead of killing it (default
# action) or being lost. The daemon is started with SIGHUP blocked and already
# pending, as a supervisor's signal mask or an impatient "reload" right after
# "start" would leave it: it must come up, answer, and log the reload.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_example_tables
e2e_start_sink
CONF=$E2E_TMP/callahead.conf
e2e_policyd_conf "$CONF"

# exec the daemon with SIGHUP blocked and pending (both survive execve)
cat >"$E2E_TMP/pending_hup.py" <<'PY'
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
os.kill(os.getpid(), signal.SIGHUP)
os.execvp(sys.argv[1], sys.argv[1:])
PY
POLICYD_WRAPPER="python3 $E2E_TMP/pending_hup.py${POLICYD_WRAPPER:+ $POLICYD_WRAPPER}"
e2e_start_policyd "$CONF"

for _ in $(seq 1 50); do
    grep -q 'reloaded ' "$POLICYD_LOG" && break
    sleep 0.1
done
grep -q 'reloaded ' "$POLICYD_LOG" ||
    e2e_fail "the SIGHUP pending at start-up was never handled as a reload (see $POLICYD_LOG)"
e2e_log "ok: the pending SIGHUP reloaded once the loop ran"
e2e_assert_match '^550 5\.1\.1 ' "$(e2e_policy_query recipient=bob@example.test)" \
    "bob after the start-up reload"

# and a SIGHUP sent now reloads again (SIGHUP is not left blocked)
n=$(grep -c 'reloaded ' "$POLICYD_LOG")
kill -HUP "$POLICYD_PID"
for _ in $(seq 1 50); do
    [ "$(grep -c 'reloaded ' "$POLICYD_LOG")" -gt "$n" ] && break
    sleep 0.1
done
[ "$(grep -c 'reloaded ' "$POLICYD_LOG")" -gt "$n" ] || e2e_fail "a later SIGHUP did not reload"
e2e_log "ok: a later SIGHUP reloads too"
e2e_stop_policyd
