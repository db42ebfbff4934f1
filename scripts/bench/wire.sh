#!/usr/bin/env bash
# Wire benchmark: bytes per record (IPv4/IPv6) and encode/decode throughput on one core.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p nfm-wire --bench wire 2>/dev/null | grep '^wire\.'
