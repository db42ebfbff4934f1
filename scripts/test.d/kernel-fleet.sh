#!/usr/bin/env bash
# CI gate for the kernel fleet (issue 12 item 3): scripts/kernel-fleet.sh --short — eight host
# namespaces with one real agent each, a real collector, real TCP, four faults — scored against
# issue 12's bar. Uses the debug binaries `cargo test` already built (building them if needed).
# Bounded: about 5 minutes of lab, 7 minutes at most. Skips (exit 0) only where the kernel
# lab cannot run at all: not root, or no cgroup2 mount.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [ "$(id -u)" -ne 0 ]; then
  echo "kernel-fleet: SKIPPED: needs root for network namespaces, cgroups and eBPF"; exit 0
fi
if ! awk '$3 == "cgroup2" { f = 1 } END { exit !f }' /proc/mounts; then
  echo "kernel-fleet: SKIPPED: no cgroup2 mount (the agent attaches to a cgroup v2)"; exit 0
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
echo "kernel-fleet: building nfm-agent and nfm-collector (debug)"
cargo build -q -p nfm-agent --bin nfm-agent -p nfm-collector --bin nfm-collector
NFM_FLEET_BIN="$TARGET/debug" NFM_FLEET_OUT="$TARGET/kernel-fleet-ci" \
  exec timeout -k 20 420 bash scripts/kernel-fleet.sh --short
