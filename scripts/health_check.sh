#!/usr/bin/env bash
# Is every daemon alive and ready? Exit 0 if so, 1 if not (for cron, monitoring or a load balancer).
#   scripts/health_check.sh                   every daemon started by scripts/start.sh (pid + /ready)
#   scripts/health_check.sh --url URL ...     these URLs only (e.g. http://127.0.0.1:9464/ready)
#   --quiet                                   no output, exit code only
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${MAILSTREAM_RUN_DIR:-$ROOT/run}
TIMEOUT_SECONDS=${HEALTH_TIMEOUT_SECONDS:-5}

quiet=0
urls=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quiet) quiet=1 ;;
    --url) shift; urls+=("${1:?--url needs a URL}") ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

say() { [ "$quiet" = 1 ] || echo "$@"; }

# Prints "<status code> <body>"; curl when installed, else Node's fetch.
get() {
  if command -v curl >/dev/null; then
    curl -s --max-time "$TIMEOUT_SECONDS" -w '\n%{http_code}' "$1" | { body=$(cat); echo "${body##*$'\n'} ${body%$'\n'*}"; }
  else
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(Number(process.argv[2]) * 1000) })
      .then(async (r) => console.log(r.status, (await r.text()).replace(/\n/g, " ")), () => console.log("000"))' "$1" "$TIMEOUT_SECONDS"
  fi
}

check_url() {
  local label=$1 url=$2 reply code
  reply=$(get "$url")
  code=${reply%% *}
  if [ "$code" = 200 ]; then say "$label: ok ($url)"; return 0; fi
  [ "$code" = 000 ] || [ -z "$code" ] && reply="000 no answer"
  say "$label: NOT OK ($url): ${reply#* }"
  return 1
}

status=0
if [ ${#urls[@]} -gt 0 ]; then
  for url in "${urls[@]}"; do check_url "$url" "$url" || status=1; done
  exit $status
fi

shopt -s nullglob
pidfiles=("$RUN_DIR"/*.pid)
if [ ${#pidfiles[@]} -eq 0 ]; then
  say "no daemons started by scripts/start.sh in $RUN_DIR"
  exit 1
fi
for pidfile in "${pidfiles[@]}"; do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name: NOT RUNNING (pid $pid; log $RUN_DIR/$name.log)"
    status=1
    continue
  fi
  check_url "$name" "http://127.0.0.1:$(cat "$RUN_DIR/$name.port")/ready" || status=1
done
exit $status
