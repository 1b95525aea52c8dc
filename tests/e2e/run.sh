#!/bin/bash
# tests/e2e/run.sh - run the end-to-end scenarios (tests/e2e/test_*.sh), each in its
# own process with its own servers, and print one PASS/FAIL line per scenario and
# a summary. Exit 1 when any scenario failed.
#
# usage: tests/e2e/run.sh [SCENARIO...]     e.g. run.sh test_sighup test_malformed
# Environment (see lib.sh): E2E_BUILD, POLICYD, POLICYD_WRAPPER, E2E_TIMEOUT
# (seconds per scenario, default 180), E2E_LABEL (a word for the summary line).
set -u

here=$(cd "$(dirname "$0")" && pwd)
: "${E2E_TIMEOUT:=180}"
: "${E2E_LABEL:=e2e}"

if [ $# -gt 0 ]; then
    scenarios=()
    for s in "$@"; do
        s=${s%.sh}
        s=${s##*/}
        [ -f "$here/$s.sh" ] || { echo "$E2E_LABEL: no scenario $s" >&2; exit 2; }
        scenarios+=("$here/$s.sh")
    done
else
    scenarios=("$here"/test_*.sh)
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/callahead-e2e-logs.XXXXXX")
pass=0
fail=0
failed=()
for t in "${scenarios[@]}"; do
    name=$(basename "$t" .sh)
    start=$(date +%s)
    timeout -k 10 "$E2E_TIMEOUT" bash "$t" >"$logdir/$name.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
        echo "PASS $name (${secs}s)"
    else
        fail=$((fail + 1))
        failed+=("$name")
        [ "$rc" -eq 124 ] && echo "$name: timed out after ${E2E_TIMEOUT}s" >>"$logdir/$name.log"
        echo "FAIL $name (${secs}s, exit $rc)"
        sed 's/^/    | /' "$logdir/$name.log"
    fi
done

echo "$E2E_LABEL: ${#scenarios[@]} scenarios, $pass passed, $fail failed${POLICYD_WRAPPER:+ (daemon under ${POLICYD_WRAPPER%% *})}"
if [ "$fail" -ne 0 ]; then
    echo "$E2E_LABEL: failed: ${failed[*]} (logs in $logdir)"
    exit 1
fi
rm -rf "$logdir"
exit 0
