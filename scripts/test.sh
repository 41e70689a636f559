#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# (idempotently), builds, and runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build artifacts live outside the clone so that a fresh clone reuses them
# (cargo's fingerprints keep that safe).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/topic-matcher/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The property test of docs/query-language.md §3.6 runs thousands of random cases.
export PROPTEST_CASES="${PROPTEST_CASES:-4000}"

if ! command -v cargo >/dev/null; then
    echo "error: cargo is required (install Rust with rustup)" >&2
    exit 2
fi

./scripts/install-deps.sh --broker
export PATH="$HOME/.cargo/bin:$PATH"

echo "== format and lints"
if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
    cargo fmt --check
    cargo clippy --release --locked --all-targets -- -D warnings
else
    echo "warning: rustfmt or clippy is not installed with this toolchain (rustup component add rustfmt clippy): format and lints not checked" >&2
fi

echo "== build (release, locked)"
cargo build --release --locked --all-targets

echo "== tests"
if command -v cargo-nextest >/dev/null; then
    cargo nextest run --release --locked --no-fail-fast
    cargo test --release --locked --doc
else
    cargo test --release --locked
fi

echo "== benches compile and their checks run once"
TM_BENCH_QUICK=1 cargo bench --locked --bench engine -- --test

echo "== all tests passed"
