#!/usr/bin/env bash
# The main job on a fresh machine: builds topic-matcher and matches the
# bundled sample of real tweets against the bundled searches, printing the
# searches check, the match records and a per-topic summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/topic-matcher/target}"

cargo build --release --locked --quiet
BIN="$CARGO_TARGET_DIR/release/topic-matcher"
OUT="${TMPDIR:-/tmp}/topic-matcher-demo.jsonl"

echo "== check: compile and validate samples/searches.json"
"$BIN" check --searches samples/searches.json

echo
echo "== match: samples/tweets.jsonl -> $OUT"
"$BIN" match --searches samples/searches.json --input samples/tweets.jsonl --output "$OUT"

echo
echo "== first match records"
head -n 3 "$OUT"

echo
echo "== match records per topic"
python3 - "$OUT" <<'PY' 2>/dev/null || cut -d'"' -f12 "$OUT" | sort | uniq -c | sort -rn
import collections, json, sys
counts = collections.Counter(json.loads(line)["topic_id"] for line in open(sys.argv[1]))
for topic, n in counts.most_common():
    print(f"{n:6}  {topic}")
PY

echo
echo "== bench: 10,000 generated searches, 50,000 generated tweets"
"$BIN" bench --searches 10000 --docs 50000 --baseline-docs 100 --passes 2
