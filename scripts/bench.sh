#!/usr/bin/env bash
# Runs one benchmark: scripts/bench.sh NAME. Every benchmark prints one line per result,
# `NAME.metric value unit`, so runs can be compared. Available: the files in scripts/bench/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-}
if [ -z "$name" ] || [ ! -f "$ROOT/scripts/bench/$name.sh" ]; then
  echo "usage: scripts/bench.sh NAME   (NAME one of: $(ls "$ROOT/scripts/bench" | sed 's/\.sh$//' | tr '\n' ' '))" >&2
  exit 2
fi
shift
bash "$ROOT/scripts/setup.sh" >/dev/null
exec bash "$ROOT/scripts/bench/$name.sh" "$@"
