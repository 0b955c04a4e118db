#!/usr/bin/env bash
# Runs the whole test suite against real redis-server processes that the tests start
# themselves on free loopback ports. Installs redis-server first when it is missing
# and this runs as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (e.g. sudo apt-get install -y redis-server) and rerun." >&2
    exit 1
  fi
fi
redis-server --version

cargo test --all-features "$@"
