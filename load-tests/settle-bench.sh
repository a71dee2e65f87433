#!/usr/bin/env bash
# A paid call's whole life on one node, on SQLite (issue 17): set-up, hang-up,
# settlement (the hold released through the sandbox, its ledger rows) and
# the `session.settled` webhook event stored. `parley-load signal` measures
# the set-up alone; this measures what comes after it too.
#
# For each build named (a directory with `parley`), RUNS fresh servers,
# alternating between the builds, each pinned to SERVER_CORE. On each: a
# warm-up of 200 pairs, then ROUNDS rounds of PAIRS pairs at once (`parley-load
# signal --paired-only --price-minor PRICE`, pinned to GENERATOR_CORE: prices
# set, both connections opened, the call placed, accepted and joined, then
# hung up). Each round prints
#
#   cpu_us_per_pair   the server's utime+stime from the round's start until
#                     every settlement of it is announced (settlements.announced
#                     read with sqlite3 every 20 ms, on GENERATOR_CORE), per pair
#   tail_ms, tail_cpu_ms  from the generator's exit (every pair hung up and
#                     closed) to that moment: wall time and server CPU
#
# as one JSON line (stdout), then the medians per build.
#
#   load-tests/settle-bench.sh target/release
#   load-tests/settle-bench.sh /tmp/before /tmp/after     # alternating A/B
#
# Builds nothing (cargo build --release -p parley-server -p parley-load).
# Environment: LOAD=target/release/parley-load RUNS=3 ROUNDS=3 PAIRS=1000
# PRICE=2500 PORT=18680 SERVER_CORE=0 GENERATOR_CORE=1.
set -euo pipefail

LOAD=${LOAD:-target/release/parley-load}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-3}
PAIRS=${PAIRS:-1000}
PRICE=${PRICE:-2500}
PORT=${PORT:-18680}
SERVER_CORE=${SERVER_CORE:-0}
GENERATOR_CORE=${GENERATOR_CORE:-1}

die() { echo "settle-bench: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "name at least one build directory (with parley in it)"
for b in "$@"; do [ -x "$b/parley" ] || die "no $b/parley"; done
[ -x "$LOAD" ] || die "no $LOAD: cargo build --release -p parley-load"
for c in jq curl taskset sqlite3; do command -v "$c" >/dev/null || die "$c is needed"; done

OUT=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
announced() {
    taskset -c "$GENERATOR_CORE" sqlite3 "$1/parley.db" \
        "PRAGMA busy_timeout = 5000; SELECT COUNT(*) FROM settlements WHERE announced = 1" | tail -n1
}
# wait_announced DATA N: until N settlements are announced (at most 60 s).
wait_announced() {
    local i
    for i in $(seq 3000); do
        [ "$(announced "$1")" -ge "$2" ] && return 0
        sleep 0.02
    done
    die "fewer than $2 settlements announced after 60 s (see $1/log)"
}
load() {
    taskset -c "$GENERATOR_CORE" "$LOAD" signal --url "http://127.0.0.1:$PORT" --clients 0 --pairs "$2" \
        --relay-secs 0 --paired-only --price-minor "$PRICE" --server-pid "$SERVER_PID" \
        --jwt-secret-file "$1/jwt-secret" 2>>"$1/load.err" | tail -n1
}

hz=$(getconf CLK_TCK)
for r in $(seq "$RUNS"); do
    for bin in "$@"; do
        data="$OUT/$r-$(basename "$bin")"
        mkdir -p "$data"
        env PARLEY_DATA_DIR="$data" PARLEY_LISTEN="127.0.0.1:$PORT" \
            PARLEY_RATE_LIMIT_PER_SEC=1000000 PARLEY_RATE_LIMIT_BURST=1000000 \
            taskset -c "$SERVER_CORE" "$bin/parley" serve >"$data/log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do
            curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && [ -s "$data/jwt-secret" ] && break
            sleep 0.1
        done
        want=200
        load "$data" 200 >/dev/null
        wait_announced "$data" "$want"
        for round in $(seq "$ROUNDS"); do
            want=$((want + PAIRS))
            c0=$(cpu_ticks)
            t0=$(date +%s%N)
            report=$(load "$data" "$PAIRS")
            c1=$(cpu_ticks)
            t1=$(date +%s%N)
            wait_announced "$data" "$want"
            c2=$(cpu_ticks)
            t2=$(date +%s%N)
            jq -c --arg build "$bin" --argjson run "$r" --argjson round "$round" \
                --argjson cpu "$(( (c2 - c0) * 1000000 / hz / PAIRS ))" \
                --argjson tail_ms "$(( (t2 - t1) / 1000000 ))" --argjson tail_cpu "$(( (c2 - c1) * 1000 / hz ))" \
                '{build: $build, run: $run, round: $round, pairs_failed, setup_conns_per_sec: .setup_connections_per_sec,
                  cpu_us_per_setup_conn: .server_cpu_us_per_setup_connection, cpu_us_per_pair: $cpu,
                  tail_ms: $tail_ms, tail_cpu_ms: $tail_cpu}' <<<"$report" | tee -a "$OUT/runs.jsonl"
        done
        kill -INT "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    done
done

echo "# medians per build (${RUNS} servers x ${ROUNDS} rounds of ${PAIRS} pairs)"
jq -rs 'group_by(.build)[] | . as $g
  | def med(f): ([$g[] | f] | sort | .[(length / 2 | floor)]);
  "\($g[0].build): cpu_us_per_pair \(med(.cpu_us_per_pair)), tail_ms \(med(.tail_ms)), tail_cpu_ms \(med(.tail_cpu_ms)), setup conns/s \(med(.setup_conns_per_sec)), cpu_us_per_setup_conn \(med(.cpu_us_per_setup_conn)), pairs failed \([$g[] | .pairs_failed] | add)"' \
    "$OUT/runs.jsonl"
