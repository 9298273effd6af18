#!/usr/bin/env bash
# Idle resident memory of `device-lorawan run`: UDP ingest on loopback, the
# bundled profiles, N simulated devices, nothing arriving. Prints VmRSS and
# VmHWM after the service has settled.
#   scripts/idle-rss.sh [devices]      (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"
cargo build --release --quiet
# A binary just written is dirty in the page cache, and the kernel pages
# out only clean pages: write it back first (the settling after start-up
# pages our own code out, src/service/settle.rs).
sync
bin=target/release/device-lorawan
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" simulate --write-devices "$dir/devices.yaml" --devices "$n" >/dev/null
cat > "$dir/config.yaml" <<YAML
Service: { DataDir: $dir/data, ApiBind: "127.0.0.1:0" }
Devices: { File: $dir/devices.yaml, ProfilesDir: profiles }
Ingest: { Udp: { Bind: "127.0.0.1:0" } }
Readings: { JsonLines: $dir/readings.jsonl }
Log: { Level: warn }
YAML
"$bin" run --config "$dir/config.yaml" &
pid=$!
sleep 5  # past the settling after start-up (src/service/settle.rs, at 2 s)
grep -E "VmRSS|VmHWM" "/proc/$pid/status" | tr -s ' ' | sed "s/^/devices=$n /"
