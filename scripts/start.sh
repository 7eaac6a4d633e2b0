#!/usr/bin/env bash
# Starts mailstream daemons in the background on a host without systemd.
#   scripts/start.sh producer            the producer (metrics on $PRODUCER_PORT, default 9464)
#   scripts/start.sh worker [N]          N workers (default 1) on ports $WORKER_BASE_PORT (9465), +1, ...
#   scripts/start.sh all [N]             both
# Settings come from $MAILSTREAM_ENV_FILE (default ./.env) and the environment. Pid, port and log
# files go to $MAILSTREAM_RUN_DIR (default ./run). A daemon already running is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${MAILSTREAM_RUN_DIR:-$ROOT/run}
ENV_FILE=${MAILSTREAM_ENV_FILE:-$ROOT/.env}
PRODUCER_PORT=${PRODUCER_PORT:-9464}
WORKER_BASE_PORT=${WORKER_BASE_PORT:-9465}
START_WAIT_SECONDS=${START_WAIT_SECONDS:-30}

# The daemon must be the process whose pid we keep (SIGTERM goes to it): run a Node >= 22.18
# directly rather than through bin/mailstream.js's re-exec of an older Node.
find_node() {
  local candidate
  for candidate in "${MAILSTREAM_NODE:-}" "$(command -v node || true)" \
      "${MAILSTREAM_NODE_DIR:-$HOME/.cache/mailstream/node}/node_modules/node/bin/node"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "no Node.js >= 22.18 found (set MAILSTREAM_NODE, or run npm run setup)" >&2
  return 1
}
NODE=$(find_node) || exit 1

usage() { echo "usage: $0 producer | worker [N] | all [N]" >&2; exit 2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits for /health; a daemon that exits first (bad setting: exit 78) is reported with its log.
wait_healthy() {
  local name=$1 pid=$2 port=$3 i
  for ((i = 0; i < START_WAIT_SECONDS * 5; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null && code=0 || code=$?
      echo "$name: exited during start (code $code); last log lines:" >&2
      tail -n 5 "$RUN_DIR/$name.log" >&2
      rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.port"
      return 1
    fi
    if "$ROOT/scripts/health_check.sh" --quiet --url "http://127.0.0.1:$port/health"; then
      echo "$name: started (pid $pid, http://127.0.0.1:$port, log $RUN_DIR/$name.log)"
      return 0
    fi
    sleep 0.2
  done
  echo "$name: no answer on http://127.0.0.1:$port/health after ${START_WAIT_SECONDS}s (still starting? see $RUN_DIR/$name.log)" >&2
  return 1
}

start_one() {
  local name=$1 role=$2 port=$3; shift 3
  if alive "$RUN_DIR/$name.pid"; then
    echo "$name: already running (pid $(cat "$RUN_DIR/$name.pid"))"
    return 0
  fi
  local args=()
  [ -f "$ENV_FILE" ] && args+=(--env-file "$ENV_FILE")
  # setsid: the daemon survives the shell that started it and gets no terminal signals.
  # `--` keeps Node from reading our --env-file as its own flag.
  env HTTP_PORT="$port" "$@" setsid "$NODE" --max-semi-space-size=8 --max-old-space-size=512 -- "$ROOT/bin/mailstream.js" "${args[@]}" "$role" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$RUN_DIR/$name.pid"
  echo "$port" >"$RUN_DIR/$name.port"
  wait_healthy "$name" "$pid" "$port"
}

what=${1:-}
count=${2:-1}
[[ "$count" =~ ^[1-9][0-9]*$ ]] || usage
mkdir -p "$RUN_DIR"
status=0
case "$what" in
  producer|worker|all) ;;
  *) usage ;;
esac
if [ "$what" = producer ] || [ "$what" = all ]; then
  # Two malloc arenas, not one per allocating thread (as the systemd unit sets): 20-40 MB less RSS.
  start_one producer producer "$PRODUCER_PORT" MALLOC_ARENA_MAX=2 || status=1
fi
if [ "$what" = worker ] || [ "$what" = all ]; then
  for ((n = 1; n <= count; n++)); do
    port=$((WORKER_BASE_PORT + n - 1))
    # A stable consumer name per slot: a restarted worker re-reads its own pending entries first.
    start_one "worker-$n" worker "$port" CONSUMER_NAME="$(hostname)-worker-$n" || status=1
  done
fi
exit $status
