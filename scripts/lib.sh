# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/cluster.sh (sourced, not run):
# messages, apt installs, and a local PostgreSQL and Redis started when
# missing.

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
  # shellcheck disable=SC2012 # the entries are version numbers
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
