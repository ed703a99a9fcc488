#!/usr/bin/env python3
"""Train vosd's memory network on frozen EfficientNet-Lite0 features. One command, seeded,
resumable (rerun the same command to continue from <out>/last.pt):

    python training/train.py --fold a        # train on folds b+c, validate on a
    python training/train.py --fold all      # train on all 30 sequences (the shipped model)

Before training it builds, once, the caches it needs (training/cache, ignored by git): encoder
features of every frame (and of mirrored frames), banks of synthetic clips and copy-paste
compositions. See README.md.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import evaluate as E  # noqa: E402
import model as M  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Log:
    def __init__(self, path):
        self.path = path

    def __call__(self, *a):
        line = time.strftime("%H:%M:%S ") + " ".join(str(x) for x in a)
        print(line, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


class Sampler:
    """Batches of 3-frame clips: all samples of one batch have the same kind, drawn per step."""

    def __init__(self, cache, train_seqs, banks, args):
        self.cache = cache
        self.seqs = train_seqs
        self.args = args
        self.frames = {(s, fl): cache.frames(s, fl) for s in train_seqs for fl in ((False, True) if args.flips else (False,))}
        self.synth = [cache.bank(n) for n in banks["synth"]]
        self.comp = [cache.bank(n) for n in banks["comp"]]
        kinds = [("real", args.p_real), ("synth", args.p_synth if self.synth else 0), ("comp", args.p_comp if self.comp else 0)]
        tot = sum(p for _, p in kinds)
        self.kinds = [k for k, p in kinds if p > 0]
        self.probs = np.array([p for _, p in kinds if p > 0]) / tot

    def max_gap(self, step):
        a = self.args
        frac = min(1.0, step / max(1, a.gap_ramp * a.steps))
        return int(round(a.gap_start + (a.gap_end - a.gap_start) * frac))

    def batch(self, step):
        rng = np.random.default_rng([self.args.seed, step])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
        K = 2 if kind == "comp" else 1
        items = []
        while len(items) < self.args.batch:
            feats, lab = getattr(self, "_" + kind)(rng, step)
            feats, lab = self.crop(rng, feats, lab)
            if (lab[0] > 0).sum() >= 64 or len(items) and rng.random() < 0.05:
                items.append((feats, lab))
        out = {}
        for k in data.FEATS:
            out[k] = torch.from_numpy(np.stack([it[0][k] for it in items]).astype(np.float32))
        labels = np.stack([it[1] for it in items]).astype(np.int64)  # [B,3,H,W]
        valid = np.zeros((len(items), K), np.float32)
        for b in range(len(items)):
            for j in range(K):
                if (labels[b, 0] == j + 1).sum() >= 16:
                    valid[b, j] = 1
                else:
                    labels[b][labels[b] == j + 1] = 0  # an object absent from frame 0 is background
        out["labels"] = torch.from_numpy(labels)
        out["valid"] = torch.from_numpy(valid)
        out["kind"] = kind
        return out

    def crop(self, rng, feats, lab):
        """The same stride-16-aligned crop of the three frames' features and labels (crop of the
        full-frame features, so exactly what the encoder gives at run time), placed so that it
        holds the centre of a frame-0 object pixel when it can."""
        cw, ch = self.args.crop_w, self.args.crop_h
        H, W = lab.shape[-2:]
        if not cw or (cw >= W and ch >= H):
            return feats, lab
        cw, ch = min(cw, W), min(ch, H)
        ys, xs = np.nonzero(lab[0])
        if len(xs):
            j = int(rng.integers(len(xs)))
            cx, cy = xs[j] + rng.uniform(-0.35, 0.35) * cw, ys[j] + rng.uniform(-0.35, 0.35) * ch
        else:
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        x0 = int(np.clip(round((cx - cw / 2) / 16), 0, (W - cw) // 16)) * 16
        y0 = int(np.clip(round((cy - ch / 2) / 16), 0, (H - ch) // 16)) * 16
        out = {}
        for k in data.FEATS:
            s_ = data.STRIDES[k]
            out[k] = feats[k][..., y0 // s_ : (y0 + ch) // s_, x0 // s_ : (x0 + cw) // s_]
        return out, lab[..., y0 : y0 + ch, x0 : x0 + cw]

    def _real(self, rng, step):
        for _ in range(50):
            s = self.seqs[int(rng.integers(len(self.seqs)))]
            fl = bool(self.args.flips and rng.random() < 0.5)
            fr = self.frames[(s, fl)]
            T = fr["labels"].shape[0]
            idx = data.clip_indices(rng, T, self.max_gap(step))
            lab = np.asarray(fr["labels"][idx])
            if (lab[0] > 0).sum() >= 64:
                break
        return {k: np.asarray(fr[k][idx]) for k in data.FEATS}, lab

    def _bank(self, banks, rng):
        for _ in range(50):
            bank = banks[int(rng.integers(len(banks)))]
            i = int(rng.integers(bank["labels"].shape[0]))
            order = [0, 1, 2] if rng.random() < 0.5 else [2, 1, 0]
            lab = np.asarray(bank["labels"][i][order])
            if (lab[0] > 0).sum() >= 64:
                break
        return {k: np.asarray(bank[k][i][order]) for k in data.FEATS}, lab

    def _synth(self, rng, step):
        return self._bank(self.synth, rng)

    def _comp(self, rng, step):
        return self._bank(self.comp, rng)


def forward_clip(net, b, top_k=None):
    """The training forward pass over a batch of 3-frame clips: memory = frame 0 (given mask),
    predict frame 1; memory = frames 0 and 1 (its own soft prediction), predict frame 2.
    Returns the aggregated logits at stride 4 of frames 1 and 2, [B,K+1,H4,W4] each."""
    f16, f8, f4 = b["feat16"], b["feat8"], b["feat4"]
    labels, valid = b["labels"], b["valid"]
    B, K = valid.shape
    h, w = f16.shape[-2:]
    keys = net.key(f16.flatten(0, 1)).reshape(B, 3, M.CK, h * w)
    gt0 = torch.stack([(labels[:, 0] == j + 1).float() for j in range(K)], 1)  # [B,K,H,W]
    m4 = M.mask_to_stride4(gt0)  # [B,K,H4,W4]

    def value(t, masks):  # masks [B,K,H4,W4] -> [B,K,Cv,hw]
        mk = masks.flatten(0, 1)[:, None]
        others = (masks.sum(1, keepdim=True) - masks).flatten(0, 1)[:, None]
        v = net.value(f16[:, t].repeat_interleave(K, 0), mk, others)
        return v.reshape(B, K, M.CV, h * w)

    def predict(t, mk, mv):
        r = M.readout(mk, mv, keys[:, t], top_k=top_k)  # [B,K,Cv,hw]
        r = r.reshape(B * K, M.CV, h, w)
        rep = lambda x: x.repeat_interleave(K, 0)  # noqa: E731
        logits = net.decoder(r, rep(f16[:, t]), rep(f8[:, t]), rep(f4[:, t]))
        return M.aggregate(logits.reshape(B, K, *logits.shape[-2:]), valid)

    v0 = value(0, m4 * valid[:, :, None, None])
    z1, p1 = predict(1, keys[:, 0], v0)
    v1 = value(1, p1[:, 1:])
    z2, _ = predict(2, torch.cat([keys[:, 0], keys[:, 1]], 2), torch.cat([v0, v1], 3))
    return z1, z2


def loss_fn(zs, b, frac):
    labels, valid = b["labels"], b["valid"]
    H, W = labels.shape[-2:]
    K = valid.shape[1]
    total, parts = 0.0, {}
    for t, z in zip((1, 2), zs):
        zu = M.upsample4(z, H, W)
        target = labels[:, t]
        ce = M.bootstrapped_ce(zu, target, frac)
        probs = torch.softmax(zu, 1)[:, 1:]
        onehot = torch.stack([(target == j + 1).float() for j in range(K)], 1)
        dice = M.dice_loss(probs, onehot, valid)
        total = total + ce + dice
        parts[f"ce{t}"] = float(ce.detach())
        parts[f"dice{t}"] = float(dice.detach())
    return total / 2, parts


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.lr_floor + (1 - a.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def ce_frac(step, a):
    s0, s1 = a.boot_start * a.steps, a.boot_end * a.steps
    if step < s0:
        return 1.0
    return max(a.boot_min, 1.0 - (1.0 - a.boot_min) * (step - s0) / max(1, s1 - s0))


def save(path, net, opt, step, args, extra=None):
    tmp = path + ".tmp"
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "args": vars(args), **(extra or {})}, tmp)
    os.replace(tmp, path)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fold", required=True, help="a|b|c (train on the other two folds, validate on it) or all")
    ap.add_argument("--out", default=None, help="run directory (default training/runs/fold-<fold>)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lr-floor", type=float, default=0.05, help="final lr as a fraction of --lr (cosine)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip-grad", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is much faster than 2 when the cores are shared)")
    ap.add_argument("--p-real", type=float, default=0.4)
    ap.add_argument("--p-synth", type=float, default=0.3)
    ap.add_argument("--p-comp", type=float, default=0.3)
    ap.add_argument("--gap-start", type=int, default=3)
    ap.add_argument("--gap-end", type=int, default=20)
    ap.add_argument("--gap-ramp", type=float, default=0.7, help="fraction of steps over which the max gap grows")
    ap.add_argument("--boot-start", type=float, default=0.18)
    ap.add_argument("--boot-end", type=float, default=0.64)
    ap.add_argument("--boot-min", type=float, default=0.15)
    ap.add_argument("--crop-w", type=int, default=256, help="training crop width in pixels (multiple of 16; 0 = full frame)")
    ap.add_argument("--crop-h", type=int, default=256, help="training crop height in pixels (multiple of 16)")
    ap.add_argument("--synth-per-seq", type=int, default=40)
    ap.add_argument("--comp-clips", type=int, default=600)
    ap.add_argument("--no-flips", dest="flips", action="store_false")
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--top-k", type=int, default=30, help="readout top-k at evaluation")
    ap.add_argument("--mem-every", type=int, default=5)
    ap.add_argument("--capacity", type=int, default=5)
    ap.add_argument("--cache", default=data.DEFAULT_CACHE)
    ap.add_argument("--davis", default=data.DEFAULT_DAVIS)
    ap.add_argument("--folds-file", default=data.DEFAULT_FOLDS)
    ap.add_argument("--sequences", default=None, help="comma-separated train sequences (overrides the fold; smoke tests)")
    ap.add_argument("--val-sequences", default=None, help="comma-separated validation sequences (with --sequences)")
    ap.add_argument("--prepare-only", action="store_true", help="build the caches, then exit")
    ap.add_argument("--export", default=None, help="after training, export ONNX files + test vector to this folder")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    out = args.out or os.path.join(HERE, "runs", f"fold-{args.fold}")
    os.makedirs(out, exist_ok=True)
    log = Log(os.path.join(out, "train.log"))
    if args.sequences:
        train_seqs = args.sequences.split(",")
        val_seqs = args.val_sequences.split(",") if args.val_sequences else []
    else:
        train_seqs, val_seqs = data.split(args.fold, args.folds_file)
    log(f"fold {args.fold}: train {len(train_seqs)} sequences, validate on {len(val_seqs)}: {','.join(val_seqs)}")
    cache = data.Cache(args.cache, args.davis)
    t0 = time.time()
    banks = data.prepare(cache, train_seqs, val_seqs, args.synth_per_seq, args.comp_clips, log=log, flips=args.flips)
    log(f"caches ready in {time.time() - t0:.0f}s")
    if args.prepare_only:
        return None

    torch.manual_seed(args.seed)
    net = M.MemNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    step = 0
    last = os.path.join(out, "last.pt")
    if os.path.exists(last):
        ck = torch.load(last, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        log(f"resumed from {last} at step {step}")
    else:
        with open(os.path.join(out, "args.json"), "w") as f:
            json.dump(vars(args), f, indent=2)
    log(f"params {M.count_params(net)} (key {M.count_params(net.key)}, value {M.count_params(net.value)}, "
        f"decoder {M.count_params(net.decoder)}); MACs/frame at 512x288, 1 object: {M.macs_per_frame(net)}")
    sampler = Sampler(cache, train_seqs, banks, args)
    net.train()
    last_save = time.time()
    t_win, n_win = time.time(), 0
    agg = {}
    while step < args.steps:
        torch.manual_seed(args.seed * 1_000_003 + step)
        b = sampler.batch(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        zs = forward_clip(net, b)
        loss, parts = loss_fn(zs, b, ce_frac(step, args))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
        opt.step()
        step += 1
        n_win += args.batch
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            agg.setdefault(b["kind"] + ":" + k if k == "loss" else k, []).append(v)
        if step % 50 == 0 or step == args.steps:
            dt = time.time() - t_win
            msg = " ".join(f"{k} {np.mean(v):.4f}" for k, v in sorted(agg.items()))
            log(f"step {step}/{args.steps} lr {lr_at(step, args):.2e} gap {sampler.max_gap(step)} "
                f"ce_frac {ce_frac(step, args):.2f} {n_win / dt:.1f} samples/s | {msg}")
            t_win, n_win, agg = time.time(), 0, {}
        if time.time() - last_save > args.ckpt_minutes * 60 or step == args.steps:
            save(last, net, opt, step, args)
            last_save = time.time()
        if val_seqs and (step % args.eval_every == 0 or step == args.steps):
            save(last, net, opt, step, args)
            res = E.evaluate(net, cache, val_seqs, args.top_k, args.mem_every, args.capacity)
            res["step"] = step
            with open(os.path.join(out, "eval.jsonl"), "a") as f:
                f.write(json.dumps(res) + "\n")
            log(f"EVAL step {step}: J&F {res['J&F']:.4f} J {res['J']:.4f} F {res['F']:.4f} "
                f"J-decay {res['J_decay']:.3f} ({res['seconds']:.0f}s) " +
                " ".join(f"{s}={v['JF']:.3f}" for s, v in res["sequences"].items()))
            t_win, n_win = time.time(), 0
    final = os.path.join(out, "final.pt")
    if not os.path.exists(final):
        save(final, net, opt, step, args)
        log(f"done: {final}")
    if args.export:
        import export_onnx

        export_onnx.export(net, args.export, log=log, int8_seqs=train_seqs[::3],
                           report_extra={"checkpoint": os.path.relpath(final, data.REPO), "step": step,
                                         "train_args": {k: vars(args)[k] for k in ("fold", "steps", "seed", "lr", "batch")}})
    return net


if __name__ == "__main__":
    main()
