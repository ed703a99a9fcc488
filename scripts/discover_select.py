#!/usr/bin/env python3
"""The fold protocol's choice and report for unsupervised mode (issue 15), from
scripts/discover_folds.sh's JSON files.

For each held-out fold X, the motion setting is the candidate with the best mean J&F on the
other two folds; fold X is then reported with it (choose on two, report the third, rotate).
With one candidate there is nothing to choose: each fold is reported with it. Prints a
markdown table.

    python3 scripts/discover_select.py OUT_DIR [WxH]
"""
import glob
import json
import os
import sys


def scores(path):
    with open(path) as f:
        r = json.load(f)
    o = r["overall"]
    return o["jf_mean"], o["j_mean"], o["f_mean"], r["sequences"]


def main():
    out = sys.argv[1]
    size = sys.argv[2] if len(sys.argv) > 2 else "512x288"
    folds = "abc"
    files = {}
    for p in glob.glob(os.path.join(out, f"ud-*-{size}.json")):
        name = os.path.basename(p)[len("ud-"):-len(f"-{size}.json")]
        fold, cand = name.split("-", 1)
        files[(fold, cand)] = scores(p)
    cands = sorted({c for (_, c) in files if all((f, c) in files for f in folds)})
    if not cands:
        sys.exit(f"{out}: no candidate scored on all three folds")
    print(f"Processing size {size}. Candidates: {', '.join(cands)}.\n")
    print("| fold | chosen on the other two | J&F | J | F |")
    print("|---|---|---|---|---|")
    reported = []
    for x in folds:
        others = [f for f in folds if f != x]
        best = max(cands, key=lambda c: sum(files[(f, c)][0] for f in others))
        jf, j, fm, _ = files[(x, best)]
        reported.append((jf, j, fm))
        print(f"| {x} | {best} | {jf:.3f} | {j:.3f} | {fm:.3f} |")
    n = len(reported)
    print(f"| mean | | **{sum(r[0] for r in reported) / n:.3f}** | {sum(r[1] for r in reported) / n:.3f} "
          f"| {sum(r[2] for r in reported) / n:.3f} |")
    held = reported[1:]  # fold a is the development fold: b and c are the result
    print(f"| mean of b and c (the result) | | **{sum(r[0] for r in held) / 2:.3f}** | "
          f"{sum(r[1] for r in held) / 2:.3f} | {sum(r[2] for r in held) / 2:.3f} |")
    print("\nPer candidate (J&F a/b/c):")
    for c in cands:
        print(f"- {c}: " + "/".join(f"{files[(f, c)][0]:.3f}" for f in folds))
    print("\nPer sequence (J) of the reported setting:")
    for x in folds:
        others = [f for f in folds if f != x]
        best = max(cands, key=lambda c: sum(files[(f, c)][0] for f in others))
        seqs = files[(x, best)][3]
        print(f"- fold {x}: " + ", ".join(f"{k} {v['j_mean']:.2f}" for k, v in sorted(seqs.items())))


if __name__ == "__main__":
    main()
