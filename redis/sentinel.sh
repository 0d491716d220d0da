#!/bin/sh
# A Redis Sentinel watching the Celery broker (docker-compose.yml: `sentinel-1..3`, quorum 2).
#
# Its config is written on the first start only, into its volume: Sentinel rewrites the file
# with what it learns (the current master after a failover, the replicas, the other
# sentinels), and a file written afresh at every start would send it back to the first master.
# The password lines are refreshed at every start, so BROKER_PASSWORD can be changed.
set -eu
: "${BROKER_PASSWORD:?set BROKER_PASSWORD}"
: "${SENTINEL_ANNOUNCE_HOST:?the name other containers reach this sentinel by}"
MASTER_NAME="${BROKER_MASTER_NAME:-mymaster}"
INITIAL_MASTER="${BROKER_INITIAL_MASTER:-broker:6379}"
CONF="${SENTINEL_DIR:-/data}/sentinel.conf"

umask 077
if [ ! -s "$CONF" ]; then
  cat >"$CONF" <<CONF
port ${SENTINEL_PORT:-26379}
dir ${SENTINEL_DIR:-/data}
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SENTINEL_ANNOUNCE_HOST
sentinel monitor $MASTER_NAME ${INITIAL_MASTER%:*} ${INITIAL_MASTER##*:} 2
sentinel down-after-milliseconds $MASTER_NAME ${SENTINEL_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $MASTER_NAME ${SENTINEL_FAILOVER_TIMEOUT_MS:-60000}
sentinel parallel-syncs $MASTER_NAME 1
CONF
fi
# Passwords (URL-safe, as docker-compose.yml asks) given afresh: the sentinels' own and the
# one of the data nodes.
grep -v -e '^requirepass ' -e '^user default ' -e "^sentinel auth-pass " "$CONF" >"$CONF.new"
printf 'requirepass %s\nsentinel auth-pass %s %s\n' \
  "$BROKER_PASSWORD" "$MASTER_NAME" "$BROKER_PASSWORD" >>"$CONF.new"
mv "$CONF.new" "$CONF"
exec redis-server "$CONF" --sentinel
