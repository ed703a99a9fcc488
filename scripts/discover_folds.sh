#!/bin/sh
# The fold protocol for unsupervised mode (issue 15): each fold's 10
# sequences are scored by `vosd eval --unsupervised` (no mask; the union of
# the discovered objects against the annotation) with the memory network
# trained on the other two folds ($FOLD_MODELS/fold-X, by default the
# committed models/memnet-folds/fold-X: models/README.md), for each
# candidate setting below (camera-motion threshold, frame gap, most
# objects, extension, trim, prompt and the objectness head's options,
# persistence), all with discover.from_second_frame (discovery from the
# second frame; FROM_SECOND_FRAME=false for the protocol's runs before
# it, whose files then end in -late). With the objectness prompt, fold X
# uses the objectness head trained on the other two folds
# ($OBJECTNESS_MODELS/fold-X, by default models/objectness-folds/fold-X). scripts/discover_select.py then chooses one setting per held-out
# fold on the other two folds' scores and reports the held-out fold with it.
#   scripts/discover_folds.sh OUT_DIR [WxH]      (default 512x288)
# Needs target/ci/vosd (cargo build --profile ci) or $VOSD. RUN_FOLDS="a"
# (say) scores only those folds, CANDIDATES only those candidates.
# Files already in OUT_DIR are reused by name: use a fresh folder for a
# new run of the code.
set -eu
out=${1:?usage: discover_folds.sh OUT_DIR [WxH]}
size=${2:-512x288}
cd "$(dirname "$0")/.."
vosd=${VOSD:-target/ci/vosd}
davis=${DAVIS:-../shared/data/davis2016}
folds=${FOLDS:-../shared/data/davis2016-folds.txt}
fold_models=$(cd "${FOLD_MODELS:-models/memnet-folds}" && pwd)
# A folder's absolute path (as given when it is not there: vosd then names
# the missing file).
abs_dir() { (cd "$1" 2>/dev/null && pwd) || echo "$1"; }
objectness_models=$(abs_dir "${OBJECTNESS_MODELS:-models/objectness-folds}")
early=${FROM_SECOND_FRAME:-true}
case $early in true) late= ;; false) late=-late ;; *) echo "FROM_SECOND_FRAME: true or false, not $early" >&2; exit 2 ;; esac
mkdir -p "$out"
seqs() { grep "^fold-$1:" "$folds" | cut -d: -f2 | tr -d ' '; }
# name:motion_threshold_px:frame_gap[:max_objects[:extend_objects[:trim_to_motion[:prompt[:grow_to_objectness[:objectness_proposals[:objectness_threshold[:heads[:min_persistence]]]]]]]]]
# (heads: the folder of fold-X/objectness.onnx, relative to the repository
# root; default $OBJECTNESS_MODELS; min_persistence: default 3)
# (left out: max_objects 4, extend_objects, trim_to_motion,
# grow_to_objectness and objectness_proposals false, prompt box, as before
# they existed)
# (the suffix x: extend_objects, t: trim_to_motion, h: prompt = objectness,
# g: grow_to_objectness, p: objectness_proposals, 35/20: objectness_threshold,
# e: the heads of models/objectness-folds-ens4, four seeds averaged,
# p1: min_persistence 1)
candidates=${CANDIDATES:-"m6g3o4:6:3:4 m6g3o8:6:3:8 m10g3o8:10:3:8
  m6g3o4x:6:3:4:true m6g3o8x:6:3:8:true m10g3o8x:10:3:8:true
  m6g3o4t:6:3:4:false:true m6g3o8t:6:3:8:false:true m10g3o8t:10:3:8:false:true
  m6g3o4xt:6:3:4:true:true m6g3o8xt:6:3:8:true:true m10g3o8xt:10:3:8:true:true
  m6g3o4h:6:3:4:false:false:objectness m6g3o8h:6:3:8:false:false:objectness
  m10g3o8h:10:3:8:false:false:objectness
  m6g3o4hg:6:3:4:false:false:objectness:true m6g3o8hg:6:3:8:false:false:objectness:true
  m10g3o8hg:10:3:8:false:false:objectness:true
  m6g3o4hp:6:3:4:false:false:objectness:false:true m6g3o8hp:6:3:8:false:false:objectness:false:true
  m10g3o8hp:10:3:8:false:false:objectness:false:true
  m6g3o4hp35:6:3:4:false:false:objectness:false:true:0.35 m6g3o8hp35:6:3:8:false:false:objectness:false:true:0.35
  m10g3o8hp35:10:3:8:false:false:objectness:false:true:0.35
  m6g3o4hp20e:6:3:4:false:false:objectness:false:true:0.2:models/objectness-folds-ens4
  m6g3o8hp20e:6:3:8:false:false:objectness:false:true:0.2:models/objectness-folds-ens4
  m10g3o8hp20e:10:3:8:false:false:objectness:false:true:0.2:models/objectness-folds-ens4
  m6g3o8hp35p1:6:3:8:false:false:objectness:false:true:0.35::1
  m10g3o8hp35p1:10:3:8:false:false:objectness:false:true:0.35::1
  m6g3o8hp20ep1:6:3:8:false:false:objectness:false:true:0.2:models/objectness-folds-ens4:1"}
for f in ${RUN_FOLDS:-a b c}; do
  s=$(seqs $f)
  model="$fold_models/fold-$f"
  [ -f "$model/key.onnx" ] || { echo "$model: no key.onnx (python3 training/train.py --fold $f --export $model)" >&2; exit 1; }
  for c in $candidates; do
    IFS=: read -r name mt gap objs extend trim prompt grow proposals threshold heads persistence <<EOF
$c
EOF
    objs=${objs:-4}; extend=${extend:-false}; trim=${trim:-false}
    prompt=${prompt:-box}; grow=${grow:-false}; proposals=${proposals:-false}
    threshold=${threshold:-0.5}; persistence=${persistence:-3}
    heads=$(abs_dir "${heads:-$objectness_models}")
    j="$out/ud-$f-$name$late-$size.json"
    [ -f "$j" ] && continue
    "$vosd" eval --davis "$davis" --sequences "$s" --size "$size" --no-t --unsupervised \
        --set "memory_network.model_dir=\"$model\"" \
        --set "discover.motion_threshold_px=$mt" --set "discover.frame_gap=$gap" \
        --set "discover.max_objects=$objs" --set "discover.extend_objects=$extend" \
        --set "discover.trim_to_motion=$trim" --set "discover.prompt=\"$prompt\"" \
        --set "discover.grow_to_objectness=$grow" --set "discover.objectness_proposals=$proposals" \
        --set "discover.objectness_threshold=$threshold" --set "discover.min_persistence=$persistence" \
        --set "discover.from_second_frame=$early" \
        --set "discover.objectness_model=\"$heads/fold-$f/objectness.onnx\"" \
        --json "$j" > "$out/ud-$f-$name$late-$size.log" 2>&1
  done
done
