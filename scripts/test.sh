#!/usr/bin/env bash
# Runs the whole test suite against real redis-server and PostgreSQL processes that the
# tests start themselves on free loopback ports. Installs redis-server and postgresql
# first when they are missing and this runs as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}: install them (e.g. sudo apt-get install -y ${missing[*]}) and rerun." >&2
    exit 1
  fi
fi
redis-server --version

# A real browser for the demo's browser test (tests/examples.rs). Best effort: where
# none can be installed, that test says so and is skipped.
if ! command -v chromedriver >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "could not install chromium: the browser test will be skipped" >&2
fi

cargo test --workspace --all-features "$@"

# The same tests against Valkey 8 (skip with SKIP_VALKEY=1).
if [ "${SKIP_VALKEY:-}" != 1 ] && [ $# -eq 0 ]; then
  bash scripts/valkey.sh
fi
