#!/usr/bin/env python3
"""Fold evaluation of a trained memory network, in PyTorch, with the inference procedure the
Rust engine implements (README.md, "Inference"): J (IoU) and F (boundary F-measure) per object
and frame, DAVIS-style (first and last frame skipped, 480p ground truth, mean / decay).

It is an estimate for choosing settings; the reported figure comes from `vosd eval`.

    python training/evaluate.py --ckpt training/runs/fold-a/last.pt --fold a
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
import model as M  # noqa: E402


# ----------------------------------------------------------------------------- metrics


def boundary(m):
    """Pixels that differ from their east, south or south-east neighbour."""
    b = np.zeros_like(m, dtype=bool)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def dilate(b, r):
    """Binary dilation with a disk of radius r (Euclidean distance <= r)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~b) <= r


def f_measure(pred, gt):

    h, w = gt.shape
    r = math.ceil(0.008 * math.sqrt(h * h + w * w))
    pb, gb = boundary(pred), boundary(gt)
    npb, ngb = pb.sum(), gb.sum()
    if npb == 0 and ngb == 0:
        return 1.0
    if npb == 0:
        p, rc = 1.0, 0.0
    elif ngb == 0:
        p, rc = 0.0, 1.0
    else:
        gd = dilate(gb, r)
        pd = dilate(pb, r)
        p = (pb & gd).sum() / npb
        rc = (gb & pd).sum() / ngb
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def j_measure(pred, gt):
    u = (pred | gt).sum()
    return 1.0 if u == 0 else (pred & gt).sum() / u


def decay(v):
    v = np.asarray(v)
    q = max(1, int(round(len(v) / 4)))
    return float(v[:q].mean() - v[-q:].mean())


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def run_sequence(net, feats, first_labels, top_k=30, mem_every=5, capacity=5, use_prev=True):
    """feats: dict of [T,C,h,w] arrays; first_labels: [H,W] u8 at the processing size.
    Yields per frame t the aggregated probabilities [N+1, H4, W4] at stride 4 (t = 0: the given
    mask) and the object ids."""
    ids = [int(i) for i in np.unique(first_labels) if i != 0]
    T = feats["feat16"].shape[0]
    f = lambda k, t: torch.from_numpy(np.asarray(feats[k][t], dtype=np.float32))[None]  # noqa: E731
    lab = torch.from_numpy(np.array(first_labels))
    masks = torch.stack([(lab == i).float() for i in ids])[:, None]  # [N,1,H,W]
    m4 = M.mask_to_stride4(masks)  # [N,1,H4,W4]
    bg = (1 - m4.sum(0, keepdim=True)).clamp(0, 1)
    probs = torch.cat([bg, m4], 0)[:, 0]  # [N+1,H4,W4]
    yield 0, probs, ids
    f16 = f("feat16", 0)
    k = net.key(f16)  # [1,Ck,h,w]
    v = net.value(f16, m4, m4.sum(0, keepdim=True) - m4)  # [N,Cv,h,w]
    perm = (k.flatten(2)[0], v.flatten(2))
    work = []
    prev = None
    for t in range(1, T):
        f16, f8, f4 = f("feat16", t), f("feat8", t), f("feat4", t)
        qk = net.key(f16)
        h, w = qk.shape[-2:]
        mem = [perm] + work + ([prev] if (use_prev and prev is not None and not any(prev is x for x in work)) else [])
        mk = torch.cat([m[0] for m in mem], 1)[None]  # [1,Ck,M]
        mv = torch.cat([m[1] for m in mem], 2)[None]  # [1,N,Cv,M]
        r = M.readout(mk, mv, qk.flatten(2), top_k=top_k)[0]  # [N,Cv,Q]
        r = r.reshape(r.shape[0], r.shape[1], h, w)
        logits = net.decoder(r, f16, f8, f4)  # [N,1,H4,W4]
        _, p = M.aggregate(logits[:, 0][None])
        p = p[0]  # [N+1,H4,W4]
        yield t, p, ids
        po = p[1:, None]
        v = net.value(f16, po, po.sum(0, keepdim=True) - po)
        entry = (qk.flatten(2)[0], v.flatten(2))
        if t % mem_every == 0:
            work.append(entry)
            if len(work) > capacity:
                work.pop(0)
        prev = entry


def to_labels(p, out_h, out_w, proc_h, proc_w):
    """[N+1,H4,W4] -> label map at out size: x4 bilinear to the processing size, bilinear to the
    output size, argmax."""
    x = M.upsample4(p[None], proc_h, proc_w)
    if (out_h, out_w) != (proc_h, proc_w):
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    return x[0].argmax(0).numpy().astype(np.uint8)


def evaluate(net, cache, seqs, top_k=30, mem_every=5, capacity=5, log=print, use_prev=True):
    net.eval()
    per_seq = {}
    t0 = time.time()
    nframes = 0
    for seq in seqs:
        feats = cache.frames(seq)
        _, pngs = data.frame_files(cache.davis, seq)
        Js, Fs = {}, {}
        for t, p, ids in run_sequence(net, feats, feats["labels"][0], top_k, mem_every, capacity, use_prev):
            nframes += 1
            if t == 0 or t == len(pngs) - 1:
                continue
            gt = data.load_mask(pngs[t])
            lab = to_labels(p, gt.shape[0], gt.shape[1], cache.h, cache.w)
            for j, i in enumerate(ids):
                pr, g = lab == (j + 1), gt == i
                Js.setdefault(i, []).append(j_measure(pr, g))
                Fs.setdefault(i, []).append(f_measure(pr, g))
        per_seq[seq] = {
            "J": float(np.mean([np.mean(v) for v in Js.values()])),
            "F": float(np.mean([np.mean(v) for v in Fs.values()])),
            "J_decay": float(np.mean([decay(v) for v in Js.values()])),
        }
        per_seq[seq]["JF"] = (per_seq[seq]["J"] + per_seq[seq]["F"]) / 2
    J = float(np.mean([s["J"] for s in per_seq.values()]))
    Fm = float(np.mean([s["F"] for s in per_seq.values()]))
    out = {
        "J&F": (J + Fm) / 2,
        "J": J,
        "F": Fm,
        "J_decay": float(np.mean([s["J_decay"] for s in per_seq.values()])),
        "sequences": per_seq,
        "settings": {"top_k": top_k, "mem_every": mem_every, "capacity": capacity, "size": [cache.w, cache.h]},
        "seconds": time.time() - t0,
        "frames": nframes,
    }
    net.train()
    return out


class OnnxNet:
    """The exported ONNX files (fp32 or int8) behind MemNet's interface, run by onnxruntime."""

    def __init__(self, folder, suffix="", threads=1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        mk = lambda n: ort.InferenceSession(os.path.join(folder, f"{n}{suffix}.onnx"), so, providers=["CPUExecutionProvider"])  # noqa: E731
        self.sk, self.sv, self.sd = mk("key"), mk("value"), mk("decoder")

    @staticmethod
    def _run(sess, **kw):
        out = sess.run(None, {k: np.ascontiguousarray(v.numpy(), dtype=np.float32) for k, v in kw.items()})[0]
        return torch.from_numpy(out)

    def key(self, f16):
        return self._run(self.sk, feat16=f16)

    def value(self, f16, mask, others):
        return self._run(self.sv, feat16=f16, mask=mask, others=others)

    def decoder(self, r, f16, f8, f4):
        return self._run(self.sd, readout=r, feat16=f16, feat8=f8, feat4=f4)

    def eval(self):
        return self

    def train(self):
        return self


def load_net(path):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = M.MemNet()
    net.load_state_dict(ck["model"])
    net.eval()
    return net, ck


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=None, help="a PyTorch checkpoint")
    ap.add_argument("--onnx", default=None, help="or a folder of exported ONNX files (run by onnxruntime)")
    ap.add_argument("--onnx-suffix", default="", help="'_int8' for the quantised files")
    ap.add_argument("--fold", required=True, help="a|b|c: evaluate on this fold's validation sequences")
    ap.add_argument("--sequences", default=None, help="comma-separated, overrides --fold")
    ap.add_argument("--top-k", type=int, default=30, help="0 = full softmax")
    ap.add_argument("--mem-every", type=int, default=5)
    ap.add_argument("--capacity", type=int, default=5)
    ap.add_argument("--no-prev", action="store_true", help="do not keep the previous frame in memory")
    ap.add_argument("--cache", default=data.DEFAULT_CACHE)
    ap.add_argument("--davis", default=data.DEFAULT_DAVIS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the JSON result here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = OnnxNet(args.onnx, args.onnx_suffix, args.threads) if args.onnx else load_net(args.ckpt)[0]
    seqs = args.sequences.split(",") if args.sequences else data.split(args.fold)[1]
    cache = data.Cache(args.cache, args.davis)
    for s in seqs:
        cache.build_frames(s)
    res = evaluate(net, cache, seqs, args.top_k or None, args.mem_every, args.capacity, use_prev=not args.no_prev)
    for s, v in res["sequences"].items():
        print(f"{s:20s} J {v['J']:.3f} F {v['F']:.3f} J&F {v['JF']:.3f} decay {v['J_decay']:.3f}")
    print(f"MEAN J&F {res['J&F']:.4f} J {res['J']:.4f} F {res['F']:.4f} J-decay {res['J_decay']:.3f} "
          f"({res['frames']} frames, {res['seconds']:.0f}s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
