#!/usr/bin/env bash
# Builds vosd for a board without containers, on Debian/Ubuntu.
#
#   scripts/cross-build.sh TARGET [--board BOARD] [--install-deps] [--test | --test-only] [-- CARGO_ARGS...]
#
# TARGET: aarch64-unknown-linux-gnu (Raspberry Pi 4/5 with 64-bit OS, Jetson)
#         armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS)
# BOARD:  generic (default: runs on every board of the target), pi4, pi5,
#         orin, xavier; sets the CPU that rustc tunes for (see README).
# --install-deps  apt-get installs the cross compiler, the target's libc and
#                 kernel headers, libclang and qemu-user, and adds the rustup
#                 target (needs root or sudo).
# --test          also runs the test suite under qemu-user (cargo's runner is
#                 set in .cargo/config.toml) with the `ci` profile; the tests
#                 that start the vosd binary run it through qemu too.
# --test-only     only the emulated test suite (no release build; what CI runs).
#
# The OpenCL backend (feature `opencl`) links the target's libOpenCL (the ICD
# loader): with multiarch, `dpkg --add-architecture arm64 && apt-get install
# ocl-icd-opencl-dev:arm64` (armhf likewise). Without it the build leaves the
# feature out (the binary then runs on tract only) and says so.
#
# Leaves the binary at target/TARGET/release/vosd and prints its size.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
target=$1; shift
board=generic; install_deps=0; run_tests=0; extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --board) board=${2:?--board needs a value}; shift 2 ;;
    --install-deps) install_deps=1; shift ;;
    --test) run_tests=1; shift ;;
    --test-only) run_tests=2; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "cross-build: unknown argument '$1'" >&2; usage ;;
  esac
done

case $target in
  aarch64-unknown-linux-gnu)
    triple=aarch64-linux-gnu; debarch=arm64; qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf)
    triple=arm-linux-gnueabihf; debarch=armhf; qemu=qemu-arm ;;
  *) echo "cross-build: unsupported target '$target' (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac

case $board in
  generic) cpu= ;;
  pi4) cpu=cortex-a72 ;;
  pi5) cpu=cortex-a76 ;;
  orin) cpu=cortex-a78ae ;;
  xavier) cpu=carmel ;;
  *) echo "cross-build: unknown board '$board' (generic, pi4, pi5, orin, xavier)" >&2; exit 2 ;;
esac
if [ -n "$cpu" ] && [ "$target" = armv7-unknown-linux-gnueabihf ] && [ "$board" != pi4 ] && [ "$board" != pi5 ]; then
  echo "cross-build: board '$board' has no 32-bit OS build; use aarch64-unknown-linux-gnu" >&2; exit 2
fi

if [ $install_deps = 1 ]; then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "gcc-$triple" "libc6-dev-$debarch-cross" "linux-libc-dev-$debarch-cross" libclang-dev qemu-user >/dev/null
  rustup target add "$target"
fi

for tool in "$triple-gcc" cargo; do
  command -v "$tool" >/dev/null || { echo "cross-build: '$tool' not found (run with --install-deps)" >&2; exit 1; }
done

# bindgen (the v4l crate's kernel bindings) parses the target's headers.
export BINDGEN_EXTRA_CLANG_ARGS="--sysroot=/usr/$triple"
# The C code some crates build uses the cross compiler.
cc_var="CC_$(echo "$target" | tr - _)"
export "$cc_var=$triple-gcc"
features=()
if [ -e "/usr/lib/$triple/libOpenCL.so" ] || [ -e "/usr/$triple/lib/libOpenCL.so" ]; then
  echo "cross-build: OpenCL backend included (libOpenCL for $debarch found)" >&2
else
  echo "cross-build: note: no libOpenCL for $debarch (ocl-icd-opencl-dev:$debarch): building without the OpenCL backend; the binary runs the engine on tract" >&2
  features=(--no-default-features --features v4l2)
fi
if [ -n "$cpu" ]; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=$cpu"
fi

if [ $run_tests != 2 ]; then
  echo "cross-build: $target (board $board${cpu:+, target-cpu $cpu})" >&2
  start=$(date +%s)
  cargo build --release --target "$target" ${features[@]+"${features[@]}"} ${extra[@]+"${extra[@]}"}
  secs=$(( $(date +%s) - start ))
  bin=target/$target/release/vosd
  size=$(stat -c %s "$bin")
  echo "cross-build: $bin: $size bytes ($(( size / 1024 / 1024 )) MiB), built in ${secs} s" >&2
fi

if [ $run_tests != 0 ]; then
  command -v "$qemu" >/dev/null || { echo "cross-build: '$qemu' not found (qemu-user)" >&2; exit 1; }
  # Tests that start vosd (or re-run their own binary) do it through qemu.
  export VOSD_TEST_RUNNER="$qemu -L /usr/$triple"
  echo "cross-build: test suite for $target under $qemu" >&2
  start=$(date +%s)
  cargo test --profile ci --target "$target" ${features[@]+"${features[@]}"} ${extra[@]+"${extra[@]}"}
  echo "cross-build: emulated test suite passed in $(( $(date +%s) - start )) s" >&2
fi
