#!/usr/bin/env bash
# Parley beside a bare relay (issue 17): the same `parley-load signal`
# scenarios against `parley serve` and against `bare-relay` (a bare
# tokio-tungstenite relay, src/bare.rs), RUNS fresh servers each, the server
# pinned to SERVER_CORE and the generator to GENERATOR_CORE. On each fresh
# server, in this order:
#
#   burst   PAIRS calls at once (presence, call, accept, joins, offer,
#           answer, 20 candidates each way), no relay phase: every pair's
#           connections are opened first and the calls then start together
#           (--calls-at-once; BURST_AT_ONCE=0: each pair calls as soon as its
#           own connections are open, as before the thirtieth run)
#   relay   PAIRS pairs set up, then RELAY_SECS of ping-pong, RELAY_WINDOW
#           messages in flight per pair (1: one at a time)
#   paced   PAIRS pairs set up at RATE calls/s (--call-rate), no relay phase
#   accept  ACCEPT_CLIENTS WebSockets opened, each authenticated with its
#           token and greeted (`hello`), none in a call (--clients, 256
#           handshakes in flight): authenticated connections/s and server CPU
#           per connection. Parley and the bare relay only
#   paired  PAIRS pairs at once, each stopping once paired into a call
#           (--paired-only: presence, call, accept, both joins; no offer,
#           answer or candidates), no relay phase: connections/s into calls
#           and server CPU per connection, with Parley's hold and stored
#           session. Parley and the bare relay only (not the peers, which
#           have no call to be paired into)
#   calls   CALL_PAIRS pairs set up at once and held (a 1 s relay phase): the
#           server's memory per connection in an open call, (RSS with the
#           calls set up - RSS before) / (2 x pairs); the burst gives the
#           same figure on a fresh server, before the allocator (or PeerJS's
#           JavaScript heap) has grown from the scenarios before
#
# and the server's peak RSS (VmHWM) over the first three (before accept, paired and calls). Server CPU per relayed
# message is the server's utime+stime over the relay phase (parley-load reads
# /proc/<pid>/stat with --server-pid) divided by the messages relayed in it;
# server CPU per connection set up is its CPU over the burst's set-up phase
# divided by the connections set up into calls (two per pair); the same for
# paired. Each scenario starts once the server is idle (under 10 ms of CPU
# in 200 ms, at most 30 s of waiting), so the work one leaves behind (a
# paid call's settlement after its hang-up) is not counted in the next.
# Prints one JSON line per scenario and run (stderr, and $OUT/runs.jsonl),
# then a markdown table of medians with the Parley / bare ratio.
#
# With PEERS=1, two popular signaling servers run beside them, RUNS fresh
# servers each, pinned and measured the same way, `parley-load signal
# --protocol matchbox|peerjs` playing the same scenarios in their protocols
# (no call, hold or session there: see load-tests/README.md, "The peers";
# they skip paired, and its rows show "-" for them):
# matchbox_server 0.15.0 and PeerJS server 1.0.2, installed by
# load-tests/peers.sh into PEERS_DIR. The table then has their columns and
# a Parley / best peer ratio (the better of the two for that figure).
#
#   load-tests/bare-bench.sh
#   load-tests/peers.sh && PEERS=1 RUNS=3 load-tests/bare-bench.sh
#
# Builds nothing: build first (cargo build --release -p parley-server -p parley-load).
#
# Environment:
#   BIN=target/release            where `parley`, `parley-load` and `bare-relay` are
#   RUNS=3                        fresh servers per kind (medians are printed)
#   PAIRS=1000                    pairs per scenario
#   RELAY_SECS=10 RELAY_WINDOW=1  the relay scenario's --relay-secs / --relay-window
#   RATE=200                      the paced scenario's --call-rate
#   BURST_AT_ONCE=1               the burst's calls start together (--calls-at-once)
#   CALL_PAIRS=5000               the calls scenario's pairs (10,000 connections)
#   ACCEPT_CLIENTS=8000           the accept scenario's connections
#   PRICE=2500                    each Parley consultant's price in EUR cents
#                                 (--price-minor): every Parley call places a
#                                 sandbox hold, released at hang-up; 0: free
#                                 calls, no hold
#   PARLEY_PORT=18180 BARE_PORT=18280 MATCHBOX_PORT=18380 PEERJS_PORT=18480
#                                 run r listens on PORT + r (no TIME_WAIT left from
#                                 the run before on the same port)
#   PEERS=0                       1: also matchbox_server and the PeerJS server
#   PEERS_DIR=$HOME/.cache/parley-peers
#                                 where load-tests/peers.sh installed them
#   SERVER_CORE=0 GENERATOR_CORE=1
#   RATE_LIMIT=1000000            Parley's per-connection message limit (per s and
#                                 burst); every other Parley setting is its default
#   OUT=<temp dir>                each run's output and server logs
#   PG_URL=                       a PostgreSQL server's URL without a database
#                                 (postgres://postgres@127.0.0.1:5432): each run
#                                 also starts Parley on a fresh database there
#                                 (created and dropped with psql) for the paired
#                                 scenario alone, and a second table gives its
#                                 figures; PostgreSQL is not pinned
#   PG_PARAMS=                    appended to each database's URL (e.g.
#                                 ?sslmode=disable)
#   PG_PID=<pgrep -o -x postgres> that PostgreSQL's main process (postmaster),
#                                 if it runs on this machine (parley-load
#                                 --db-pid): its table then has PostgreSQL's
#                                 CPU over the set-up beside the server's, and
#                                 how busy the server's core was (every
#                                 process: the backends share it); "" for a
#                                 PostgreSQL elsewhere
#   PARLEY_PG_PORT=18580          where those servers listen (+ run)
#   THEN_BIN=                     a directory with an earlier build's `parley`
#                                 (e.g. of 4188c5c, the code issue 17 measured):
#                                 each run also puts it through the same
#                                 scenarios (and, with PG_URL, paired on
#                                 PostgreSQL), and a last table gives Parley
#                                 now beside it with the now / then ratio, so
#                                 "N x today" is measured in one run on one
#                                 machine
#   THEN_PORT=18680 THEN_PG_PORT=18780
#                                 where that build listens (+ run)
#
# Exit status: 0 when every pair of every run set up (and relayed), 1
# otherwise, 2 when it could not start.
set -euo pipefail
export LC_ALL=C

caller=$PWD
cd "$(dirname "$0")/.."
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller/$1" ;; esac; }

BIN=$(abs "${BIN:-${CARGO_TARGET_DIR:-target}/release}")
RUNS=${RUNS:-3}
PAIRS=${PAIRS:-1000}
RELAY_SECS=${RELAY_SECS:-10}
RELAY_WINDOW=${RELAY_WINDOW:-1}
RATE=${RATE:-200}
BURST_AT_ONCE=${BURST_AT_ONCE:-1}
CALL_PAIRS=${CALL_PAIRS:-5000}
ACCEPT_CLIENTS=${ACCEPT_CLIENTS:-8000}
IDLE_CLIENTS=0
PRICE=${PRICE:-2500}
PARLEY_PORT=${PARLEY_PORT:-18180}
BARE_PORT=${BARE_PORT:-18280}
MATCHBOX_PORT=${MATCHBOX_PORT:-18380}
PEERJS_PORT=${PEERJS_PORT:-18480}
PEERS=${PEERS:-0}
PG_URL=${PG_URL:-}
PG_PARAMS=${PG_PARAMS:-}
PG_PID=${PG_PID-$( [ -z "$PG_URL" ] || pgrep -o -x postgres || true)}
PARLEY_PG_PORT=${PARLEY_PG_PORT:-18580}
THEN_BIN=${THEN_BIN:+$(abs "$THEN_BIN")}
THEN_PORT=${THEN_PORT:-18680}
THEN_PG_PORT=${THEN_PG_PORT:-18780}
PEERS_DIR=$(abs "${PEERS_DIR:-$HOME/.cache/parley-peers}")
SERVER_CORE=${SERVER_CORE:-0}
GENERATOR_CORE=${GENERATOR_CORE:-1}
RATE_LIMIT=${RATE_LIMIT:-1000000}
OUT=$(abs "${OUT:-$(mktemp -d -t parley-bare-bench.XXXXXX)}")
mkdir -p "$OUT"

die() { printf 'bare-bench.sh: %s\n' "$*" >&2; exit 2; }
[ -z "$PG_PID" ] || [[ $PG_PID =~ ^[0-9]+$ ]] || die "PG_PID=$PG_PID: expected a process id"
for v in RUNS PAIRS CALL_PAIRS RELAY_SECS RELAY_WINDOW RATE PRICE PARLEY_PORT BARE_PORT MATCHBOX_PORT PEERJS_PORT PARLEY_PG_PORT THEN_PORT THEN_PG_PORT SERVER_CORE GENERATOR_CORE RATE_LIMIT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: expected a whole number"
done
[ "$PEERS" = 0 ] || [ "$PEERS" = 1 ] || die "PEERS=$PEERS: expected 0 or 1"
[ "$RUNS" -ge 1 ] && [ "$PAIRS" -ge 1 ] && [ "$RELAY_SECS" -ge 1 ] && [ "$RATE" -ge 1 ] ||
    die "RUNS, PAIRS, RELAY_SECS and RATE must be at least 1"
for b in parley parley-load bare-relay; do
    [ -x "$BIN/$b" ] || die "no $BIN/$b: cargo build --release -p parley-server -p parley-load (or set BIN)"
done
[ -z "$THEN_BIN" ] || [ -x "$THEN_BIN/parley" ] || die "THEN_BIN=$THEN_BIN has no parley: build the earlier commit there first"
for c in jq curl taskset; do command -v "$c" >/dev/null || die "$c is needed"; done
if [ -n "$PG_URL" ]; then
    command -v psql >/dev/null || die "PG_URL is set: psql is needed"
    psql -q "$PG_URL/postgres" -c 'SELECT 1' >/dev/null || die "PG_URL=$PG_URL: no PostgreSQL answers there"
fi
# The peers, as load-tests/peers.sh installs them.
MATCHBOX_BIN=$PEERS_DIR/matchbox/bin/matchbox_server
PEERJS_CLI=$PEERS_DIR/peerjs/node_modules/peer/dist/bin/peerjs.js
if [ "$PEERS" = 1 ]; then
    [ -x "$MATCHBOX_BIN" ] && [ -f "$PEERJS_CLI" ] ||
        die "PEERS=1 but no matchbox_server or PeerJS server in $PEERS_DIR: run load-tests/peers.sh first (same PEERS_DIR)"
    command -v node >/dev/null || die "node is needed for the PeerJS server"
    # The PeerJS CLI listens with Node's default backlog, 511: the calls
    # scenario's 10,000 connections at once overflowed it (TcpExtListenOverflows)
    # and hundreds of pairs timed out connecting, as Parley did before its
    # LISTEN_BACKLOG of 4096. The CLI has no option for it: a preload gives its
    # listen() the same 4096 (the kernel caps it at net.core.somaxconn).
    cat >"$OUT/peerjs-backlog.cjs" <<'JS'
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, host, callback) {
    if (typeof port === "number" && typeof host === "string" && typeof callback === "function") {
        return listen.call(this, { port, host, backlog: 4096 }, callback);
    }
    return listen.apply(this, arguments);
};
JS
fi

# Open files: every connection is a descriptor in the server and in the
# generator (both inherit this shell's limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((2 * (PAIRS > CALL_PAIRS ? PAIRS : CALL_PAIRS) + 64))
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
    die "the open-file limit is $(ulimit -n) (hard $(ulimit -Hn)) but the pairs need about $need: raise it or lower PAIRS / CALL_PAIRS"

up() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1${2:-/readyz}" || true)" = 200 ]; }
# Whether anything accepts a TCP connection on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for r in $(seq "$RUNS"); do
    ports=($((PARLEY_PORT + r)) $((BARE_PORT + r)))
    [ -z "$PG_URL" ] || ports+=($((PARLEY_PG_PORT + r)))
    [ -z "$THEN_BIN" ] || ports+=($((THEN_PORT + r)))
    [ -z "$THEN_BIN" ] || [ -z "$PG_URL" ] || ports+=($((THEN_PG_PORT + r)))
    for port in "${ports[@]}"; do
        ! up "$port" || die "something already answers on 127.0.0.1:$port"
    done
    if [ "$PEERS" = 1 ]; then
        for port in $((MATCHBOX_PORT + r)) $((PEERJS_PORT + r)); do
            ! listening "$port" || die "something already listens on 127.0.0.1:$port"
        done
    fi
done

SERVER_PID=
PG_DB=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ]; then
        psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

head -c 48 /dev/urandom | base64 | tr -d '\n' >"$OUT/bare-jwt-secret"
echo "# $PAIRS pairs; relay ${RELAY_SECS} s, window $RELAY_WINDOW; paced $RATE calls/s; $RUNS runs; server core $SERVER_CORE, generator core $GENERATOR_CORE; out $OUT" >&2
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

status=0
# cpu_ticks PID: the process's utime + stime (clock ticks, /proc/PID/stat;
# the fields after the command's closing parenthesis).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# quiet PID: waits until the server is idle — under one clock tick (10 ms)
# of CPU in 200 ms — for at most 30 s, so that what a scenario leaves
# behind (a paid call's hang-up is settled, its hold released and its
# webhook queued after the generator has gone: about 0.2 s of CPU per
# 1,000 calls) is not counted in the next one's figures (thirtieth run).
quiet() {
    local before after
    for _ in $(seq 150); do
        before=$(cpu_ticks "$1") || return 0
        sleep 0.2
        after=$(cpu_ticks "$1") || return 0
        [ $((after - before)) -gt 1 ] || return 0
    done
    echo "bare-bench.sh: the server (pid $1) still busy after 30 s; going on" >&2
}

# scenario SERVER RUN NAME PORT SECRET PAIRS ARGS...: one parley-load signal run; one JSON line in runs.jsonl.
# SECRET - : no --jwt-secret-file (the peers). IDLE_CLIENTS=N before the
# call (bash keeps it for that call only): N idle connections first
# (--clients; 0 otherwise).
scenario() {
    local server=$1 r=$2 name=$3 port=$4 secret=$5 pairs=$6 base rc line auth=()
    shift 6
    base="$OUT/$server-$r-$name"
    [ "$secret" = - ] || auth=(--jwt-secret-file "$secret")
    quiet "$SERVER_PID"
    set +e
    taskset -c "$GENERATOR_CORE" "$BIN/parley-load" signal --url "http://127.0.0.1:$port" --clients "$IDLE_CLIENTS" \
        --pairs "$pairs" --server-pid "$SERVER_PID" "${auth[@]}" "$@" >"$base.out" 2>"$base.err"
    rc=$?
    set -e
    [ $rc -eq 0 ] || status=1
    line=$(tail -n1 "$base.out")
    if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
        echo "$server $name run $r: no report (exit $rc); see $base.err" >&2
        status=1
        return 0
    fi
    jq -c --arg server "$server" --arg name "$name" --argjson run "$r" \
        '{$server, $name, $run, pairs_set_up, pairs_failed, setup_ms_p50, setup_ms_p99,
          setup_conns_per_sec: .setup_connections_per_sec, cpu_us_per_setup_conn: .server_cpu_us_per_setup_connection,
          msg_ms_p50: .setup_relay_ms_p50, msg_ms_p99: .setup_relay_ms_p99, relay_ms_p50, relay_ms_p99,
          relay_msgs_per_sec: .relay_throughput_msgs_per_sec, relay_lost,
          kib_per_call_conn: .rss_kib_per_call_connection,
          idle_failed, accept_conns_per_sec: (if .clients > 0 then .accept_rate_per_sec else null end),
          server_cpu_percent_accept: (if .clients > 0 then .server_cpu_percent_accept else null end),
          client_cpu_percent_accept: (if .clients > 0 then .client_cpu_percent_accept else null end),
          cpu_us_per_accept_conn: (if .clients == 0 or .server_cpu_percent_accept == null or .accept_rate_per_sec == 0 then null
                                   else (.server_cpu_percent_accept * 10000 / .accept_rate_per_sec * 10 | round / 10) end),
          server_cpu_percent_relay, client_cpu_percent_relay,
          server_cpu_percent_setup, client_cpu_percent_setup,
          server_cores_busy_percent_setup, db_cpu_percent_setup,
          cpu_us_per_msg: (if .server_cpu_percent_relay == null or .relay_throughput_msgs_per_sec == 0 then null
                           else (.server_cpu_percent_relay * 10000 / .relay_throughput_msgs_per_sec * 100 | round / 100) end),
          errors, client_errors}' <<<"$line" | tee -a "$OUT/runs.jsonl" >&2
}

# serve SERVER RUN: a fresh server, the scenarios (paired only on Parley's
# protocol: parley and bare), its peak RSS over the first three.
# The peers run with every setting their default but the address and, for
# PeerJS, a concurrent-client limit that lets the calls scenario's
# 2 x CALL_PAIRS connections in (its default is 5,000) and a listen backlog
# of 4096 (Parley's; see above). PeerJS closes a client silent for
# alive_timeout (its CLI's default, 60 s, passed explicitly): parley-load
# sends PeerJS's heartbeat every 5 s, as its client does. matchbox drops
# nobody for silence; it keeps std's listen backlog of 128 (no option).
serve() {
    local server=$1 r=$2 port secret data ready=/readyz bin=$BIN
    if [ "$server" = parley ] || [ "$server" = parley-then ]; then
        port=$((PARLEY_PORT + r))
        [ "$server" = parley ] || { port=$((THEN_PORT + r)) bin=$THEN_BIN; }
        data="$OUT/$server-data-$r"
        rm -rf "$data" && mkdir -p "$data"
        secret="$data/jwt-secret"
        env PARLEY_DATA_DIR="$data" PARLEY_LISTEN="127.0.0.1:$port" \
            PARLEY_RATE_LIMIT_PER_SEC="$RATE_LIMIT" PARLEY_RATE_LIMIT_BURST="$RATE_LIMIT" \
            taskset -c "$SERVER_CORE" "$bin/parley" serve >"$OUT/$server-$r.log" 2>&1 &
    elif [ "$server" = bare ]; then
        port=$((BARE_PORT + r))
        secret="$OUT/bare-jwt-secret"
        taskset -c "$SERVER_CORE" "$BIN/bare-relay" --addr "127.0.0.1:$port" --jwt-secret-file "$secret" \
            >"$OUT/bare-$r.log" 2>&1 &
    elif [ "$server" = matchbox ]; then
        port=$((MATCHBOX_PORT + r))
        secret=-
        ready=/health
        taskset -c "$SERVER_CORE" "$MATCHBOX_BIN" "127.0.0.1:$port" >"$OUT/matchbox-$r.log" 2>&1 &
    else
        port=$((PEERJS_PORT + r))
        secret=-
        ready=/
        taskset -c "$SERVER_CORE" node --require "$OUT/peerjs-backlog.cjs" "$PEERJS_CLI" --host 127.0.0.1 --port "$port" \
            --concurrent_limit $((2 * CALL_PAIRS + 2 * PAIRS + 1000)) --alive_timeout 60000 \
            >"$OUT/peerjs-$r.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 100); do up "$port" "$ready" && { [ "$secret" = - ] || [ -s "$secret" ]; } && break; sleep 0.1; done
    up "$port" "$ready" || die "$server did not start on 127.0.0.1:$port (see $OUT/$server-$r.log)"
    local extra=()
    case $server in
        parley | parley-then) [ "$PRICE" -eq 0 ] || extra=(--price-minor "$PRICE") ;;
        matchbox | peerjs) extra=(--protocol "$server") ;;
    esac
    local at_once=()
    [ "$BURST_AT_ONCE" = 0 ] || at_once=(--calls-at-once)
    scenario "$server" "$r" burst "$port" "$secret" "$PAIRS" --relay-secs 0 "${at_once[@]}" "${extra[@]}"
    scenario "$server" "$r" relay "$port" "$secret" "$PAIRS" --relay-secs "$RELAY_SECS" --relay-window "$RELAY_WINDOW" "${extra[@]}"
    scenario "$server" "$r" paced "$port" "$secret" "$PAIRS" --relay-secs 0 --call-rate "$RATE" "${extra[@]}"
    local hwm
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
    case $server in
        parley | parley-then | bare)
            IDLE_CLIENTS=$ACCEPT_CLIENTS scenario "$server" "$r" accept "$port" "$secret" 0 --relay-secs 0
            scenario "$server" "$r" paired "$port" "$secret" "$PAIRS" --relay-secs 0 --paired-only "${extra[@]}" ;;
    esac
    scenario "$server" "$r" calls "$port" "$secret" "$CALL_PAIRS" --relay-secs 1 "${extra[@]}"
    jq -nc --arg server "$server" --argjson run "$r" --argjson kib "$hwm" \
        '{$server, name: "server", $run, rss_peak_mib: ($kib / 1024 * 10 | round / 10)}' | tee -a "$OUT/runs.jsonl" >&2
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# serve_pg RUN [then]: Parley (with "then", THEN_BIN's) on a fresh
# PostgreSQL database (PG_URL), the paired scenario alone; the database is
# dropped after.
serve_pg() {
    local r=$1 server=parley-pg port=$((PARLEY_PG_PORT + $1)) bin=$BIN secret extra=() data
    [ "${2:-}" != then ] || { server=parley-then-pg port=$((THEN_PG_PORT + r)) bin=$THEN_BIN; }
    data="$OUT/$server-data-$r"
    rm -rf "$data" && mkdir -p "$data"
    secret="$data/jwt-secret"
    PG_DB="parley_bench_$$_$r${2:+_$2}"
    psql -q "$PG_URL/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null || die "could not create database $PG_DB"
    env PARLEY_DATA_DIR="$data" PARLEY_LISTEN="127.0.0.1:$port" DATABASE_URL="$PG_URL/$PG_DB$PG_PARAMS" \
        PARLEY_RATE_LIMIT_PER_SEC="$RATE_LIMIT" PARLEY_RATE_LIMIT_BURST="$RATE_LIMIT" \
        taskset -c "$SERVER_CORE" "$bin/parley" serve >"$OUT/$server-$r.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do up "$port" && [ -s "$secret" ] && break; sleep 0.1; done
    up "$port" || die "$server did not start on 127.0.0.1:$port (see $OUT/$server-$r.log)"
    [ "$PRICE" -eq 0 ] || extra=(--price-minor "$PRICE")
    [ -z "$PG_PID" ] || extra+=(--db-pid "$PG_PID")
    scenario "$server" "$r" paired "$port" "$secret" "$PAIRS" --relay-secs 0 --paired-only "${extra[@]}"
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null || true
    PG_DB=
}

for r in $(seq "$RUNS"); do
    serve parley "$r"
    [ -z "$PG_URL" ] || serve_pg "$r"
    if [ -n "$THEN_BIN" ]; then
        serve parley-then "$r"
        [ -z "$PG_URL" ] || serve_pg "$r" then
    fi
    serve bare "$r"
    if [ "$PEERS" = 1 ]; then
        serve matchbox "$r"
        serve peerjs "$r"
    fi
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo
echo "$PAIRS pairs, medians of $RUNS fresh servers each; server on core $SERVER_CORE, parley-load on core $GENERATOR_CORE"
echo
# The rows and helpers every table below uses (jq); each row: label, scenario,
# field, and which way is better ("low", "high"; "" for the CPU shares,
# which say where the bottleneck is, not how good).
COMMON_JQ='
    def median: map(select(. != null)) | sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def show: if . == null then "-" elif . >= 1000 then (round | tostring) elif . >= 10 then (. * 10 | round / 10 | tostring)
        else (. * 100 | round / 100 | tostring) end;
    def med($server; $name; $field): map(select(.server == $server and .name == $name) | .[$field]) | median;
    def total($server; $field): map(select(.server == $server) | .[$field] // 0) | add;
    # Over the runs (the input): "pairs failed / relay hops lost" of a server.
    def failed($server): "\(total($server; "pairs_failed") + total($server; "idle_failed")) / \(total($server; "relay_lost"))";
    def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-" else ($a / $b * 100 | round / 100 | tostring) end;
    def rows:
    [["relayed msg/s (ping-pong, \($pairs) pairs, \($window) in flight per pair)", "relay", "relay_msgs_per_sec", "high"],
     ["relay latency p50 (ms)", "relay", "relay_ms_p50", "low"],
     ["relay latency p99 (ms)", "relay", "relay_ms_p99", "low"],
     ["server CPU per relayed message (µs)", "relay", "cpu_us_per_msg", "low"],
     ["server CPU during the relay (% of its core)", "relay", "server_cpu_percent_relay", ""],
     ["parley-load CPU during the relay (% of its core)", "relay", "client_cpu_percent_relay", ""],
     ["burst, \($pairs) calls at once: set-up p50 (ms)", "burst", "setup_ms_p50", "low"],
     ["burst: set-up p99 (ms)", "burst", "setup_ms_p99", "low"],
     ["burst: message p50 (ms)", "burst", "msg_ms_p50", "low"],
     ["burst: message p99 (ms)", "burst", "msg_ms_p99", "low"],
     ["burst: connections/s set up into calls (2 per pair, each call with its 22 messages)", "burst", "setup_conns_per_sec", "high"],
     ["burst: server CPU per connection set up (µs)", "burst", "cpu_us_per_setup_conn", "low"],
     ["paired, \($pairs) pairs at once into calls (no SDP): connections/s", "paired", "setup_conns_per_sec", "high"],
     ["paired: server CPU per connection (µs)", "paired", "cpu_us_per_setup_conn", "low"],
     ["paired: server CPU during the set-up (% of its core)", "paired", "server_cpu_percent_setup", ""],
     ["paired: parley-load CPU during the set-up (% of its core)", "paired", "client_cpu_percent_setup", ""],
     ["paired: set-up p50 (ms)", "paired", "setup_ms_p50", "low"],
     ["paired: set-up p99 (ms)", "paired", "setup_ms_p99", "low"],
     ["accept, \($accept) WebSockets opened (256 handshakes in flight), no call: authenticated connections/s", "accept", "accept_conns_per_sec", "high"],
     ["accept: server CPU per connection (µs)", "accept", "cpu_us_per_accept_conn", "low"],
     ["accept: server CPU (% of its core)", "accept", "server_cpu_percent_accept", ""],
     ["accept: parley-load CPU (% of its core)", "accept", "client_cpu_percent_accept", ""],
     ["paced, \($rate) calls/s: set-up p50 (ms)", "paced", "setup_ms_p50", "low"],
     ["paced: set-up p99 (ms)", "paced", "setup_ms_p99", "low"],
     ["paced: message p50 (ms)", "paced", "msg_ms_p50", "low"],
     ["paced: message p99 (ms)", "paced", "msg_ms_p99", "low"],
     ["memory per connection in an open call, \($calls) calls at once (KiB)", "calls", "kib_per_call_conn", "low"],
     ["the same, \($pairs) calls of the burst, on a fresh server (KiB)", "burst", "kib_per_call_conn", "low"],
     ["server RSS peak over burst, relay and paced (MiB)", "server", "rss_peak_mib", "low"]];
'
JQ_ARGS=(--arg pairs "$PAIRS" --arg calls "$CALL_PAIRS" --arg rate "$RATE" --arg window "$RELAY_WINDOW" --arg accept "$ACCEPT_CLIENTS")
jq -s -r "${JQ_ARGS[@]}" --argjson peers "$PEERS" "$COMMON_JQ"'
    # The better peer for a row as [value, name], or null.
    def best($dir; $m; $j): [[$m, "matchbox"], [$j, "PeerJS"]] | map(select(.[0] != null)) |
        if length == 0 or $dir == "" then null elif $dir == "low" then min_by(.[0]) else max_by(.[0]) end;
    . as $all |
    rows as $rows |
    if $peers == 0 then
        "| figure | bare relay | Parley | Parley / bare |",
        "|---|---:|---:|---:|",
        ($rows[] | . as [$what, $name, $field] |
            ($all | med("bare"; $name; $field)) as $b | ($all | med("parley"; $name; $field)) as $p |
            "| \($what) | \($b | show) | \($p | show) | \(ratio($p; $b)) |"),
        "| pairs or connections failed / relay hops lost (all runs) | \(failed("bare")) | \(failed("parley")) | |"
    else
        "| figure | bare relay | matchbox | PeerJS | Parley | Parley / bare | Parley / best peer |",
        "|---|---:|---:|---:|---:|---:|---:|",
        ($rows[] | . as [$what, $name, $field, $dir] |
            ($all | med("bare"; $name; $field)) as $b | ($all | med("parley"; $name; $field)) as $p |
            ($all | med("matchbox"; $name; $field)) as $m | ($all | med("peerjs"; $name; $field)) as $j |
            best($dir; $m; $j) as $best |
            (if $best == null then "-" else ratio($p; $best[0]) end) as $vs_best |
            "| \($what) | \($b | show) | \($m | show) | \($j | show) | \($p | show) | \(ratio($p; $b)) | " +
            (if $vs_best == "-" then "-" else "\($vs_best) (\($best[1]))" end) + " |"),
        "| pairs or connections failed / relay hops lost (all runs) | \(failed("bare")) | \(failed("matchbox")) | \(failed("peerjs")) | \(failed("parley")) | | |"
    end
' "$OUT/runs.jsonl"
if [ -n "$PG_URL" ]; then
    echo
    echo "Parley on PostgreSQL (a fresh database per server, PostgreSQL unpinned$([ -z "$PG_PARAMS" ] || echo ", $PG_PARAMS")), paired, $PAIRS pairs at once:"
    echo
    jq -s -r "${JQ_ARGS[@]}" "$COMMON_JQ"'
        map(select(.server == "parley-pg" and .name == "paired")) as $runs |
        "| figure | median | runs |", "|---|---:|---|",
        (["connections/s", "setup_conns_per_sec"], ["server CPU per connection (µs)", "cpu_us_per_setup_conn"],
         ["server CPU during the set-up (% of its core)", "server_cpu_percent_setup"],
         ["parley-load CPU during the set-up (% of its core)", "client_cpu_percent_setup"],
         ["the server'"'"'s core busy during the set-up, every process (%)", "server_cores_busy_percent_setup"],
         ["PostgreSQL CPU during the set-up (% of a core; PG_PID)", "db_cpu_percent_setup"],
         ["set-up p50 (ms)", "setup_ms_p50"], ["set-up p99 (ms)", "setup_ms_p99"] | . as [$what, $field] |
            "| \($what) | \($runs | map(.[$field]) | median | if . == null then "-" else round end) | \($runs | map(.[$field] | if . == null then "-" else round end | tostring) | join(", ")) |"),
        "| pairs failed (all runs) | \($runs | map(.pairs_failed) | add) | |"
    ' "$OUT/runs.jsonl"
fi
if [ -n "$THEN_BIN" ]; then
    echo
    echo "Parley now ($BIN) beside Parley then ($THEN_BIN), the same scenarios in the same run, medians of $RUNS fresh servers each:"
    echo
    jq -s -r "${JQ_ARGS[@]}" --argjson pg "$([ -n "$PG_URL" ] && echo true || echo false)" "$COMMON_JQ"'
        . as $all |
        (rows + if $pg then
            [["on PostgreSQL, paired: connections/s", "paired", "setup_conns_per_sec", "high", "-pg"],
             ["on PostgreSQL, paired: server CPU per connection (µs)", "paired", "cpu_us_per_setup_conn", "low", "-pg"]]
         else [] end) as $rows |
        "| figure | Parley then | Parley now | now / then |", "|---|---:|---:|---:|",
        ($rows[] | . as [$what, $name, $field, $dir, $kind] |
            ($all | med("parley-then\($kind // "")"; $name; $field)) as $t |
            ($all | med("parley\($kind // "")"; $name; $field)) as $n |
            "| \($what) | \($t | show) | \($n | show) | \(ratio($n; $t)) |"),
        "| pairs or connections failed / relay hops lost (all runs) | \(failed("parley-then")) | \(failed("parley")) | |"
    ' "$OUT/runs.jsonl"
fi
exit $status
