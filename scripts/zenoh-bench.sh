#!/usr/bin/env bash
# The cost of Zenoh publication and the capture-to-subscriber latency at
# 640x480 (README "ROS 2 over Zenoh"): runs `vosd run` on
# config/bench-640x480.toml with a [zenoh] table added, and
# tests/zenoh/subscribe.py --bench N as the subscriber on loopback.
#
#   scripts/zenoh-bench.sh [VOSD_BINARY] [MASKS]
#
# Prints the subscriber's capture->callback latency (header stamp to the
# Python callback, p50/p99) and the daemon's own per-frame figures, logged
# when it stops: the hand-over cost to the publish stage, the encoding of
# the three messages and the three puts (p50/p99, microseconds).
set -euo pipefail
cd "$(dirname "$0")/.."
vosd=${1:-target/release/vosd}
masks=${2:-300}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
sed -e 's|"/vosd-bench"|"/vosd-bench-zenoh"|' config/bench-640x480.toml > "$dir/bench.toml"
cat >> "$dir/bench.toml" <<TOML

[zenoh]
mode = "peer"
connect = []
listen = ["tcp/127.0.0.1:$port"]
TOML
RUST_LOG=info "$vosd" run --config "$dir/bench.toml" 2> "$dir/vosd.log" &
pid=$!
python3 tests/zenoh/subscribe.py --connect "tcp/127.0.0.1:$port" --bench "$masks" --timeout 600
kill -TERM "$pid"
wait "$pid" || true
grep -E "zenoh: (handing|encoding|putting)|latency p50" "$dir/vosd.log" | tail -n 4
