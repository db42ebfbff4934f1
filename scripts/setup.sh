#!/usr/bin/env bash
# Idempotent fresh-machine setup: every apt package, toolchain component and cargo tool that
# building, testing and the demo need. A second run finishes in seconds (it checks before it installs).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Debian packages: LLVM 22 for bpf-linker; network tools and real peers for the kernel tests;
# prometheus, alertmanager and victoria-metrics for the scrape, alerting and remote-write tests;
# chromium for the dashboard test; nodejs/npm for playwright-core; python3-venv for moto.
APT_PKGS=(llvm-22-dev libzstd-dev zlib1g-dev libpolly-22-dev
          iproute2 nftables iperf3 bpftrace bpftool prometheus prometheus-alertmanager
          victoria-metrics chromium curl ca-certificates openssl python3 python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js and npm (playwright-core): the machine image ships them; Debian's own packages otherwise.
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# Nightly rust-src builds the eBPF object (-Z build-std=core).
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt

# bpf-linker against Debian's LLVM 22 (its default features want LLVM 23).
if ! command -v bpf-linker >/dev/null 2>&1; then
  LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install bpf-linker --version 0.13.0 --locked --no-default-features --features llvm-22
fi

# cargo-fuzz for the bounded fuzz run of the wire decoder (runs on nightly).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# tracefs for bpftrace's tracepoints (the peer tracers in the agent bench).
if ! grep -q ' /sys/kernel/tracing tracefs' /proc/mounts; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi

# playwright-core drives Debian's chromium in the dashboard end-to-end test.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$ROOT/tests/e2e/package.json" ] && [ ! -d "$ROOT/tests/e2e/node_modules/playwright-core" ]; then
  (cd "$ROOT/tests/e2e" && npm install --no-audit --no-fund --silent)
fi
# moto[server] (EC2 API and instance-metadata emulation) and boto3 for the AWS import test, in a
# virtualenv of their own: Debian's python refuses pip installs into the system (PEP 668).
NFM_PY=/opt/nfm-py
if [ ! -x "$NFM_PY/bin/moto_server" ] || ! "$NFM_PY/bin/python" -c 'import boto3, moto' 2>/dev/null; then
  python3 -m venv "$NFM_PY"
  "$NFM_PY/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' boto3
fi
echo "setup: ok"
