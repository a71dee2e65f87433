#!/usr/bin/env bash
# Where a paired call set-up's server CPU goes, by facet (issue 17: "where
# each remaining microsecond goes"); with SCENARIO=burst, a burst's.
#
# RUNS fresh servers of the build named (SQLite, pinned to SERVER_CORE),
# one after another. On each: a warm-up of 200 pairs, then PAIRS pairs at
# once (`parley-load signal --paired-only --price-minor PRICE`, pinned to
# GENERATOR_CORE: presence, the call placed with its hold, accepted, both
# joined), unprofiled, for the server's CPU per connection; then PAIRS
# more under `perf record --call-graph dwarf` (FREQ samples/s, the
# server's threads only). Samples
# are kept from the generator's "phase 2: setting up" to its "phase 2: done"
# (its stderr, stamped on arrival; the set-up window `setup_connections_per_sec`
# measures), and each is given to the first facet below that its call
# stack matches:
#
#   SQLite: commits and checkpoints  the connection threads' COMMIT (the log's
#                                    frames written, the automatic checkpoint)
#   SQLite: statements parsed        sqlite3_prepare (texts not kept prepared)
#   SQLite: statements run           sqlite3_step: rows inserted, read, updated
#   SQLite threads: the rest         hand-offs to and from the runtime, binds
#   the store writer task            batches built, bound and sent; replies
#   billing                          price reads, the sandbox's hold
#   hub                              call, ring, accept, rooms, presence
#   socket writes                    frames written (sendto; the loopback's
#                                    delivery to the client runs in it)
#   socket reads, frames parsed      recvfrom, the frame's JSON
#   connection: the rest             a connection's own task otherwise
#   WebSocket handshake              HTTP upgrade request, token check, 101
#   accept                           accept4 and the listener
#   runtime                          epoll, timers, scheduling
#   other
#
# and prints, per server and as the median of the servers, each facet's
# share of the window's samples and its microseconds per connection set up
# (the share times the server's CPU per connection in the unprofiled
# round: DWARF unwinding makes the profiled round itself slower, not the
# shares). Needs perf (with permission to record another process) and jq.
#
#   load-tests/setup-profile.sh target/release
#
# Builds nothing (cargo build --release -p parley-server -p parley-load).
# Environment: LOAD=target/release/parley-load RUNS=3 PAIRS=1000 PRICE=2500
# PORT=18690 SERVER_CORE=0 GENERATOR_CORE=1 FREQ=1999 KEEP=<dir to keep
# each server's perf.data, stamped stderr and facets in>. SCENARIO=burst
# profiles the burst instead of the pairing: every round (the warm-up too)
# is PAIRS calls at once with their offer, answer and candidates
# (`--calls-at-once`, no `--paired-only`), the window and the CPU per
# connection those of its whole set-up phase, connections included.
set -euo pipefail

LOAD=${LOAD:-target/release/parley-load}
RUNS=${RUNS:-3}
PAIRS=${PAIRS:-1000}
PRICE=${PRICE:-2500}
PORT=${PORT:-18690}
SERVER_CORE=${SERVER_CORE:-0}
GENERATOR_CORE=${GENERATOR_CORE:-1}
FREQ=${FREQ:-1999}
SCENARIO=${SCENARIO:-paired}
case $SCENARIO in
    paired) SCENARIO_ARGS=(--paired-only) ;;
    burst) SCENARIO_ARGS=(--calls-at-once) ;;
    *) echo "setup-profile: SCENARIO is paired or burst, not $SCENARIO" >&2; exit 1 ;;
esac

die() { echo "setup-profile: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "name one build directory (with parley in it)"
BIN=$1
[ -x "$BIN/parley" ] || die "no $BIN/parley"
[ -x "$LOAD" ] || die "no $LOAD: cargo build --release -p parley-load"
for c in jq curl taskset perf awk; do command -v "$c" >/dev/null || die "$c is needed"; done

OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"
SERVER_PID=
PERF_PID=
cleanup() {
    [ -z "$PERF_PID" ] || kill -INT "$PERF_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT

# The facet of each sample of `perf script -F comm,ip,sym` (a line naming
# its thread, then one line per frame, then a blank line), as JSON lines
# {facet, samples}.
FACETS='
    function facet(comm, s) {
        if (comm ~ /^sqlx-sqlite/) {
            if (s ~ /sqlite3_exec|ConnectionHandle::exec|walCheckpoint|pagerWalFrames/) return "SQLite: commits and checkpoints"
            if (s ~ /sqlite3_prepare|sqlite3Prepare|prepare_next/) return "SQLite: statements parsed"
            if (s ~ /sqlite3_step|StatementHandle::step/) return "SQLite: statements run"
            return "SQLite threads: the rest"
        }
        if (s ~ /store::writer::/) return "the store writer task"
        if (s ~ /parley_billing::/) return "billing"
        if (s ~ /connection::serve/) {
            if (s ~ /hub::/) return "hub"
            if (s ~ /poll_write|poll_flush|sys_sendto|sys_writev/) return "socket writes"
            if (s ~ /poll_read|sys_recvfrom|relay::read|connection::parse|serde_json::de/) return "socket reads, frames parsed"
            return "connection: the rest"
        }
        if (s ~ /hyper::proto|hyper_util::server|axum::serve::handle_connection|jsonwebtoken/) return "WebSocket handshake"
        if (s ~ /accept4|TcpListener/) return "accept"
        if (s ~ /epoll_wait|runtime::io::driver|runtime::time::|park/) return "runtime"
        return "other"
    }
    NF == 0 { if (comm != "") n[facet(comm, stack)]++; comm = ""; stack = ""; next }
    /^[^ \t]/ { comm = $1; stack = ""; next }
    { stack = stack " " $0 }
    END {
        if (comm != "") n[facet(comm, stack)]++
        for (f in n) printf "{\"facet\": \"%s\", \"samples\": %d}\n", f, n[f]
    }'

# profile RUN: one fresh server, its facets into $OUT/RUN/facets.jsonl.
profile() {
    local dir="$OUT/$1" data report report_profiled
    data="$dir/data"
    rm -rf "$dir"
    mkdir -p "$data"
    env PARLEY_DATA_DIR="$data" PARLEY_LISTEN="127.0.0.1:$PORT" \
        PARLEY_RATE_LIMIT_PER_SEC=1000000 PARLEY_RATE_LIMIT_BURST=1000000 \
        taskset -c "$SERVER_CORE" "$BIN/parley" serve >"$data/log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && [ -s "$data/jwt-secret" ] && break
        sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" || die "the server did not start (see $data/log)"

    # load PAIRS: one round; the report's last line on stdout, the
    # generator's stderr stamped with the wall clock (perf records on the
    # same clock) into $dir/stamps.
    load() {
        taskset -c "$GENERATOR_CORE" "$LOAD" signal --url "http://127.0.0.1:$PORT" --clients 0 --pairs "$1" \
            --relay-secs 0 "${SCENARIO_ARGS[@]}" --price-minor "$PRICE" --server-pid "$SERVER_PID" \
            --jwt-secret-file "$data/jwt-secret" \
            2> >(while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$dir/stamps") | tail -n1
    }
    load 200 >/dev/null
    report=$(load "$PAIRS")
    [ "$(jq -r '.pairs_failed' <<<"$report")" = 0 ] || die "pairs failed in the unprofiled round: $report"

    taskset -c "$GENERATOR_CORE" perf record -q -k CLOCK_REALTIME -F "$FREQ" --call-graph dwarf,32768 \
        -o "$dir/perf.data" -p "$SERVER_PID" 2>"$dir/perf.err" &
    PERF_PID=$!
    sleep 0.5
    report_profiled=$(load "$PAIRS")
    sleep 0.2
    kill -INT "$PERF_PID"
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    kill -INT "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    [ "$(jq -r '.pairs_failed' <<<"$report_profiled")" = 0 ] ||
        die "pairs failed in the profiled round: $report_profiled"

    # The set-up window, as the generator stamped it.
    local from to
    from=$(awk '/phase 2: setting up/ { print $1 }' "$dir/stamps")
    to=$(awk '/phase 2: done/ { print $1 }' "$dir/stamps")
    [ -n "$from" ] && [ -n "$to" ] || die "no set-up window in the generator's output ($dir/stamps)"
    perf script -i "$dir/perf.data" --time "$from,$to" -F comm,ip,sym --no-inline 2>/dev/null | awk "$FACETS" |
        jq -c --argjson run "$1" --argjson rate "$(jq '.setup_connections_per_sec' <<<"$report")" \
            --argjson cpu "$(jq '.server_cpu_us_per_setup_connection' <<<"$report")" \
            '. + {run: $run, conns_per_sec: $rate, cpu_us: $cpu}' >"$dir/facets.jsonl"
    [ -s "$dir/facets.jsonl" ] || die "no samples in the set-up window ($dir/perf.err)"
    rm -rf "$data"
    [ -n "${KEEP:-}" ] || rm -f "$dir/perf.data"
}

all="$OUT/facets.jsonl"
: >"$all"
for r in $(seq "$RUNS"); do
    profile "$r"
    cat "$OUT/$r/facets.jsonl" >>"$all"
done

jq -rs --arg bin "$BIN" --argjson pairs "$PAIRS" --arg scenario "$SCENARIO" '
    def med(f): (map(f) | sort | .[(length / 2 | floor)]);
    def r1: . * 10 | round / 10;
    group_by(.run) | map(
        (map(.samples) | add) as $total
        | map(. + {share: (100 * .samples / $total), us: (.cpu_us * .samples / $total)})) as $runs
    | ($runs | map(.[0])) as $heads
    | "# \($bin), \($pairs) pairs at once, \(if $scenario == "burst" then "calls at once with offer, answer and candidates" else "paired only" end), on SQLite, \($runs | length) fresh servers",
      "# unprofiled rounds: \($heads | map("\(.conns_per_sec | round) connections/s at \(.cpu_us) µs") | join("; "))",
      "",
      "| facet | " + ($heads | map("server \(.run): share, µs per connection") | join(" | ")) + " | median share | median µs per connection |",
      "|---|" + ($heads | map("---:") | join("|")) + "|---:|---:|",
      ([$runs[][]] | group_by(.facet) | map({facet: .[0].facet, share: med(.share), us: med(.us), rows: .})
       | sort_by(-.share)[]
       | . as $f
       | "| \(.facet) | "
         + ($heads | map(.run as $r | ($f.rows | map(select(.run == $r)) | .[0]) as $x
             | if $x then "\($x.share | r1) %, \($x.us | round)" else "-" end) | join(" | "))
         + " | \(.share | r1) % | \(.us | round) |"),
      "",
      "(samples in the window: \($runs | map(map(.samples) | add) | map(tostring) | join(", ")))"
' "$all"
