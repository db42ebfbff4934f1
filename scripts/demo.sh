#!/usr/bin/env bash
# The main job: the collector with its embedded store on 127.0.0.1, the small simulated fleet
# with a rolling fault, and — where the kernel allows — the real agent watching a real workload
# across a network-namespace link with periodically injected loss. Prints the dashboard and API
# URLs, then runs until Ctrl-C, which stops everything cleanly.
#
# Environment: NFM_HTTP (default 127.0.0.1:8080), NFM_INGEST (default 127.0.0.1:7700),
# NFM_DEMO_DIR (default target/demo: store, logs, ground truth).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh

HTTP=${NFM_HTTP:-127.0.0.1:8080}
INGEST=${NFM_INGEST:-127.0.0.1:7700}
DIR=${NFM_DEMO_DIR:-$ROOT/target/demo}

echo "demo: building (release)"
cargo build --release -q -p nfm-collector -p nfm-sim -p nfm-agent
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

rm -rf "$DIR"
mkdir -p "$DIR"
cat nfm-sim/fleets/small.toml scripts/demo/lab-topology.toml > "$DIR/topology.toml"

PIDS=()
CGROUP=""
LAB=0
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  # SIGINT is what the binaries expect; SIGTERM also reaches the subshell (which ignores SIGINT
  # when the demo itself runs in the background).
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  [ "$LAB" = 1 ] && bash scripts/demo/lab.sh down "$CGROUP" || true
  echo "demo: stopped; logs and store in $DIR"
}
trap cleanup INT TERM EXIT

"$BIN/nfm-collector" --topology "$DIR/topology.toml" --monitors scripts/demo/monitors.toml \
  --data-dir "$DIR/store" --listen-udp "$INGEST" --listen-tcp "$INGEST" --http "$HTTP" \
  >"$DIR/collector.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  curl -sf "http://$HTTP/api/agents" >/dev/null 2>&1 && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { echo "demo: collector failed to start:"; tail -5 "$DIR/collector.log"; exit 1; }
  sleep 0.1
done

"$BIN/nfm-sim" run --fleet nfm-sim/fleets/small.toml --scenario nfm-sim/scenarios/rolling.toml \
  --collector "$INGEST" --transport udp --truth "$DIR/truth.jsonl" >"$DIR/sim.log" 2>&1 &
PIDS+=($!)

# The real agent, when this kernel and these privileges allow it.
why_not=""
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ "$(id -u)" != 0 ]; then why_not="not root (the agent loads eBPF and the lab creates a network namespace)";
elif [ -z "$CG2" ]; then why_not="no cgroup v2 mount in /proc/mounts";
elif [ ! -e /sys/kernel/btf/vmlinux ]; then why_not="kernel without BTF";
elif ! command -v nft >/dev/null; then why_not="nftables missing (scripts/setup.sh installs it)";
fi
if [ -z "$why_not" ]; then
  CGROUP="$CG2/nfm-demo"
  bash scripts/demo/lab.sh down "$CGROUP" >/dev/null 2>&1 || true
  if bash scripts/demo/lab.sh up "$CGROUP" 2>"$DIR/lab.log"; then
    LAB=1
    "$BIN/nfm-agent" --cgroup "$CGROUP" --collector "$INGEST" --transport tcp --interval 5s \
      --host-name this-host --imds off >"$DIR/agent.log" 2>&1 &
    PIDS+=($!)
    # Real loss on the link: 20 s clean, 20 s with 5 % random drop, repeating.
    ( while true; do sleep 20; bash scripts/demo/lab.sh loss 5; sleep 20; bash scripts/demo/lab.sh loss 0; done ) &
    PIDS+=($!)
    echo "demo: real agent attached to $CGROUP; lab link 169.254.77.1 <-> 169.254.77.2 gets 5 % loss every other 20 s"
  else
    why_not="could not create the lab network ($(tail -1 "$DIR/lab.log"))"
  fi
fi
[ -z "$why_not" ] || echo "demo: real agent not started: $why_not; the simulated fleet runs alone"

cat <<MSG

  nfm is running.
    dashboard   http://$HTTP/
    API         http://$HTTP/api/insights   http://$HTTP/api/monitors   http://$HTTP/api/verdicts
    metrics     http://$HTTP/metrics
  Simulated fleet: nfm-sim/fleets/small.toml with the rolling fault of nfm-sim/scenarios/rolling.toml
  (ground truth: $DIR/truth.jsonl). Logs: $DIR/*.log.  Ctrl-C stops everything.

MSG
wait "${PIDS[0]}"
