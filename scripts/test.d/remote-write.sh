#!/usr/bin/env bash
# Remote-write end-to-end test (issue 16): a collector fed by nfm-sim (small fleet, 5 s
# intervals, real time, 3 % loss between two AZs from 10 s on, so retransmissions are not zero)
# remote-writes to a real VictoriaMetrics and a real Prometheus
# (--web.enable-remote-write-receiver), and to a third URL where nothing listens. For one closed
# interval and one monitor, the values PromQL returns from both TSDBs (/api/v1/query at the
# interval's end) must equal what the collector's API shows: the four metrics and
# HealthIndicator of the monitor, a category's totals and a blamed component's confidence, with
# the external labels set. The dead TSDB must show up as retried requests in /metrics, not as
# lost samples. Free ports, every process stopped on exit, one PASS/FAIL line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=remote-write

for bin in victoria-metrics prometheus curl python3; do
  command -v "$bin" >/dev/null || { echo "$NAME: FAIL ($bin is missing: run scripts/setup.sh)"; exit 1; }
done
echo "$NAME: building nfm-collector and nfm-sim"
cargo build -q -p nfm-collector --bin nfm-collector -p nfm-sim --bin nfm-sim

WORK=$(mktemp -d /tmp/nfm-remote-write.XXXXXX)
PIDS=()
cleanup() {
  status=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for f in collector vm prometheus sim; do
      [ -f "$WORK/$f.log" ] && { echo "--- $f.log (last 20 lines)"; tail -n 20 "$WORK/$f.log"; }
    done
    echo "$NAME: FAIL"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM
fail() { echo "$NAME: $*"; exit 1; }

# Free loopback ports chosen by the kernel: collector UDP, TCP, HTTP; VictoriaMetrics;
# Prometheus; one where nothing will listen.
read -r UDP TCP HTTP VM PROM DEAD < <(python3 - <<'PY'
import socket
socks = []
for kind in [socket.SOCK_DGRAM] + [socket.SOCK_STREAM] * 5:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)

victoria-metrics -httpListenAddr "127.0.0.1:$VM" -storageDataPath "$WORK/vm" \
  -search.latencyOffset 0s -retentionPeriod 1d >"$WORK/vm.log" 2>&1 &
PIDS+=($!)
printf 'global:\n  scrape_interval: 1m\n' >"$WORK/prometheus.yml"
prometheus --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/prom" \
  --web.listen-address "127.0.0.1:$PROM" --web.enable-remote-write-receiver \
  >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

FLEET="$ROOT/nfm-sim/fleets/small.toml"
mkdir -p "$WORK/data"
cat >"$WORK/collector.toml" <<EOF
[[remote_write]]
url = "http://127.0.0.1:$VM/api/v1/write"
every = "1s"
external_labels = { collector = "nfm-e2e", replica = "a" }

[[remote_write]]
url = "http://127.0.0.1:$PROM/api/v1/write"
every = "1s"
external_labels = { collector = "nfm-e2e", replica = "a" }

[[remote_write]]
url = "http://127.0.0.1:$DEAD/api/v1/write"
every = "1s"
timeout = "1s"
EOF
"$TARGET/debug/nfm-collector" --config "$WORK/collector.toml" --topology "$FLEET" \
  --data-dir "$WORK/data" --listen-udp "127.0.0.1:$UDP" --listen-tcp "127.0.0.1:$TCP" \
  --http "127.0.0.1:$HTTP" --interval 5s >"$WORK/collector.log" 2>&1 &
PIDS+=($!)
API="http://127.0.0.1:$HTTP"

wait_for() { # URL WHAT
  for i in $(seq 1 150); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    [ "$i" -eq 150 ] && fail "$2 did not answer within 30 s"
    sleep 0.2
  done
}
wait_for "$API/api/status" "the collector"
wait_for "http://127.0.0.1:$VM/health" "VictoriaMetrics"
wait_for "http://127.0.0.1:$PROM/-/ready" "Prometheus"

curl -sf -X POST "$API/api/monitors" -H 'content-type: application/json' \
  -d '{"name":"web","local":["subnet:subnet-web-a"]}' >/dev/null || fail "cannot create monitor web"

cat >"$WORK/scenario.toml" <<'EOF'
name = "remote-write-loss"
description = "3% loss between use1-az1 and use1-az2 from 10 s on, so retransmissions are not all zero"
duration = "45s"
interval = "5s"

[[fault]]
component = "az-pair:use1-az1|use1-az2"
kind = "loss"
at = "10s"
duration = "35s"
loss = 0.03
EOF
echo "$NAME: nfm-sim plays the small fleet for 45 s at 5 s intervals (loss from 10 s)"
"$TARGET/debug/nfm-sim" run --fleet "$FLEET" --scenario "$WORK/scenario.toml" \
  --collector "127.0.0.1:$UDP" --aligned-clocks >"$WORK/sim.log" 2>&1 &
SIM=$!
PIDS+=($SIM)

# The newest interval but one the API shows for the monitor with traffic, once 6 have closed
# (so it is in the fault).
POINT=""
for i in $(seq 1 120); do
  POINT=$(curl -sf "$API/api/monitors/web/overview?resolution=raw" | python3 -c '
import json, sys
pts = [p for p in json.load(sys.stdin)["points"] if p["data_transferred"] > 0 and p["round_trip_time_us"] is not None]
if len(pts) >= 6:
    p = pts[-2]
    print(p["start_ms"], p["end_ms"], p["data_transferred"], p["retransmissions"], p["timeouts"], p["round_trip_time_us"], p["health_indicator"])
') || true
  [ -n "$POINT" ] && break
  [ "$i" -eq 120 ] && fail "the API showed no 6 closed intervals with traffic within 60 s"
  sleep 0.5
done
read -r START END BYTES RETRANS TIMEOUTS RTT HEALTH <<<"$POINT"
echo "$NAME: interval $START..$END of monitor web: bytes=$BYTES retrans=$RETRANS timeouts=$TIMEOUTS rtt_us=$RTT health=$HEALTH"
CAT=$(curl -sf "$API/api/insights?from=$START&to=$((START + 1))&resolution=raw" | python3 -c '
import json, sys
t = json.load(sys.stdin)["totals"]
c = sorted(t)[0]
print(c, t[c]["data_transferred"], t[c]["retransmissions"])
')
read -r CATEGORY CAT_BYTES CAT_RETRANS <<<"$CAT"

# PromQL at the interval's end (samples are stamped with it), polled until the TSDB has it.
promql() { # BASE QUERY -> value, or empty
  curl -sf --get "$1/api/v1/query" --data-urlencode "query=$2" --data-urlencode "time=$(python3 -c "print($END/1000)")" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
if len(r) == 1:
    v = float(r[0]["value"][1])
    print(int(v) if v == int(v) else v)
'
}
check() { # TSDB-NAME BASE QUERY WANT
  local got=""
  for i in $(seq 1 60); do
    got=$(promql "$2" "$3" || true)
    [ -n "$got" ] && break
    sleep 0.5
  done
  # Equal; a fraction within 1e-9 (VictoriaMetrics keeps 12 significant digits of a float).
  [ -n "$got" ] && python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-9 * max(1.0, abs(b)))' "$got" "$4" ||
    fail "$1: $3 = '$got', the API shows $4"
  echo "$NAME: $1: $3 = $got (API: $4)"
}
SEL='monitor="web",collector="nfm-e2e",replica="a"'
for tsdb in "victoria-metrics http://127.0.0.1:$VM" "prometheus http://127.0.0.1:$PROM"; do
  set -- $tsdb
  check "$1" "$2" "nfm_monitor_interval_data_transferred_bytes{$SEL}" "$BYTES"
  check "$1" "$2" "nfm_monitor_interval_retransmissions{$SEL}" "$RETRANS"
  check "$1" "$2" "nfm_monitor_interval_timeouts{$SEL}" "$TIMEOUTS"
  check "$1" "$2" "nfm_monitor_interval_round_trip_time_us{$SEL}" "$RTT"
  check "$1" "$2" "nfm_monitor_interval_health_indicator{$SEL}" "$HEALTH"
  check "$1" "$2" "nfm_category_interval_data_transferred_bytes{category=\"$CATEGORY\",replica=\"a\"}" "$CAT_BYTES"
  check "$1" "$2" "nfm_category_interval_retransmissions{category=\"$CATEGORY\",replica=\"a\"}" "$CAT_RETRANS"
done

# A blamed component of that interval (when the evaluator named one): its confidence.
VERDICT=$(curl -sf "$API/api/verdicts?from=$START&to=$((START + 1))" | python3 -c '
import json, sys
v = [x for x in json.load(sys.stdin)["verdicts"]]
if v:
    c = v[0]["confidence"]
    print(v[0]["component"], v[0]["blame"], int(c) if c == int(c) else c)
')
if [ -n "$VERDICT" ]; then
  read -r COMP BLAME CONF <<<"$VERDICT"
  for tsdb in "victoria-metrics http://127.0.0.1:$VM" "prometheus http://127.0.0.1:$PROM"; do
    set -- $tsdb
    check "$1" "$2" "nfm_blamed_component_confidence{component=\"$COMP\",blame=\"$BLAME\",replica=\"a\"}" "$CONF"
  done
else
  echo "$NAME: no verdict in that interval (HealthIndicator $HEALTH): blamed components not compared"
fi

# The dead TSDB: retried and counted; the live ones rejected nothing.
METRICS=$(curl -sf "$API/metrics")
retried=$(echo "$METRICS" | awk '/^nfm_remote_write_requests_total\{result="retried"\}/ {print $2}')
rejected=$(echo "$METRICS" | awk '/^nfm_remote_write_dropped_samples_total\{reason="rejected"\}/ {print $2}')
acked=$(echo "$METRICS" | awk '/^nfm_remote_write_samples_total / {print $2}')
[ "${retried:-0}" -ge 1 ] || fail "the dead TSDB was not retried (retried=$retried)"
[ "${rejected:-1}" -eq 0 ] || fail "$rejected samples were rejected by a TSDB"
[ "${acked:-0}" -ge 1 ] || fail "no sample was acknowledged"
echo "$NAME: /metrics: $acked samples acknowledged, $retried requests retried (the dead TSDB), $rejected rejected"
echo "$NAME: PASS"
