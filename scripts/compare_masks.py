#!/usr/bin/env python3
"""Compares two folders of label-mask PNGs frame by frame (e.g. the masks
`vosd eval --out` wrote on x86-64 and under qemu-aarch64).

    python3 scripts/compare_masks.py A/SEQUENCE B/SEQUENCE

Prints, per frame, the pixels whose label differs and the IoU of each
object between the two; then the totals. Exit status 0 when every frame has
the same size in both folders (differences are reported, not failed), 1 if
frames are missing or differ in size. Needs numpy and Pillow.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a_dir, b_dir = Path(sys.argv[1]), Path(sys.argv[2])
    names = sorted(p.name for p in a_dir.glob("*.png"))
    if not names:
        print(f"{a_dir}: no PNG masks", file=sys.stderr)
        return 1
    total_px = total_diff = 0
    worst_iou = 1.0
    for name in names:
        if not (b_dir / name).is_file():
            print(f"{name}: missing in {b_dir}", file=sys.stderr)
            return 1
        a, b = load(a_dir / name), load(b_dir / name)
        if a.shape != b.shape:
            print(f"{name}: sizes differ {a.shape} vs {b.shape}", file=sys.stderr)
            return 1
        diff = int((a != b).sum())
        ious = []
        for obj in sorted(set(np.unique(a)) | set(np.unique(b)) - {0}):
            inter = int(((a == obj) & (b == obj)).sum())
            union = int(((a == obj) | (b == obj)).sum())
            ious.append(inter / union if union else 1.0)
        iou = min(ious) if ious else 1.0
        worst_iou = min(worst_iou, iou)
        total_px += a.size
        total_diff += diff
        print(f"{name}: {diff:6d} pixels differ ({100 * diff / a.size:.3f} %), lowest object IoU {iou:.4f}")
    print(
        f"total: {len(names)} frames, {total_diff} of {total_px} pixels differ "
        f"({100 * total_diff / total_px:.4f} %), lowest object IoU {worst_iou:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
