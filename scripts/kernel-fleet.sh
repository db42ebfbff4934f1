#!/usr/bin/env bash
# The kernel fleet (issue 12 item 3): attribution proven on real kernel TCP with one real
# nfm-agent per host. Eight host network namespaces (own /24 each in 169.254.0.0/16; 3 AZs,
# 2 VPCs) hang off one router namespace that plays the AZ routers and the transit gateway; each
# host's workload runs in its own child cgroup, watched by its own agent (5 s intervals, TCP to
# a real collector in the root namespace over a separate management veth). Real bounded traffic:
# long-lived paced streams in both directions and short request/response connections, every AZ
# pair carrying some. After a healthy phase, four faults, each followed by healed intervals:
#   1. 3 % random loss between use1-az1 and use1-az2 (nftables in the router),
#   2. listen-queue overflow on h8:9000 (the server stops accepting; its kernel drops SYNs; h8's
#      other ports stay healthy),
#   3. a one-link bottleneck on h3 (tc tbf both ways: queueing delay and tail drops),
#   4. a blackholed subnet: subnet-h5 cut off in the router (nftables drop both ways).
# Ground truth goes to truth.jsonl (nfm-sim's JSON-lines shape plus the lab's fields), the
# verdicts and monitor HealthIndicators are read from the collector's API and scored against
# issue 12's bar by scripts/kernel-fleet/fleet.py; exits 1 when the bar is missed, 2 on a lab
# error. Everything it creates is removed on exit, also on failure or Ctrl-C.
#
#   kernel-fleet.sh [--short]        --short: fewer intervals per phase (the CI gate)
# Env: NFM_FLEET_BIN (dir with nfm-agent and nfm-collector; default target/release),
#      NFM_FLEET_OUT (default target/kernel-fleet), FLEET_HEALTHY/FLEET_FAULT/FLEET_HEALED
#      (intervals per phase); FLEET_FAULTS (a subset of loss,lq,bottleneck,blackhole, run in
#      the order given; default all four); for diagnosis:
#      FLEET_LQ_CLIENTS (hosts hammering h8:9000, default all seven others),
#      FLEET_CONNECT_TIMEOUT (short connections' connect timeout, default 1.5 s),
#      FLEET_LQ_OTHER_TRAFFIC (h8's traffic besides the listen-queue port: stream (default),
#      all, none; see scripts/kernel-fleet/fleet.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELPER="$ROOT/scripts/kernel-fleet/fleet.py"
BIN=${NFM_FLEET_BIN:-$ROOT/target/release}
OUT=${NFM_FLEET_OUT:-$ROOT/target/kernel-fleet}
IV_MS=5000
FAULTS=${FLEET_FAULTS:-loss,lq,bottleneck,blackhole}
# Faults are further apart than an incident's hold-down (3 intervals after the last one that
# named it, docs/health.md §5): each fault's HealthIndicator is its own, not the one before's.
SETTLE=2 HEALTHY=${FLEET_HEALTHY:-6} FAULT=${FLEET_FAULT:-8} HEALED=${FLEET_HEALED:-6}
if [ "${1:-}" = "--short" ]; then
  HEALTHY=${FLEET_HEALTHY:-4} FAULT=${FLEET_FAULT:-5} HEALED=${FLEET_HEALED:-5}
fi
for f in ${FAULTS//,/ }; do
  case "$f" in loss | lq | bottleneck | blackhole) ;; *) echo "kernel-fleet: unknown fault $f (loss, lq, bottleneck, blackhole)" >&2; exit 2 ;; esac
done
PY=$(python3 -c 'import sys; print(sys.executable)')
RT=nfmf-rt
NS_PREFIX=nfmf-h

die() { echo "kernel-fleet: $*" >&2; exit 2; }
now_ms() { date +%s%3N; }
SLEEP_PID=""
sleep_until() { # in the background: a signal's trap runs at once, not after a long sleep
  local d=$(($1 - $(now_ms)))
  if [ "$d" -gt 0 ]; then
    sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))" &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
  fi
}

[ "$(id -u)" -eq 0 ] || die "needs root (netns, cgroups, eBPF)"
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$CG2" ] || die "no cgroup2 mount in /proc/mounts"
CG="$CG2/nfm-fleet"
for b in nfm-agent nfm-collector; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing (cargo build --release -p nfm-agent -p nfm-collector)"; done
for t in ip nft tc curl nsenter bpftool; do command -v "$t" >/dev/null || die "$t is missing (scripts/setup.sh)"; done

STATE=$(mktemp -d /tmp/nfm-fleet.XXXXXX)
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/truth.jsonl "$OUT"/score.txt
COLLECTOR_PID=""
AGENT_PIDS=()
WORK_PIDS=()
mapfile -t HOSTS < <("$PY" "$HELPER" layout "$STATE" && cut -f1 "$STATE/hosts.tsv")

stop_pids() { # SIGTERM, bounded wait, SIGKILL
  local p alive
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

teardown_net() {
  local h
  ip netns del "$RT" 2>/dev/null || true
  for h in "${HOSTS[@]}"; do ip netns del "$NS_PREFIX$h" 2>/dev/null || true; done
  for h in "${HOSTS[@]}"; do ip link del "nfmfm${h#h}" 2>/dev/null || true; done
  if [ -d "$CG" ]; then
    for h in "${HOSTS[@]}"; do
      [ -d "$CG/$h" ] || continue
      echo 1 > "$CG/$h/cgroup.kill" 2>/dev/null || true
      for _ in $(seq 50); do rmdir "$CG/$h" 2>/dev/null && break; sleep 0.1; done
    done
    rmdir "$CG" 2>/dev/null || true
  fi
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
  [ "${#WORK_PIDS[@]}" -gt 0 ] && stop_pids "${WORK_PIDS[@]}"
  # Agents detach their programs when they exit on SIGTERM: wait for them before the cgroups go.
  [ "${#AGENT_PIDS[@]}" -gt 0 ] && stop_pids "${AGENT_PIDS[@]}"
  [ -n "$COLLECTOR_PID" ] && stop_pids "$COLLECTOR_PID"
  teardown_net
  cp "$STATE"/*.toml "$OUT"/ 2>/dev/null
  if [ "$status" -eq 2 ] || [ "$status" -gt 128 ]; then
    echo "kernel-fleet: collector log (last 20 lines):"; tail -n 20 "$OUT/collector.log" 2>/dev/null
    for h in "${HOSTS[@]}"; do tail -n 3 "$OUT/agent-$h.log" 2>/dev/null | sed "s/^/agent-$h: /"; done
  fi
  rm -rf "$STATE"
  [ -d "$CG" ] && echo "kernel-fleet: WARNING: $CG could not be removed"
  ip netns list 2>/dev/null | grep -q "^nfmf-" && echo "kernel-fleet: WARNING: nfmf-* namespaces left"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

teardown_net # leftovers of a run that was killed hard (same names: only this lab uses them)

# ---- network: router namespace, host namespaces, management veths into the root namespace
echo "kernel-fleet: building the lab (${#HOSTS[@]} hosts)"
ip netns add "$RT"
ip -n "$RT" link set lo up
ip netns exec "$RT" sysctl -qw net.ipv4.ip_forward=1
mkdir -p "$CG"
MGMT_IP=169.254.250.1
COLLECTOR_PORT=7443
while read -r h ip gw az vpc; do
  n=${h#h}
  ns="$NS_PREFIX$h"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # data plane: eth0 in the host, rN in the router (its /24's .1)
  ip -n "$ns" link add eth0 type veth peer name "r$n" netns "$RT"
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$RT" addr add "$gw/24" dev "r$n"
  ip -n "$RT" link set "r$n" up
  ip -n "$ns" route add 169.254.0.0/16 via "$gw" dev eth0
  # management: a /30 per host to the root namespace, where the collector listens
  ip link add "nfmfm$n" type veth peer name mgmt0 netns "$ns"
  ip addr add "169.254.251.$((4 * n - 3))/30" dev "nfmfm$n"
  ip link set "nfmfm$n" up
  ip -n "$ns" addr add "169.254.251.$((4 * n - 2))/30" dev mgmt0
  ip -n "$ns" link set mgmt0 up
  ip -n "$ns" route add "$MGMT_IP/32" via "169.254.251.$((4 * n - 3))" dev mgmt0
  mkdir -p "$CG/$h"
done < "$STATE/hosts.tsv"
ip addr add "$MGMT_IP/32" dev nfmfm1 # the collector's address (the root ns answers on any link)

# ---- collector
HTTP_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API="http://127.0.0.1:$HTTP_PORT"
mkdir -p "$STATE/data"
# Issue 14: the default incident hold-down (3 minutes after the last naming; a flapping link is
# one incident) would carry one fault's HealthIndicator into the next fault, a few intervals
# later, and the host-only faults are scored on HealthIndicator staying 0. The healed phase is
# at least 5 intervals of 5 s, so the hold-down here is shorter than that: 15 s (3 intervals).
printf 'incident_hold_down_s = 15\n' >"$STATE/collector.toml"
"$BIN/nfm-collector" --config "$STATE/collector.toml" --topology "$STATE/topology.toml" \
  --monitors "$STATE/monitors.toml" --data-dir "$STATE/data" --listen-udp off \
  --listen-tcp "$MGMT_IP:$COLLECTOR_PORT" --http "127.0.0.1:$HTTP_PORT" >"$OUT/collector.log" 2>&1 &
COLLECTOR_PID=$!
for i in $(seq 100); do
  curl -sf "$API/api/status" >/dev/null && break
  kill -0 "$COLLECTOR_PID" 2>/dev/null || die "the collector exited"
  [ "$i" -eq 100 ] && die "the collector's API did not answer within 10 s"
  sleep 0.1
done

# ---- one agent per host, in the host's namespace, attached to the host's cgroup
for h in "${HOSTS[@]}"; do
  n=${h#h}
  # nsenter switches only the network namespace (ip netns exec would remount /sys and hide the
  # cgroup2 mount under it).
  nsenter --net="/run/netns/$NS_PREFIX$h" "$BIN/nfm-agent" --collector "$MGMT_IP:$COLLECTOR_PORT" \
    --transport tcp --interval 5s --cgroup "$CG/$h" --agent-id "$n" --host-name "$h" --imds off \
    >"$OUT/agent-$h.log" 2>&1 &
  AGENT_PIDS+=($!)
done
for h in "${HOSTS[@]}"; do # bounded wait for every program to be attached
  for i in $(seq 100); do
    bpftool cgroup show "$CG/$h" 2>/dev/null | grep -q sock_ops && break
    [ "$i" -eq 100 ] && die "agent $h did not attach to $CG/$h within 10 s"
    sleep 0.1
  done
done
# Nothing has been sent yet (the first interval has not ended): wait for the Hellos.
for i in $(seq 150); do
  got=$(curl -sf "$API/api/agents" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["agents"]))' || echo 0)
  [ "$got" -ge "${#HOSTS[@]}" ] && break
  [ "$i" -eq 150 ] && die "only $got of ${#HOSTS[@]} agents reached the collector within 15 s"
  sleep 0.1
done
echo "kernel-fleet: collector $API, ${#HOSTS[@]} agents connected"

# ---- workload: one process per host, moved into the host's cgroup before it enters the netns
for h in "${HOSTS[@]}"; do
  sh -c "echo \$\$ > '$CG/$h/cgroup.procs' && exec nsenter --net='/run/netns/$NS_PREFIX$h' '$PY' '$HELPER' host '$h' '$STATE'" \
    >"$OUT/work-$h.log" 2>&1 &
  WORK_PIDS+=($!)
done
for h in "${HOSTS[@]}"; do
  for i in $(seq 100); do
    grep -q serving "$OUT/work-$h.log" 2>/dev/null && break
    [ "$i" -eq 100 ] && die "workload of $h did not start"
    sleep 0.1
  done
done

# ---- schedule on the agents' interval grid (wall-clock multiples of 5 s)
T0=$(( ($(now_ms) / IV_MS + 2) * IV_MS ))  # first whole interval with traffic from the start
TRUTH="$OUT/truth.jsonl"
iv_at() { echo $((T0 + $1 * IV_MS)); }
SCORED_FROM=$(iv_at "$SETTLE")
FIRST_FAULT=$((SETTLE + HEALTHY + 1))
STEP=$((FAULT + 2 + HEALED))
NFAULTS=$(echo "${FAULTS//,/ }" | wc -w)
END_IV=$((FIRST_FAULT + NFAULTS * STEP - 1))
END_MS=$(iv_at "$END_IV")
"$PY" - "$TRUTH" <<PY
import json, sys
open(sys.argv[1], "w").write(json.dumps({"type": "run", "version": 1, "scenario": "kernel-fleet",
  "fleet": "scripts/kernel-fleet (generated topology.toml)", "seed": 0, "mode": "real-time",
  "start_ms": $T0, "end_ms": $END_MS, "interval_ms": $IV_MS, "agents": ${#HOSTS[@]},
  "scored_from_ms": $SCORED_FROM}) + "\n")
PY
echo "kernel-fleet: $(( (END_MS - $(now_ms)) / 1000 )) s to go: settle $SETTLE, healthy $HEALTHY, then $NFAULTS × (fault $FAULT + healed $HEALED) intervals of 5 s ($FAULTS)"

ACCEPT=$("$PY" "$HELPER" truth-components)
# Faults start 0.2 s before the grid line of their first full interval and end 0.2 s after the
# last one's end; start_ms/end_ms are taken before applying / after removing (outer bounds),
# on_ms/off_ms after applying / before removing (when it was surely in force).
run_fault() { # name kind blame first_interval apply_fn remove_fn evidence_fn
  local name=$1 kind=$2 blame=$3 first=$4 apply=$5 remove=$6 evidence=$7
  local t_on t_off s e on off ev
  t_on=$(( $(iv_at "$first") - 200 ))
  t_off=$(( $(iv_at $((first + FAULT))) + 200 ))
  sleep_until "$t_on"
  s=$(now_ms); $apply || die "could not apply fault $name"; on=$(now_ms)
  echo "kernel-fleet: $(date -u +%T) fault $name on"
  sleep_until "$t_off"
  off=$(now_ms); ev=$($evidence); $remove || die "could not remove fault $name"; e=$(now_ms)
  echo "kernel-fleet: $(date -u +%T) fault $name off ($ev)"
  "$PY" - "$TRUTH" "$ACCEPT" <<PY
import json, sys
acc = json.loads(sys.argv[2])["$kind"]
open(sys.argv[1], "a").write(json.dumps({"type": "fault", "scenario": "kernel-fleet", "name": "$name",
  "kind": "$kind", "blame": "$blame", "component": acc[0], "accept": acc, "start_ms": $s,
  "end_ms": $e, "on_ms": $on, "off_ms": $off, "evidence": "$ev"}) + "\n")
PY
}

LOSS_IFS_A="{ $(awk -F'\t' '$4 == "use1-az1" { printf "%s\"r%s\"", sep, substr($1, 2); sep = ", " }' "$STATE/hosts.tsv") }"
LOSS_IFS_B="{ $(awk -F'\t' '$4 == "use1-az2" { printf "%s\"r%s\"", sep, substr($1, 2); sep = ", " }' "$STATE/hosts.tsv") }"
loss_on() {
  ip netns exec "$RT" nft -f - <<NFT
table inet nfmfleet {
  chain lossy { type filter hook forward priority 0;
    iifname $LOSS_IFS_A oifname $LOSS_IFS_B numgen random mod 100 < 3 counter drop
    iifname $LOSS_IFS_B oifname $LOSS_IFS_A numgen random mod 100 < 3 counter drop
  }
}
NFT
}
loss_off() { ip netns exec "$RT" nft delete table inet nfmfleet; }
loss_evidence() {
  echo "dropped $(ip netns exec "$RT" nft list table inet nfmfleet | awk '/counter/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i+1) } END { print s + 0 }') packets"
}
listen_overflows() {
  ip netns exec "${NS_PREFIX}h8" awk '/^TcpExt:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; n = 1 } else print $c }' /proc/net/netstat
}
lq_on() { LQ0=$(listen_overflows); touch "$STATE/lq-stall"; }
lq_off() { rm -f "$STATE/lq-stall"; }
lq_evidence() { echo "h8 ListenOverflows +$(( $(listen_overflows) - LQ0 ))"; }
BOTTLENECK_TBF="rate 1mbit burst 16kb latency 300ms"
bn_on() {
  ip netns exec "$RT" tc qdisc add dev r3 root tbf $BOTTLENECK_TBF
  ip netns exec "${NS_PREFIX}h3" tc qdisc add dev eth0 root tbf $BOTTLENECK_TBF
}
bn_off() {
  ip netns exec "$RT" tc qdisc del dev r3 root
  ip netns exec "${NS_PREFIX}h3" tc qdisc del dev eth0 root
}
bn_evidence() {
  echo "tbf dropped $(ip netns exec "$RT" tc -s qdisc show dev r3 | awk '/dropped/ { gsub(",", ""); print $7; exit }') (router side) + $(ip netns exec "${NS_PREFIX}h3" tc -s qdisc show dev eth0 | awk '/dropped/ { gsub(",", ""); print $7; exit }') (host side) packets"
}

BH_NET=$(awk -F'\t' '$1 == "h5" { split($2, a, "."); print a[1] "." a[2] "." a[3] ".0/24" }' "$STATE/hosts.tsv")
bh_on() {
  ip netns exec "$RT" nft -f - <<NFT
table inet nfmfleetbh {
  chain blackhole { type filter hook forward priority 0;
    ip saddr $BH_NET counter drop
    ip daddr $BH_NET counter drop
  }
}
NFT
}
bh_off() { ip netns exec "$RT" nft delete table inet nfmfleetbh; }
bh_evidence() {
  echo "dropped $(ip netns exec "$RT" nft list table inet nfmfleetbh | awk '/counter/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i+1) } END { print s + 0 }') packets"
}

k=0
for f in ${FAULTS//,/ }; do
  first=$((FIRST_FAULT + k * STEP))
  case "$f" in
    loss) run_fault "loss use1-az1|use1-az2 3 %" loss network "$first" loss_on loss_off loss_evidence ;;
    lq) run_fault "listen-queue overflow h8:9000" listen-overflow endpoint "$first" lq_on lq_off lq_evidence ;;
    bottleneck) run_fault "bottleneck h3 (tbf 1 Mbit/s)" bottleneck endpoint "$first" bn_on bn_off bn_evidence ;;
    blackhole) run_fault "blackhole subnet-h5" blackhole network "$first" bh_on bh_off bh_evidence ;;
  esac
  k=$((k + 1))
done

sleep_until "$END_MS"
echo "{\"type\": \"end\", \"end_ms\": $END_MS, \"intervals\": $(( (END_MS - T0) / IV_MS ))}" >> "$TRUTH"
# Bounded wait for the last interval to close (close_after_ms 2 s after its end).
for i in $(seq 150); do
  newest=$(curl -sf "$API/api/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("newest_interval_ms") or 0)' || echo 0)
  [ "$newest" -ge $((END_MS - IV_MS)) ] && break
  [ "$i" -eq 150 ] && die "the collector did not close the last interval within 15 s of the run's end"
  sleep 0.1
done
stop_pids "${WORK_PIDS[@]}"; WORK_PIDS=()
set +e
"$PY" "$HELPER" score "$TRUTH" "$API" | tee "$OUT/score.txt"
status=${PIPESTATUS[0]}
set -e
echo "kernel-fleet: ground truth $TRUTH, table $OUT/score.txt"
exit "$status"
