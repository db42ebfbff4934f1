#!/usr/bin/env bash
# Layout checks a newcomer relies on (issue 18): no Rust source file longer than 800 lines before
# its `#[cfg(test)]` tests, and no import cycle among nfm-collector's modules (the second is a
# test: nfm-collector/tests/module_graph.rs). Test-only files (tests/, benches/, fuzz targets)
# are exempt from the size rule: they are lists of cases, not concepts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
limit=800
bad=0
while IFS= read -r f; do
  case "$f" in
    */tests/*|tests/*|*/benches/*|*/fuzz/*) continue ;;
  esac
  n=$(awk '/^#\[cfg\(test\)\]/ { print NR - 1; found = 1; exit } END { if (!found) print NR }' "$f")
  if [ "$n" -gt "$limit" ]; then
    echo "check-layout: $f has $n lines before its tests (limit $limit)"
    bad=1
  fi
done < <(git ls-files '*.rs')
[ "$bad" -eq 0 ] && echo "check-layout: every source file is within $limit lines before its tests"
exit "$bad"
