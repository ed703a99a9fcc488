#!/usr/bin/env python3
"""Export a trained memory network to ONNX (key.onnx, value.onnx, decoder.onnx) with a test
vector for the Rust parity tests. The interface is documented in training/README.md.

    python training/export_onnx.py --ckpt training/runs/fold-all/final.pt --out models/memnet

The test vector (testdata/ in the output folder) is one real two-frame step at a small odd
processing size (200x120, so that the grids are not multiples of each other): the encoder's
features of two frames, two objects' masks, and PyTorch's outputs of every stage, including the
readout (top-k 30 softmax) and the soft aggregation that the Rust engine implements itself.
Every tensor is a raw little-endian f32 file in NCHW order; testvector.json gives names, files
and shapes.
"""

import argparse
import hashlib
import io
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
import model as M  # noqa: E402

OPSET = 13
TV_W, TV_H = 200, 120
TV_SEQ, TV_FRAMES = "bear", (0, 5)
TV_TOPK = 30


def _export(module, args, names_in, names_out, dynamic, path, doc):
    import onnx

    f = io.BytesIO()
    torch.onnx.export(
        module, args, f, input_names=names_in, output_names=names_out, opset_version=OPSET,
        dynamic_axes=dynamic, dynamo=False, do_constant_folding=True,
    )
    m = onnx.load_from_string(f.getvalue())
    m.ir_version = 8
    m.producer_name = "vosd-training"
    m.doc_string = doc
    for n in m.graph.node:  # plain half_pixel (equal to pytorch_half_pixel for outputs > 1 cell)
        if n.op_type == "Resize":
            for a in n.attribute:
                if a.name == "coordinate_transformation_mode" and a.s == b"pytorch_half_pixel":
                    a.s = b"half_pixel"
    onnx.checker.check_model(m)
    onnx.save(m, path)


def export_models(net, out):
    net = net.eval()
    os.makedirs(out, exist_ok=True)
    h16, w16, h8, w8, h4, w4 = 5, 7, 9, 13, 18, 26
    f16, f8, f4 = torch.randn(1, 112, h16, w16), torch.randn(1, 40, h8, w8), torch.randn(1, 24, h4, w4)
    _export(net.key, (f16,), ["feat16"], ["key"], {"feat16": {2: "h16", 3: "w16"}, "key": {2: "h16", 3: "w16"}},
            os.path.join(out, "key.onnx"), "vosd memory network: key projection. feat16 [1,112,h,w] -> key [1,64,h,w]")
    m = torch.rand(2, 1, h4, w4)
    _export(net.value, (f16, m, m), ["feat16", "mask", "others"], ["value"],
            {"feat16": {2: "h16", 3: "w16"}, "mask": {0: "n", 2: "h4", 3: "w4"}, "others": {0: "n", 2: "h4", 3: "w4"},
             "value": {0: "n", 2: "h16", 3: "w16"}},
            os.path.join(out, "value.onnx"),
            "vosd memory network: value encoder. feat16 [1,112,h,w], mask/others [N,1,ceil(H/4),ceil(W/4)] -> value [N,64,h,w]")
    r = torch.randn(2, M.CV, h16, w16)
    _export(net.decoder, (r, f16, f8, f4), ["readout", "feat16", "feat8", "feat4"], ["logits"],
            {"readout": {0: "n", 2: "h16", 3: "w16"}, "feat16": {2: "h16", 3: "w16"}, "feat8": {2: "h8", 3: "w8"},
             "feat4": {2: "h4", 3: "w4"}, "logits": {0: "n", 2: "h4", 3: "w4"}},
            os.path.join(out, "decoder.onnx"),
            "vosd memory network: decoder. readout [N,64,h16,w16], feat16, feat8, feat4 -> logits [N,1,h4,w4]")


@torch.no_grad()
def write_testvector(net, out):
    net = net.eval()
    td = os.path.join(out, "testdata")
    os.makedirs(td, exist_ok=True)
    enc = data.Encoder()
    jpgs, pngs = data.frame_files(data.DEFAULT_DAVIS, TV_SEQ)
    tensors = {}
    feats = []
    for i, t in enumerate(TV_FRAMES):
        img = data.resize_bilinear_u8(data.load_rgb(jpgs[t]), TV_W, TV_H)
        f = enc(img)
        feats.append({k: torch.from_numpy(v[None]) for k, v in f.items()})
        for k in data.FEATS if i == 1 else ("feat16",):  # frame 0 needs only feat16 (key, value)
            tensors[f"frame{i}_{k}"] = f[k][None]
    lab = data.resize_labels(data.load_mask(pngs[TV_FRAMES[0]]), TV_W, TV_H)
    obj1 = torch.from_numpy((lab == 1).astype(np.float32))
    obj2 = torch.zeros_like(obj1)
    obj2[10:50, 120:180] = 1  # a second, made-up object (a box) to exercise the multi-object path
    obj1 = obj1 * (1 - obj2)
    masks = M.mask_to_stride4(torch.stack([obj1, obj2])[:, None])  # [2,1,h4,w4]
    others = masks.sum(0, keepdim=True) - masks
    tensors["frame0_mask"] = masks.numpy()
    tensors["frame0_others"] = others.numpy()
    k0 = net.key(feats[0]["feat16"])
    k1 = net.key(feats[1]["feat16"])
    v0 = net.value(feats[0]["feat16"], masks, others)
    h, w = k1.shape[-2:]
    r = M.readout(k0.flatten(2), v0.flatten(2)[None], k1.flatten(2), top_k=TV_TOPK)[0].reshape(2, M.CV, h, w)
    logits = net.decoder(r, feats[1]["feat16"], feats[1]["feat8"], feats[1]["feat4"])
    z, p = M.aggregate(logits[:, 0][None])
    tensors.update({
        "frame0_key": k0.numpy(), "frame1_key": k1.numpy(), "frame0_value": v0.numpy(),
        "frame1_readout": r.numpy(), "frame1_logits": logits.numpy(), "frame1_probs": p[0].numpy(),
    })
    manifest = {
        "about": "One step of vosd's memory network at a 200x120 processing size (bear, frames 0 and 5; "
                 "object 1 = the bear, object 2 = a made-up box). Raw little-endian f32, NCHW.",
        "processing_size": [TV_W, TV_H], "top_k": TV_TOPK, "frames": list(TV_FRAMES), "sequence": TV_SEQ,
        "stages": {
            "key.onnx": {"feat16": "frame0_feat16 -> frame0_key; frame1_feat16 -> frame1_key"},
            "value.onnx": {"feat16": "frame0_feat16", "mask": "frame0_mask", "others": "frame0_others", "value": "frame0_value"},
            "readout": "memory = frame0_key/frame0_value, query = frame1_key -> frame1_readout (top_k, README formula)",
            "decoder.onnx": {"readout": "frame1_readout", "feat16": "frame1_feat16", "feat8": "frame1_feat8",
                              "feat4": "frame1_feat4", "logits": "frame1_logits"},
            "aggregate": "frame1_logits [2,1,h4,w4] -> frame1_probs [3,h4,w4] (channel 0 = background)",
        },
        "tensors": {},
    }
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype="<f4")
        arr.tofile(os.path.join(td, name + ".f32"))
        manifest["tensors"][name] = {"file": f"testdata/{name}.f32", "shape": list(arr.shape)}
    with open(os.path.join(out, "testvector.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def _load(out, name, man):
    t = man["tensors"][name]
    return np.fromfile(os.path.join(out, t["file"]), dtype="<f4").reshape(t["shape"])


def np_readout(mk, mv, qk, top_k):
    """A naive numpy reference of the readout: mk [Ck,M], mv [N,Cv,M], qk [Ck,Q] -> [N,Cv,Q]."""
    ck = mk.shape[0]
    s = (2 * mk.T.astype(np.float64) @ qk - (mk.astype(np.float64) ** 2).sum(0)[:, None]) / np.sqrt(ck)  # [M,Q]
    out = np.zeros((mv.shape[0], mv.shape[1], qk.shape[1]))
    for j in range(qk.shape[1]):
        col = s[:, j]
        idx = np.argsort(-col, kind="stable")[:top_k]
        wts = np.exp(col[idx] - col[idx].max())
        wts /= wts.sum()
        out[:, :, j] = (mv[:, :, idx] * wts).sum(-1)
    return out


def np_aggregate(logits):
    """logits [N,H,W] -> probs [N+1,H,W]."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    q = np.concatenate([np.prod(1 - p, 0, keepdims=True), p], 0).clip(1e-7, 1 - 1e-7)
    z = np.log(q / (1 - q))
    e = np.exp(z - z.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def check_testvector(out, verbose=False):
    """onnxruntime on the exported files and the numpy references against the stored PyTorch
    outputs; returns the largest relative error (max abs error / max abs value) over stages."""
    import onnxruntime as ort

    man = json.load(open(os.path.join(out, "testvector.json")))
    L = lambda n: _load(out, n, man)  # noqa: E731
    sess = {n: ort.InferenceSession(os.path.join(out, n + ".onnx"), providers=["CPUExecutionProvider"]) for n in ("key", "value", "decoder")}
    errs = {}

    def rel(name, got, want):
        errs[name] = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))

    for i in (0, 1):
        rel(f"key{i}", sess["key"].run(None, {"feat16": L(f"frame{i}_feat16")})[0], L(f"frame{i}_key"))
    rel("value", sess["value"].run(None, {"feat16": L("frame0_feat16"), "mask": L("frame0_mask"), "others": L("frame0_others")})[0], L("frame0_value"))
    k0, v0, k1 = L("frame0_key"), L("frame0_value"), L("frame1_key")
    r = np_readout(k0.reshape(k0.shape[1], -1), v0.reshape(v0.shape[0], v0.shape[1], -1), k1.reshape(k1.shape[1], -1), man["top_k"])
    rel("readout", r.reshape(L("frame1_readout").shape), L("frame1_readout"))
    rel("decoder", sess["decoder"].run(None, {"readout": L("frame1_readout"), "feat16": L("frame1_feat16"), "feat8": L("frame1_feat8"), "feat4": L("frame1_feat4")})[0], L("frame1_logits"))
    rel("aggregate", np_aggregate(L("frame1_logits")[:, 0]), L("frame1_probs"))
    if verbose:
        print("relative errors:", json.dumps(errs))
    return max(errs.values())


@torch.no_grad()
def calibration_samples(net, seqs, cache=None, per_seq=2, top_k=TV_TOPK):
    """Inputs for int8 calibration from cached 512x288 features of `seqs`: memory = frame 0 with
    its given mask, queries at 1/3 and 2/3 of the sequence."""
    cache = cache or data.Cache()
    out = {"key": [], "value": [], "decoder": []}
    for s in seqs:
        cache.build_frames(s)
        fr = cache.frames(s)
        T = fr["labels"].shape[0]
        g = lambda k, t: torch.from_numpy(np.asarray(fr[k][t], dtype=np.float32))[None]  # noqa: E731
        lab = torch.from_numpy((np.array(fr["labels"][0]) > 0).astype(np.float32))
        m4 = M.mask_to_stride4(lab[None, None])
        z = torch.zeros_like(m4)
        k0 = net.key(g("feat16", 0))
        v0 = net.value(g("feat16", 0), m4, z)
        out["value"].append({"feat16": g("feat16", 0), "mask": m4, "others": z})
        for t in [T * (i + 1) // (per_seq + 1) for i in range(per_seq)]:
            kt = net.key(g("feat16", t))
            h, w = kt.shape[-2:]
            r = M.readout(k0.flatten(2), v0.flatten(2)[None], kt.flatten(2), top_k=top_k)[0].reshape(1, M.CV, h, w)
            out["key"].append({"feat16": g("feat16", t)})
            out["decoder"].append({"readout": r, "feat16": g("feat16", t), "feat8": g("feat8", t), "feat4": g("feat4", t)})
    return {k: [{n: np.ascontiguousarray(x.numpy(), dtype=np.float32) for n, x in d.items()} for d in v] for k, v in out.items()}


def quantize(net, out, seqs, log=print):
    """key_int8.onnx, value_int8.onnx, decoder_int8.onnx: static QDQ quantisation (int8 weights per
    channel, uint8 activations), as for the encoder; returns their errors against fp32 on the
    test vector (relative max and mean abs error)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    import onnxruntime as ort

    samples = calibration_samples(net, seqs)

    class Reader(CalibrationDataReader):
        def __init__(self, items):
            self.it = iter(items)

        def get_next(self):
            return next(self.it, None)

    for n in ("key", "value", "decoder"):
        quantize_static(os.path.join(out, n + ".onnx"), os.path.join(out, n + "_int8.onnx"), Reader(samples[n]),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    man = json.load(open(os.path.join(out, "testvector.json")))
    L = lambda name: _load(out, name, man)  # noqa: E731
    feeds = {
        "key": {"feat16": L("frame1_feat16")},
        "value": {"feat16": L("frame0_feat16"), "mask": L("frame0_mask"), "others": L("frame0_others")},
        "decoder": {"readout": L("frame1_readout"), "feat16": L("frame1_feat16"), "feat8": L("frame1_feat8"), "feat4": L("frame1_feat4")},
    }
    errs = {}
    for n, feed in feeds.items():
        a = ort.InferenceSession(os.path.join(out, n + ".onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        b = ort.InferenceSession(os.path.join(out, n + "_int8.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        errs[n] = {"rel_max": float(np.abs(a - b).max() / np.abs(a).max()), "rel_mean": float(np.abs(a - b).mean() / np.abs(a).mean())}
    log(f"int8 against fp32 on the test vector: {json.dumps(errs)}")
    return {"int8_vs_fp32_testvector": errs, "int8_calibration": {"sequences": seqs, "frames_per_sequence": 2}}


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def export(net, out, log=print, report_extra=None, int8_seqs=None):
    export_models(net, out)
    write_testvector(net, out)
    err = check_testvector(out)
    names = ["key.onnx", "value.onnx", "decoder.onnx"]
    q = {}
    if int8_seqs:
        q = quantize(net, out, int8_seqs, log=log)
        names += [n.replace(".onnx", "_int8.onnx") for n in names]
    files = {n: {"bytes": os.path.getsize(os.path.join(out, n)), "sha256": sha256(os.path.join(out, n))} for n in names}
    report = {"files": files, "testvector_max_rel_error_onnxruntime": err, "opset": OPSET,
              "params": {k: M.count_params(getattr(net, k)) for k in ("key", "value", "decoder")}}
    report.update(q)
    report.update(report_extra or {})
    with open(os.path.join(out, "export_report.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log(f"exported to {out}: test vector max relative error {err:.2e}")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", default=os.path.join(data.REPO, "models", "memnet"))
    ap.add_argument("--int8", action="store_true", help="also write *_int8.onnx, calibrated on the run's train sequences")
    args = ap.parse_args()
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    net = M.MemNet()
    net.load_state_dict(ck["model"])
    extra = {"checkpoint": os.path.relpath(args.ckpt, data.REPO), "step": ck.get("step"),
             "train_args": {k: ck["args"].get(k) for k in ("fold", "steps", "seed", "lr", "batch")}}
    seqs = None
    if args.int8:
        fold = ck["args"].get("fold")
        seqs = ck["args"]["sequences"].split(",") if ck["args"].get("sequences") else data.split(fold)[0]
        seqs = seqs[::3]  # every third train sequence, 2 frames each
    print(json.dumps(export(net, args.out, report_extra=extra, int8_seqs=seqs), indent=2))
    check_testvector(args.out, verbose=True)


if __name__ == "__main__":
    main()
