#!/usr/bin/env python3
"""Prints the fold-validation table from training/runs/fold-*/eval.jsonl (last evaluation of each
run, and the mean over the folds that have one)."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(root=os.path.join(HERE, "runs")):
    rows = []
    for fold in ("a", "b", "c"):
        p = os.path.join(root, f"fold-{fold}", "eval.jsonl")
        if not os.path.exists(p):
            continue
        evs = [json.loads(line) for line in open(p) if line.strip()]
        for e in evs:
            print(f"fold {fold} step {e['step']:5d}: J&F {e['J&F']:.4f} J {e['J']:.4f} F {e['F']:.4f} J-decay {e['J_decay']:.3f}")
        rows.append(evs[-1])
    if rows:
        m = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        print(f"mean of {len(rows)} fold(s), last evaluations: J&F {m('J&F'):.4f} J {m('J'):.4f} F {m('F'):.4f} J-decay {m('J_decay'):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
