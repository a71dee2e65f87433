#!/usr/bin/env bash
# Relay and call set-up figures of a cluster (issue 16), beside one node's:
# `parley-load signal --pairs P --relay-secs S` against
#
#   hub       the hub node's own port: both clients on the node that runs
#             the hub core (no bus);
#   edge      another node's port: both clients on a node that is not the
#             hub node, so every relayed message crosses Redis twice (edge →
#             hub node's stream, hub node → edge's stream);
#   balancer  HAProxy (round robin: a mix of the two);
#   single    one `parley serve` without Redis (SQLite, in-process bus): the
#             baseline,
#
# RUNS times each, and the Redis commands per relayed message: Redis's
# total_commands_processed (INFO stats) before and after each run, less what
# the idle cluster sends anyway (measured first, per second), divided by the
# messages parley-load relayed (set-up phase + relay phase). The cluster
# gets a Redis of its own on REDIS_PORT so that other clients of a shared
# Redis do not count. Prints one line per run, then the medians.
#
#   load-tests/cluster-bench.sh
#
# Environment:
#   BIN=target/release              where `parley` and `parley-load` are
#   PAIRS=50 RELAY_SECS=10          parley-load signal's --pairs / --relay-secs
#   RELAY_WINDOW=1                  --relay-window (1: one message in flight per pair)
#   RUNS=3                          runs per target (medians are printed)
#   IDLE_SECS=5                     how long the idle cluster's own Redis traffic is measured
#   REDIS_PORT=16379                the cluster's own Redis, started and stopped here
#                                   (6379: the shared one; its other clients then count too)
#   PARLEY_CLUSTER_PORT=18080       the balancer (nodes on the ports above it), as for
#   PARLEY_CLUSTER_STATS_PORT=18404 scripts/cluster.sh, which this script runs (up, then down)
#   PARLEY_CLUSTER_DIR=.cluster     its state directory
#   SINGLE_PORT=18090               the single node's port
#   RATE_LIMIT=1000000              every node's per-connection message limit (per s and burst)
#   OUT=<temp dir>                  each run's output, logs, Redis command counts
#
# Exit status: 0 when every run set up and relayed every pair, 1 otherwise,
# 2 when it could not start.
set -euo pipefail
export LC_ALL=C # sort and join agree on the order

caller=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller/$1" ;; esac; }

BIN=$(abs "${BIN:-${CARGO_TARGET_DIR:-target}/release}")
PAIRS=${PAIRS:-50}
RELAY_SECS=${RELAY_SECS:-10}
RELAY_WINDOW=${RELAY_WINDOW:-1}
RUNS=${RUNS:-3}
IDLE_SECS=${IDLE_SECS:-5}
REDIS_PORT=${REDIS_PORT:-16379}
SINGLE_PORT=${SINGLE_PORT:-18090}
RATE_LIMIT=${RATE_LIMIT:-1000000}
OUT=$(abs "${OUT:-$(mktemp -d -t parley-cluster-bench.XXXXXX)}")
export PARLEY_CLUSTER_PORT=${PARLEY_CLUSTER_PORT:-18080}
export PARLEY_CLUSTER_STATS_PORT=${PARLEY_CLUSTER_STATS_PORT:-18404}
export PARLEY_CLUSTER_DIR=$(abs "${PARLEY_CLUSTER_DIR:-.cluster}")
export PARLEY_CLUSTER_REDIS_PORT=$REDIS_PORT PARLEY_BIN=$BIN/parley
mkdir -p "$OUT"

die() { printf 'cluster-bench.sh: %s\n' "$*" >&2; exit 2; }
for v in PAIRS RELAY_SECS RELAY_WINDOW RUNS IDLE_SECS REDIS_PORT SINGLE_PORT RATE_LIMIT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: expected a whole number"
done
[ "$RUNS" -ge 1 ] && [ "$IDLE_SECS" -ge 1 ] && [ "$PAIRS" -ge 1 ] || die "RUNS, IDLE_SECS and PAIRS must be at least 1"
for b in parley parley-load; do
    [ -x "$BIN/$b" ] || die "no $BIN/$b: cargo build --release -p parley-server -p parley-load (or set BIN)"
done
for c in jq redis-cli redis-server curl; do command -v "$c" >/dev/null || die "$c is needed"; done

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
commands_processed() { rcli INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'; }
# "command calls" per line, from INFO commandstats.
command_calls() {
    rcli INFO commandstats | tr -d '\r' |
        awk -F'[:,=]' '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); print $1, $3 }' | sort
}
now() { date +%s.%N; }
node_up() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/readyz" || true)" = 200 ]; }

for n in 1 2 3; do
    ! node_up $((PARLEY_CLUSTER_PORT + n)) ||
        die "a node already answers on 127.0.0.1:$((PARLEY_CLUSTER_PORT + n)): run scripts/cluster.sh down first"
done
! node_up "$SINGLE_PORT" || die "something answers on 127.0.0.1:$SINGLE_PORT (SINGLE_PORT)"

REDIS_PID= SINGLE_PID= CLUSTER=
cleanup() {
    [ -z "$CLUSTER" ] || scripts/cluster.sh down >>"$OUT/cluster.log" 2>&1 || true
    for pid in $SINGLE_PID $REDIS_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

if [ "$REDIS_PORT" != 6379 ]; then
    ! rcli ping >/dev/null 2>&1 || die "a Redis already answers on 127.0.0.1:$REDIS_PORT: stop it or set REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$OUT" \
        >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
    rcli ping >/dev/null 2>&1 || die "the cluster's Redis did not start on $REDIS_PORT (see $OUT/redis.log)"
fi

export PARLEY_RATE_LIMIT_PER_SEC=$RATE_LIMIT PARLEY_RATE_LIMIT_BURST=$RATE_LIMIT PARLEY_LOG=${PARLEY_LOG:-warn}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "# cluster: scripts/cluster.sh up (Redis 127.0.0.1:$REDIS_PORT); runs in $OUT" >&2
CLUSTER=1
scripts/cluster.sh up >>"$OUT/cluster.log" 2>&1 || { tail -n 30 "$OUT/cluster.log" >&2; die "the cluster did not come up"; }
hub=$(scripts/cluster.sh hub)
hub_n=${hub#node}
edge_n=$((hub_n % 3 + 1))
echo "# hub node: $hub; edge: node$edge_n" >&2

c0=$(commands_processed)
sleep "$IDLE_SECS"
c1=$(commands_processed)
idle_rate=$(awk -v a="$c0" -v b="$c1" -v s="$IDLE_SECS" 'BEGIN { printf "%.1f", (b - a) / s }')
echo "# idle cluster: $idle_rate Redis commands/s" >&2

status=0
# run LABEL PORT REDIS(0/1): one parley-load signal run; its figures as one JSON line in $OUT/runs.jsonl.
run() {
    local label=$1 port=$2 redis=$3 r=$4 base t0 t1 c_before c_after rc line
    base="$OUT/$label-$r"
    [ "$redis" = 0 ] || { c_before=$(commands_processed); command_calls >"$base.cmd-before"; }
    t0=$(now)
    set +e
    "$BIN/parley-load" signal --url "http://127.0.0.1:$port" --clients 0 --pairs "$PAIRS" \
        --relay-secs "$RELAY_SECS" --relay-window "$RELAY_WINDOW" --jwt-secret-file "$secret" \
        >"$base.out" 2>"$base.err"
    rc=$?
    set -e
    t1=$(now)
    [ "$redis" = 0 ] || { c_after=$(commands_processed); command_calls >"$base.cmd-after"; }
    [ $rc -eq 0 ] || status=1
    line=$(tail -n1 "$base.out")
    if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
        echo "$label run $r: no report (exit $rc); see $base.err" >&2
        status=1
        return 0
    fi
    local cmds=null net=null
    if [ "$redis" = 1 ]; then
        cmds=$((c_after - c_before))
        net=$(awk -v c="$cmds" -v r="$idle_rate" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", c - r * (b - a) }')
        # Per command, per relayed message: what the run added.
        join -a2 -e0 -o 0,1.2,2.2 "$base.cmd-before" "$base.cmd-after" |
            awk '{ print $1, $3 - $2 }' | sort -k2,2nr >"$base.cmd-diff"
    fi
    jq -c --arg name "$label" --argjson run "$r" --argjson cmds "$cmds" --argjson net "$net" \
        --argjson secs "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
        '{"label": $name, "run": $run, "secs": $secs, pairs_set_up, pairs_failed,
          setup_ms_p50, setup_ms_p99, setup_relay_ms_p50, setup_relay_ms_p99,
          relay_ms_p50, relay_ms_p99, relay_throughput_msgs_per_sec, relay_lost,
          messages: (.setup_relay_messages + .relay_hops),
          redis_commands: $cmds, redis_commands_net: $net,
          redis_per_message: (if $net == null then null
                              else (($net / ((.setup_relay_messages + .relay_hops) | if . == 0 then 1 else . end)) * 1000 | round / 1000) end)}' \
        <<<"$line" | tee -a "$OUT/runs.jsonl" >&2
}

secret=$PARLEY_CLUSTER_DIR/jwt-secret
for r in $(seq "$RUNS"); do
    run hub $((PARLEY_CLUSTER_PORT + hub_n)) 1 "$r"
    run edge $((PARLEY_CLUSTER_PORT + edge_n)) 1 "$r"
    run balancer "$PARLEY_CLUSTER_PORT" 1 "$r"
    [ "$(scripts/cluster.sh hub)" = "$hub" ] || { echo "the hub node changed during run $r: figures mixed" >&2; status=1; }
done
scripts/cluster.sh down >>"$OUT/cluster.log" 2>&1
CLUSTER=

# The baseline: one node, no Redis, SQLite.
single_data=$OUT/single-data
mkdir -p "$single_data"
for r in $(seq "$RUNS"); do
    (
        unset PARLEY_CLUSTER_PORT PARLEY_CLUSTER_STATS_PORT PARLEY_CLUSTER_DIR PARLEY_CLUSTER_REDIS_PORT PARLEY_BIN
        rm -rf "$single_data" && mkdir -p "$single_data"
        export PARLEY_DATA_DIR=$single_data PARLEY_LISTEN=127.0.0.1:$SINGLE_PORT
        exec "$BIN/parley" serve
    ) >"$OUT/single-$r.log" 2>&1 &
    SINGLE_PID=$!
    for _ in $(seq 100); do node_up "$SINGLE_PORT" && break; sleep 0.1; done
    node_up "$SINGLE_PORT" || die "the single node did not start (see $OUT/single-$r.log)"
    secret=$single_data/jwt-secret
    run single "$SINGLE_PORT" 0 "$r"
    kill "$SINGLE_PID" 2>/dev/null || true
    wait "$SINGLE_PID" 2>/dev/null || true
    SINGLE_PID=
done

echo
echo "$PAIRS pairs, ${RELAY_SECS} s relay, window $RELAY_WINDOW; medians of $RUNS runs (hub node $hub, edge node$edge_n); idle cluster $idle_rate Redis commands/s"
printf '%-9s %12s %12s %12s %12s %12s %10s %11s\n' target setup_p50_ms setup_p99_ms relay_p50_ms relay_p99_ms relayed_msg/s redis/msg failed_pairs
jq -s -r '
    def median: map(select(. != null)) | sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def show: if . == null then "-" elif type == "number" then (. * 1000 | round / 1000 | tostring) else tostring end;
    group_by(.label) | map({"label": .[0].label, "rows": .}) |
    sort_by(.label as $l | ["hub", "edge", "balancer", "single"] | index($l)) | .[] | [.label,
        (.rows | map(.setup_ms_p50) | median | show), (.rows | map(.setup_ms_p99) | median | show),
        (.rows | map(.relay_ms_p50) | median | show), (.rows | map(.relay_ms_p99) | median | show),
        (.rows | map(.relay_throughput_msgs_per_sec) | median | if . == null then "-" else (round | tostring) end),
        (.rows | map(.redis_per_message) | median | show),
        (.rows | map(.pairs_failed) | add | tostring)] | @tsv' "$OUT/runs.jsonl" |
    awk -F'\t' '{ printf "%-9s %12s %12s %12s %12s %12s %10s %11s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
for label in hub edge balancer; do
    f="$OUT/$label-$RUNS.cmd-diff"
    [ -f "$f" ] || continue
    msgs=$(jq -s -r --arg l "$label" --argjson r "$RUNS" 'map(select(.label == $l and .run == $r)) | .[0].messages // 0' "$OUT/runs.jsonl")
    [ "$msgs" -gt 0 ] 2>/dev/null || continue
    printf '%-9s Redis commands per relayed message, run %s: %s\n' "$label" "$RUNS" \
        "$(awk -v m="$msgs" '$2 > 0 && NR <= 6 { printf "%s %.3f  ", $1, $2 / m }' "$f")"
done
exit $status
