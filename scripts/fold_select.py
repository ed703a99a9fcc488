#!/usr/bin/env python3
"""The fold protocol's choice and report (issue 13), from scripts/fold_eval.sh's JSON files.

For each held-out fold X, the memory setting is the candidate with the best mean J&F on the
other two folds (each scored by the model that did not train on it); fold X is then reported
with that setting. Label propagation has nothing to choose. Prints a markdown table.

    python3 scripts/fold_select.py OUT_DIR [WxH]
"""
import glob
import json
import os
import sys


def jf(path):
    with open(path) as f:
        r = json.load(f)
    s = r["overall"]
    return s["jf_mean"], s["j_mean"], s["f_mean"], s["j_decay"]


def main():
    out = sys.argv[1]
    size = sys.argv[2] if len(sys.argv) > 2 else "512x288"
    folds = "abc"
    cands = sorted({os.path.basename(p)[len("mn-a-"):-len(f"-{size}.json")]
                    for p in glob.glob(os.path.join(out, f"mn-a-*-{size}.json"))})
    mn = {(f, c): jf(os.path.join(out, f"mn-{f}-{c}-{size}.json")) for f in folds for c in cands
          if os.path.exists(os.path.join(out, f"mn-{f}-{c}-{size}.json"))}
    lp = {f: jf(os.path.join(out, f"lp-{f}-{size}.json")) for f in folds
          if os.path.exists(os.path.join(out, f"lp-{f}-{size}.json"))}
    print(f"Processing size {size}. Candidates: {', '.join(cands)}.\n")
    print("| fold | chosen on the other two | memory network J&F (J, F, J decay) | label propagation J&F (J, F, J decay) |")
    print("|---|---|---|---|")
    rep_mn, rep_lp = [], []
    for x in folds:
        others = [f for f in folds if f != x]
        usable = [c for c in cands if all((f, c) in mn for f in folds)]
        if not usable:
            continue
        choice = max(usable, key=lambda c: sum(mn[(f, c)][0] for f in others) / 2)
        m = mn[(x, choice)]
        rep_mn.append(m[0])
        l = lp.get(x)
        if l:
            rep_lp.append(l[0])
        lps = f"{l[0]:.3f} ({l[1]:.3f}, {l[2]:.3f}, {l[3]:.3f})" if l else "—"
        print(f"| {x} | {choice} | {m[0]:.3f} ({m[1]:.3f}, {m[2]:.3f}, {m[3]:.3f}) | {lps} |")
    if rep_mn:
        print(f"| mean | | **{sum(rep_mn) / len(rep_mn):.3f}** | "
              + (f"**{sum(rep_lp) / len(rep_lp):.3f}** |" if rep_lp else "— |"))
    print("\nEvery candidate on every fold (J&F; for reference, not for choosing):\n")
    print("| candidate | " + " | ".join(folds) + " |")
    print("|---|" + "---|" * len(folds))
    for c in cands:
        print(f"| {c} | " + " | ".join(f"{mn[(f, c)][0]:.3f}" if (f, c) in mn else "—" for f in folds) + " |")


if __name__ == "__main__":
    main()
