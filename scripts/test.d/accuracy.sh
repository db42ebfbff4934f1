#!/usr/bin/env bash
# Issues 7 and 14's bar on every shipped scenario, on both shipped fleets, at 5 s and at 60 s:
# live against a fresh collector (seed 1, small fleet) and offline over 10 seeds with faults moved
# to random components. Exits non-zero when a gating scenario (all but scripts/accuracy.sh's
# PENDING lists) misses the bar. Bounded: a release build and about ten minutes of scoring.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
exec timeout 1800 bash "$ROOT/scripts/accuracy.sh" --check
