#!/usr/bin/env bash
# Proves that the vosd-shm crate builds alone on a machine with only Rust
# and a C linker: a clean build of that crate in a target folder of its own,
# then a check that its dependency tree holds none of the daemon's heavy
# dependencies (tract, OpenCL, V4L2/bindgen/libclang, image, clap).
# .ci/run calls it before installing any -dev package.
#
#   scripts/check-shm-alone.sh        (prints the build time and the tree)
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(mktemp -d "${TMPDIR:-/tmp}/vosd-shm-alone.XXXXXX")
trap 'rm -rf "$target"' EXIT

start=$(date +%s.%N)
CARGO_TARGET_DIR="$target" cargo build -p vosd-shm --locked --quiet
end=$(date +%s.%N)
printf 'vosd-shm: clean build alone in %.1f s\n' "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end - $start)")"

tree=$(cargo tree -p vosd-shm --locked -e normal,build --prefix none | sed 's/ (\*)$//' | sort -u)
echo "$tree" | sed 's/^/  /'
if echo "$tree" | grep -Eq '^(tract|ocl|v4l|bindgen|clang-sys|image|clap|nokhwa|serde|log) '; then
  echo "error: vosd-shm's default build pulls in a daemon dependency (see the tree above)" >&2
  exit 1
fi
echo "vosd-shm: dependency tree clean (no tract, OpenCL, libclang, image, clap, serde or log)"
