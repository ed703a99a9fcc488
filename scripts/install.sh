#!/usr/bin/env bash
# Installs vosd on a board (or removes it), as root:
#
#   sudo scripts/install.sh [--binary PATH] [--onnxruntime auto|LIB] [--enable]
#   sudo scripts/install.sh --uninstall [--keep-config]  # remove everything
#
# --binary PATH   the vosd binary to install (default: target/release/vosd;
#                 for a cross build: target/aarch64-unknown-linux-gnu/release/vosd)
# --onnxruntime auto|LIB
#                 the ONNX Runtime library for the service: LIB is a
#                 libonnxruntime.so file; `auto` asks python3 where the pip
#                 package `onnxruntime` (or onnxruntime-gpu) is. Its folder's
#                 libonnxruntime*.so* files are copied to /usr/lib/vosd/onnxruntime
#                 (the unit cannot read home folders) and the drop-in
#                 vosd.service.d/onnxruntime.conf sets ORT_DYLIB_PATH to it.
# --enable        also enable and start the service
# --keep-config   on uninstall, keep /etc/vosd (your edited configuration)
#
# Installs: /usr/bin/vosd, /usr/share/vosd/models/*.onnx (and memnet/, objectness/), /etc/vosd/vosd.toml
# (an existing one is kept; the new one goes to vosd.toml.new),
# /etc/systemd/system/vosd.service, /usr/share/doc/vosd/, the C and Python
# clients in /usr/share/vosd/clients/, and a system user `vosd` in the
# `video` group (the unit runs as it). Every file written is listed in
# /usr/share/vosd/install-manifest; --uninstall stops the service and
# removes exactly those files, the directories and the user it created.
#
# DESTDIR=/some/dir installs into a staging tree instead (no user, no
# systemctl): used by the tests and for packaging.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/vosd; enable=0; uninstall=0; keep_config=0; onnxruntime=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --onnxruntime) onnxruntime=${2:?--onnxruntime needs auto or a library path}; shift 2 ;;
    --enable) enable=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --keep-config) keep_config=1; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

root=${DESTDIR:-}
staging=0; [ -n "$root" ] && staging=1
if [ $staging = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install: run as root (sudo), or set DESTDIR to stage into a folder" >&2; exit 1
fi
share=$root/usr/share/vosd
manifest=$share/install-manifest
have_systemctl() { [ $staging = 0 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

if [ $uninstall = 1 ]; then
  [ -f "$manifest" ] || { echo "install: $manifest not found: vosd is not installed here" >&2; exit 1; }
  if have_systemctl; then
    systemctl disable --now vosd.service 2>/dev/null || true
  fi
  created_user=0
  while IFS= read -r line; do
    case $line in
      "user vosd") created_user=1 ;;
      "file "*)
        f=${line#file }
        if [ $keep_config = 1 ] && [[ $f == /etc/vosd/* ]]; then continue; fi
        rm -f "$root$f" ;;
    esac
  done < "$manifest"
  rm -f "$manifest"
  # Directories vosd owns, then the shared parents it created if now empty.
  rm -rf "$share" "$root/usr/share/doc/vosd" "$root/usr/lib/vosd"
  rmdir "$root/etc/systemd/system/vosd.service.d" 2>/dev/null || true
  [ $keep_config = 1 ] || rm -rf "$root/etc/vosd"
  # The unit's CacheDirectory (compiled OpenCL kernels), made by systemd.
  rm -rf "$root/var/cache/vosd" "$root/var/cache/private/vosd"
  for d in "$root/etc/systemd/system" "$root/etc/systemd" "$root/etc" "$root/usr/bin" \
           "$root/usr/share/doc" "$root/usr/share" "$root/usr/lib" "$root/usr"; do
    [ $staging = 1 ] && rmdir "$d" 2>/dev/null || true
  done
  if [ $created_user = 1 ] && [ $staging = 0 ] && id vosd >/dev/null 2>&1; then
    userdel vosd || echo "install: could not remove user vosd" >&2
  fi
  have_systemctl && systemctl daemon-reload
  echo "vosd removed"
  exit 0
fi

[ -x "$binary" ] || { echo "install: $binary not found or not executable (build it first: cargo build --release)" >&2; exit 1; }
ls models/encoder_lite0_*.onnx >/dev/null 2>&1 || { echo "install: run from the vosd source tree (models/ missing)" >&2; exit 1; }
# A binary built with the OpenCL backend needs the OpenCL loader to start at
# all. On the board (not into a DESTDIR tree for another machine), check.
if [ -z "$root" ] && command -v ldd >/dev/null 2>&1 && ldd "$binary" 2>/dev/null | grep -q 'libOpenCL.* => not found'; then
  echo "install: $binary needs libOpenCL.so.1 (the OpenCL ICD loader), which this system lacks:" >&2
  echo "install:   sudo apt-get install ocl-icd-libopencl1   (vosd then runs on tract if no OpenCL driver is present)" >&2
  echo "install: or build without the OpenCL backend: cargo build --release --no-default-features --features v4l2" >&2
  exit 1
fi

# --onnxruntime: find the library before anything is written.
lib=
if [ -n "$onnxruntime" ]; then
  lib=$onnxruntime
  if [ "$lib" = auto ]; then
    capi=$(python3 -c 'import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null) || {
      echo "install: --onnxruntime auto: python3 cannot import onnxruntime (pip install onnxruntime, or give the library's path)" >&2; exit 1; }
    lib=$(ls "$capi"/libonnxruntime.so.* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$lib" ] || { echo "install: --onnxruntime auto: no libonnxruntime.so.* in $capi" >&2; exit 1; }
  fi
  [ -f "$lib" ] || { echo "install: --onnxruntime $lib: no such file" >&2; exit 1; }
fi

files=()
put() { # put MODE SRC DEST
  install -D -m "$1" "$2" "$root$3"
  files+=("$3")
}

put 0755 "$binary" /usr/bin/vosd
for m in models/encoder_lite0_*.onnx; do put 0644 "$m" "/usr/share/vosd/models/$(basename "$m")"; done
# The memory network's heads (engine.method = "memory-network", the default).
for m in key value decoder; do put 0644 "models/memnet/$m.onnx" "/usr/share/vosd/models/memnet/$m.onnx"; done
# The objectness heads of unsupervised mode (discover.prompt = "objectness"):
# the default one and the four-seed one of the DAVIS setting (docs/discover.md).
for m in objectness objectness-ens4; do
  put 0644 "models/objectness/$m.onnx" "/usr/share/vosd/models/objectness/$m.onnx"
done
put 0644 models/README.md /usr/share/vosd/models/README.md
if [ -e "$root/etc/vosd/vosd.toml" ]; then
  put 0644 config/vosd.toml /etc/vosd/vosd.toml.new
  echo "install: kept your /etc/vosd/vosd.toml; the shipped one is /etc/vosd/vosd.toml.new" >&2
else
  put 0644 config/vosd.toml /etc/vosd/vosd.toml
fi
put 0644 config/demo.toml /etc/vosd/demo.toml
put 0644 systemd/vosd.service /etc/systemd/system/vosd.service
for d in README.md docs/*.md; do
  put 0644 "$d" "/usr/share/doc/vosd/$(basename "$d")"
done
put 0644 crates/vosd-shm/LAYOUT.md /usr/share/doc/vosd/shm-layout.md
put 0644 crates/vosd-shm/clients/c/vosd_shm.h /usr/share/vosd/clients/c/vosd_shm.h
put 0644 crates/vosd-shm/clients/c/example.c /usr/share/vosd/clients/c/example.c
put 0644 crates/vosd-shm/clients/python/vosd_reader.py /usr/share/vosd/clients/python/vosd_reader.py
put 0644 crates/vosd-shm/clients/python/example.py /usr/share/vosd/clients/python/example.py

# ONNX Runtime for the service: its library folder, copied where the
# sandboxed unit can read it, and ORT_DYLIB_PATH in a drop-in.
if [ -n "$onnxruntime" ]; then
  dest=/usr/lib/vosd/onnxruntime
  for f in "$(dirname "$lib")"/libonnxruntime*.so*; do put 0644 "$f" "$dest/$(basename "$f")"; done
  dropin=$root/etc/systemd/system/vosd.service.d/onnxruntime.conf
  mkdir -p "$(dirname "$dropin")"
  printf '# Written by scripts/install.sh --onnxruntime: the library vosd loads.\n[Service]\nEnvironment=ORT_DYLIB_PATH=%s\n' \
    "$dest/$(basename "$lib")" > "$dropin"
  files+=("/etc/systemd/system/vosd.service.d/onnxruntime.conf")
  echo "install: ONNX Runtime for the service: $dest/$(basename "$lib") (from $lib)"
fi

created_user=0
if [ $staging = 0 ] && ! id vosd >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin --user-group --groups video vosd
  created_user=1
fi

{
  echo "# vosd install manifest: scripts/install.sh --uninstall removes these"
  [ $created_user = 1 ] && echo "user vosd"
  for f in "${files[@]}"; do echo "file $f"; done
} > "$manifest"

if have_systemctl; then
  systemctl daemon-reload
  [ $enable = 1 ] && systemctl enable --now vosd.service
fi
echo "vosd installed: /usr/bin/vosd, config /etc/vosd/vosd.toml, unit vosd.service"
[ $enable = 1 ] || echo "start it with: sudo systemctl enable --now vosd   (check: systemctl status vosd; vosd tail --shm /vosd-cam0)"
