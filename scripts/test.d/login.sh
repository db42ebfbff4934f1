#!/usr/bin/env bash
# Login end-to-end test (issue 15): the collector with `api_token`, `viewer_token`, `tls_cert`
# and `tls_key` in its config file (a certificate made here with openssl), served over HTTPS;
# tests/e2e/login.test.mjs drives headless Chromium through the login flow: the login page
# instead of the dashboard, a wrong token refused with a clear message, the right token → the
# dashboard loading data (a monitor created through the API), the session cookie's flags, no
# token in the URL or local storage, logout → back to the login page. It also checks the bar
# with curl: GET / → login page, API without a token 401, viewer 200 / 403, admin writes.
# Every process this script starts is stopped on exit, also on failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHOTS="$ROOT/target/screenshots/login"

[ -x /usr/bin/chromium ] || { echo "login: FAIL: /usr/bin/chromium is missing (run scripts/setup.sh)"; exit 1; }
command -v openssl >/dev/null || { echo "login: FAIL: openssl is missing (run scripts/setup.sh)"; exit 1; }
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm install --no-audit --no-fund --silent)
fi

echo "login: building nfm-collector"
cargo build -q -p nfm-collector --bin nfm-collector

WORK=$(mktemp -d /tmp/nfm-login-e2e.XXXXXX)
COLLECTOR_PID=""
cleanup() {
  status=$?
  if [ -n "$COLLECTOR_PID" ] && kill -0 "$COLLECTOR_PID" 2>/dev/null; then
    kill -TERM "$COLLECTOR_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$COLLECTOR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$COLLECTOR_PID" 2>/dev/null || true
    wait "$COLLECTOR_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ]; then
    [ -f "$WORK/collector.log" ] && { echo "login: collector log (last 40 lines):"; tail -n 40 "$WORK/collector.log"; }
    echo "login: FAIL"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=admin-$RANDOM$RANDOM
VIEWER=viewer-$RANDOM$RANDOM
cat >"$WORK/collector.toml" <<TOML
http = "127.0.0.1:$HTTP_PORT"
listen_udp = "127.0.0.1:0"
listen_tcp = "127.0.0.1:0"
data_dir = "$WORK/data"
topology = "$ROOT/nfm-collector/examples/topology.toml"
api_token = "$ADMIN"
viewer_token = "$VIEWER"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
TOML
"$TARGET/debug/nfm-collector" --config "$WORK/collector.toml" >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
BASE="https://127.0.0.1:$HTTP_PORT"
CURL=(curl -s --cacert "$WORK/cert.pem" -o /dev/null -w '%{http_code}')

for i in $(seq 1 100); do
  [ "$("${CURL[@]}" "$BASE/login" || true)" = 200 ] && break
  kill -0 "$COLLECTOR_PID" 2>/dev/null || { echo "login: the collector exited"; exit 1; }
  [ "$i" -eq 100 ] && { echo "login: the collector's HTTPS API did not answer within 10 s"; exit 1; }
  sleep 0.1
done

# The bar, with curl (each line: what, expected, got).
check() { [ "$3" = "$2" ] || { echo "login: $1: expected $2, got $3"; exit 1; }; echo "login: $1 → $3"; }
M='{"name":"web-tier","local":["subnet:subnet-app-a"]}'
check "GET / without a session" 303 "$("${CURL[@]}" "$BASE/")"
check "GET /api/status without a token" 401 "$("${CURL[@]}" "$BASE/api/status")"
check "viewer GET /metrics" 200 "$("${CURL[@]}" -H "Authorization: Bearer $VIEWER" "$BASE/metrics")"
check "viewer POST /api/monitors" 403 "$("${CURL[@]}" -H "Authorization: Bearer $VIEWER" -H 'Content-Type: application/json' -d "$M" "$BASE/api/monitors")"
check "admin POST /api/monitors" 201 "$("${CURL[@]}" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$M" "$BASE/api/monitors")"
check "plain http:// to the HTTPS port" 400 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/api/status")"

mkdir -p "$SHOTS"
NFM_URL="$BASE" NFM_ADMIN_TOKEN="$ADMIN" NFM_VIEWER_TOKEN="$VIEWER" NFM_MONITOR=web-tier \
NFM_SCREENSHOTS="$SHOTS" \
  timeout 150 node tests/e2e/login.test.mjs
echo "login: PASS (screenshots in $SHOTS)"
