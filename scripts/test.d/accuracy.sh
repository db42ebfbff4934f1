#!/usr/bin/env bash
# Issue 7's bar on every shipped scenario: each one live against a fresh collector (seed 1) and
# offline over 5 seeds with faults moved to random components. Exits non-zero when any scenario
# misses detection recall 0.95, attribution precision/recall 0.9, time to detect 2 intervals,
# zero network blame for slow hosts, or one false flip per healthy day. Bounded: a few minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
exec timeout 900 bash "$ROOT/scripts/accuracy.sh" --check
