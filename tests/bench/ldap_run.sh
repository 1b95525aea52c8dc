#!/bin/bash
# tests/bench/ldap_run.sh - the LDAP benchmark: cold verdicts/s and latency through
# the verifier (ldap: route, its pool) beside a minimal asynchronous libldap client
# issuing the same searches straight at the same slapd (the ceiling), at
# concurrency 1, 16, 256 and pool sizes 1, 4, 16. Every address is looked up once
# (cold); half of them exist. Prints a markdown table for docs/BENCHMARKS.md.
#
# slapd: a private mdb directory of NUSERS entries on 127.0.0.1, started and stopped
# by pid. Environment (optional): BUILD=DIR (a configured build dir with libldap;
# default ./_build), N=2000 lookups per row, NUSERS=40000.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/_build}
N=${N:-2000}
NUSERS=${NUSERS:-40000}
BENCH=$BUILD/tests/bench/ldap_bench

make -C "$BUILD" tests/bench/ldap_bench >/dev/null
D=$(mktemp -d /tmp/callahead-ldap-bench.XXXXXX)
SLAPD_PID=
cleanup() {
    [ -z "$SLAPD_PID" ] || { kill "$SLAPD_PID" 2>/dev/null; wait "$SLAPD_PID" 2>/dev/null || true; }
    rm -rf "$D"
}
trap cleanup EXIT

mkdir -p "$D/db"
cat >"$D/slapd.conf" <<EOC
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $D/slapd.pid
database mdb
maxsize 1073741824
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw secret
directory $D/db
index objectClass,mail eq
access to * by * read
EOC
{
    printf 'dn: dc=example,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n'
    awk -v n="$NUSERS" 'BEGIN { for (i = 0; i < n; i += 2)
        printf "dn: uid=u%07d,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: u%07d\ncn: u\nsn: u\nmail: u%07d@bench.test\n\n", i, i, i }'
} >"$D/users.ldif"
/usr/sbin/slapadd -q -f "$D/slapd.conf" -l "$D/users.ldif"
PORT=$(( (RANDOM % 20000) + 30000 ))
/usr/sbin/slapd -d 0 -f "$D/slapd.conf" -h "ldap://127.0.0.1:$PORT/" >"$D/slapd.log" 2>&1 &
SLAPD_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

echo "| concurrency | pool | direct verdicts/s | callahead verdicts/s | ratio | direct p50 / p99 ms | callahead p50 / p99 ms | p50 overhead ms |"
echo "|---|---|---|---|---|---|---|---|"
off=0
for c in 1 16 256; do
    for s in 1 4 16; do
        # fresh addresses for each run, so that slapd's caches see the same cold pattern
        d=$("$BENCH" -m direct -p "$PORT" -c "$c" -s "$s" -n "$N" -o "$off")
        off=$((off + N))
        v=$("$BENCH" -m verifier -p "$PORT" -c "$c" -s "$s" -n "$N" -o "$off" 2>/dev/null)
        off=$((off + N))
        [ "$off" -lt "$NUSERS" ] || off=0
        read -r _ _ _ _ dr dp50 dp99 derr <<<"$d"
        read -r _ _ _ _ vr vp50 vp99 verr <<<"$v"
        [ "$derr" = 0 ] && [ "$verr" = 0 ] || echo "wrong verdicts: direct $derr, callahead $verr" >&2
        awk -v c="$c" -v s="$s" -v dr="$dr" -v vr="$vr" -v dp50="$dp50" -v dp99="$dp99" \
            -v vp50="$vp50" -v vp99="$vp99" 'BEGIN {
            printf "| %d | %d | %d | %d | %.2f | %.3f / %.3f | %.3f / %.3f | %.3f |\n",
                c, s, dr, vr, vr / dr, dp50, dp99, vp50, vp99, vp50 - dp50 }'
    done
done
