#!/bin/sh
# The Celery broker's Redis (docker-compose.yml: `broker` and `broker-replica`): the project's
# redis.conf, started as the master the sentinels name or as its replica.
#
# Why ask the sentinels: after a failover the master is whichever node they promoted. A node
# that came back and started as a master on its own would be a second master (and one given
# a fixed `replicaof` would follow a replica). Only when no sentinel answers (the very first
# start of the deployment) does BROKER_INITIAL_MASTER decide. This is also why redis.conf can
# stay mounted read-only: the CONFIG REWRITE a sentinel sends after REPLICAOF fails (and is
# ignored), and the role is decided here at every start instead.
set -eu
: "${BROKER_PASSWORD:?set BROKER_PASSWORD}"
: "${BROKER_ANNOUNCE_HOST:?the name other containers reach this node by}"
PORT="${BROKER_PORT:-6379}"
MASTER_NAME="${BROKER_MASTER_NAME:-mymaster}"
SENTINELS="${BROKER_SENTINELS:-sentinel-1:26379 sentinel-2:26379 sentinel-3:26379}"
INITIAL_MASTER="${BROKER_INITIAL_MASTER:-broker:6379}"
CONF="${BROKER_CONF:-/usr/local/etc/redis/redis.conf}"

current_master() {
  for sentinel in $SENTINELS; do
    answer=$(REDISCLI_AUTH="$BROKER_PASSWORD" redis-cli --no-auth-warning --raw \
      -h "${sentinel%:*}" -p "${sentinel##*:}" \
      SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null) || continue
    host=$(echo "$answer" | sed -n 1p)
    port=$(echo "$answer" | sed -n 2p)
    case "$port" in
      '' | *[!0-9]*) continue ;;  # an error or no master known: ask the next one
    esac
    echo "$host:$port"
    return 0
  done
  return 1
}

master=$(current_master || echo "$INITIAL_MASTER")
set -- "$CONF" --port "$PORT" --requirepass "$BROKER_PASSWORD" \
  --masterauth "$BROKER_PASSWORD" --replica-announce-ip "$BROKER_ANNOUNCE_HOST" \
  --maxmemory "${BROKER_MAXMEMORY:-512mb}"
if [ "$master" != "$BROKER_ANNOUNCE_HOST:$PORT" ]; then
  echo "broker: starting as a replica of $master" >&2
  set -- "$@" --replicaof "${master%:*}" "${master##*:}"
else
  echo "broker: starting as the master" >&2
fi
exec redis-server "$@"
