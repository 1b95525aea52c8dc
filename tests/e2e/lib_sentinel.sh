# tests/e2e/lib_sentinel.sh - Redis with a password, replicas and a Sentinel set on loopback,
# for the Sentinel scenarios (test_redis_sentinel.sh, test_reload_sentinel.sh).
# shellcheck shell=bash
#
# Sourced after lib.sh (or lib_callout.sh). Every server runs under $E2E_TMP/redis with the
# password $E2E_REDIS_PW (also the replicas' masterauth and the sentinels' own and auth-pass)
# and is stopped by pid by lib.sh's EXIT trap. The sentinels' small down-after keeps a
# failover (and a scenario) short.

e2e_need redis-server redis-cli
E2E_REDIS_PW=e2e-sentinel-secret
E2E_REDIS_DIR=$E2E_TMP/redis
mkdir -p "$E2E_REDIS_DIR"

# e2e_rcli PORT ARGS... - redis-cli with our password (quietly)
e2e_rcli() {
    local p=$1
    shift
    REDISCLI_AUTH=$E2E_REDIS_PW redis-cli -p "$p" "$@" 2>/dev/null
}

# e2e_auth_redis NAME VAR_PORT [ARGS...] - a redis-server with the password on a free port
# (stored in VAR_PORT, its pid in VAR_PORT_PID); waits for PONG
e2e_auth_redis() {
    local name=$1 var=$2 port pid i=0
    shift 2
    e2e_free_port "$var"
    port=${!var}
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$E2E_REDIS_DIR" --logfile "$E2E_REDIS_DIR/$name.log" \
        --requirepass "$E2E_REDIS_PW" --masterauth "$E2E_REDIS_PW" \
        --repl-diskless-sync yes --repl-diskless-sync-delay 0 "$@" >/dev/null 2>&1 &
    pid=$!
    e2e_track "$pid" "redis $name"
    printf -v "${var}_PID" '%s' "$pid"
    until [ "$(e2e_rcli "$port" ping)" = PONG ]; do
        e2e_alive "$pid" || e2e_fail "redis $name exited; see $E2E_REDIS_DIR/$name.log"
        [ "$i" -lt $((E2E_START_TIMEOUT * 10)) ] || e2e_fail "redis $name does not answer"
        sleep 0.1
        i=$((i + 1))
    done
    e2e_log "redis $name pid $pid on 127.0.0.1:$port"
}

# e2e_wait_replica PORT - until the replica on PORT is in sync with its master (10 s)
e2e_wait_replica() {
    local i=0
    until e2e_rcli "$1" INFO replication | grep -q '^master_link_status:up'; do
        [ "$i" -lt 100 ] || e2e_fail "the replica on $1 does not sync with the master"
        sleep 0.1
        i=$((i + 1))
    done
}

# e2e_start_sentinels NAME MASTER_PORT REPLICAS - three sentinels watching the master NAME at
# 127.0.0.1:MASTER_PORT; returns once each of them sees the two others and REPLICAS replicas
# (a failover needs them). Sets SENTINELS (the list for redis_sentinels) and SPORTS.
e2e_start_sentinels() {
    local name=$1 mport=$2 nrepl=$3 bin=redis-server n sp i
    command -v redis-sentinel >/dev/null 2>&1 && bin=redis-sentinel
    SENTINELS=
    SPORTS=
    for n in 1 2 3; do
        e2e_free_port SP
        cat >"$E2E_REDIS_DIR/sentinel$n.conf" <<CONF
port $SP
bind 127.0.0.1
dir $E2E_REDIS_DIR
logfile $E2E_REDIS_DIR/sentinel$n.log
requirepass $E2E_REDIS_PW
sentinel sentinel-pass $E2E_REDIS_PW
sentinel monitor $name 127.0.0.1 $mport 2
sentinel auth-pass $name $E2E_REDIS_PW
sentinel down-after-milliseconds $name 500
sentinel failover-timeout $name 4000
sentinel parallel-syncs $name 1
CONF
        "$bin" "$E2E_REDIS_DIR/sentinel$n.conf" --sentinel >/dev/null 2>&1 &
        e2e_track $! "sentinel $n"
        e2e_wait_port "$SP" $! "sentinel $n"
        SENTINELS="$SENTINELS${SENTINELS:+, }127.0.0.1:$SP"
        SPORTS="$SPORTS $SP"
    done
    for sp in $SPORTS; do
        i=0
        until [ "$(e2e_rcli "$sp" SENTINEL sentinels "$name" | grep -c '^name$')" = 2 ] &&
            [ "$(e2e_rcli "$sp" SENTINEL replicas "$name" | grep -c '^name$')" = "$nrepl" ]; do
            [ "$i" -lt 200 ] || e2e_fail "sentinel on $sp does not see the others and the replica"
            sleep 0.1
            i=$((i + 1))
        done
    done
    e2e_log "sentinels on$SPORTS watch $name at 127.0.0.1:$mport"
}
