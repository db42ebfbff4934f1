#!/usr/bin/env bash
# Dashboard end-to-end test: builds the collector and the simulator, starts the collector on
# free loopback ports with a temporary data directory, and runs tests/e2e/dashboard.test.mjs in
# headless Chromium (playwright-core); the test feeds the collector a simulator scenario with a
# known fault and checks every view. Screenshots go to target/screenshots/. Every process this
# script starts is stopped on exit, also on failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHOTS="$ROOT/target/screenshots"

[ -x /usr/bin/chromium ] || { echo "dashboard: /usr/bin/chromium is missing (run scripts/setup.sh)"; exit 1; }
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm install --no-audit --no-fund --silent)
fi

echo "dashboard: unit tests of the UI's pure modules (node --test)"
if ! unit_out=$(cd tests/e2e && node --experimental-detect-module --test unit.test.mjs 2>&1); then
  echo "$unit_out"; echo "dashboard: unit tests failed"; exit 1
fi
echo "$unit_out" | grep -E '^# (pass|fail)' | tr '\n' ' '; echo

echo "dashboard: building nfm-collector and nfm-sim"
cargo build -q -p nfm-collector --bin nfm-collector -p nfm-sim --bin nfm-sim

WORK=$(mktemp -d /tmp/nfm-dashboard-e2e.XXXXXX)
COLLECTOR_PID=""
cleanup() {
  status=$?
  if [ -n "$COLLECTOR_PID" ] && kill -0 "$COLLECTOR_PID" 2>/dev/null; then
    kill -TERM "$COLLECTOR_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$COLLECTOR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$COLLECTOR_PID" 2>/dev/null || true
    wait "$COLLECTOR_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$WORK/collector.log" ]; then
    echo "dashboard: collector log (last 40 lines):"; tail -n 40 "$WORK/collector.log"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM

# Three free loopback ports (UDP ingest, TCP ingest, HTTP), chosen by the kernel.
read -r UDP_PORT TCP_PORT HTTP_PORT < <(python3 - <<'PY'
import socket
socks = []
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)

FLEET="$ROOT/nfm-sim/fleets/small.toml"
mkdir -p "$WORK/data" "$SHOTS"
rm -f "$SHOTS"/*.png
"$TARGET/debug/nfm-collector" --topology "$FLEET" --data-dir "$WORK/data" \
  --listen-udp "127.0.0.1:$UDP_PORT" --listen-tcp "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT" \
  --interval 60s \
  >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!

# Bounded wait for the API.
for i in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$HTTP_PORT/api/status" >/dev/null; then break; fi
  kill -0 "$COLLECTOR_PID" 2>/dev/null || { echo "dashboard: the collector exited"; exit 1; }
  [ "$i" -eq 100 ] && { echo "dashboard: the collector's API did not answer within 10 s"; exit 1; }
  sleep 0.1
done

NFM_URL="http://127.0.0.1:$HTTP_PORT" \
NFM_INGEST="127.0.0.1:$TCP_PORT" \
NFM_SIM="$TARGET/debug/nfm-sim" \
NFM_FLEET="$FLEET" \
NFM_SCENARIO="$ROOT/tests/e2e/az-pair-loss-ongoing.toml" \
NFM_SCREENSHOTS="$SHOTS" \
NFM_WORK="$WORK" \
  timeout 240 node tests/e2e/dashboard.test.mjs
echo "dashboard: end-to-end test passed; screenshots in $SHOTS"
