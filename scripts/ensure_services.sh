#!/usr/bin/env bash
# Make sure Redis and PostgreSQL answer on loopback: start them when installed but stopped,
# install them with apt (Debian) when missing, and create the project's databases.
# Used by `make run` and `make test`; safe to run again (it changes nothing when all is up).
set -euo pipefail

REDIS_PORT="${REDIS_PORT:-6379}"
PG_PORT="${PG_PORT:-5432}"
DATABASES="${DATABASES:-triage triage_test}"

log() { printf '[services] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $* here (no apt-get): install it and run again"; exit 1
  fi
  log "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT; printf 'PING\r\n' >&3; read -r line <&3; [[ \$line == +PONG* ]]" 2>/dev/null
}

pg_up() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PG_PORT" 2>/dev/null
}

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up"; exit 1
}

ensure_redis() {
  if redis_up; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
  command -v redis-cli >/dev/null || apt_install redis-tools
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /tmp --logfile /tmp/triage-redis.log
  wait_for redis redis_up
}

ensure_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client
  if ! pg_up; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    log "starting PostgreSQL $version on 127.0.0.1:$PG_PORT"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for postgresql pg_up
  fi
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for a password on TCP; for local development, trust loopback.
    local hba
    hba=$(as_root runuser -u postgres -- psql -Atc 'show hba_file')
    log "allowing trusted loopback connections for postgres in $hba (development set-up)"
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    as_root runuser -u postgres -- psql -Atc 'select pg_reload_conf()' >/dev/null
    sleep 1
  fi
  for db in $DATABASES; do
    if [ -z "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc "select 1 from pg_database where datname = '$db'")" ]; then
      log "creating database $db"
      psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "create database \"$db\"" >/dev/null
    fi
  done
}

ensure_redis
ensure_postgres
log "redis and postgresql are up"
