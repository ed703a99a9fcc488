#!/usr/bin/env python3
"""What false discoveries cost in unsupervised mode: the DAVIS 2016 unsupervised J of masks
written by `vosd segment --discover` (one folder per sequence), as they are and with every
discovered object removed that is less than 20 % inside the annotation over the sequence (an
oracle: no method knows this). Frames scored as in the toolkit: all but the first and last.

    for s in bear boat ...; do vosd segment --discover --fps 24 --size 512x288 --set discover.max_objects=8 \\
        --frames ../shared/data/davis2016/JPEGImages/480p/$s --out MASKS/$s; done
    python3 scripts/discover_oracle.py MASKS [DAVIS_ROOT]
"""
import os
import sys

import numpy as np
from PIL import Image

INSIDE = 0.2


def jaccard(pred, gt):
    union = (pred | gt).sum()
    return 1.0 if union == 0 else (pred & gt).sum() / union


def main():
    masks = sys.argv[1]
    davis = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/davis2016"
    rows = []
    for seq in sorted(os.listdir(masks)):
        gt_dir = os.path.join(davis, "Annotations/480p", seq)
        if not os.path.isdir(os.path.join(masks, seq)) or not os.path.isdir(gt_dir):
            continue
        names = sorted(os.listdir(gt_dir))
        gts = [np.array(Image.open(os.path.join(gt_dir, n)).convert("L")) > 0 for n in names]
        preds = [np.array(Image.open(os.path.join(masks, seq, n))) for n in names]
        inside, area = {}, {}
        for g, p in zip(gts, preds):
            for o in np.unique(p):
                if o:
                    m = p == o
                    inside[o] = inside.get(o, 0) + (m & g).sum()
                    area[o] = area.get(o, 0) + m.sum()
        false = [o for o in area if inside[o] / area[o] < INSIDE]
        pairs = list(zip(preds[1:-1], gts[1:-1]))
        as_is = np.mean([jaccard(p > 0, g) for p, g in pairs])
        oracle = np.mean([jaccard((p > 0) & ~np.isin(p, false), g) for p, g in pairs])
        rows.append((as_is, oracle))
        print(f"{seq:20s} J {as_is:.3f} -> {oracle:.3f} without {len(false)} false object(s)")
    if rows:
        print(f"mean J {np.mean([r[0] for r in rows]):.3f} -> {np.mean([r[1] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
