"""DAVIS 2016 data, the frozen encoder, feature caches and the three kinds of training clips.

Everything here is offline and deterministic (every random draw comes from a numpy Generator
seeded from fixed integers). Images go through exactly the preprocessing of vosd's Rust engine:

* resize from the source size to the processing size (default 512x288) with
  `vosd_engine::frame::resize_bilinear` (pixel centres aligned, `(x + 0.5) * scale - 0.5`,
  clamped, no anti-aliasing, result rounded to u8 with `+ 0.5` and truncation);
* normalise: `(px / 255 - mean) / std` with ImageNet mean (0.485, 0.456, 0.406) and
  std (0.229, 0.224, 0.225), RGB, NCHW (`crates/vosd-engine/src/encoder.rs::normalise`);
* the frozen encoder `models/encoder_lite0_fp32.onnx` through onnxruntime.

Caches (fp16 features, u8 label maps) are written as .npy files under the cache directory
(default training/cache, ignored by git). They are derived data; delete them freely.
"""

import hashlib
import json
import os
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DAVIS = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "davis2016"))
DEFAULT_FOLDS = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "davis2016-folds.txt"))
DEFAULT_CACHE = os.path.join(HERE, "cache")
ENCODER = os.path.join(REPO, "models", "encoder_lite0_fp32.onnx")

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FEATS = ("feat4", "feat8", "feat16")
CHANNELS = {"feat4": 24, "feat8": 40, "feat16": 112}
STRIDES = {"feat4": 4, "feat8": 8, "feat16": 16}
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- dataset, folds


def read_folds(path=DEFAULT_FOLDS):
    folds = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, seqs = line.split(":", 1)
            folds[name.strip().replace("fold-", "")] = [s.strip() for s in seqs.split(",") if s.strip()]
    return folds


def split(fold, folds_path=DEFAULT_FOLDS):
    """(train sequences, validation sequences) for fold 'a'|'b'|'c'|'all'."""
    folds = read_folds(folds_path)
    every = sorted(s for v in folds.values() for s in v)
    if fold == "all":
        return every, []
    if fold not in folds:
        raise SystemExit(f"unknown fold {fold!r}; have {sorted(folds)} and 'all'")
    val = sorted(folds[fold])
    return sorted(s for s in every if s not in val), val


def frame_files(davis, seq):
    root = os.path.join(davis, "JPEGImages", "480p", seq)
    names = sorted(f for f in os.listdir(root) if f.endswith(".jpg"))
    return [os.path.join(root, n) for n in names], [
        os.path.join(davis, "Annotations", "480p", seq, n.replace(".jpg", ".png")) for n in names
    ]


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def load_mask(path):
    """Binary mask (DAVIS 2016: 0/255) or palette ids (DAVIS 2017) as u8 labels."""
    m = np.asarray(Image.open(path))
    if m.ndim == 3:
        m = m[..., 0]
    if m.max() == 255 and len(np.unique(m)) <= 2:
        m = (m > 127).astype(np.uint8)
    return m.astype(np.uint8)


# ----------------------------------------------------------------------------- Rust-identical preprocessing


def _axis(dst, src):
    s = np.float32(src) / np.float32(dst)
    f = np.clip((np.arange(dst, dtype=np.float32) + np.float32(0.5)) * s - np.float32(0.5), 0, src - 1).astype(np.float32)
    i0 = f.astype(np.int64)
    i1 = np.minimum(i0 + 1, src - 1)
    w = (f - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, w


def resize_bilinear_u8(img, w, h):
    """vosd_engine::frame::resize_bilinear on an HxWx3 (or HxW) u8 array."""
    sh, sw = img.shape[:2]
    if (sw, sh) == (w, h):
        return img.copy()
    y0, y1, wy = _axis(h, sh)
    x0, x1, wx = _axis(w, sw)
    a = img.astype(np.float32)
    if a.ndim == 2:
        a = a[..., None]
    wx = wx[None, :, None]
    r0 = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    r1 = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    wy = wy[:, None, None]
    out = (r0 * (1 - wy) + r1 * wy + np.float32(0.5)).astype(np.uint8)
    return out[..., 0] if img.ndim == 2 else out


def resize_labels(lab, w, h):
    """Label map to the processing size: per object, bilinear of its 0/255 mask >= 128."""
    out = np.zeros((h, w), np.uint8)
    for i in np.unique(lab):
        if i == 0:
            continue
        m = resize_bilinear_u8(((lab == i) * 255).astype(np.uint8), w, h)
        out[m >= 128] = i
    return out


def normalise(rgb_u8):
    """`encoder.rs::normalise`: [1,3,H,W] float32."""
    x = (rgb_u8.astype(np.float32) / np.float32(255.0) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


class Encoder:
    """The committed frozen encoder through onnxruntime."""

    def __init__(self, path=ENCODER, threads=int(os.environ.get("VOSD_TRAIN_ORT_THREADS", "1"))):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def __call__(self, rgb_u8):
        outs = self.sess.run(list(FEATS), {"image": normalise(rgb_u8)})
        return {k: v[0] for k, v in zip(FEATS, outs)}


def grid(n, stride):
    return -(-n // stride)


def feat_shapes(w, h):
    return {k: (CHANNELS[k], grid(h, STRIDES[k]), grid(w, STRIDES[k])) for k in FEATS}


# ----------------------------------------------------------------------------- augmentation primitives


def affine_matrix(rng, w, h, rot=20.0, scale=(0.8, 1.25), shear=10.0, trans=0.12, center=None):
    """A 2x3 matrix mapping output pixel coords to input coords (inverse warp)."""
    a = np.deg2rad(rng.uniform(-rot, rot))
    s = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))
    sh = np.deg2rad(rng.uniform(-shear, shear))
    tx, ty = rng.uniform(-trans, trans) * w, rng.uniform(-trans, trans) * h
    cx, cy = center if center is not None else (w / 2, h / 2)
    # forward: p' = R S Sh (p - c) + c + t
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    Sh = np.array([[1, np.tan(sh)], [0, 1]])
    M = R @ Sh * s
    Minv = np.linalg.inv(M)
    c = np.array([cx, cy])
    t = np.array([tx, ty])
    # inverse: p = Minv (p' - c - t) + c
    off = c - Minv @ (c + t)
    return np.concatenate([Minv, off[:, None]], 1)


def lerp_affine(A, B, t):
    return A * (1 - t) + B * t


def warp(img, A, out_w, out_h, order=1, mode="reflect"):
    """Inverse-warp an HxW(xC) array with the 2x3 matrix A (output -> input pixel centres).
    order 1 = bilinear (float result), 0 = nearest. mode: 'reflect' or 'zero'."""
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    sx = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
    sy = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    h, w = img.shape[:2]
    valid = None
    if mode == "reflect":
        sx = _reflect(sx, w)
        sy = _reflect(sy, h)
    else:
        valid = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
        sx = np.clip(sx, 0, w - 1)
        sy = np.clip(sy, 0, h - 1)
    a = img.astype(np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if order == 0:
        out = a[np.rint(sy).astype(np.int64), np.rint(sx).astype(np.int64)]
    else:
        x0 = np.floor(sx).astype(np.int64)
        y0 = np.floor(sy).astype(np.int64)
        x1 = np.minimum(x0 + 1, w - 1)
        y1 = np.minimum(y0 + 1, h - 1)
        wx = (sx - x0)[..., None]
        wy = (sy - y0)[..., None]
        out = (a[y0, x0] * (1 - wx) + a[y0, x1] * wx) * (1 - wy) + (a[y1, x0] * (1 - wx) + a[y1, x1] * wx) * wy
    if valid is not None:
        out = out * valid[..., None]
    return out[..., 0] if img.ndim == 2 else out


def _reflect(c, n):
    period = 2 * (n - 1) if n > 1 else 1
    c = np.abs(np.mod(c, period))
    return np.where(c > n - 1, period - c, c)


def colour_jitter(rng, img_f, strength=1.0):
    """Brightness, contrast, saturation and a per-channel gain; float HxWx3 in [0,255]."""
    x = img_f.astype(np.float32)
    b = rng.uniform(-25, 25) * strength
    c = 1 + rng.uniform(-0.25, 0.25) * strength
    s = 1 + rng.uniform(-0.35, 0.35) * strength
    gain = 1 + rng.uniform(-0.08, 0.08, size=3) * strength
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * s
    m = x.mean()
    x = (x - m) * c + m + b
    x = x * gain
    return np.clip(x, 0, 255)


def to_u8(x):
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def box_blur(a, r=1):
    if r <= 0:
        return a
    p = np.pad(a, r, mode="edge")
    out = np.zeros_like(a, dtype=np.float32)
    k = 2 * r + 1
    for dy in range(k):
        for dx in range(k):
            out += p[dy : dy + a.shape[0], dx : dx + a.shape[1]]
    return out / (k * k)


# ----------------------------------------------------------------------------- caches


class Cache:
    def __init__(self, root=DEFAULT_CACHE, davis=DEFAULT_DAVIS, size=(512, 288)):
        self.root = root
        self.davis = davis
        self.w, self.h = size
        self.tag = f"{self.w}x{self.h}"
        self._enc = None
        os.makedirs(root, exist_ok=True)

    @property
    def enc(self):
        if self._enc is None:
            self._enc = Encoder()
        return self._enc

    # --- per-frame features of the real sequences (and their mirror images)
    def frames_dir(self, flip):
        return os.path.join(self.root, f"frames_{self.tag}" + ("_flip" if flip else ""))

    def frames_ready(self, seq, flip=False):
        return os.path.exists(os.path.join(self.frames_dir(flip), seq, "done.json"))

    def build_frames(self, seq, flip=False, log=print, raw=None):
        d = os.path.join(self.frames_dir(flip), seq)
        if self.frames_ready(seq, flip):
            return
        os.makedirs(d, exist_ok=True)
        raw = raw or RawFrames(self.davis, self.w, self.h)
        imgs, labs = raw.get(seq)
        T = len(imgs)
        shapes = feat_shapes(self.w, self.h)
        arrs = {
            k: np.lib.format.open_memmap(os.path.join(d, k + ".npy"), "w+", np.float16, (T,) + shapes[k]) for k in FEATS
        }
        labels = np.lib.format.open_memmap(os.path.join(d, "labels.npy"), "w+", np.uint8, (T, self.h, self.w))
        t0 = time.time()
        for t, (img, lab) in enumerate(zip(imgs, labs)):
            if flip:
                img, lab = img[:, ::-1].copy(), lab[:, ::-1].copy()
            f = self.enc(img)
            for k in FEATS:
                arrs[k][t] = f[k].astype(np.float16)
            labels[t] = lab
        for a in list(arrs.values()) + [labels]:
            a.flush()
        del arrs, labels
        with open(os.path.join(d, "done.json"), "w") as f:
            json.dump({"frames": T, "version": CACHE_VERSION}, f)
        log(f"cache frames {seq}{' (flip)' if flip else ''}: {T} frames in {time.time() - t0:.1f}s")

    def frames(self, seq, flip=False):
        d = os.path.join(self.frames_dir(flip), seq)
        out = {k: np.load(os.path.join(d, k + ".npy"), mmap_mode="r") for k in FEATS}
        out["labels"] = np.load(os.path.join(d, "labels.npy"), mmap_mode="r")
        return out

    # --- banks of augmented clips (synthetic from single frames; copy-paste compositions)
    def bank_dir(self, name):
        return os.path.join(self.root, f"bank_{self.tag}", name)

    def bank_ready(self, name):
        return os.path.exists(os.path.join(self.bank_dir(name), "done.json"))

    def build_bank(self, name, n, make_clip, log=print):
        """n clips of 3 frames from make_clip(i) -> (list of 3 RGB u8, list of 3 label maps)."""
        d = self.bank_dir(name)
        if self.bank_ready(name):
            return
        os.makedirs(d, exist_ok=True)
        shapes = feat_shapes(self.w, self.h)
        arrs = {k: np.lib.format.open_memmap(os.path.join(d, k + ".npy"), "w+", np.float16, (n, 3) + shapes[k]) for k in FEATS}
        labels = np.lib.format.open_memmap(os.path.join(d, "labels.npy"), "w+", np.uint8, (n, 3, self.h, self.w))
        t0 = time.time()
        for i in range(n):
            imgs, labs = make_clip(i)
            for t in range(3):
                f = self.enc(imgs[t])
                for k in FEATS:
                    arrs[k][i, t] = f[k].astype(np.float16)
                labels[i, t] = labs[t]
        for a in list(arrs.values()) + [labels]:
            a.flush()
        del arrs, labels
        with open(os.path.join(d, "done.json"), "w") as f:
            json.dump({"clips": n, "version": CACHE_VERSION}, f)
        log(f"cache bank {name}: {n} clips in {time.time() - t0:.1f}s")

    def bank(self, name):
        d = self.bank_dir(name)
        out = {k: np.load(os.path.join(d, k + ".npy"), mmap_mode="r") for k in FEATS}
        out["labels"] = np.load(os.path.join(d, "labels.npy"), mmap_mode="r")
        return out


class RawFrames:
    """Decoded frames and labels at the processing size, cached in RAM per sequence."""

    def __init__(self, davis, w, h):
        self.davis, self.w, self.h = davis, w, h
        self.cache = {}

    def get(self, seq):
        if seq not in self.cache:
            jpgs, pngs = frame_files(self.davis, seq)
            imgs = [resize_bilinear_u8(load_rgb(j), self.w, self.h) for j in jpgs]
            labs = [resize_labels(load_mask(p), self.w, self.h) for p in pngs]
            self.cache[seq] = (imgs, labs)  # all sequences stay decoded (about 40 MB each)
        return self.cache[seq]


def seed_of(*parts):
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


def make_synthetic(raw, seq, i, w, h):
    """A 3-frame clip from one frame of `seq`: each frame an independent random affine warp of the
    same image (static-image pretraining style), a shared random zoom crop, colour jitter."""
    rng = np.random.default_rng(seed_of("synth", seq, i))
    imgs, labs = raw.get(seq)
    for _ in range(20):
        t = int(rng.integers(len(imgs)))
        if (labs[t] > 0).sum() > 0.003 * w * h:
            break
    img, lab = imgs[t].astype(np.float32), (labs[t] > 0).astype(np.float32)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    ys, xs = np.nonzero(lab > 0.5)
    centre = (xs.mean(), ys.mean()) if len(xs) else (w / 2, h / 2)
    zoom = affine_matrix(rng, w, h, rot=0, scale=(1.0, 1.6), shear=0, trans=0.0, center=centre)
    base_jit = rng.integers(1 << 30)
    out_i, out_l = [], []
    for k in range(3):
        A = affine_matrix(rng, w, h, rot=15, scale=(0.85, 1.2), shear=8, trans=0.08, center=centre)
        # compose: output -> zoom -> per-frame warp -> source
        A3 = np.vstack([A, [0, 0, 1]]) @ np.vstack([zoom, [0, 0, 1]])
        wi = warp(img, A3[:2], w, h, order=1, mode="reflect")
        wl = warp(lab, A3[:2], w, h, order=1, mode="zero")
        jr = np.random.default_rng([base_jit, k])
        wi = colour_jitter(jr, colour_jitter(np.random.default_rng(base_jit), wi, 1.0), 0.3)
        out_i.append(to_u8(wi))
        out_l.append((wl >= 0.5).astype(np.uint8))
    return out_i, out_l


def make_composite(raw, bg_seq, fg_seq, i, w, h):
    """Copy-paste: a real 3-frame clip of bg_seq (its object = id 1) with the object of fg_seq
    (id 2; 3 real frames of it, moved by a smoothly changing affine) pasted on top. fg_seq may
    equal bg_seq: then the pasted object is a look-alike distractor from other frames."""
    rng = np.random.default_rng(seed_of("comp", bg_seq, fg_seq, i))
    bimgs, blabs = raw.get(bg_seq)
    bsel = clip_indices(rng, len(bimgs), int(rng.integers(1, 16)))
    bg = [(bimgs[t].astype(np.float32), blabs[t].copy()) for t in bsel]
    fimgs, flabs = raw.get(fg_seq)
    fsel = clip_indices(rng, len(fimgs), int(rng.integers(1, 10)))
    fg = [(fimgs[t].astype(np.float32), (flabs[t] > 0).astype(np.float32)) for t in fsel]
    ys, xs = np.nonzero(fg[0][1] > 0.5)
    fc = (xs.mean(), ys.mean()) if len(xs) else (w / 2, h / 2)
    # place the pasted object: scale, then move its centre to a random target
    s = np.exp(rng.uniform(np.log(0.5), np.log(1.1)))
    target0 = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.2, 0.8) * h])
    drift = rng.normal(0, 0.06, size=2) * np.array([w, h])
    rot0, rot1 = rng.uniform(-15, 15), rng.uniform(-15, 15)
    flip_fg = rng.random() < 0.5
    zoom = affine_matrix(rng, w, h, rot=5, scale=(1.0, 1.4), shear=0, trans=0.05)
    jit = rng.integers(1 << 30)
    out_i, out_l = [], []
    for k in range(3):
        tk = k / 2
        tgt = target0 + drift * tk
        a = np.deg2rad(rot0 * (1 - tk) + rot1 * tk)
        sk = s * (1 + 0.1 * (tk - 0.5) * rng.uniform(-1, 1))
        M = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * sk
        Minv = np.linalg.inv(M)
        off = np.array(fc) - Minv @ tgt
        A = np.concatenate([Minv, off[:, None]], 1)
        fimg, fmask = fg[k]
        if flip_fg:
            fimg, fmask = fimg[:, ::-1], fmask[:, ::-1]
        pi = warp(fimg, A, w, h, order=1, mode="zero")
        pm = warp(fmask, A, w, h, order=1, mode="zero")
        alpha = box_blur(pm, 1)[..., None]
        bimg, blab = bg[k]
        comp = bimg * (1 - alpha) + pi * alpha
        lab = (blab > 0).astype(np.uint8)
        lab[pm >= 0.5] = 2
        # shared zoom for the whole clip, colour jitter for the clip
        ci = warp(comp, zoom, w, h, order=1, mode="reflect")
        cl = warp(lab, zoom, w, h, order=0, mode="zero").astype(np.uint8)
        ci = colour_jitter(np.random.default_rng(jit), ci, 0.8)
        out_i.append(to_u8(ci))
        out_l.append(cl)
    return out_i, out_l


def clip_indices(rng, T, max_gap):
    """Three increasing frame indices with gaps in [1, max_gap], maybe reversed."""
    max_gap = max(1, min(max_gap, (T - 1) // 2))
    g1, g2 = int(rng.integers(1, max_gap + 1)), int(rng.integers(1, max_gap + 1))
    t0 = int(rng.integers(0, T - g1 - g2))
    idx = [t0, t0 + g1, t0 + g1 + g2]
    if rng.random() < 0.5:
        idx = idx[::-1]
    return idx


def comp_bank_name(train_seqs):
    return "comp_" + hashlib.sha256(",".join(sorted(train_seqs)).encode()).hexdigest()[:10]


def prepare(cache, train_seqs, val_seqs, synth_per_seq=40, comp_clips=800, log=print, flips=True):
    """Builds every cache a run needs (idempotent): per-frame features of train and val sequences
    (train also mirrored), synthetic clips per train sequence, copy-paste clips over the train set."""
    raw = RawFrames(cache.davis, cache.w, cache.h)
    for s in train_seqs + val_seqs:
        cache.build_frames(s, flip=False, log=log, raw=raw)
    if flips:
        for s in train_seqs:
            cache.build_frames(s, flip=True, log=log, raw=raw)
    for s in train_seqs if synth_per_seq else []:
        name = f"synth_{s}_{synth_per_seq}"
        if not cache.bank_ready(name):
            cache.build_bank(name, synth_per_seq, lambda i, s=s: make_synthetic(raw, s, i, cache.w, cache.h), log=log)
    if comp_clips:
        name = comp_bank_name(train_seqs) + f"_{comp_clips}"
        if not cache.bank_ready(name):
            rng = np.random.default_rng(seed_of("pairs", name))
            pairs = []
            for i in range(comp_clips):
                bg = train_seqs[int(rng.integers(len(train_seqs)))]
                fg = bg if rng.random() < 0.25 else train_seqs[int(rng.integers(len(train_seqs)))]
                pairs.append((bg, fg))
            cache.build_bank(name, comp_clips, lambda i: make_composite(raw, *pairs[i], i, cache.w, cache.h), log=log)
            with open(os.path.join(cache.bank_dir(name), "pairs.json"), "w") as f:
                json.dump(pairs, f)
    return {
        "synth": [f"synth_{s}_{synth_per_seq}" for s in train_seqs] if synth_per_seq else [],
        "comp": [comp_bank_name(train_seqs) + f"_{comp_clips}"] if comp_clips else [],
    }
