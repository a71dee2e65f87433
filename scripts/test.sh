#!/usr/bin/env bash
# Runs every test. Installs and starts what the tests need when missing
# (PostgreSQL, Redis, Debian's chromium for the web demo's browser tests),
# and sets TEST_DATABASE_URL / TEST_REDIS_URL / PARLEY_CHROMIUM for the
# suites that need them. Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  say "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ensure_postgres() {
  postgres_up && return 0
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  # Local test server: trust loopback connections (put first so it wins).
  local hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 30); do postgres_up && break; sleep 1; done
  postgres_up || { echo "PostgreSQL did not start" >&2; exit 1; }
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
ensure_redis() {
  # The cluster tests also start and kill a redis-server of their own.
  command -v redis-server >/dev/null || apt_install redis-server
  redis_up && return 0
  say "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis_up && break; sleep 1; done
  redis_up || { echo "Redis did not start" >&2; exit 1; }
}

# The browser tests (web-demo/tests/browser/) drive Debian's chromium
# headless; test tools' own browser downloads do not work here.
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  [ -x /usr/bin/chromium ] || { echo "chromium did not install" >&2; exit 1; }
}

# The TURN tests (server/tests/api/turn.rs) run Debian's coturn under
# libfaketime, at the test clock's time.
ensure_coturn() {
  command -v turnserver >/dev/null && ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 && return 0
  apt_install coturn faketime
  command -v turnserver >/dev/null || { echo "coturn did not install" >&2; exit 1; }
}

ensure_postgres
ensure_redis
ensure_chromium
ensure_coturn
export PARLEY_CHROMIUM="${PARLEY_CHROMIUM:-/usr/bin/chromium}"

# The database named by TEST_DATABASE_URL must exist; stale per-test
# databases from earlier runs are dropped.
psql_admin() { psql "${TEST_DATABASE_URL%/*}/postgres" -v ON_ERROR_STOP=1 -qAt "$@"; }
db="${TEST_DATABASE_URL##*/}"
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE \"$db\""
fi
for stale in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'parley_test_%'"); do
  psql_admin -c "DROP DATABASE IF EXISTS \"$stale\" WITH (FORCE)" >/dev/null
done

# Plain `cargo test`, not `cargo nextest run`: measured on this 2-core
# machine, nextest ran the server's test binary no faster (48.6 s for 116
# of its 141 tests vs 51-53 s for all 141 under libtest), and its process
# per test changes how the in-process fixtures behave (the browser tests'
# one-at-a-time lock, process-wide metrics, harness-less bench checks and
# doctests would each need their own arrangement). One test binary per
# crate is where the time went.
say "cargo test (PostgreSQL at $TEST_DATABASE_URL, Redis at $TEST_REDIS_URL, chromium at $PARLEY_CHROMIUM)"
cargo test --workspace --all-targets "$@"
