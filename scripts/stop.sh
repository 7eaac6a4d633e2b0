#!/usr/bin/env bash
# Stops daemons started by scripts/start.sh: SIGTERM (they finish work in hand and exit), then
# SIGKILL after $STOP_TIMEOUT_SECONDS (default 45, above SHUTDOWN_TIMEOUT_MS).
#   scripts/stop.sh [producer | worker | all]     (default all)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${MAILSTREAM_RUN_DIR:-$ROOT/run}
STOP_TIMEOUT_SECONDS=${STOP_TIMEOUT_SECONDS:-45}

case "${1:-all}" in
  producer) pattern='producer' ;;
  worker) pattern='worker-*' ;;
  all) pattern='*' ;;
  *) echo "usage: $0 [producer | worker | all]" >&2; exit 2 ;;
esac

shopt -s nullglob
found=0
for pidfile in "$RUN_DIR"/$pattern.pid; do
  found=1
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$name: not running (stale pid file removed)"
    rm -f "$pidfile" "$RUN_DIR/$name.port"
    continue
  fi
  kill -TERM "$pid"
  for ((i = 0; i < STOP_TIMEOUT_SECONDS * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: still running after ${STOP_TIMEOUT_SECONDS}s, sending SIGKILL (pending entries are claimed by other workers)" >&2
    kill -KILL "$pid" 2>/dev/null || true
  else
    echo "$name: stopped"
  fi
  rm -f "$pidfile" "$RUN_DIR/$name.port"
done
[ "$found" = 1 ] || echo "nothing to stop in $RUN_DIR"
