#!/bin/sh
# The cross-validation runs and the shipped model, in two lanes of one thread each, every job at
# nice 19 (the machine's 2 cores are shared). Idempotent and resumable: rerun it after a stop and
# every step continues from its cache or checkpoint.
#   lane 1: prepare a -> train a -> (wait for lane 2's caches) -> train c
#   lane 2: prepare b, c, all -> train b -> train all (exported to models/memnet)
# Usage: sh training/run_folds.sh [extra train.py args]   (logs in training/runs/)
cd "$(dirname "$0")" || exit 1
mkdir -p runs
PY=${PYTHON:-python3}
STEPS=${STEPS:-4000}
T="nice -n 19 $PY train.py --steps $STEPS $*"
lane1() {
    $T --fold a --prepare-only && touch runs/.prepared-a
    $T --fold a --export runs/fold-a/onnx
    while [ ! -f runs/.prepared-c ]; do sleep 20; done
    $T --fold c --export runs/fold-c/onnx
}
lane2() {
    while [ ! -f runs/.prepared-a ]; do sleep 20; done
    $T --fold b --prepare-only && touch runs/.prepared-b
    $T --fold c --prepare-only && touch runs/.prepared-c
    $T --fold all --prepare-only && touch runs/.prepared-all
    $T --fold b --export runs/fold-b/onnx
    $T --fold all --export ../models/memnet
}
lane1 > runs/lane1.log 2>&1 &
lane2 > runs/lane2.log 2>&1 &
wait
