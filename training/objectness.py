#!/usr/bin/env python3
"""Train the objectness head of unsupervised mode (vosd `discover.prompt = "objectness"`).

A small network on the frozen encoder's features of one frame (feat16 and feat8) that gives
each stride-8 cell the probability that it belongs to the sequence's primary object: the
DAVIS 2016 foreground. Discovery turns a moving region into an object's mask with it: the
cells above `discover.objectness_threshold` connected to the region's moving cells
(crates/vosd-engine/src/discover/objectness.rs). It sees no motion: a variant given
feat16(t) - feat16(t-3) as well scored lower on the development fold (per-frame J 0.482
against 0.537).

The result depends much on the seed: on fold a, seed 1 scores 0.537 and seed 2 0.425 (b: 0.571
and 0.547; c: 0.518 and 0.508). Options tried on fold a against that (two seeds where said;
none kept as the recipe): --crop 0.6 (random crops of the feature grids) 0.495; --schedule
cosine --ema 0.998 0.530 / 0.428 (seeds 1 / 2); --dice 1 0.471 / 0.439; --ensemble of seeds 1
and 2 0.473. Both seeds under-cover the held-out objects (predicted area 0.064 and 0.046 of
the frame against 0.094) and score higher at a threshold of 0.35 (0.557 / 0.451): hence
vosd's `discover.objectness_threshold`.

    python training/objectness.py --fold a                      # train on folds b+c, score fold a
    python training/objectness.py --fold all --out models/objectness   # all 30: the shipped head
    python training/objectness.py --fold a --seed 2 --tag=-s2           # another seed, runs/objectness-a-s2
    python training/objectness.py --fold a --ensemble objectness-a,objectness-a-s2   # their mean

Outputs: `training/runs/objectness-<fold>/{final.pt,eval.json}` and, with --out,
`<out>/objectness.onnx`. Inputs are the feature caches of training/data.py (built on first use).
Per step: 16 frames drawn at random from the training sequences and their mirror images,
channel dropout 0.1 on the inputs, binary cross-entropy against the mask's area fraction in
each stride-8 cell; AdamW 1e-3 (2e-4 from 70 % of the steps), weight decay 1e-3, seeded.
Evaluation: per-frame J (IoU) of the head alone (probability > 0.5, bilinear to 512x288) on
the held-out fold's frames but the first and the last; a development figure, not vosd's.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402

H8, W8 = 36, 64  # the stride-8 grid of 512x288


class Objectness(nn.Module):
    """feat16 [N,112,h16,w16], feat8 [N,40,h8,w8] -> logits [N,1,h8,w8] (151k parameters)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(112, 64, 1)
        self.ctx = nn.ModuleList([nn.Conv2d(64, 64, 3, padding=d, dilation=d) for d in (1, 2, 4)])
        self.glob = nn.Linear(64, 64)
        self.f8 = nn.Conv2d(40, 32, 1)
        self.fuse = nn.Conv2d(96, 32, 3, padding=1)
        self.out = nn.Conv2d(32, 1, 1)

    def forward(self, feat16, feat8):
        x = F.relu(self.inp(feat16))
        for conv in self.ctx:
            x = x + F.relu(conv(x))
        x = F.relu(x + self.glob(x.mean((2, 3)))[:, :, None, None])
        x = F.interpolate(x, size=feat8.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, F.relu(self.f8(feat8))], 1)
        return self.out(F.relu(self.fuse(x)))


class Ensemble(nn.Module):
    """The mean of several trained heads' logits (seeds of one recipe): one network to export."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, feat16, feat8):
        return torch.stack([n(feat16, feat8) for n in self.nets]).mean(0)


def load(cache, seqs, flips):
    """Features, stride-8 soft targets and full-size masks of every frame of `seqs`."""
    f16s, f8s, targets, masks = [], [], [], []
    for s in seqs:
        for flip in [False, True] if flips else [False]:
            f = cache.frames(s, flip)
            lab = np.asarray(f["labels"]) > 0
            f16s.append(np.asarray(f["feat16"], np.float32))
            f8s.append(np.asarray(f["feat8"], np.float32))
            y = torch.from_numpy(lab.astype(np.float32))[:, None]
            targets.append(F.adaptive_avg_pool2d(y, (H8, W8)).numpy())
            masks.append(lab)
    return np.concatenate(f16s), np.concatenate(f8s), np.concatenate(targets), masks


def crop(rng, scale, f16, f8, y):
    """One random crop of a batch's feature grids and targets (the same window for all): each side
    a fraction in [scale, 1] of the stride-16 grid, at a random offset; stride 8 follows at twice
    the size. With scale 1 the batch is unchanged."""
    if scale >= 1.0:
        return f16, f8, y
    h16, w16 = f16.shape[-2:]
    hc = max(2, int(round(h16 * rng.uniform(scale, 1.0))))
    wc = max(2, int(round(w16 * rng.uniform(scale, 1.0))))
    y0, x0 = int(rng.integers(0, h16 - hc + 1)), int(rng.integers(0, w16 - wc + 1))
    return (np.ascontiguousarray(f16[..., y0:y0 + hc, x0:x0 + wc]),
            np.ascontiguousarray(f8[..., 2 * y0:2 * (y0 + hc), 2 * x0:2 * (x0 + wc)]),
            np.ascontiguousarray(y[..., 2 * y0:2 * (y0 + hc), 2 * x0:2 * (x0 + wc)]))


THRESHOLDS = (0.2, 0.35, 0.5)  # scored by evaluate (0.5 is the head's own figure)


@torch.no_grad()
def evaluate(net, f16, f8, masks, h, w):
    """Per-sequence mean J of the head alone, {threshold: [J per sequence]}: logits bilinear to
    (h, w), above each threshold's log-odds, on every frame but the first and the last."""
    net.eval()
    js, k = {t: [] for t in THRESHOLDS}, 0
    for lab in masks:
        T = len(lab)
        logits = net(torch.from_numpy(f16[k:k + T]), torch.from_numpy(f8[k:k + T]))
        k += T
        up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()
        for thr in THRESHOLDS:
            p = up > np.log(thr / (1 - thr))
            per = [1.0 if not (p[t] | lab[t]).any() else (p[t] & lab[t]).sum() / (p[t] | lab[t]).sum()
                   for t in range(1, T - 1)]
            js[thr].append(float(np.mean(per)))
    net.train()
    return js


def export(net, out):
    from export_onnx import _export

    os.makedirs(out, exist_ok=True)
    net = net.eval()
    f16, f8 = torch.randn(1, 112, 5, 7), torch.randn(1, 40, 9, 13)
    path = os.path.join(out, "objectness.onnx")
    _export(net, (f16, f8), ["feat16", "feat8"], ["logits"],
            {"feat16": {2: "h16", 3: "w16"}, "feat8": {2: "h8", 3: "w8"}, "logits": {2: "h8", 3: "w8"}},
            path, "vosd objectness head: feat16 [1,112,h16,w16], feat8 [1,40,h8,w8] -> logits [1,1,h8,w8]")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fold", required=True, help="a|b|c (train on the other two) or all")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crop", type=float, default=1.0,
                    help="random crops of the feature grids per batch, side scale in [CROP, 1] (1: none)")
    ap.add_argument("--schedule", choices=["step", "cosine"], default="step",
                    help="learning rate: 1e-3 then 2e-4 from 70 %% of the steps, or cosine from 1e-3 to 0")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="keep the exponential moving average of the weights with this decay (0: off)")
    ap.add_argument("--dice", type=float, default=0.0, help="weight of a soft Dice term beside the cross-entropy")
    ap.add_argument("--tag", default="", help="suffix of the run folder (variants of one fold)")
    ap.add_argument("--out", help="export objectness.onnx into this folder")
    ap.add_argument("--runs", default=os.path.join(HERE, "runs"))
    ap.add_argument("--ensemble", help="no training: average these runs' heads (comma-separated "
                    "run folder names under --runs, e.g. objectness-a,objectness-a-s2), score, export")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    train, val = data.split(a.fold)
    cache = data.Cache()
    if a.ensemble:
        return ensemble(a, cache, val)
    raw = data.RawFrames(cache.davis, cache.w, cache.h)
    for s in train + val:  # feature caches (idempotent)
        cache.build_frames(s, raw=raw)
        if s in train:
            cache.build_frames(s, flip=True, raw=raw)
    run = os.path.join(a.runs, f"objectness-{a.fold}{a.tag}")
    os.makedirs(run, exist_ok=True)
    f16, f8, y, _ = load(cache, train, flips=True)
    print(f"objectness fold {a.fold}: {len(f16)} training frames", flush=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    net = Objectness()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
    t0 = time.time()
    ema = None
    if a.ema > 0:  # the exponential moving average of the weights
        ema = Objectness()
        ema.load_state_dict(net.state_dict())
    for step in range(a.steps):
        if a.schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = 1e-3 * 0.5 * (1 + np.cos(np.pi * step / a.steps))
        elif step == int(0.7 * a.steps):
            for g in opt.param_groups:
                g["lr"] = 2e-4
        idx = rng.integers(0, len(f16), a.batch)
        x16, x8, yb = crop(rng, a.crop, f16[idx], f8[idx], y[idx])
        x16 = F.dropout(torch.from_numpy(x16), 0.1)
        x8 = F.dropout(torch.from_numpy(x8), 0.1)
        logits, yb = net(x16, x8), torch.from_numpy(yb)
        loss = F.binary_cross_entropy_with_logits(logits, yb)
        if a.dice > 0:  # soft Dice per frame: the overlap itself, whatever the object's size
            p = torch.sigmoid(logits)
            inter = (p * yb).sum((1, 2, 3))
            dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + yb.sum((1, 2, 3)) + 1)
            loss = loss + a.dice * dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), net.parameters()):
                    e.mul_(a.ema).add_(p, alpha=1 - a.ema)
        if step % 500 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    if ema is not None:
        net = ema
    torch.save(net.state_dict(), os.path.join(run, "final.pt"))
    result = {"fold": a.fold, "steps": a.steps, "seed": a.seed, "crop": a.crop,
              "schedule": a.schedule, "ema": a.ema, "dice": a.dice,
              "seconds": round(time.time() - t0)}
    finish(a, net, run, result, cache, val)


def finish(a, net, run, result, cache, val):
    """Scores `net` alone on the held-out fold (if any), writes `run`/eval.json and exports."""
    if val:
        v16, v8, _, masks = load(cache, val, flips=False)
        js = evaluate(net, v16, v8, masks, cache.h, cache.w)
        result["per_sequence_j"] = dict(zip(val, js[0.5]))
        result["mean_j"] = float(np.mean(js[0.5]))
        result["mean_j_by_threshold"] = {str(t): float(np.mean(v)) for t, v in js.items()}
        for s, j in zip(val, js[0.5]):
            print(f"  {s}: {j:.3f}")
        by = ", ".join(f"{v:.3f} at {t}" for t, v in result["mean_j_by_threshold"].items())
        print(f"fold {a.fold}: head alone, per-frame J {by}", flush=True)
    with open(os.path.join(run, "eval.json"), "w") as f:
        json.dump(result, f, indent=1)
    if a.out:
        print("exported", export(net, a.out))


def ensemble(a, cache, val):
    """--ensemble: the mean of trained runs' heads, scored on the held-out fold and exported."""
    names = a.ensemble.split(",")
    nets = []
    for name in names:
        net = Objectness()
        net.load_state_dict(torch.load(os.path.join(a.runs, name, "final.pt")))
        nets.append(net.eval())
    net = Ensemble(nets)
    run = os.path.join(a.runs, f"objectness-{a.fold}{a.tag or '-ensemble'}")
    os.makedirs(run, exist_ok=True)
    finish(a, net, run, {"fold": a.fold, "ensemble": names}, cache, val)


if __name__ == "__main__":
    main()
