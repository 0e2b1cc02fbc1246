#!/usr/bin/env bash
# What the tests need on this machine, installed or started where it can be: Chromium (the dashboard's browser tests),
# promtool (the alert rules' tests), redis-server (the Cluster tests start their own nodes), Redis and PostgreSQL
# answering. `pnpm test` runs it before jest, and .ci/run before everything; on a machine that has all of it, it only
# looks. Where it cannot (not root and no sudo, no apt-get, a service it did not install), it says in one line what is
# missing and how to get it, and jest's global setup (test/setup/global-setup.js) stops the run with the same advice.
#
# TOLLGATE_TEST_NO_INSTALL=1 only reports (nothing installed, nothing started).
set -uo pipefail

redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
postgres_url="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
missing=()
apt_updated=""

host_port() { # host_port URL DEFAULT_PORT → "host port"
  local rest="${1#*://}"
  rest="${rest##*@}"
  rest="${rest%%/*}"
  local host="${rest%%:*}" port="${rest##*:}"
  [ "$port" = "$rest" ] && port="$2"
  echo "$host $port"
}

answers() { # answers HOST PORT: a TCP connection succeeds
  (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
}

can_install() {
  [ -z "${TOLLGATE_TEST_NO_INSTALL:-}" ] && command -v apt-get >/dev/null 2>&1 &&
    { [ "$(id -u)" -eq 0 ] || sudo -n true >/dev/null 2>&1; }
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() { # apt_install PACKAGE...
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq >/dev/null && apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_tool() { # need_tool COMMAND-OR-PATH PACKAGE WHAT
  local present
  case "$1" in
    /*) [ -x "$1" ] && present=1 ;;
    *) command -v "$1" >/dev/null 2>&1 && present=1 ;;
  esac
  [ -n "${present:-}" ] && return 0
  if can_install; then
    echo "tollgate tests: $3 is missing; installing Debian's $2 package"
    apt_install "$2" && return 0
  fi
  missing+=("$3 ($1): apt-get install -y $2")
  return 1
}

wait_for() { # wait_for HOST PORT
  for _ in $(seq 1 50); do answers "$1" "$2" && return 0; sleep 0.2; done
  return 1
}

need_tool /usr/bin/chromium chromium "Chromium, for the dashboard's browser tests"
need_tool promtool prometheus "promtool, for the alert rules' tests"
if [ -z "${REDIS_CLUSTER_URLS:-}" ]; then
  need_tool redis-server redis-server "redis-server, for the Redis Cluster tests"
fi

read -r redis_host redis_port < <(host_port "$redis_url" 6379)
if ! answers "$redis_host" "$redis_port"; then
  case "$redis_host" in
    127.0.0.1 | localhost)
      if [ -z "${TOLLGATE_TEST_NO_INSTALL:-}" ] && command -v redis-server >/dev/null 2>&1; then
        echo "tollgate tests: Redis is not answering at $redis_url; starting redis-server on port $redis_port (no persistence)"
        dir="${TMPDIR:-/tmp}/tollgate-test-redis-$redis_port"
        mkdir -p "$dir"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
          --dir "$dir" --logfile "$dir/redis.log" >/dev/null
        wait_for "$redis_host" "$redis_port"
      fi
      ;;
  esac
  answers "$redis_host" "$redis_port" || missing+=("Redis at $redis_url: redis-server --daemonize yes --port $redis_port --save \"\", or set REDIS_URL")
fi

read -r pg_host pg_port < <(host_port "$postgres_url" 5432)
if ! answers "$pg_host" "$pg_port"; then
  case "$pg_host" in
    127.0.0.1 | localhost)
      if ! command -v pg_ctlcluster >/dev/null 2>&1 && can_install; then
        echo "tollgate tests: PostgreSQL is missing; installing Debian's postgresql package"
        if apt_install postgresql; then
          # A cluster this script installed: the tests connect as postgres over TCP without a password, to database test.
          version="$(ls /etc/postgresql | sort -V | tail -1)"
          hba="/etc/postgresql/$version/main/pg_hba.conf"
          as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
          installed_postgres=1
        fi
      fi
      if [ -z "${TOLLGATE_TEST_NO_INSTALL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
        { [ "$(id -u)" -eq 0 ] || sudo -n true >/dev/null 2>&1; }; then
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        echo "tollgate tests: PostgreSQL is not answering at $pg_host:$pg_port; starting cluster $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1
        wait_for "$pg_host" "$pg_port"
        if [ -n "${installed_postgres:-}" ]; then
          as_root runuser -u postgres -- createdb test >/dev/null 2>&1 || true
        fi
      fi
      ;;
  esac
  answers "$pg_host" "$pg_port" || missing+=("PostgreSQL at $postgres_url: apt-get install -y postgresql, then pg_ctlcluster <version> main start, or set POSTGRES_URL")
fi

for line in "${missing[@]}"; do echo "tollgate tests: missing $line"; done
# Never fails by itself: jest's global setup stops the run, with the same advice, when something is still missing.
exit 0
