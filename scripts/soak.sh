#!/usr/bin/env bash
# The chaos soak (docs/operations.md §5.8) against a real broker. Without
# arguments: the short form CI runs (one round of every fault). With
# --long: TM_SOAK_ROUNDS rounds (default 20, about 50 s each), for a person
# to run before a release. Needs root (it fills small tmpfs mounts) and the test broker
# (./scripts/install-deps.sh --broker).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/topic-matcher/target}"
export PATH="$HOME/.cargo/bin:$PATH"
if [ "${1:-}" = "--long" ]; then
    export TM_SOAK_ROUNDS="${TM_SOAK_ROUNDS:-20}"
fi
exec cargo nextest run --release --locked --test soak --no-capture
