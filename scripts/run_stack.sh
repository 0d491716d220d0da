#!/usr/bin/env bash
# `make run`: the API (uvicorn), one Celery worker and Celery beat, side by side.
# Ctrl-C or SIGTERM stops all three; if any one of them exits, the others are stopped too.
# Settings come from the environment / .env like everything else (see .env.example).
set -uo pipefail

BIN="${BIN:-.venv/bin}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-2}"
STATE_DIR="${STATE_DIR:-var}"
mkdir -p "$STATE_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
  exit "${status:-0}"
}
trap stop INT TERM EXIT

"$BIN/celery" -A workers.app:celery_app worker --loglevel=INFO \
  --concurrency="$WORKER_CONCURRENCY" -n "worker@%h" &
pids+=($!)
"$BIN/celery" -A workers.app:celery_app beat --loglevel=INFO \
  --schedule="$STATE_DIR/celerybeat-schedule" &
pids+=($!)
"$BIN/uvicorn" backend.main:app --host "$HOST" --port "$PORT" &
pids+=($!)

wait -n
status=$?  # passed on, so whatever runs `make run` sees a worker that gave up as a failure
echo "[run] a process exited with status $status; stopping the others" >&2
