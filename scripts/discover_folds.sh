#!/bin/sh
# The fold protocol for unsupervised mode (issue 15): each fold's 10
# sequences are scored by `vosd eval --unsupervised` (no mask; the union of
# the discovered objects against the annotation) with the memory network
# trained on the other two folds (training/runs/fold-X/onnx), for each
# candidate setting below (camera-motion threshold, frame gap, most
# objects). scripts/discover_select.py then chooses one setting per held-out
# fold on the other two folds' scores and reports the held-out fold with it.
#   scripts/discover_folds.sh OUT_DIR [WxH]      (default 512x288)
# Needs target/ci/vosd (cargo build --profile ci) or $VOSD.
set -eu
out=${1:?usage: discover_folds.sh OUT_DIR [WxH]}
size=${2:-512x288}
cd "$(dirname "$0")/.."
vosd=${VOSD:-target/ci/vosd}
davis=${DAVIS:-../shared/data/davis2016}
folds=${FOLDS:-../shared/data/davis2016-folds.txt}
mkdir -p "$out"
seqs() { grep "^fold-$1:" "$folds" | cut -d: -f2 | tr -d ' '; }
# name:motion_threshold_px:frame_gap[:max_objects]  (max_objects: 4 if left out)
candidates=${CANDIDATES:-"m6g3o1:6:3:1 m10g3o1:10:3:1 m6g3o2:6:3:2 m10g3o2:10:3:2 m6g3:6:3 m10g3:10:3"}
for f in a b c; do
  s=$(seqs $f)
  model="$PWD/training/runs/fold-$f/onnx"
  [ -d "$model" ] || { echo "$model: missing (training/train.py --fold $f --export ...)" >&2; exit 1; }
  for c in $candidates; do
    name=${c%%:*}; rest=${c#*:}; mt=${rest%%:*}; rest=${rest#*:}
    gap=${rest%%:*}; objs=4
    [ "$gap" = "$rest" ] || objs=${rest#*:}
    j="$out/ud-$f-$name-$size.json"
    [ -f "$j" ] && continue
    "$vosd" eval --davis "$davis" --sequences "$s" --size "$size" --no-t --unsupervised \
        --set "memory_network.model_dir=\"$model\"" \
        --set "discover.motion_threshold_px=$mt" --set "discover.frame_gap=$gap" \
        --set "discover.max_objects=$objs" \
        --json "$j" > "$out/ud-$f-$name-$size.log" 2>&1
  done
done
