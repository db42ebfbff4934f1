#!/usr/bin/env bash
# The demo's real workload: a network namespace joined to this host by a veth pair with
# link-local addresses, an HTTP server inside it and a client loop on this host, both placed in a
# child cgroup that the real agent watches; periodic real packet loss from nftables.
#   lab.sh up CGROUP_DIR     create netns, veth, cgroup; start server and client in the cgroup
#   lab.sh loss PERCENT      set random loss on the link (0 removes it)
#   lab.sh down CGROUP_DIR   stop everything and remove all of it
# Only 169.254.77.0/24 is used; nothing leaves the machine.
set -euo pipefail
NS=nfm-demo-ns
HOST_IF=nfmdemo0
PEER_IF=nfmdemo1
PORT=8081
STATE=${NFM_LAB_STATE:-/tmp/nfm-demo-lab}

up() {
  local cg=$1
  mkdir -p "$STATE" "$cg"
  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name "$PEER_IF"
  ip link set "$PEER_IF" netns "$NS"
  ip addr add 169.254.77.1/24 dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip netns exec "$NS" sh -c "ip addr add 169.254.77.2/24 dev $PEER_IF && ip link set $PEER_IF up && ip link set lo up"
  # 2 MB to download, so every request spans many segments and RTT samples.
  head -c 2000000 /dev/urandom > "$STATE/blob"
  # Server and client run inside the child cgroup: the agent sees both ends of each connection.
  sh -c "echo \$\$ > '$cg/cgroup.procs' && exec ip netns exec $NS python3 -m http.server $PORT --bind 169.254.77.2 --directory '$STATE'" \
    >"$STATE/server.log" 2>&1 &
  echo $! > "$STATE/server.pid"
  sh -c "echo \$\$ > '$cg/cgroup.procs' && exec python3 '$(dirname "$0")/lab_client.py' http://169.254.77.2:$PORT/blob" \
    >"$STATE/client.log" 2>&1 &
  echo $! > "$STATE/client.pid"
}

loss() {
  local pct=$1
  ip netns exec "$NS" nft delete table inet nfmdemo 2>/dev/null || true
  [ "$pct" -gt 0 ] || return 0
  ip netns exec "$NS" nft -f - <<NFT
table inet nfmdemo {
  chain in { type filter hook input priority 0; iifname "$PEER_IF" numgen random mod 100 < $pct counter drop; }
  chain out { type filter hook output priority 0; oifname "$PEER_IF" numgen random mod 100 < $pct counter drop; }
}
NFT
}

down() {
  local cg=${1:-}
  for p in client server; do
    [ -f "$STATE/$p.pid" ] && kill "$(cat "$STATE/$p.pid")" 2>/dev/null || true
  done
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    # Wait (bounded) for the cgroup to empty before removing it.
    for _ in $(seq 50); do
      [ -z "$(cat "$cg/cgroup.procs" 2>/dev/null)" ] && break
      xargs -r kill < "$cg/cgroup.procs" 2>/dev/null || true
      sleep 0.1
    done
    rmdir "$cg" 2>/dev/null || true
  fi
  rm -rf "$STATE"
}

cmd=${1:-}; shift || true
case "$cmd" in
  up) up "$@" ;;
  loss) loss "$@" ;;
  down) down "$@" ;;
  *) echo "usage: lab.sh up CGROUP_DIR | loss PERCENT | down CGROUP_DIR" >&2; exit 2 ;;
esac
