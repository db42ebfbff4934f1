#!/usr/bin/env bash
# Bounded fuzz run of the wire decoder: scripts/fuzz.sh [SECONDS] (default 60).
# Seeds come from the golden frames (nfm-wire/fuzz/corpus/decode/seed-*); new corpus entries stay local.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
cd "$ROOT/nfm-wire"
cargo +nightly fuzz run decode --release -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 \
  | grep -E '^(#[0-9]+ +DONE|Done|==[0-9]+== ERROR|SUMMARY)|panicked|Test unit|artifact' || true
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "fuzz: decoder failure (see nfm-wire/fuzz/artifacts)"; exit 1; }
echo "fuzz: decode ran ${secs}s without a failure"
