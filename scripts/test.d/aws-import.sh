#!/usr/bin/env bash
# AWS topology import end-to-end (issue 17): starts moto's EC2 emulation on a free loopback
# port, seeds a multi-VPC, multi-AZ account with boto3 (three VPCs, five subnets in three AZs,
# five instances, a transit gateway joining two VPCs, a peering), runs
# `nfm-collector topology import-aws` against it, starts the collector on the result with a
# scheduled re-import, feeds it flow records (a FlowBatch encoded from docs/wire.md by a small
# Python encoder) and checks that the collector resolves the addresses through the imported
# topology: hosts, subnets, AZ ids, the transit gateway, the peering and the S3 prefix list.
# Then it changes the account and checks that `--diff` shows the change, that the scheduled
# import reloads the topology, and that a failed import keeps it. Every process it starts is
# stopped on exit, also on failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PY=/opt/nfm-py/bin/python
MOTO=/opt/nfm-py/bin/moto_server
[ -x "$MOTO" ] || { echo "aws-import: FAIL: $MOTO is missing (run scripts/setup.sh)"; exit 1; }

echo "aws-import: building nfm-collector"
cargo build -q -p nfm-collector --bin nfm-collector
BIN="$TARGET/debug/nfm-collector"

WORK=$(mktemp -d /tmp/nfm-aws-import.XXXXXX)
MOTO_PID=""
COLLECTOR_PID=""
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  status=$?
  stop "$COLLECTOR_PID"
  stop "$MOTO_PID"
  if [ "$status" -ne 0 ]; then
    for f in collector.log moto.log; do
      [ -f "$WORK/$f" ] && { echo "aws-import: $f (last 30 lines):"; tail -n 30 "$WORK/$f"; }
    done
    echo "aws-import: FAIL"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM
fail() { echo "aws-import: FAIL: $*"; exit 1; }

# Free loopback ports chosen by the kernel: moto, collector UDP, TCP, HTTP.
read -r MOTO_PORT UDP_PORT TCP_PORT HTTP_PORT < <(python3 - <<'PY'
import socket
socks = []
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)
EP="http://127.0.0.1:$MOTO_PORT"
API="http://127.0.0.1:$HTTP_PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_SHARED_CREDENTIALS_FILE="$WORK/no-such-credentials"
REGION=us-east-1

"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$EP/moto-api/" 2>/dev/null && break
  kill -0 "$MOTO_PID" 2>/dev/null || fail "moto_server exited"
  sleep 0.1
done
curl -sf -o /dev/null "$EP/moto-api/" || fail "moto_server did not answer on $EP"

echo "aws-import: seeding moto (3 VPCs, 5 subnets in 3 AZs, 5 instances, a transit gateway, a peering)"
cat >"$WORK/seed.py" <<'PY'
import json, sys, boto3
ep, region, what = sys.argv[1], sys.argv[2], sys.argv[3]
ec2 = boto3.client("ec2", region_name=region, endpoint_url=ep)
def inst(subnet, ip, name):
    r = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
        PrivateIpAddress=ip, TagSpecifications=[{"ResourceType": "instance",
        "Tags": [{"Key": "Name", "Value": name}]}])
    return r["Instances"][0]["InstanceId"]
if what == "seed":
    def vpc(cidr, name):
        return ec2.create_vpc(CidrBlock=cidr, TagSpecifications=[{"ResourceType": "vpc",
            "Tags": [{"Key": "Name", "Value": name}]}])["Vpc"]["VpcId"]
    def subnet(v, cidr, az):
        return ec2.create_subnet(VpcId=v, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]
    app, data, edge = vpc("10.10.0.0/16", "app"), vpc("10.20.0.0/16", "data"), vpc("10.30.0.0/16", "edge")
    subnets = {"app-a": subnet(app, "10.10.1.0/24", region + "a"),
               "app-b": subnet(app, "10.10.2.0/24", region + "b"),
               "data-a": subnet(data, "10.20.1.0/24", region + "a"),
               "data-c": subnet(data, "10.20.2.0/24", region + "c"),
               "edge-b": subnet(edge, "10.30.1.0/24", region + "b")}
    for key, ip, name in [("app-a", "10.10.1.10", "web-1"), ("app-b", "10.10.2.10", "web-2"),
                          ("data-a", "10.20.1.10", "db-1"), ("data-c", "10.20.2.10", "db-2"),
                          ("edge-b", "10.30.1.10", "proxy-1")]:
        inst(subnets[key]["SubnetId"], ip, name)
    tgw = ec2.create_transit_gateway(Description="main")["TransitGateway"]["TransitGatewayId"]
    for v, keys in [(app, ["app-a", "app-b"]), (data, ["data-a", "data-c"])]:
        ec2.create_transit_gateway_vpc_attachment(TransitGatewayId=tgw, VpcId=v,
            SubnetIds=[subnets[k]["SubnetId"] for k in keys])
    pcx = ec2.create_vpc_peering_connection(VpcId=app, PeerVpcId=edge)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    print(json.dumps({"vpc": {"app": app, "data": data, "edge": edge}, "tgw": tgw, "pcx": pcx,
        "subnet": {k: {"id": s["SubnetId"], "az_id": s["AvailabilityZoneId"]} for k, s in subnets.items()}}))
elif what == "add":
    sub = [s for s in ec2.describe_subnets()["Subnets"] if s["CidrBlock"] == "10.20.1.0/24"][0]
    print(inst(sub["SubnetId"], "10.20.1.20", "cache-1"))
PY
"$PY" "$WORK/seed.py" "$EP" "$REGION" seed >"$WORK/seeded.json" || fail "seeding moto"

echo "aws-import: import-aws --help, a failed import, then the import"
"$BIN" topology import-aws --help | grep -q -- "--endpoint-url" || fail "import-aws --help"
echo "# previous" >"$WORK/kept.toml"
set +e
"$BIN" topology import-aws --region "$REGION" --endpoint-url "http://127.0.0.1:9/" --out "$WORK/kept.toml" 2>"$WORK/err.txt"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "an unreachable endpoint exits $rc, not 2"
grep -q "no answer from the EC2 API" "$WORK/err.txt" || fail "unclear error: $(cat "$WORK/err.txt")"
[ "$(cat "$WORK/kept.toml")" = "# previous" ] || fail "a failed import changed the file"
"$BIN" topology import-aws --region "$REGION" --endpoint-url "$EP" --out "$WORK/topology.toml" \
  || fail "import-aws against moto"
"$PY" - "$WORK/seeded.json" "$WORK/topology.toml" <<'PY' || fail "the imported file does not hold the seeded account"
import json, sys, tomllib
seed = json.load(open(sys.argv[1])); t = tomllib.load(open(sys.argv[2], "rb"))
subnets = {s["id"]: s for s in t["subnet"]}
for k, s in seed["subnet"].items():
    assert subnets[s["id"]]["az"] == s["az_id"], (k, subnets.get(s["id"]))
gws = {g["id"]: g for g in t["gateway"]}
assert sorted(gws[seed["tgw"]]["vpcs"]) == sorted([seed["vpc"]["app"], seed["vpc"]["data"]]), gws
assert gws[seed["pcx"]]["kind"] == "peering"
hosts = {h["name"]: h["ip"] for h in t["host"]}
assert hosts["db-2"] == "10.20.2.10" and len(hosts) == 5, hosts
services = {s["name"]: s for s in t["service"]}
assert services["s3"]["kind"] == "object-storage" and services["dynamodb"]["prefixes"], services
azs = {a["name"] for a in t["az"]}
print(f"aws-import: imported {len(t['vpc'])} VPCs, {len(subnets)} subnets, {len(azs)} AZ ids, "
      f"{len(gws)} gateways, {len(services)} prefix-list services, {len(hosts)} hosts")
PY
set +e
"$BIN" topology import-aws --region "$REGION" --endpoint-url "$EP" --diff "$WORK/topology.toml" >"$WORK/diff.txt"
rc=$?
set -e
[ "$rc" -eq 0 ] && [ ! -s "$WORK/diff.txt" ] || fail "--diff against the same account: exit $rc, $(head -5 "$WORK/diff.txt")"
cp "$WORK/topology.toml" "$WORK/first.toml"

echo "aws-import: starting the collector on the import, re-importing every 2 s"
cat >"$WORK/collector.toml" <<EOF
listen_udp = "127.0.0.1:$UDP_PORT"
listen_tcp = "127.0.0.1:$TCP_PORT"
http = "127.0.0.1:$HTTP_PORT"
data_dir = "$WORK/data"
topology = "$WORK/topology.toml"
close_after_ms = 500

[aws_import]
region = "$REGION"
every = "2s"
endpoint_url = "$EP"
EOF
"$BIN" --config "$WORK/collector.toml" >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$API/api/status" 2>/dev/null && break
  kill -0 "$COLLECTOR_PID" 2>/dev/null || fail "the collector exited"
  sleep 0.1
done
APP_VPC=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vpc"]["app"])' "$WORK/seeded.json")
curl -sf -X POST "$API/api/monitors" -d "{\"name\":\"app\",\"local\":[\"vpc:$APP_VPC\"]}" >/dev/null \
  || fail "the collector does not know vpc:$APP_VPC"

echo "aws-import: sending a FlowBatch (4 flows) over UDP"
"$PY" - "$UDP_PORT" <<'PY'
# A FlowBatch frame byte for byte as docs/wire.md specifies (version 1.0, unsigned).
import socket, struct, sys, time, zlib
def varint(v):
    if v < 251: return bytes([v])
    if v <= 0xffff: return b"\xfb" + struct.pack("<H", v)
    if v <= 0xffffffff: return b"\xfc" + struct.pack("<I", v)
    return b"\xfd" + struct.pack("<Q", v)
def record(local, remote, port, sent, received):
    present = 0b1111  # bytes_sent, bytes_received, segs_out, segs_in
    r = bytes([0]) + struct.pack("<H", present)
    r += socket.inet_aton(local) + socket.inet_aton(remote) + varint(0) + varint(port)
    return r + varint(sent) + varint(received) + varint(10) + varint(12)
now = int(time.time() * 1000)
start = now // 5000 * 5000 - 5000
flows = [("10.10.1.10", "10.20.2.10", 5432), ("10.10.2.10", "10.30.1.10", 443),
         ("10.10.1.10", "10.10.2.10", 80), ("10.10.1.10", "52.216.1.1", 443)]
body = varint(start) + varint(start + 5000) + varint(len(flows))
body += b"".join(record(l, r, p, 1000, 2000) for l, r, p in flows)
hdr = b"NF" + bytes([1, 0, 2, 0]) + b"\0\0" + struct.pack("<IQIQ", len(body), 4242, 1, 0)
frame = hdr + body
frame += struct.pack("<I", zlib.crc32(frame) & 0xffffffff)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(frame, ("127.0.0.1", int(sys.argv[1])))
PY

ok=""
for _ in $(seq 1 150); do
  if curl -sf "$API/api/monitors/app/topology?from=0&to=99999999999999" >"$WORK/mt.json" 2>/dev/null \
     && "$PY" -c 'import json,sys; sys.exit(0 if len(json.load(open(sys.argv[1]))["flows"]) >= 4 else 1)' "$WORK/mt.json"; then
    ok=1; break
  fi
  sleep 0.2
done
[ -n "$ok" ] || fail "the flows never reached the monitor's topology: $(cat "$WORK/mt.json" 2>/dev/null | head -c 400)"
"$PY" - "$WORK/seeded.json" "$WORK/mt.json" <<'PY' || fail "the collector did not resolve the addresses through the import"
import json, sys
seed = json.load(open(sys.argv[1])); flows = json.load(open(sys.argv[2]))["flows"]
by = {(f["local"], f["remote"]): f for f in flows}
s, v = seed["subnet"], seed["vpc"]
def check(l, r, category, path):
    f = by[(l, r)]
    assert f["category"] == category, (l, r, f["category"])
    assert f["path"] == path, (l, r, f["path"], path)
def pair(x, y):
    a, b = sorted([s[x]["az_id"], s[y]["az_id"]])
    return f"az-pair:{a}|{b}"
check("10.10.1.10", "10.20.2.10", "inter-vpc",
      ["host:web-1", "subnet:" + s["app-a"]["id"], "az:" + s["app-a"]["az_id"], pair("app-a", "data-c"), "vpc:" + v["app"],
       "gateway:" + seed["tgw"], "vpc:" + v["data"], "subnet:" + s["data-c"]["id"], "host:db-2"])
check("10.10.2.10", "10.30.1.10", "inter-vpc",
      ["host:web-2", "subnet:" + s["app-b"]["id"], "az:" + s["app-b"]["az_id"], "vpc:" + v["app"],
       "gateway:" + seed["pcx"], "vpc:" + v["edge"], "subnet:" + s["edge-b"]["id"], "host:proxy-1"])
check("10.10.1.10", "10.10.2.10", "inter-az",
      ["host:web-1", "subnet:" + s["app-a"]["id"], "az:" + s["app-a"]["az_id"], pair("app-a", "app-b"),
       "vpc:" + v["app"], "subnet:" + s["app-b"]["id"], "host:web-2"])
check("10.10.1.10", "52.216.1.1", "service",
      ["host:web-1", "subnet:" + s["app-a"]["id"], "az:" + s["app-a"]["az_id"], "vpc:" + v["app"], "service:s3"])
print("aws-import: 4 flows resolved through the import (transit gateway, peering, AZ pair, S3 prefix list)")
PY

echo "aws-import: adding an instance; the scheduled import must reload the topology"
"$PY" "$WORK/seed.py" "$EP" "$REGION" add >/dev/null || fail "adding an instance"
ok=""
for _ in $(seq 1 100); do
  if curl -sf "$API/api/topology" 2>/dev/null | grep -q '"cache-1"'; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "the scheduled import did not reload the topology with cache-1"
grep -q 'name = "cache-1"' "$WORK/topology.toml" || fail "cache-1 is not in the topology file"
set +e
"$BIN" topology import-aws --region "$REGION" --endpoint-url "$EP" --diff "$WORK/first.toml" >"$WORK/diff.txt"
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q '^+name = "cache-1"' "$WORK/diff.txt" && grep -q '^+ip = "10.20.1.20"' "$WORK/diff.txt" \
  || fail "--diff after a change: exit $rc, $(cat "$WORK/diff.txt" | head -20)"
echo "aws-import: --diff shows the new instance ($(grep -c '^[+-][^+-]' "$WORK/diff.txt") changed lines)"

echo "aws-import: stopping moto; a failing re-import keeps the topology"
before=$(cat "$WORK/topology.toml")
stop "$MOTO_PID"; MOTO_PID=""
ok=""
for _ in $(seq 1 150); do
  if grep -q "the previous topology stays" "$WORK/collector.log"; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "no error was logged for the failed re-import"
[ "$(cat "$WORK/topology.toml")" = "$before" ] || fail "a failed re-import changed the file"
curl -sf "$API/api/topology" | grep -q '"cache-1"' || fail "the collector lost its topology"
kill -0 "$COLLECTOR_PID" 2>/dev/null || fail "the collector died"
curl -sf "$API/metrics" >"$WORK/metrics.txt" || fail "no /metrics"
for r in changed error; do
  n=$(awk -v r="nfm_aws_imports_total{result=\"$r\"}" '$1 == r {print $2}' "$WORK/metrics.txt")
  [ "${n:-0}" -ge 1 ] || fail "nfm_aws_imports_total{result=\"$r\"} is ${n:-missing}"
done
grep '^nfm_aws_imports_total' "$WORK/metrics.txt" | tr '\n' ' '; echo
echo "aws-import: PASS"
