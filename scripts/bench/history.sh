#!/usr/bin/env bash
# History over the whole retention (issue 16): fills 7 days of 5 s interval summaries (120,960)
# of a 10k-flow fleet in virtual time through the real store actor (rollups included) into a
# temporary data dir, then, in a second process started the way the collector starts (store
# replay, API with the default memory caps, older history read from disk), times workload
# insights plus one monitor's overview over the 7 days (nfm-collector/benches/history.rs).
# Prints history.fill_s, history.disk_mib, history.open_ms, history.query_7d_ms,
# history.query_24h_ms and history.rss_mib (peak RSS of the query process). Bar:
# query_7d_ms <= 2000, rss_mib <= 1024. `--days N` fills fewer days (a quick look).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DATA=$(mktemp -d "${TMPDIR:-/tmp}/nfm-bench-history.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
cargo bench -q -p nfm-collector --bench history --no-run >&2
cargo bench -q -p nfm-collector --bench history -- fill "$DATA" "$@"
cargo bench -q -p nfm-collector --bench history -- query "$DATA"
