#!/usr/bin/env bash
# Scores the health evaluator on every shipped scenario (nfm-sim/scenarios/*.toml) and writes
# docs/accuracy.md. Two tables:
#   1. live: each scenario against a real, freshly started nfm-collector (frames over TCP through
#      ingest → resolver → aggregator → health stage → store, verdicts read from GET /api/verdicts);
#   2. offline: the same evaluator in-process, every scenario over SEEDS seeds with each fault moved
#      to a random component of the same kind (placements the evaluator was not tuned on).
# With LARGE=1 it adds the 10,000-host fleet (offline, file placement, all but the healthy day);
# with BENCH=1 the criterion benchmark of one 100k-flow interval; with ISSUE14=1 (not gating) the
# issue-14 scenarios: PENDING below on the small fleet and wide-*.toml on nfm-sim/fleets/wide.toml,
# offline over SEEDS seeds with random placement, at 5 s and at 60 s.
#
# The gate (--check, and the tables above) covers nfm-sim/scenarios/*.toml except wide-*.toml (the
# wide fleet's) and the PENDING scenarios (issue 14's that the current evaluator does not meet
# yet: the lead moves each into the gate by deleting it from PENDING once it passes).
#
# Usage: scripts/accuracy.sh            regenerate docs/accuracy.md (release build)
#        scripts/accuracy.sh --check    no file written; exit 1 if any scenario misses the bar
#                                       (scripts/test.d/accuracy.sh; debug build, fewer seeds)
# Env: SEEDS (default 20; --check: 5), LARGE=1, BENCH=1, CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1
if [ $CHECK = 1 ]; then PROFILE=debug; SEEDS=${SEEDS:-5}; else PROFILE=release; SEEDS=${SEEDS:-20}; fi
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
FLEET=nfm-sim/fleets/small.toml
SCEN_DIR=nfm-sim/scenarios
WIDE_FLEET=nfm-sim/fleets/wide.toml
# Issue 14's scenarios that the current evaluator misses at 60 s (offline, 10 seeds, random
# placement): the ramp is first named past +30 %, slow handshakes are never named.
PENDING="rtt-drift slow-handshake"
# Gate scenarios: every shipped one but the wide fleet's and the pending ones.
GATE=()
PENDING_FILES=()
for f in "$SCEN_DIR"/*.toml; do
  name=$(basename "$f" .toml)
  case "$name" in wide-*) continue ;; esac
  if [[ " $PENDING " == *" $name "* ]]; then PENDING_FILES+=("$f"); else GATE+=("$f"); fi
done
WORK=$(mktemp -d /tmp/nfm-accuracy.XXXXXX)
COLLECTOR_PID=""

cleanup() {
  if [ -n "$COLLECTOR_PID" ]; then kill "$COLLECTOR_PID" 2>/dev/null || true; wait "$COLLECTOR_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== build ($PROFILE)" >&2
if [ $PROFILE = release ]; then
  cargo build -q --release -p nfm-collector -p nfm-sim
else
  cargo build -q -p nfm-collector -p nfm-sim
fi
SIM=$TGT/$PROFILE/nfm-sim
COLLECTOR=$TGT/$PROFILE/nfm-collector

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Starts a fresh collector (empty data directory) on the scenario's interval ($2, e.g. 60s) and
# waits, bounded, until its API answers.
start_collector() {
  local dir=$WORK/data-$1
  TCP_PORT=$(free_port); HTTP_PORT=$(free_port)
  "$COLLECTOR" --topology "$FLEET" --data-dir "$dir" --listen-udp off --interval "$2" \
    --listen-tcp "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT" --idle-close-ms 1000 \
    >"$WORK/collector-$1.log" 2>&1 &
  COLLECTOR_PID=$!
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$HTTP_PORT/api/agents" >/dev/null; then return 0; fi
    kill -0 "$COLLECTOR_PID" 2>/dev/null || { cat "$WORK/collector-$1.log" >&2; return 1; }
    sleep 0.1
  done
  echo "collector did not answer on :$HTTP_PORT" >&2
  return 1
}

stop_collector() {
  kill "$COLLECTOR_PID" 2>/dev/null || true
  wait "$COLLECTOR_PID" 2>/dev/null || true
  COLLECTOR_PID=""
}

FAILED=0
HEADER=""
# Keeps the table header once and every row after it.
rows() { awk -v keep="$1" 'NR<=2 { if (keep) print; next } { print }'; }

echo "== live: every shipped scenario against a fresh collector" >&2
LIVE=$WORK/live.md
: >"$LIVE"
first=1
for f in "${GATE[@]}"; do
  name=$(basename "$f" .toml)
  iv=$(sed -n 's/^interval *= *"\(.*\)"/\1/p' "$f" | head -1)
  start_collector "$name" "${iv:-60s}"
  set +e
  "$SIM" score --fleet "$FLEET" --scenario "$f" --seed 1 --collector "127.0.0.1:$TCP_PORT" \
    --api "http://127.0.0.1:$HTTP_PORT" --transport tcp --close-wait 3s --settle 1s --timeout 120s \
    --markdown >"$WORK/$name.md" 2>"$WORK/$name.err"
  rc=$?
  set -e
  stop_collector
  grep '^|' "$WORK/$name.md" | rows $first >>"$LIVE"
  first=0
  if [ $rc -ne 0 ]; then
    FAILED=1
    echo "live $name: below the bar (exit $rc)" >&2
    grep -v '^|' "$WORK/$name.md" "$WORK/$name.err" >&2 || true
  fi
done

echo "== offline: $SEEDS seeds, faults placed at random" >&2
SEED_LIST=$(seq -s, 1 "$SEEDS")
OFF=$WORK/offline.md
GATE_ARGS=()
for f in "${GATE[@]}"; do GATE_ARGS+=(--scenario "$f"); done
set +e
"$SIM" score --offline --fleet "$FLEET" "${GATE_ARGS[@]}" --seed "$SEED_LIST" --place random \
  --markdown >"$WORK/offline.out" 2>"$WORK/offline.err"
rc=$?
set -e
grep '^|' "$WORK/offline.out" >"$OFF"
if [ $rc -ne 0 ]; then FAILED=1; grep -v '^|' "$WORK/offline.out" "$WORK/offline.err" >&2 || true; fi

LARGE_MD=""
if [ "${LARGE:-0}" = 1 ]; then
  echo "== offline: large fleet (10,000 hosts), file placement" >&2
  args=()
  for f in "${GATE[@]}"; do
    case "$(basename "$f")" in healthy-day.toml) ;; *) args+=(--scenario "$f") ;; esac
  done
  set +e
  "$SIM" score --offline --fleet nfm-sim/fleets/large.toml "${args[@]}" --seed 1 --markdown \
    >"$WORK/large.out" 2>"$WORK/large.err"
  rc=$?
  set -e
  LARGE_MD=$(grep '^|' "$WORK/large.out")
  if [ $rc -ne 0 ]; then FAILED=1; grep -v '^|' "$WORK/large.out" "$WORK/large.err" >&2 || true; fi
fi

ISSUE14_MD=""
if [ "${ISSUE14:-0}" = 1 ]; then
  echo "== offline, not gating: issue 14 scenarios at 5 s and 60 s" >&2
  P_ARGS=()
  for f in "${PENDING_FILES[@]}"; do P_ARGS+=(--scenario "$f"); done
  W_ARGS=()
  for f in "$SCEN_DIR"/wide-*.toml; do W_ARGS+=(--scenario "$f"); done
  for iv in 5s 60s; do
    for which in small wide; do
      if [ $which = small ]; then fl=$FLEET; a=("${GATE_ARGS[@]}" "${P_ARGS[@]}"); else fl=$WIDE_FLEET; a=("${W_ARGS[@]}"); fi
      "$SIM" score --offline --fleet "$fl" "${a[@]}" --seed "$SEED_LIST" --place random \
        --interval "$iv" --markdown >"$WORK/i14-$which-$iv.out" 2>"$WORK/i14-$which-$iv.err" || true
      ISSUE14_MD+=$'\n'"### \`$fl\` at $iv"$'\n\n'"$(grep '^|' "$WORK/i14-$which-$iv.out" || true)"$'\n'
    done
  done
fi

BENCH_MD=""
if [ "${BENCH:-0}" = 1 ] && [ $CHECK = 0 ]; then
  echo "== bench" >&2
  BENCH_MD=$(cargo bench -q -p nfm-collector --bench health 2>/dev/null |
    awk '/^health\// { name = $1 } /time:/ && name { gsub(/[][]/, ""); printf "- `%s`: %s %s (low) %s %s (estimate) %s %s (high) per interval\n", name, $2, $3, $4, $5, $6, $7; name = "" }')
fi

if [ $CHECK = 1 ]; then
  cat "$LIVE" "$OFF"
  [ -n "$ISSUE14_MD" ] && echo "$ISSUE14_MD"
  [ $FAILED = 0 ] && echo "accuracy: every scenario meets the bar" || echo "accuracy: below the bar" >&2
  exit $FAILED
fi

{
  cat <<EOF
# Health evaluator accuracy

Regenerated by \`scripts/accuracy.sh\` (\`LARGE=1 scripts/accuracy.sh\` adds the 10,000-host
fleet); last run $(date -u +%Y-%m-%d) on commit $(git rev-parse --short HEAD). The method is in
[health.md](health.md); the scorer's definitions are in \`nfm-sim/src/score.rs\` (docs/sim.md).

The bar (issue 7): detection recall ≥ 0.95, attribution precision ≥ 0.9 and recall ≥ 0.9, no
network blame while only a slow host is at fault, detection within 2 intervals of the fault's
start (\`ttd.max\` ≤ 2), at most one false HealthIndicator flip per simulated healthy day.
\`iv.recall\` (share of fault intervals in which the faulty component is named) is reported but
not part of the bar: a flapping link is down 45 s of every 3 minutes, so most of its "active"
intervals have nothing wrong in them.

## Live: the real pipeline

Fleet \`$FLEET\`, seed 1, every scenario in \`$SCEN_DIR/\`, each against a freshly started
collector (\`nfm-sim score --fleet $FLEET --scenario FILE --collector 127.0.0.1:PORT --api
http://127.0.0.1:PORT --transport tcp\`): frames over TCP, verdicts from \`GET /api/verdicts\`.

EOF
  cat "$LIVE"
  cat <<EOF

## Offline: placements not tuned for

The same evaluator in-process (\`nfm-sim score --offline --fleet $FLEET --scenario $SCEN_DIR
--seed 1..$SEEDS --place random\`): each seed builds a different fleet (flows, RTTs, loss) and
moves every fault to a random component of the same kind that at least three flows cross.

EOF
  cat "$OFF"
  if [ -n "$LARGE_MD" ]; then
    cat <<EOF

## Offline: large fleet

\`nfm-sim score --offline --fleet nfm-sim/fleets/large.toml --scenario FILE... --seed 1\`
(10,000 hosts; every scenario but the 24-hour healthy day, which takes too long to run here).

EOF
    echo "$LARGE_MD"
  fi
  echo
  if [ $FAILED = 0 ]; then echo "Every scenario above meets the bar."; else echo "**Some scenario above misses the bar** (see the \`pass\` column)."; fi
  if [ -n "$ISSUE14_MD" ]; then
    cat <<EOF

## Issue 14 (not gating)

Offline, $SEEDS seeds, random placement, every fault kind of issue 14 (docs/sim.md): the gate's
and the pending scenarios on the small fleet, \`wide-*\` on \`$WIDE_FLEET\`, at 5 s and at 60 s
intervals (\`--interval\`). Columns beyond issue 7's: \`ttn.max\` (intervals to the first naming
of the fault's own component), \`held\` (named and held to the end / named), \`lowgrade.late\`
(low-grade loss not named within 60 s / low-grade faults), \`ramp.rise.max\` (a ramp's rise at
first naming), \`hi.inc.max\` (most HealthIndicator incidents of one fault), \`net.blame.host\`
(intervals with network blame while only a host is at fault).
EOF
    echo "$ISSUE14_MD"
  fi
  if [ -n "$BENCH_MD" ]; then
    cat <<EOF

## Cost per interval

\`cargo bench -p nfm-collector --bench health\` (criterion; one interval of 103,488 flow samples
from 4,500 synthetic hosts, about 54,000 flows, on a warm evaluator; this 2-core machine is
shared with other builds, so treat these as upper bounds):

EOF
    echo "$BENCH_MD"
  fi
} >docs/accuracy.md
echo "wrote docs/accuracy.md" >&2
exit $FAILED
