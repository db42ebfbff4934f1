#!/usr/bin/env bash
# Runs every check the project has: setup, formatting, clippy, all unit and integration tests
# (kernel tests included: they need root), a bounded fuzz run of the wire decoder, and the extra
# suites in scripts/test.d/ (the browser end-to-end test). Exits non-zero on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings

echo "== layout"
bash scripts/check-layout.sh

echo "== cargo test"
# Kernel tests share one machine-wide resource each (cgroup, netns names, nftables): run the
# test binaries one at a time, their tests in parallel within. Tests that need root or a tool
# from scripts/setup.sh are #[ignore]d so a plain `cargo test` works anywhere; here they run too.
mkdir -p target
set +e
cargo test --no-fail-fast -- --include-ignored 2>&1 | tee target/test.log | grep -E '^(test result|running|error|failures|---- )|FAILED|panicked'
status=${PIPESTATUS[0]}
set -e
awk '/^test result/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "cargo test: %d passed, %d failed\n", p, f }' target/test.log
[ "$status" -eq 0 ] || { echo "cargo test failed"; exit 1; }

echo "== fuzz (bounded)"
bash scripts/fuzz.sh 60

for t in scripts/test.d/*.sh; do
  [ -f "$t" ] || continue
  echo "== $t"
  bash "$t"
done
echo "all checks passed"
