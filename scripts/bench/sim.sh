#!/usr/bin/env bash
# nfm-sim load generator throughput: healthy traffic of the large fleet (10,200 agents) sent as
# fast as possible from ONE core (taskset) over loopback UDP, then TCP, into `nfm-sim sink`
# (a counting receiver; --quick: checks every frame's header and CRC and reads its record count
# without decoding each record, and acks TCP) on another core.
# Prints, one line each (`NAME.metric value unit`):
#   sim.records_per_s_offered        the lower of the two transports' offered rates (bar: 1,000,000)
#   sim.records_per_s_offered.udp    records/s the generator produced and handed to the transport
#   sim.records_per_s_achieved.udp   records/s completely written to the socket during the timed
#                                    phase (TCP: frames still queued when it ends are excluded)
#   sim.records_per_cpu_s.udp        offered records per CPU-second the generator used (user +
#                                    system): its capacity per core, whatever the sink and the
#                                    machine's other load let through
#   sim.records_per_s_received.udp   records/s the sink decoded (loopback UDP drops when the sink
#                                    cannot keep up: both numbers are reported on purpose)
#   sim.records_per_s_offered.tcp    records/s written by 1,000 agents, one TCP connection each
#                                    (TCP backpressure: bounded by the sink as well)
#   sim.records_per_s_received.tcp
#   sim.records_per_s_offered.tcp_10k  the same with all 10,200 agents' connections
#   sim.records_per_s_received.tcp_10k
#   sim.tcp_unacked_frames_end       frames not acknowledged after the final wait (1,000 agents)
# Bounded: SIM_BENCH_DURATION (default 5s) of sending per transport, plus TCP connection setup.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release -q -p nfm-sim
BIN=$TARGET/release/nfm-sim
FLEET=$ROOT/nfm-sim/fleets/large.toml
DURATION=${SIM_BENCH_DURATION:-5s}
WORK=$(mktemp -d)
SINK_PID=""
cleanup() {
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then kill "$SINK_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

GEN_CPU=(); SINK_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then GEN_CPU=(taskset -c 0); SINK_CPU=(taskset -c 1); fi

json_num() { # FILE KEY -> number
  grep -o "\"$2\": *[0-9.e+-]*" "$1" | head -1 | sed 's/.*: *//'
}

PORT=$(( 20000 + RANDOM % 20000 ))
declare -A OFFERED
for run in udp tcp tcp_10k; do
  tr=${run%_10k}
  AGENTS=()
  [ "$run" = tcp ] && AGENTS=(--agents 1000)
  PORT=$((PORT + 1))
  "${SINK_CPU[@]}" "$BIN" sink --quick --$tr 127.0.0.1:$PORT --idle 3s --max 300s >"$WORK/sink-$run.json" 2>"$WORK/sink-$run.err" &
  SINK_PID=$!
  # Wait (bounded) until the sink has bound its port.
  for _ in $(seq 100); do
    grep -q "nfm-sim sink:" "$WORK/sink-$run.err" 2>/dev/null && break
    sleep 0.05
  done
  RUST_LOG=error "${GEN_CPU[@]}" "$BIN" load --fleet "$FLEET" --collector 127.0.0.1:$PORT --transport $tr \
    --rate 0 --duration "$DURATION" "${AGENTS[@]}" --json >"$WORK/load-$run.json"
  wait "$SINK_PID" || true
  SINK_PID=""
  offered=$(json_num "$WORK/load-$run.json" offered_rate)
  secs=$(json_num "$WORK/load-$run.json" duration_s)
  received=$(grep -o '"records":[0-9]*' "$WORK/sink-$run.json" | sed 's/.*://')
  OFFERED[$run]=$offered
  printf 'sim.records_per_s_offered.%s %.0f records/s\n' "$run" "$offered"
  printf 'sim.records_per_s_achieved.%s %.0f records/s\n' "$run" "$(json_num "$WORK/load-$run.json" achieved_rate)"
  printf 'sim.records_per_cpu_s.%s %.0f records/cpu-s\n' "$run" "$(json_num "$WORK/load-$run.json" records_per_cpu_s)"
  awk -v r="$received" -v s="$secs" -v t="$run" 'BEGIN { printf "sim.records_per_s_received.%s %.0f records/s\n", t, r / s }'
  if [ "$run" = tcp ]; then
    printf 'sim.tcp_unacked_frames_end %s frames\n' "$(json_num "$WORK/load-$run.json" unacked_frames)"
  fi
done
awk -v u="${OFFERED[udp]}" -v t="${OFFERED[tcp]}" 'BEGIN { m = u < t ? u : t; printf "sim.records_per_s_offered %.0f records/s\n", m }'
