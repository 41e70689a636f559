#!/usr/bin/env bash
# The main job on a fresh machine: installs the build dependencies, builds
# topic-matcher, and runs `topic-matcher demo`: an embedded Kafka (librdkafka's
# mock cluster), the bundled sample of real tweets streamed into it, the
# service matching them against the bundled searches with a live dashboard,
# and a summary at the end. Extra arguments go to `demo` (e.g. --duration 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/topic-matcher/target}"

./scripts/install-deps.sh
cargo build --release --locked --bin topic-matcher
exec "$CARGO_TARGET_DIR/release/topic-matcher" demo "$@"
