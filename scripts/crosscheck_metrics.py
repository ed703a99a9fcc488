#!/usr/bin/env python3
"""Cross-check vosd's DAVIS figures against the official davisinteractive code.

Reads DAVIS 2016 ground truth (ROOT/Annotations/480p/SEQ/NNNNN.png, binary
0/255) and predicted masks (DIR/SEQ/NNNNN.png: palette PNGs whose pixel is the
object id, or 0/255 grey PNGs), computes per-frame J and F of object 1 with
davisinteractive's `batched_jaccard` / `batched_f_measure` on every frame but
the first and the last (as the official semi-supervised evaluation does),
summarises them with the toolkit's `db_statistics` rule (mean, recall, decay),
and compares with a vosd JSON file:

    {"sequences": {NAME: {"j_mean": .., "f_mean": .., ...}}, "overall": {...}}

J and F are fractions (0..1). `j_mean` and `f_mean` must be there for every
sequence; `j_recall`, `j_decay`, `f_recall`, `f_decay`, `jf_mean` and the
lists `j_per_frame` / `f_per_frame` are compared too when present (`null`
stands for NaN), and so are the keys of "overall" (j_mean, j_recall, j_decay,
f_mean, f_recall, f_decay, jf_mean: means over all the JSON's sequences, one
object each; skipped when --sequences picks a subset). Prints a table; exits
1 if any difference exceeds --tolerance (default 1e-6), 2 on unusable input.

Usage (after `vosd eval --davis ../shared/data/davis2016 --sequences bear,boat
--out OUT --json eval.json`):

    python scripts/crosscheck_metrics.py --davis ../shared/data/davis2016 \\
        --results OUT --vosd-json eval.json

Requirements, as used for the check recorded in docs/metrics.md:
davisinteractive==1.0.4, with numpy 2.4.6, scikit-image 0.26.0,
opencv-python-headless 5.0.0.93, pillow. davisinteractive 1.0.4 ships only
as an sdist whose setup.py imports numpy and Cython, and it pins the full
opencv-python; install it with

    pip install numpy scikit-image pillow opencv-python-headless cython wheel
    pip install --no-build-isolation --no-deps davisinteractive==1.0.4

It still uses the aliases np.int / np.float / np.bool that numpy >= 1.24
removed; this script restores them (as the builtins they stood for) before
importing it. Only `davisinteractive.metrics` is imported.
"""

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np
from PIL import Image

# Aliases removed from numpy 1.24 that davisinteractive 1.0.4 still uses;
# they were the Python builtins.
for _name, _type in (("int", int), ("float", float), ("bool", bool)):
    if _name not in np.__dict__:
        setattr(np, _name, _type)

from davisinteractive.metrics import batched_f_measure, batched_jaccard  # noqa: E402

STAT_KEYS = ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")
OVERALL_KEYS = STAT_KEYS + ("jf_mean",)


def db_statistics(values):
    """Mean, recall and decay of a per-frame series, by the DAVIS toolkit's
    rule: mean = nanmean(X); recall = nanmean(X > 0.5); decay = nanmean of
    the first of 4 bins minus that of the last, the bin bounds being
    uint8(round(linspace(1, len(X), 5) + 1e-10) - 1), bin i = X[a_i : a_{i+1} + 1].
    The end bound is added to as a Python int (numpy 1.x arithmetic)."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(x)
        recall = np.nanmean(x > 0.5)
        ids = np.round(np.linspace(1, len(x), 5) + 1e-10) - 1
        ids = [int(i) for i in ids.astype(np.uint8)]
        bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def read_labels(path):
    """Label mask of a PNG: palette index or grey value; a mask holding only
    0 and 255 is read as object 1 on background."""
    img = Image.open(path)
    if img.mode not in ("P", "L"):
        img = img.convert("L")
    labels = np.array(img)
    if np.all((labels == 0) | (labels == 255)):
        labels = (labels == 255).astype(np.uint8)
    return labels.astype(np.int64)


def reference_scores(davis, results, seq):
    """Per-frame J and F of object 1 on frames 1..n-2 of `seq`."""
    gt_dir = os.path.join(davis, "Annotations", "480p", seq)
    names = sorted(f for f in os.listdir(gt_dir) if f.endswith(".png"))
    names = names[1:-1]
    if not names:
        return np.zeros(0), np.zeros(0), 0
    gts, preds = [], []
    for name in names:
        gt = np.array(Image.open(os.path.join(gt_dir, name)).convert("L"))
        gts.append((gt > 0).astype(np.int64))
        pred_path = os.path.join(results, seq, name)
        if not os.path.exists(pred_path):
            raise SystemExit(f"error: missing prediction {pred_path}")
        pred = read_labels(pred_path)
        if pred.shape != gt.shape:
            raise SystemExit(f"error: {pred_path} is {pred.shape}, ground truth {gt.shape}")
        preds.append(pred)
    y_true, y_pred = np.stack(gts), np.stack(preds)
    j = batched_jaccard(y_true, y_pred, average_over_objects=False, nb_objects=1)[:, 0]
    f = batched_f_measure(y_true, y_pred, average_over_objects=False, nb_objects=1)[:, 0]
    return j, f, len(names)


def as_float(v):
    return math.nan if v is None else float(v)


def diff(a, b):
    """|a - b|, 0 when both are NaN, inf when only one is."""
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", required=True, help="DAVIS 2016 root (holds Annotations/480p)")
    ap.add_argument("--results", required=True, help="folder of predicted masks DIR/SEQ/NNNNN.png")
    ap.add_argument("--vosd-json", required=True, help="JSON written by vosd eval")
    ap.add_argument("--sequences", help="comma-separated subset (default: all in the JSON)")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    args = ap.parse_args()

    with open(args.vosd_json) as fh:
        report = json.load(fh)
    sequences = report.get("sequences")
    if not isinstance(sequences, dict) or not sequences:
        print("error: no \"sequences\" object in the vosd JSON", file=sys.stderr)
        return 2
    names = args.sequences.split(",") if args.sequences else sorted(sequences)

    worst = 0.0
    failures = []
    per_seq_stats = []
    header = f"{'sequence':<20} {'frames':>6} {'J ref':>12} {'J vosd':>12} {'|dJ|':>9} {'F ref':>12} {'F vosd':>12} {'|dF|':>9}  other"
    print(header)
    print("-" * len(header))
    for seq in names:
        if seq not in sequences:
            print(f"error: sequence {seq} not in the vosd JSON", file=sys.stderr)
            return 2
        mine = sequences[seq]
        j, f, n = reference_scores(args.davis, args.results, seq)
        jm, jr, jd = db_statistics(j)
        fm, fr, fd = db_statistics(f)
        ref = dict(j_mean=jm, j_recall=jr, j_decay=jd, f_mean=fm, f_recall=fr, f_decay=fd)
        ref["jf_mean"] = (jm + fm) / 2
        per_seq_stats.append(ref)
        deltas = {}
        for key in ("j_mean", "f_mean"):
            if key not in mine:
                print(f"error: {seq} has no {key}", file=sys.stderr)
                return 2
        for key in OVERALL_KEYS:
            if key in mine:
                deltas[key] = diff(ref[key], as_float(mine[key]))
        for key, series in (("j_per_frame", j), ("f_per_frame", f)):
            if key in mine:
                theirs = [as_float(v) for v in mine[key]]
                if len(theirs) != len(series):
                    deltas[key] = math.inf
                else:
                    deltas[key] = max((diff(a, b) for a, b in zip(series, theirs)), default=0.0)
        others = ", ".join(f"{k} {v:.1e}" for k, v in deltas.items() if k not in ("j_mean", "f_mean"))
        print(
            f"{seq:<20} {n:>6} {jm:>12.9f} {as_float(mine['j_mean']):>12.9f} {deltas['j_mean']:>9.2e} "
            f"{fm:>12.9f} {as_float(mine['f_mean']):>12.9f} {deltas['f_mean']:>9.2e}  {others}"
        )
        for key, d in deltas.items():
            worst = max(worst, d)
            if d > args.tolerance:
                failures.append(f"{seq}.{key}")

    theirs_overall = report.get("overall") or {}
    if theirs_overall and set(names) != set(sequences):
        print("(overall not compared: --sequences is a subset of the JSON's sequences)")
    elif theirs_overall:
        ref_overall = {k: float(np.mean([s[k] for s in per_seq_stats])) for k in STAT_KEYS}
        ref_overall["jf_mean"] = (ref_overall["j_mean"] + ref_overall["f_mean"]) / 2
        print("-" * len(header))
        for key in OVERALL_KEYS:
            if key in theirs_overall:
                d = diff(ref_overall[key], as_float(theirs_overall[key]))
                worst = max(worst, d)
                print(f"overall {key:<9} ref {ref_overall[key]:>13.9f}  vosd {as_float(theirs_overall[key]):>13.9f}  |d| {d:.2e}")
                if d > args.tolerance:
                    failures.append(f"overall.{key}")

    print(f"largest difference: {worst:.3e} (tolerance {args.tolerance:g})")
    if failures:
        print("MISMATCH: " + ", ".join(failures))
        return 1
    print("OK: vosd agrees with davisinteractive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
