#!/usr/bin/env bash
# Release hygiene, run by CI: the docs build without warnings, the crate packages (and
# the packaged crate builds), and the library builds with no default features and with
# each feature alone. The declared rust-version is enforced by clippy's
# incompatible_msrv lint (it reads rust-version from Cargo.toml) under `-D warnings`.
set -euo pipefail
cd "$(dirname "$0")/.."

RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
RUSTDOCFLAGS="-D warnings" cargo doc --no-default-features --no-deps
# Both crates (not the axum-login example, a test fixture); the audit crate is verified
# against the packaged core.
cargo package --workspace --allow-dirty --exclude axum-login-example-sqlite
cargo check --lib --no-default-features
for feature in tls local-cache tokens messages jwt store-internals test-redis metrics axum-login value-encryption; do
  cargo check --lib --no-default-features --features "$feature"
done
cargo clippy --lib --no-default-features -- -D warnings
