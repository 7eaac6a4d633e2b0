#!/usr/bin/env bash
# Gets this machine ready for mailstream and runs one task:
#   setup | test | typecheck | bench | mailstream <args...>
# Ready means: the Debian packages the daemons and tests use, a Node.js >= 22.18 (Node 24 from the
# npm registry into ~/.cache/mailstream/node when the system one is older) and `npm ci`.
# Every step checks first, so a second run only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

task=${1:-setup}
[ $# -gt 0 ] && shift

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

apt_updated=
apt_install() {
  [ $# -eq 0 ] && return 0
  log "installing Debian packages: $*"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  # Services of these packages are not wanted: mailstream starts private instances itself.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_runtime_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v dovecot >/dev/null || missing+=(dovecot-imapd)
  command -v openssl >/dev/null || missing+=(openssl)
  apt_install "${missing[@]}"
}

ensure_test_packages() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v psql >/dev/null || missing+=(postgresql-client)
  # The blob store's durability test reads the file store's system calls.
  command -v strace >/dev/null || missing+=(strace)
  # A PostgreSQL server: the machine's own on 127.0.0.1:5432, else the tests run a private one.
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && ! command -v initdb >/dev/null \
     && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  apt_install "${missing[@]}"
}

node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null
}

ensure_node() {
  if command -v node >/dev/null && node_ok node; then return 0; fi
  local dir="${MAILSTREAM_NODE_DIR:-$HOME/.cache/mailstream/node}"
  if [ ! -x "$dir/node_modules/node/bin/node" ]; then
    log "system Node is $(node --version 2>/dev/null || echo missing); fetching Node 24 from the npm registry into $dir"
    mkdir -p "$dir"
    npm install --silent --no-save --no-audit --no-fund --prefix "$dir" node@24 >/dev/null
  fi
  export PATH="$dir/node_modules/node/bin:$PATH"
  node_ok node || { log "could not get a Node.js >= 22.18"; exit 1; }
}

ensure_dependencies() {
  # npm ci again only when package-lock.json changed since the last install.
  local stamp=node_modules/.mailstream-lock.sha
  local want; want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
}

ensure_runtime_packages
ensure_node
ensure_dependencies

case "$task" in
  setup)
    ensure_test_packages
    log "ready: node $(node --version)"
    ;;
  test)
    ensure_test_packages
    mkdir -p test-results
    exec npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json "$@"
    ;;
  typecheck)
    exec npx tsc -p tsconfig.json
    ;;
  bench)
    exec node bench/run.ts "$@"
    ;;
  mailstream)
    exec node bin/mailstream.js "$@"
    ;;
  *)
    log "unknown task: $task (setup | test | typecheck | bench | mailstream ...)"
    exit 2
    ;;
esac
