#!/usr/bin/env bash
# Agent TLS overhead (issue 15 item 5), bounded (about 1.5 minutes). Two real agents attached to
# the same child cgroup in the same run, one shipping over plain TCP and one over TLS
# (`--tls-ca`), each to its own collector (the TLS one with `ingest_tls`), while nfm-loadgen holds
# 5,000 loopback connections to 5,000 distinct addresses (10,000 tracked flows, as in
# agent.sh's memory/CPU figure), 1 s interval. Both agents see the same sockets, so the
# difference is the transport. Prints `agent-tls.<metric> <value> <unit>`:
# - {plain,tls}_rss_mib: VmRSS at the end of the window; {plain,tls}_cpu_pct: utime+stime over
#   the 20 s window; {plain,tls}_records: records each collector received (nfm_records_received_total),
#   to show both streams carried the same data.
# CG_NAME names the child cgroup (default nfm-bench-tls-PID).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p nfm-agent -p nfm-collector 2>&1 | grep -v '^warning: nfm-agent@' || true)
AGENT=$TGT/release/nfm-agent
LOADGEN=$TGT/release/nfm-loadgen
COLLECTOR=$TGT/release/nfm-collector
[ -x "$AGENT" ] && [ -x "$LOADGEN" ] && [ -x "$COLLECTOR" ] || { echo "agent-tls bench: build failed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "agent-tls bench: needs root" >&2; exit 1; }

CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
CG=$CG2/${CG_NAME:-nfm-bench-tls-$$}
WORK=$(mktemp -d)
mkdir "$CG"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$CG/cgroup.kill" ] && echo 1 > "$CG/cgroup.kill" 2>/dev/null || true
  for _ in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
  rm -rf "$WORK"
}
trap cleanup EXIT
incg() { sh -c 'echo $$ > "$0/cgroup.procs"; shift; exec "$@"' "$CG" _ "$@"; }
wait_for() {
  local file=$1 pat=$2 i
  for i in $(seq 300); do grep -q "$pat" "$file" 2>/dev/null && return 0; sleep 0.05; done
  echo "agent-tls bench: timed out waiting for '$pat' in $file" >&2; cat "$file" >&2 || true; exit 1
}
free_ports() { python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"; }
read -r P_TCP P_HTTP T_TCP T_HTTP HOLD_PORT < <(free_ports 5)

# A CA and a server certificate it signs (webpki refuses a CA certificate as the server's own).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=nfm-bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=collector \
  -keyout "$WORK/key.pem" -out "$WORK/req.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/req.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/ext" -out "$WORK/cert.pem" 2>/dev/null

"$COLLECTOR" --data-dir "$WORK/plain" --listen-udp off --listen-tcp "127.0.0.1:$P_TCP" \
  --http "127.0.0.1:$P_HTTP" > "$WORK/plain.log" 2>&1 &
PIDS+=($!)
"$COLLECTOR" --data-dir "$WORK/tls" --listen-udp off --listen-tcp "127.0.0.1:$T_TCP" \
  --http "127.0.0.1:$T_HTTP" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --ingest-tls \
  > "$WORK/tls.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/plain.log" "ingest: running"
wait_for "$WORK/tls.log" "ingest: running"

"$AGENT" --cgroup "$CG" --collector "127.0.0.1:$P_TCP" --transport tcp --interval 1s \
  --log-level info 2> "$WORK/agent-plain.err" &
PLAIN=$!; PIDS+=($PLAIN)
"$AGENT" --cgroup "$CG" --collector "127.0.0.1:$T_TCP" --transport tcp --interval 1s \
  --tls-ca "$WORK/ca.pem" --log-level info 2> "$WORK/agent-tls.err" &
TLS=$!; PIDS+=($TLS)
wait_for "$WORK/agent-plain.err" "connected to collector"
wait_for "$WORK/agent-tls.err" "connected to collector"

incg "$LOADGEN" hold "$HOLD_PORT" --count 5000 --seconds 40 > "$WORK/hold.out" &
PIDS+=($!)
wait_for "$WORK/hold.out" holding
sleep 3   # let both agents take the 10,000 new sockets in (the steady state is what is measured)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
p0=$(ticks $PLAIN); t0=$(ticks $TLS); s0=$(date +%s.%N)
sleep 20  # the measurement window
p1=$(ticks $PLAIN); t1=$(ticks $TLS); s1=$(date +%s.%N)
rss() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu() { awk -v k="$1" -v hz="$HZ" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", 100*k/hz/(b-a)}'; }
records() { curl -s --cacert "$WORK/ca.pem" "$1/metrics" | awk '$1=="nfm_records_received_total"{print $2}'; }
if grep -q "ERROR" "$WORK/agent-tls.err"; then
  echo "agent-tls bench: the TLS agent logged errors:" >&2; grep ERROR "$WORK/agent-tls.err" | tail -3 >&2; exit 1
fi
echo "agent-tls.plain_rss_mib $(rss $PLAIN) MiB"
echo "agent-tls.tls_rss_mib $(rss $TLS) MiB"
echo "agent-tls.plain_cpu_pct $(cpu $((p1 - p0))) %"
echo "agent-tls.tls_cpu_pct $(cpu $((t1 - t0))) %"
echo "agent-tls.plain_records $(records "http://127.0.0.1:$P_HTTP") records"
echo "agent-tls.tls_records $(records "https://127.0.0.1:$T_HTTP") records"
