#!/usr/bin/env bash
# The recorder benchmark (issue 6): for each N, a fresh `parley serve` with
# PARLEY_RECORDER=off and a temp data dir, a fresh `parley recorder` pinned
# to its own core, and `parley-load record --sessions N` (the load
# generator) on the other core; then one line of figures per run.
#
#   load-tests/record-bench.sh [N ...]            # default: 10 25 50 100
#
# Environment:
#   BIN=target/release     where `parley` and `parley-load` are
#   DURATION=20s           steady window of each run
#   VIDEO=0                1: audio + VP8 video (VIDEO_KBPS per participant)
#   VIDEO_KBPS=500
#   RECORDER_CORE=1        core of the recorder
#   GENERATOR_CORE=0       core of the server and the load generator
#   PORT=18480             the server's port (loopback)
#   RATE_LIMIT=1000000     the server's per-connection message limit (per s and
#                          burst). Recorders are exempt from it now; it stays
#                          raised so runs compare with the README's figures,
#                          which were measured with it.
#   OUT=<temp dir>         where each run's stdout / logs are kept
#   RUST_LOG / PARLEY_LOG  as usual (PARLEY_LOG defaults to warn here)
#
# Exit status: 0 when every run recorded every session fully, else 1.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DURATION=${DURATION:-20s}
VIDEO=${VIDEO:-0}
VIDEO_KBPS=${VIDEO_KBPS:-500}
RECORDER_CORE=${RECORDER_CORE:-1}
GENERATOR_CORE=${GENERATOR_CORE:-0}
PORT=${PORT:-18480}
RATE_LIMIT=${RATE_LIMIT:-1000000}
OUT=${OUT:-$(mktemp -d -t parley-record-bench.XXXXXX)}
mkdir -p "$OUT"
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(10 25 50 100)

for b in parley parley-load; do
    [ -x "$BIN/$b" ] || { echo "no $BIN/$b: cargo build --release -p parley-server -p parley-load (or set BIN)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "jq is needed to print the figures" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
media_args=()
[ "$VIDEO" = 1 ] && media_args=(--video --video-kbps "$VIDEO_KBPS")

SERVER= RECORDER=
stop() {
    for pid in $RECORDER $SERVER; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER= RECORDER=
}
trap stop EXIT

status=0
echo "# runs in $OUT; media: $([ "$VIDEO" = 1 ] && echo "audio + video ${VIDEO_KBPS} kbit/s" || echo "audio only"); window $DURATION" >&2
printf '%-5s %-5s %-9s %-9s %-10s %-10s %-9s %-10s %-8s %-9s %-9s %-10s %-8s %s\n' \
    N live recorded complete rec_cpu% per_sess% sess/core rec_core% gen_cpu% gen_core% sent% audio_loss% rss_KiB bottleneck
for n in "${SIZES[@]}"; do
    data=$(mktemp -d -t parley-record-data.XXXXXX)
    export PARLEY_DATA_DIR=$data PARLEY_RECORDER=off PARLEY_LISTEN=127.0.0.1:$PORT PARLEY_LOG=${PARLEY_LOG:-warn} \
        PARLEY_RATE_LIMIT_PER_SEC=$RATE_LIMIT PARLEY_RATE_LIMIT_BURST=$RATE_LIMIT
    taskset -c "$GENERATOR_CORE" "$BIN/parley" serve >"$OUT/server-$n.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    taskset -c "$RECORDER_CORE" "$BIN/parley" recorder --server "ws://127.0.0.1:$PORT/v1/signal" \
        --id rec-bench --udp 127.0.0.1:0 >"$OUT/recorder-$n.log" 2>&1 &
    RECORDER=$!
    sleep 1
    set +e
    taskset -c "$GENERATOR_CORE" "$BIN/parley-load" record --url "http://127.0.0.1:$PORT" \
        --sessions "$n" --duration "$DURATION" "${media_args[@]}" \
        --recorder-pid "$RECORDER" --server-pid "$SERVER" \
        --jwt-secret-file "$data/jwt-secret" >"$OUT/record-$n.out" 2>"$OUT/record-$n.err"
    rc=$?
    set -e
    stop
    rm -rf "$data"
    [ $rc -eq 0 ] || status=1
    line=$(tail -n1 "$OUT/record-$n.out")
    if ! echo "$line" | jq -e . >/dev/null 2>&1; then
        echo "$n: no report (exit $rc); see $OUT/record-$n.err" >&2
        status=1
        continue
    fi
    echo "$line" | jq -r '[.sessions, .live_sessions, .recorded, .complete,
        (.recorder_cpu_percent // "-" | if type == "number" then (.*10|round/10) else . end),
        (.recorder_cpu_percent_per_session // "-" | if type == "number" then (.*1000|round/1000) else . end),
        (.sessions_per_core // "-" | if type == "number" then round else . end),
        (.recorder_cores_busy_percent // "-" | if type == "number" then round else . end),
        (.generator_cpu_percent // "-" | if type == "number" then round else . end),
        (.generator_cores_busy_percent // "-" | if type == "number" then round else . end),
        (.send_rate_percent // "-" | if type == "number" then (.*10|round/10) else . end),
        (.audio_loss_percent // "-" | if type == "number" then (.*1000|round/1000) else . end),
        (.recorder_rss_kib_per_session // "-" | if type == "number" then round else . end),
        .bottleneck] | @tsv' |
        awk -F'\t' '{printf "%-5s %-5s %-9s %-9s %-10s %-10s %-9s %-10s %-8s %-9s %-9s %-10s %-8s %s\n",
            $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14}'
done
exit $status
