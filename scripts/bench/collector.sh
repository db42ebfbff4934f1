#!/usr/bin/env bash
# Collector end to end (decode, sessions and dedupe, resolve, aggregate, health stage, store with
# fsync): an in-process generator feeds 10k agents x 10 flows = 100k active flows through the
# real actors (nfm-collector/benches/collector.rs). Runs three times: with the health evaluator
# (the headline `collector.records_per_s`), without it (`collector.records_per_s_without_health`),
# and with the evaluator and NFM_BENCH_MONITORS monitors (default 1000;
# `collector.records_per_s_1000_monitors`, issue 17 item 3; 0 skips that run).
# Duration per run: NFM_BENCH_SECS (default 60) or `--secs N`. Progress and RSS samples go to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECS=${NFM_BENCH_SECS:-60}
if [ "${1:-}" = "--secs" ] && [ -n "${2:-}" ]; then SECS=$2; fi
MONITORS=${NFM_BENCH_MONITORS:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo bench -q -p nfm-collector --bench collector --no-run >&2
for health in 1 0; do
  NFM_BENCH_MONITORS=3 cargo bench -q -p nfm-collector --bench collector -- --secs "$SECS" --health "$health"
done
if [ "$MONITORS" -gt 3 ]; then
  cargo bench -q -p nfm-collector --bench collector -- --secs "$SECS" --health 1 --monitors "$MONITORS"
fi
