#!/usr/bin/env bash
# Runs every test. Installs and starts what the tests need when missing
# (PostgreSQL, Redis, Debian's chromium for the web demo's browser tests),
# and sets TEST_DATABASE_URL / TEST_REDIS_URL / PARLEY_CHROMIUM for the
# suites that need them. Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# say, apt_install, ensure_postgres, ensure_redis (shared with cluster.sh).
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

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
