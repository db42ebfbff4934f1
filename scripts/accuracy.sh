#!/usr/bin/env bash
# Scores the health evaluator on every shipped scenario (nfm-sim/scenarios/*.toml) on both shipped
# fleets, at the agent's default 5 s interval and at 60 s, and writes docs/accuracy.md:
#   1. live: the small fleet's scenarios (but the 24-hour healthy days) against a real, freshly
#      started nfm-collector (frames over TCP through ingest → resolver → aggregator → health
#      stage → store, verdicts read from GET /api/verdicts), at 5 s, seed 1;
#   2. offline: the same evaluator in-process, every scenario over SEEDS seeds with each fault moved
#      to a random component of the same kind (placements the evaluator was not tuned on), on
#      nfm-sim/fleets/small.toml (every scenario but wide-*) and nfm-sim/fleets/wide.toml (wide-*),
#      at 5 s and at 60 s (`--interval`).
# With LARGE=1 it adds the 10,000-host fleet (offline, file placement, all but the healthy day);
# with BENCH=1 the criterion benchmark of one 100k-flow interval.
#
# The gate (--check): every table above, except the scenarios PENDING at that fleet and interval
# (issue 14's that the current evaluator does not meet yet; they are still scored and shown, not
# gating: the lead moves each into the gate by deleting it from its PENDING list once it passes).
#
# Usage: scripts/accuracy.sh            regenerate docs/accuracy.md
#        scripts/accuracy.sh --check    no file written; exit 1 if a gating scenario misses the bar
#                                       (scripts/test.d/accuracy.sh)
# Both build in release (a 5 s day is 17,280 intervals). Env: SEEDS (default 10), LARGE=1,
# BENCH=1, CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1
PROFILE=release
SEEDS=${SEEDS:-10}
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
FLEET=nfm-sim/fleets/small.toml
SCEN_DIR=nfm-sim/scenarios
WIDE_FLEET=nfm-sim/fleets/wide.toml
# Every shipped scenario gates on both fleets at 5 s and 60 s (the last three, wide-connect-fail
# at 5 s and wide-low-grade-loss at 5 s and 60 s, since the exposure and pooled-memory changes
# of f71dd92, c31f48b and f394c77).
PENDING_SMALL_5S=""
PENDING_SMALL_60S=""
PENDING_WIDE_5S=""
PENDING_WIDE_60S=""

# scenarios FLEET: the scenario files of a fleet (wide-* for the wide one, the rest for small).
scenarios() {
  local f name
  for f in "$SCEN_DIR"/*.toml; do
    name=$(basename "$f" .toml)
    case "$1:$name" in small:wide-*) ;; wide:wide-*) echo "$f" ;; small:*) echo "$f" ;; esac
  done
}
# pending FLEET INTERVAL: the names not gating there.
pending() {
  case "$1:$2" in
    small:5s) echo "$PENDING_SMALL_5S" ;; small:60s) echo "$PENDING_SMALL_60S" ;;
    wide:5s) echo "$PENDING_WIDE_5S" ;; wide:60s) echo "$PENDING_WIDE_60S" ;;
  esac
}
is_pending() { [[ " $(pending "$1" "$2") " == *" $3 "* ]]; }
WORK=$(mktemp -d /tmp/nfm-accuracy.XXXXXX)
COLLECTOR_PID=""

cleanup() {
  if [ -n "$COLLECTOR_PID" ]; then kill "$COLLECTOR_PID" 2>/dev/null || true; wait "$COLLECTOR_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== build ($PROFILE)" >&2
cargo build -q --release -p nfm-collector -p nfm-sim
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
# Keeps the table header once and every row after it.
rows() { awk -v keep="$1" 'NR<=2 { if (keep) print; next } { print }'; }
# gate_rows FLEET INTERVAL FILE: the `all` rows of gating scenarios that miss the bar, one per line.
gate_misses() {
  local name
  while IFS='|' read -r _ name kind rest; do
    name=$(echo "$name" | xargs); kind=$(echo "$kind" | xargs)
    [ "$kind" = all ] || continue
    is_pending "$1" "$2" "$name" && continue
    case "$rest" in *"| yes |"*|*"| yes |") ;; *) echo "$name" ;; esac
  done < <(grep '^|' "$3" | tail -n +3)
}

# Live: the small fleet's scenarios at the agent's 5 s interval, seed 1 (the 24-hour healthy days
# are left to the offline tables: 17,280 intervals each).
LIVE_MD=""
iv=5s
echo "== live ($iv): the small fleet's scenarios against a fresh collector" >&2
out=$WORK/live-$iv.md
: >"$out"
first=1
for f in $(scenarios small); do
  name=$(basename "$f" .toml)
  case "$name" in healthy-day*) continue ;; esac
  is_pending small "$iv" "$name" && continue
  start_collector "$name-$iv" "$iv"
  set +e
  "$SIM" score --fleet "$FLEET" --scenario "$f" --seed 1 --collector "127.0.0.1:$TCP_PORT" \
    --api "http://127.0.0.1:$HTTP_PORT" --transport tcp --close-wait 3s --settle 1s --timeout 300s \
    --interval "$iv" --markdown >"$WORK/$name-$iv.md" 2>"$WORK/$name-$iv.err"
  rc=$?
  set -e
  stop_collector
  grep '^|' "$WORK/$name-$iv.md" | rows $first >>"$out"
  first=0
  if [ $rc -ne 0 ]; then
    FAILED=1
    echo "live $name at $iv: below the bar (exit $rc)" >&2
    grep -v '^|' "$WORK/$name-$iv.md" "$WORK/$name-$iv.err" >&2 || true
  fi
done
LIVE_MD=$(cat "$out")

# Offline: both fleets, at 5 s and 60 s, SEEDS seeds, random placement.
SEED_LIST=$(seq -s, 1 "$SEEDS")
OFF_MD=""
for iv in 5s 60s; do
  for which in small wide; do
    echo "== offline: $which fleet at $iv, $SEEDS seeds, faults placed at random" >&2
    fl=$FLEET; [ $which = wide ] && fl=$WIDE_FLEET
    args=()
    for f in $(scenarios $which); do args+=(--scenario "$f"); done
    out=$WORK/off-$which-$iv
    "$SIM" score --offline --fleet "$fl" "${args[@]}" --seed "$SEED_LIST" --place random \
      --interval "$iv" --markdown >"$out.md" 2>"$out.err" || true
    if ! grep -q '^|' "$out.md"; then
      FAILED=1; echo "offline $which $iv: no table" >&2; cat "$out.err" >&2
      continue
    fi
    misses=$(gate_misses $which $iv "$out.md")
    if [ -n "$misses" ]; then
      FAILED=1
      echo "offline $which fleet at $iv: below the bar: $misses" >&2
    fi
    pend=$(pending $which $iv)
    OFF_MD+=$'\n'"### \`$fl\` at $iv"$'\n\n'"$(grep '^|' "$out.md")"$'\n\n'"Not gating at $iv: ${pend:-none}."$'\n'
  done
done

LARGE_MD=""
if [ "${LARGE:-0}" = 1 ]; then
  echo "== offline: large fleet (10,000 hosts), file placement" >&2
  args=()
  for f in $(scenarios small); do
    case "$(basename "$f" .toml)" in healthy-day*) ;; *) is_pending small 60s "$(basename "$f" .toml)" || args+=(--scenario "$f") ;; esac
  done
  set +e
  "$SIM" score --offline --fleet nfm-sim/fleets/large.toml "${args[@]}" --seed 1 --markdown \
    >"$WORK/large.out" 2>"$WORK/large.err"
  rc=$?
  set -e
  LARGE_MD=$(grep '^|' "$WORK/large.out")
  if [ $rc -ne 0 ]; then FAILED=1; grep -v '^|' "$WORK/large.out" "$WORK/large.err" >&2 || true; fi
fi

BENCH_MD=""
if [ "${BENCH:-0}" = 1 ] && [ $CHECK = 0 ]; then
  echo "== bench" >&2
  BENCH_MD=$(cargo bench -q -p nfm-collector --bench health 2>/dev/null |
    awk '/^health\// { name = $1 } /time:/ && name { gsub(/[][]/, ""); printf "- `%s`: %s %s (low) %s %s (estimate) %s %s (high) per interval\n", name, $2, $3, $4, $5, $6, $7; name = "" }')
fi

if [ $CHECK = 1 ]; then
  echo "$LIVE_MD"
  echo "$OFF_MD"
  [ $FAILED = 0 ] && echo "accuracy: every scenario meets the bar" || echo "accuracy: below the bar" >&2
  exit $FAILED
fi

{
  cat <<EOF
# Health evaluator accuracy

Regenerated by \`scripts/accuracy.sh\` (\`LARGE=1 scripts/accuracy.sh\` adds the 10,000-host
fleet); last run $(date -u +%Y-%m-%d) on commit $(git rev-parse --short HEAD). The method is in
[health.md](health.md); the scorer's definitions are in \`nfm-sim/src/score.rs\` and
\`nfm-sim/src/score_fault.rs\` (docs/sim.md).

Every scenario is scored at the agent's default **5 s** interval and at **60 s**, on both shipped
fleets: \`$FLEET\` (3 AZs, two VPCs joined by a transit gateway) and \`$WIDE_FLEET\` (2 regions,
6 AZs, 6 VPCs, a transit gateway joining four of them, agent-less clients, tiers reached only by
short connections). Clocks are not aligned (each host ±600 ms) and 10 % of the agents restart
once mid-run.

The bar (issues 7 and 14), per scenario: detection recall ≥ 0.95, attribution precision ≥ 0.9 and
recall ≥ 0.9, detection within 2 intervals of the fault's start (\`ttd.max\` ≤ 2; low-grade loss
within 60 s), no network blame while only a host is at fault (\`net.blame.slow\`,
\`net.blame.host\`), a ramp named by +30 % (\`ramp.rise.max\`) and every fault held to its end
(\`held\`), at most one HealthIndicator incident per fault (\`hi.inc.max\`), at most one false
flip per simulated healthy day. \`iv.recall\` (share of fault intervals in which the faulty
component is named) is reported but not part of the bar: a flapping link is down 45 s of every
3 minutes, so most of its "active" intervals have nothing wrong in them. \`ttn.max\`: intervals
to the first naming of the fault's own component; \`lowgrade.late\`: low-grade loss not named
within 60 s.

Scenarios that do not meet the bar yet are listed under each table as not gating: CI
(\`scripts/test.d/accuracy.sh\`) fails on any other scenario below the bar, in every table.

## Live: the real pipeline

Fleet \`$FLEET\`, seed 1, at the agent's 5 s interval, each scenario against a freshly started
collector (\`nfm-collector --interval 5s\`; \`nfm-sim score --fleet $FLEET --scenario FILE
--interval 5s --collector 127.0.0.1:PORT --api http://127.0.0.1:PORT --transport tcp\`): frames
over TCP, verdicts from \`GET /api/verdicts\`. Left out: the scenarios not gating at 5 s, and the
24-hour healthy days (17,280 intervals each; scored offline below).
EOF
  echo "$LIVE_MD"
  cat <<EOF

## Offline: placements not tuned for, both fleets, 5 s and 60 s

The same evaluator in-process (\`nfm-sim score --offline --fleet FLEET --scenario FILE...
--seed 1..$SEEDS --place random --interval IV\`): each seed builds a different fleet (flows,
RTTs, loss) and moves every fault to a random component of the same kind that at least three
flows cross.
EOF
  echo "$OFF_MD"
  if [ -n "$LARGE_MD" ]; then
    cat <<EOF

## Offline: large fleet

\`nfm-sim score --offline --fleet nfm-sim/fleets/large.toml --scenario FILE... --seed 1\`
(10,000 hosts; every gating scenario but the 24-hour healthy days, which take too long to run
here).

EOF
    echo "$LARGE_MD"
  fi
  echo
  if [ $FAILED = 0 ]; then echo "Every gating scenario above meets the bar."; else echo "**Some gating scenario above misses the bar** (see the \`pass\` column)."; fi
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
