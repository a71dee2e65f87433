#!/usr/bin/env bash
# A Parley cluster on this machine: PostgreSQL and Redis (started when
# missing, as scripts/test.sh does), three `parley serve` nodes sharing them,
# and HAProxy in front: round robin, no sticky sessions, each node
# health-checked on /readyz, WebSockets tunnelled. The web demo is served
# by every node (dev mode), so it works through the balancer.
#
# Usage: scripts/cluster.sh [--build] [COMMAND]
#   up          start whatever is not running (the default)
#   down        stop HAProxy and the nodes (PostgreSQL and Redis stay up)
#   status      each node's /readyz, and whether HAProxy sends it traffic
#   kill N      kill -9 node N (HAProxy takes it out within ~2 s)
#   kill-hub    kill -9 the hub node (the holder of the Redis lease <PARLEY_REDIS_PREFIX or parley>:hub)
#   hub         print the hub node's name (node1, ...)
#   start N     start node N (again)
#   start-all   start every node that is not running; wait until each is
#               ready and, if HAProxy runs, until it sends each traffic
#   drain N     SIGTERM node N: it refuses new work, checkpoints its
#               sessions' meters, releases their leases and exits
#   logs N      node N's log, followed on a terminal (`logs haproxy`: HAProxy's)
#   --build     run `cargo build --release --bin parley` first
#
# Environment:
#   PARLEY_BIN                 the server binary (default target/release/parley)
#   PARLEY_CLUSTER_DIR         pids, logs, data dirs, secrets and haproxy.cfg
#                              (default .cluster in the repository)
#   PARLEY_CLUSTER_PORT        the balancer, on 127.0.0.1 (default 8080);
#                              node N listens on the port N above it (8081, ...)
#   PARLEY_CLUSTER_STATS_PORT  HAProxy's stats page (default 8404)
#   PARLEY_CLUSTER_NODES       how many nodes (default 3, at most 9)
#   PARLEY_CLUSTER_REDIS_PORT  the Redis on 127.0.0.1 the nodes share (default
#                              6379, started when missing; another port must
#                              already be served)
# Other PARLEY_* variables (PARLEY_LOG, PARLEY_FREE_WINDOW_SECS, ...) reach
# every node as they are.
set -euo pipefail

caller=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Paths given by the user are relative to where the script was run from.
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller/$1" ;; esac; }
if [ -n "${PARLEY_BIN:-}" ]; then BIN=$(abs "$PARLEY_BIN"); else BIN=$ROOT/target/release/parley; fi
if [ -n "${PARLEY_CLUSTER_DIR:-}" ]; then STATE=$(abs "$PARLEY_CLUSTER_DIR"); else STATE=$ROOT/.cluster; fi
PORT=${PARLEY_CLUSTER_PORT:-8080}
STATS_PORT=${PARLEY_CLUSTER_STATS_PORT:-8404}
NODES=${PARLEY_CLUSTER_NODES:-3}
REDIS_PORT=${PARLEY_CLUSTER_REDIS_PORT:-6379}
DB_URL=postgres://postgres@127.0.0.1:5432/parley_cluster
REDIS=redis://127.0.0.1:$REDIS_PORT
# The nodes' Redis keys start with PARLEY_REDIS_PREFIX (the server's default: parley).
HUB_KEY=${PARLEY_REDIS_PREFIX:-parley}:hub

die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

[[ $NODES =~ ^[1-9]$ ]] || die "PARLEY_CLUSTER_NODES=$NODES: expected 1 to 9"
[[ $PORT =~ ^[0-9]+$ && $STATS_PORT =~ ^[0-9]+$ && $REDIS_PORT =~ ^[0-9]+$ ]] ||
  die "PARLEY_CLUSTER_PORT / PARLEY_CLUSTER_STATS_PORT / PARLEY_CLUSTER_REDIS_PORT: expected port numbers"

node_port() { echo $((PORT + $1)); }

# The pid in $STATE/$1.pid if that process is alive and is the one started
# here (its command line contains $2); a zombie counts as dead.
live_pid() {
  local pid
  pid=$(started_pid "$1") || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}
# The pid in $STATE/$1.pid if that process is alive, whatever it runs (just
# started, it may not have exec'd its program yet).
started_pid() {
  local file=$STATE/$1.pid pid
  [ -s "$file" ] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  ! gone "$pid" || return 1
  echo "$pid"
}
node_pid() { live_pid "node$1" " serve"; }
haproxy_pid() { live_pid haproxy "$STATE/haproxy.cfg"; }
gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [ "${stat%% *}" = Z ]
}

# The lines of log $1 since its last "starting" line, at most 30.
last_run() { awk '/^==> .* starting$/ { n = 0 } { line[++n] = $0 } END { for (i = (n > 30 ? n - 29 : 1); i <= n; i++) print line[i] }' "$1"; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true; }

need_node_number() {
  if ! [[ ${1:-} =~ ^[1-9]$ ]] || [ "$1" -gt "$NODES" ]; then die "expected a node number, 1 to $NODES"; fi
}

ensure_binary() {
  if [ "$build" = 1 ]; then
    say "cargo build --release --bin parley"
    cargo build --release --bin parley
  fi
  [ -x "$BIN" ] || die "no server binary at $BIN: run \`cargo build --release\` (or pass --build, or set PARLEY_BIN)"
}

ensure_services() {
  ensure_postgres
  if [ "$REDIS_PORT" = 6379 ]; then
    ensure_redis
  else
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG ||
      die "no Redis answers on 127.0.0.1:$REDIS_PORT (PARLEY_CLUSTER_REDIS_PORT): start it first"
  fi
  local admin=${DB_URL%/*}/postgres db=${DB_URL##*/}
  if [ "$(psql "$admin" -qAt -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    say "creating database $db"
    psql "$admin" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"$db\""
  fi
}

# A secret shared by every node, generated once into the state dir.
secret() {
  local file=$STATE/$1
  if [ ! -s "$file" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

prepare_state() {
  mkdir -p "$STATE"
  [ -f "$STATE/.gitignore" ] || echo '*' >"$STATE/.gitignore"
  JWT_SECRET=$(secret jwt-secret)
  RECORDING_URL_SECRET=$(secret recording-url-secret)
}

launch_node() {
  local n=$1 port pid
  port=$(node_port "$n")
  if pid=$(node_pid "$n"); then
    say "node$n already running (pid $pid)"
    return 0
  fi
  ! port_taken "$port" || die "127.0.0.1:$port is taken by another process; node$n cannot listen there"
  mkdir -p "$STATE/node$n"
  printf '\n==> %s: node%s starting\n' "$(date -u +%FT%TZ)" "$n" >>"$STATE/node$n.log"
  (
    # The server refuses unknown PARLEY_* variables: drop this script's own.
    unset PARLEY_BIN PARLEY_CLUSTER_DIR PARLEY_CLUSTER_PORT PARLEY_CLUSTER_STATS_PORT PARLEY_CLUSTER_NODES \
      PARLEY_CLUSTER_REDIS_PORT
    export PARLEY_LISTEN=127.0.0.1:$port PARLEY_NODE_ID=node$n PARLEY_DATA_DIR=$STATE/node$n
    export DATABASE_URL=$DB_URL REDIS_URL=$REDIS
    # Tokens and recording links signed by one node work on every other;
    # recordings go to one directory every node serves them from.
    export PARLEY_JWT_SECRET=$JWT_SECRET PARLEY_RECORDING_URL_SECRET=$RECORDING_URL_SECRET
    export PARLEY_RECORDING_STORE=${PARLEY_RECORDING_STORE:-file://$STATE/recordings}
    export PARLEY_WEB_DIR=${PARLEY_WEB_DIR:-$ROOT/web-demo} PARLEY_SDK_JS_DIR=${PARLEY_SDK_JS_DIR:-$ROOT/sdk/js}
    # Its own session: a Ctrl-C or a closed terminal does not reach it.
    exec setsid "$BIN" serve
  ) </dev/null >>"$STATE/node$n.log" 2>&1 &
  echo $! >"$STATE/node$n.pid"
  say "node$n starting on 127.0.0.1:$port (pid $!, log $STATE/node$n.log)"
}

wait_node_ready() {
  local n=$1 port pid
  port=$(node_port "$n")
  for _ in $(seq 120); do
    pid=$(started_pid "node$n") || {
      last_run "$STATE/node$n.log" >&2
      die "node$n exited during start-up (log above: $STATE/node$n.log)"
    }
    [ "$(http_code "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 0.5
  done
  die "node$n (pid $pid) not ready after 60 s; see $STATE/node$n.log"
}

write_haproxy_cfg() {
  local n
  {
    cat <<EOF
# Generated by scripts/cluster.sh, anew each time it starts HAProxy.
global
    # No maxconn: HAProxy derives it from the open-file limit. Servers going
    # DOWN and UP are written to stderr (haproxy.log); requests are not logged.

defaults
    mode http
    option forwardfor
    # A node killed before its health check noticed: the request goes to another.
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # An upgraded WebSocket may sit idle between messages this long.
    timeout tunnel 1h
    timeout client-fin 5s

frontend parley
    bind 127.0.0.1:$PORT
    default_backend nodes

# No cookies, no stickiness: any node serves any request or WebSocket.
backend nodes
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 1s fastinter 500ms downinter 1s fall 2 rise 2
EOF
    for n in $(seq "$NODES"); do
      printf '    server node%s 127.0.0.1:%s\n' "$n" "$(node_port "$n")"
    done
    cat <<EOF

listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
  } >"$STATE/haproxy.cfg"
}

launch_haproxy() {
  local pid
  if pid=$(haproxy_pid); then
    say "HAProxy already running (pid $pid)"
    return 0
  fi
  command -v haproxy >/dev/null || apt_install haproxy
  ! port_taken "$PORT" || die "127.0.0.1:$PORT is taken by another process (set PARLEY_CLUSTER_PORT)"
  ! port_taken "$STATS_PORT" || die "127.0.0.1:$STATS_PORT is taken by another process (set PARLEY_CLUSTER_STATS_PORT)"
  write_haproxy_cfg
  haproxy -c -q -f "$STATE/haproxy.cfg" || die "HAProxy refused $STATE/haproxy.cfg"
  printf '\n==> %s: HAProxy starting\n' "$(date -u +%FT%TZ)" >>"$STATE/haproxy.log"
  # In the foreground (-db, so it logs to haproxy.log), detached from here.
  (exec setsid haproxy -db -f "$STATE/haproxy.cfg") </dev/null >>"$STATE/haproxy.log" 2>&1 &
  echo $! >"$STATE/haproxy.pid"
  say "HAProxy starting on 127.0.0.1:$PORT (pid $!, stats http://127.0.0.1:$STATS_PORT/)"
  for _ in $(seq 40); do
    started_pid haproxy >/dev/null || { last_run "$STATE/haproxy.log" >&2; die "HAProxy exited (log above)"; }
    [ "$(http_code "http://127.0.0.1:$PORT/readyz")" = 200 ] && return 0
    sleep 0.5
  done
  die "no answer through HAProxy on 127.0.0.1:$PORT after 20 s; see $STATE/haproxy.log"
}

# Sends $2 to the process in pid file $1 (if alive, matched by $3) and waits
# up to $4 s for it to exit, then kills it.
stop_process() {
  local name=$1 signal=$2 match=$3 wait=$4 pid
  pid=$(live_pid "$name" "$match") || { rm -f "$STATE/$name.pid"; return 0; }
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq $((wait * 2))); do
    gone "$pid" && break
    sleep 0.5
  done
  if ! gone "$pid"; then
    echo "$name (pid $pid) still running after ${wait} s: kill -9" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

cmd_up() {
  ensure_binary
  prepare_state
  ensure_services
  # The first node runs the migrations; the others start once it is ready.
  launch_node 1
  wait_node_ready 1
  local n
  for n in $(seq 2 "$NODES"); do launch_node "$n"; done
  for n in $(seq 2 "$NODES"); do wait_node_ready "$n"; done
  launch_haproxy
  say "cluster up: http://127.0.0.1:$PORT/ (web demo), stats http://127.0.0.1:$STATS_PORT/"
  cmd_status
}

cmd_down() {
  local n pid
  say "stopping HAProxy"
  stop_process haproxy TERM "$STATE/haproxy.cfg" 5
  say "stopping the nodes"
  for n in $(seq "$NODES"); do
    if pid=$(node_pid "$n"); then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  # Each waits for its WebSockets, recorder and workers (well under 60 s).
  for n in $(seq "$NODES"); do stop_process "node$n" TERM " serve" 60; done
  say "stopped (PostgreSQL, Redis and $STATE stay)"
}

# HAProxy's view of node N (UP, DOWN, UP 1/2, ...), from its stats CSV.
haproxy_view() {
  local csv=$1 n=$2
  [ -n "$csv" ] || { echo -; return; }
  awk -F, -v sv="node$n" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "nodes" && $2 == sv { s = $col["status"]; c = $col["check_status"]; print s (c != "" ? " (" c ")" : ""); found = 1 }
    END { if (!found) print "-" }' <<<"$csv"
}

cmd_status() {
  local n pid port code body csv hpid
  csv=$(curl -s -m 2 "http://127.0.0.1:$STATS_PORT/;csv" 2>/dev/null || true)
  printf '%-7s %-8s %-16s %-34s %s\n' NODE PID ADDRESS /readyz HAPROXY
  for n in $(seq "$NODES"); do
    port=$(node_port "$n")
    pid=$(node_pid "$n") || pid=-
    body=$(curl -s -m 2 -w '\n%{http_code}' "http://127.0.0.1:$port/readyz" 2>/dev/null || true)
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    if [ "$code" = 000 ] || [ -z "$code" ]; then body="no answer"; else body="$code ${body:0:30}"; fi
    printf '%-7s %-8s %-16s %-34s %s\n' "node$n" "$pid" "127.0.0.1:$port" "$body" "$(haproxy_view "$csv" "$n")"
  done
  hpid=$(haproxy_pid) || hpid=-
  code=$(http_code "http://127.0.0.1:$PORT/readyz")
  [ "$code" = 000 ] && code="no answer"
  printf '%-7s %-8s %-16s %s\n' haproxy "$hpid" "127.0.0.1:$PORT" "$code"
}

cmd_kill() {
  local n=$1 pid
  pid=$(node_pid "$n") || die "node$n is not running"
  kill -9 "$pid"
  rm -f "$STATE/node$n.pid"
  say "node$n (pid $pid) killed; HAProxy marks it DOWN after two failed checks (~2 s): $0 status"
}

cmd_start() {
  local n=$1
  ensure_binary
  prepare_state
  launch_node "$n"
  wait_node_ready "$n"
  say "node$n ready; HAProxy marks it UP after two good checks (~2 s)"
}

# The number N of the hub node (the holder of $HUB_KEY, "nodeN").
hub_node() {
  local holder
  holder=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --raw GET "$HUB_KEY" 2>/dev/null) ||
    die "cannot ask Redis on 127.0.0.1:$REDIS_PORT for $HUB_KEY"
  [ -n "$holder" ] || die "no node holds the hub lease ($HUB_KEY is not set): none is the hub node yet"
  [[ $holder =~ ^node([1-9])$ ]] && [ "${BASH_REMATCH[1]}" -le "$NODES" ] ||
    die "the hub lease is held by \`$holder\`, not one of this script's nodes (node1 to node$NODES)"
  echo "${BASH_REMATCH[1]}"
}

cmd_hub() {
  local n
  n=$(hub_node)
  echo "node$n"
}

cmd_kill_hub() {
  local n
  n=$(hub_node)
  cmd_kill "$n"
}

cmd_start_all() {
  local n started=()
  ensure_binary
  prepare_state
  for n in $(seq "$NODES"); do
    node_pid "$n" >/dev/null && continue
    launch_node "$n"
    started+=("$n")
  done
  for n in "${started[@]+"${started[@]}"}"; do wait_node_ready "$n"; done
  haproxy_pid >/dev/null || { say "every node is running (HAProxy is not: \`$0 up\` starts it)"; return 0; }
  # HAProxy sends a node traffic after two good checks, 1 s apart.
  local csv down
  for _ in $(seq 40); do
    csv=$(curl -s -m 2 "http://127.0.0.1:$STATS_PORT/;csv" 2>/dev/null || true)
    down=0
    for n in $(seq "$NODES"); do
      [[ $(haproxy_view "$csv" "$n") == UP* ]] || down=1
    done
    [ "$down" = 0 ] && { say "every node is running and UP in HAProxy"; return 0; }
    sleep 0.5
  done
  die "a node is still not UP in HAProxy after 20 s: $0 status"
}

cmd_drain() {
  local n=$1 pid
  pid=$(node_pid "$n") || die "node$n is not running"
  say "node$n (pid $pid): SIGTERM; waiting for it to finish (up to 90 s)"
  stop_process "node$n" TERM " serve" 90
  say "node$n stopped; \`$0 start $n\` brings it back"
}

cmd_logs() {
  local file
  case $1 in
    haproxy) file=$STATE/haproxy.log ;;
    *) need_node_number "$1"; file=$STATE/node$1.log ;;
  esac
  [ -f "$file" ] || die "no log at $file"
  if [ -t 1 ]; then tail -n 100 -F "$file"; else cat "$file"; fi
}

build=0
args=()
for arg in "$@"; do
  case $arg in
    --build) build=1 ;;
    -h | --help | help) usage; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"

case ${1:-up} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) need_node_number "${2:-}"; cmd_kill "$2" ;;
  start) need_node_number "${2:-}"; cmd_start "$2" ;;
  start-all) cmd_start_all ;;
  kill-hub) cmd_kill_hub ;;
  hub) cmd_hub ;;
  drain) need_node_number "${2:-}"; cmd_drain "$2" ;;
  logs) [ -n "${2:-}" ] || die "logs needs a node number or \`haproxy\`"; cmd_logs "$2" ;;
  *) usage >&2; exit 2 ;;
esac
