#!/bin/sh
# The fold protocol for the engine (issue 13): each fold's 10 sequences are
# scored by `vosd eval` with the memory network trained on the other two
# folds ($FOLD_MODELS/fold-X, by default the committed
# models/memnet-folds/fold-X made by `training/train.py --fold X --export
# ...`: models/README.md) and with label propagation, at one processing
# size.
# Run-time memory settings are candidates (below); scripts/fold_select.py
# then chooses one per held-out fold on the other two folds' scores and
# reports the held-out fold with it (choose on two, report the third,
# rotate).
#   scripts/fold_eval.sh OUT_DIR [WxH]      (default 512x288)
# Needs target/ci/vosd (cargo build --profile ci) or $VOSD; $EVAL_ARGS is
# passed to every `vosd eval` (e.g. "--backend cpu --precision fp32").
set -eu
out=${1:?usage: fold_eval.sh OUT_DIR [WxH]}
size=${2:-512x288}
cd "$(dirname "$0")/.."
vosd=${VOSD:-target/ci/vosd}
davis=${DAVIS:-../shared/data/davis2016}
folds=${FOLDS:-../shared/data/davis2016-folds.txt}
fold_models=$(cd "${FOLD_MODELS:-models/memnet-folds}" && pwd)
mkdir -p "$out"
seqs() { grep "^fold-$1:" "$folds" | cut -d: -f2 | tr -d ' '; }
# name: --set arguments of a memory setting, each explicit (not the shipped
# defaults, which the protocol chose: wm0)
# (default: the training's memory, 5 working frames one every 5 and the
# previous frame; wm0-prev: first + previous frame only; wm0: first frame
# only; fp32: wm0 with the fp32 encoder, where `precision = "auto"` runs
# int8 on ONNX Runtime.)
wm0=--set=memory_network.working_memory=0,--set=memory_network.keep_previous=false
candidates="default:--set=memory_network.working_memory=5,--set=memory_network.mem_every=5,--set=memory_network.keep_previous=true
  wm0-prev:--set=memory_network.working_memory=0,--set=memory_network.keep_previous=true
  wm0:$wm0 fp32:--precision=fp32,$wm0"
for f in a b c; do
  s=$(seqs $f)
  # shellcheck disable=SC2086
  [ -f "$out/lp-$f-$size.json" ] || "$vosd" eval --davis "$davis" --sequences "$s" --size "$size" \
      --no-t ${EVAL_ARGS:-} --method label-propagation --json "$out/lp-$f-$size.json" > "$out/lp-$f-$size.log" 2>&1
  for c in $candidates; do
    name=${c%%:*}; sets=$(echo "${c#*:}" | tr ',' ' ')
    j="$out/mn-$f-$name-$size.json"
    [ -f "$j" ] && continue
    # shellcheck disable=SC2086
    "$vosd" eval --davis "$davis" --sequences "$s" --size "$size" --no-t ${EVAL_ARGS:-} --method memory-network \
        --set "memory_network.model_dir=\"$fold_models/fold-$f\"" $sets \
        --json "$j" > "$out/mn-$f-$name-$size.log" 2>&1
  done
done
