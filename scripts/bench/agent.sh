#!/usr/bin/env bash
# Agent overhead benchmark (bounded: about 3 minutes). Prints `agent.<metric> <value> <unit>`.
#
# - agent.conn_rate_ratio / agent.tracers_conn_rate_ratio: short-connection rate (connect, 8-byte
#   request, close; client and server both in a child cgroup on loopback) with nfm-agent attached,
#   or with bpftrace's tracepoint versions of tcplife + tcpretrans running, divided by the rate with
#   nothing attached. Rounds alternate (none, nfm, tracers, rotating order); the median of the
#   per-round ratios is printed.
# - agent.ebpf_ns_per_callback / agent.ebpf_ns_per_connection: kernel.bpf_stats_enabled during a
#   separate nfm round (stats cost time themselves, so the rate rounds run without them):
#   run_time_ns / run_cnt, and run_time_ns / connections (both ends run the program).
# - agent.lost_events: events the program could not deliver or track (close_lost + map_full +
#   map_update_failed) over all nfm rounds, i.e. at the highest connection rate reached; and
#   agent.conns_counted_ratio: connections the agent counted / connections the generator made.
# - agent.rss_mib / agent.cpu_pct: the agent (UDP transport to a local sink, 1 s interval) while
#   5,000 loopback connections to 5,000 distinct addresses are held open: 10,000 sockets, each its
#   own flow (10,000 tracked flows), measured over 20 s.
#
# PROFILE=1 adds one more round with the program timing itself per op (`--bpf-profile`: two clock
# reads per run, so its figures run ~30 ns per callback above the stats rounds') and prints, on
# stderr, runs and ns per connection for each op (16 = STATE callbacks that are closes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
THREADS=${THREADS:-2}
PORT=7790

(cd "$ROOT" && cargo build --release -q -p nfm-agent 2>&1 | grep -v '^warning: nfm-agent@' || true)
AGENT=$TGT/release/nfm-agent
LOADGEN=$TGT/release/nfm-loadgen
[ -x "$AGENT" ] && [ -x "$LOADGEN" ] || { echo "agent bench: build failed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "agent bench: needs root" >&2; exit 1; }
command -v bpftrace >/dev/null || { echo "agent bench: bpftrace missing (scripts/setup.sh)" >&2; exit 1; }
grep -q ' /sys/kernel/tracing tracefs' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing

CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
CG=$CG2/nfm-bench-$$
WORK=$(mktemp -d)
mkdir "$CG"
STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$CG/cgroup.kill" ] && echo 1 > "$CG/cgroup.kill" 2>/dev/null || true
  for _ in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
  sysctl -qw kernel.bpf_stats_enabled="$STATS_BEFORE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Runs a command inside the child cgroup.
incg() { sh -c 'echo $$ > "$0/cgroup.procs"; shift; exec "$@"' "$CG" _ "$@"; }

# Waits (bounded) until FILE contains PATTERN.
wait_for() {
  local file=$1 pat=$2 i
  for i in $(seq 200); do grep -q "$pat" "$file" 2>/dev/null && return 0; sleep 0.05; done
  echo "agent bench: timed out waiting for '$pat' in $file" >&2; cat "$file" >&2; exit 1
}

incg "$LOADGEN" serve 127.0.0.1:$PORT --threads "$THREADS" --seconds 600 > "$WORK/serve.out" &
PIDS+=($!)
wait_for "$WORK/serve.out" listening

TRACE=$WORK/tracers.bt
cat > "$TRACE" <<'BT'
// tcplife (tracepoint version): lifetime and bytes of every TCP session, printed at close.
tracepoint:sock:inet_sock_set_state
{
  if (args->protocol != 6) { return; }
  $sk = (struct sock *)args->skaddr;
  if (args->newstate < 4 && @birth[$sk] == 0) { @birth[$sk] = nsecs; }
  if (args->newstate == 2 || args->newstate == 9) { @who[$sk] = pid; }
  if (args->newstate == 7) {
    $b = @birth[$sk];
    if ($b != 0) {
      $tp = (struct tcp_sock *)$sk;
      printf("%-7d %-15s %-5d %-15s %-5d %-6d %-6d %d\n", @who[$sk], ntop(args->saddr),
        args->sport, ntop(args->daddr), args->dport, $tp->bytes_acked >> 10,
        $tp->bytes_received >> 10, (nsecs - $b) / 1000000);
    }
    delete(@birth[$sk]);
    delete(@who[$sk]);
  }
}
// tcpretrans (tracepoint version): one line per retransmitted segment.
tracepoint:tcp:tcp_retransmit_skb
{
  printf("%-8d %-15s %-5d %-15s %-5d %d\n", pid, ntop(args->saddr), args->sport,
    ntop(args->daddr), args->dport, args->state);
}
BT

start_nfm() {  # $1 = output file
  "$AGENT" --cgroup "$CG" --stdout --interval 1s --log-level info > "$1" 2> "$1.err" &
  NFM_PID=$!
  PIDS+=($NFM_PID)
  wait_for "$1.err" "attached sock_ops"
}
stop_nfm() {
  kill -TERM "$NFM_PID"; wait "$NFM_PID" || { echo "agent bench: agent exited non-zero" >&2; exit 1; }
}
start_tracers() {
  bpftrace "$TRACE" > "$WORK/tracers.out" 2> "$WORK/tracers.err" &
  TR_PID=$!
  PIDS+=($TR_PID)
  wait_for "$WORK/tracers.out" Attaching
}
stop_tracers() { kill -INT "$TR_PID"; wait "$TR_PID" || true; }

rate() {  # prints the conn/s of one round; appends "conns" to $WORK/conns.<label>
  local out
  out=$(incg "$LOADGEN" rate 127.0.0.1:$PORT --seconds "$SECS" --threads "$THREADS")
  echo "$out" | awk '{print $2}' >> "$WORK/conns.$1"
  echo "$out" | awk '{print $NF}'
}

declare -a R_NONE R_NFM R_TR
configs=(none nfm tracers)
for r in $(seq 0 $((ROUNDS - 1))); do
  for k in 0 1 2; do
    c=${configs[$(( (r + k) % 3 ))]}
    case $c in
      none) R_NONE[$r]=$(rate none) ;;
      nfm) start_nfm "$WORK/nfm.$r.out"; R_NFM[$r]=$(rate nfm); stop_nfm ;;
      tracers) start_tracers; R_TR[$r]=$(rate tracers); stop_tracers ;;
    esac
  done
  echo "round $r: none ${R_NONE[$r]} nfm ${R_NFM[$r]} tracers ${R_TR[$r]} conn/s" >&2
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
nfm_ratio=$(for r in $(seq 0 $((ROUNDS - 1))); do awk -v a="${R_NFM[$r]}" -v b="${R_NONE[$r]}" 'BEGIN{printf "%.4f\n", a/b}'; done | median)
tr_ratio=$(for r in $(seq 0 $((ROUNDS - 1))); do awk -v a="${R_TR[$r]}" -v b="${R_NONE[$r]}" 'BEGIN{printf "%.4f\n", a/b}'; done | median)
none_med=$(printf '%s\n' "${R_NONE[@]}" | median)

# Lost events and completeness over all nfm rounds (the highest rates reached with nfm).
lost=0; counted=0
for r in $(seq 0 $((ROUNDS - 1))); do
  f=$WORK/nfm.$r.out
  l=$(tail -n1 "$f" | python3 -c 'import json,sys; k=json.loads(sys.stdin.read())["kernel"]; print(k["close_lost"]+k["map_full"]+k["map_update_failed"]+k["cb_flags_failed"])')
  c=$(python3 -c 'import json,sys
n=0
for line in open(sys.argv[1]):
    for rec in json.loads(line)["records"]:
        if rec["role"]=="client": n+=rec["conn_attempts"]
print(n)' "$f")
  lost=$((lost + l)); counted=$((counted + c))
done
made=$(paste -sd+ "$WORK/conns.nfm" | bc)

# eBPF cost: separate rounds with run-time stats on (median of 3), and one round with a program
# that returns at once (the kernel's own cost of invoking a sock_ops program, stats included).
prog_stats() { bpftool prog show id "$PROG_ID" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("run_time_ns",0), d.get("run_cnt",0))'; }
stats_round() {  # $1 = output tag, rest = extra agent flags; prints "ns_per_cb ns_per_conn cb_per_conn"
  local tag=$1; shift
  "$AGENT" --cgroup "$CG" --stdout --interval 1s --log-level info "$@" > "$WORK/$tag.out" 2> "$WORK/$tag.err" &
  NFM_PID=$!; PIDS+=($NFM_PID)
  wait_for "$WORK/$tag.err" "attached sock_ops"
  PROG_ID=$(bpftool cgroup show "$CG" | awk '$2 ~ /sock_ops/ {print $1; exit}')
  read -r t0 c0 < <(prog_stats)
  : > "$WORK/conns.$tag"
  rate "$tag" > /dev/null
  read -r t1 c1 < <(prog_stats)
  stop_nfm
  awk -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$(cat "$WORK/conns.$tag")" \
    'BEGIN{printf "%.1f %.1f %.2f\n", t/c, t/n, c/n}'
}
sysctl -qw kernel.bpf_stats_enabled=1
for i in 1 2 3; do stats_round "stats$i"; done > "$WORK/stats.txt"
floor=$(stats_round floor --bpf-noop)
if [ "${PROFILE:-0}" = 1 ]; then
  stats_round profile --bpf-profile > /dev/null
  conns=$(cat "$WORK/conns.profile")
  grep '^profile op' "$WORK/profile.err" | awk -v n="$conns" '
    BEGIN { split("TIMEOUT_INIT RWND_INIT TCP_CONNECT ACTIVE_ESTABLISHED PASSIVE_ESTABLISHED NEEDS_ECN BASE_RTT RTO RETRANS STATE TCP_LISTEN RTT PARSE_HDR_OPT HDR_OPT_LEN WRITE_HDR_OPT STATE(close)", name, " ") }
    { op = $3 + 0; sub(":", "", op); printf "profile op %2d %-20s runs/conn %5.2f  ns/run %7.1f  ns/conn %7.1f\n", op, name[op], $5 / n, $7 / $5, $7 / n }' >&2
fi
sysctl -qw kernel.bpf_stats_enabled="$STATS_BEFORE"
cat "$WORK/stats.txt" | sed 's/^/stats round (ns\/cb ns\/conn cb\/conn): /' >&2
echo "floor round (no-op program): $floor" >&2
ns_cb=$(awk '{print $1}' "$WORK/stats.txt" | median)
ns_conn=$(awk '{print $2}' "$WORK/stats.txt" | median)
cb_conn=$(awk '{print $3}' "$WORK/stats.txt" | median)
floor_conn=$(echo "$floor" | awk '{print $2}')

# Memory and CPU with 10,000 tracked flows at a 1 s interval (UDP to a local sink).
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 7791))
while True:
    s.recv(65536)
' &
PIDS+=($!)
"$AGENT" --cgroup "$CG" --collector 127.0.0.1:7791 --transport udp --interval 1s --log-level warn 2> "$WORK/hold.err" &
HOLD_AGENT=$!
PIDS+=($HOLD_AGENT)
incg "$LOADGEN" hold 7792 --count 5000 --seconds 40 > "$WORK/hold.out" &
PIDS+=($!)
wait_for "$WORK/hold.out" holding
sleep 3   # let the agent take the 10,000 new sockets in (the steady state is what is measured)
ticks() { awk '{print $14 + $15}' "/proc/$HOLD_AGENT/stat"; }
HZ=$(getconf CLK_TCK)
k0=$(ticks); s0=$(date +%s.%N)
sleep 20  # the measurement window
k1=$(ticks); s1=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS/{print $2}' "/proc/$HOLD_AGENT/status")
cpu=$(awk -v k=$((k1 - k0)) -v hz="$HZ" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", 100*k/hz/(b-a)}')
rss=$(awk -v kb="$rss_kb" 'BEGIN{printf "%.1f", kb/1024}')
kill -TERM "$HOLD_AGENT"; wait "$HOLD_AGENT" || true

echo "agent.conn_rate_ratio $nfm_ratio ratio"
echo "agent.tracers_conn_rate_ratio $tr_ratio ratio"
echo "agent.baseline_conn_rate $none_med conn/s"
echo "agent.ebpf_ns_per_callback $ns_cb ns"
echo "agent.ebpf_ns_per_connection $ns_conn ns"
echo "agent.ebpf_callbacks_per_connection $cb_conn count"
echo "agent.ebpf_noop_ns_per_connection $floor_conn ns"
echo "agent.lost_events $lost count"
echo "agent.conns_counted_ratio $(awk -v a="$counted" -v b="$made" 'BEGIN{printf "%.4f", a/b}') ratio"
echo "agent.rss_mib $rss MiB"
echo "agent.cpu_pct $cpu %"
