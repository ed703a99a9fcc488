"""The memory network head on frozen EfficientNet-Lite0 features (STM/STCN/XMem family).

Three trained parts, exported separately to ONNX (see export_onnx.py and README.md):

* KeyProj   feat16 [1,112,h,w]                         -> key   [1,64,h,w]
* ValueEnc  feat16 [1,112,h,w], mask [N,1,H4,W4],
            others [N,1,H4,W4]                         -> value [N,64,h,w]
* Decoder   readout [N,64,h,w], feat16 [1,112,h,w],
            feat8 [1,40,H8,W8], feat4 [1,24,H4,W4]      -> logits [N,1,H4,W4]

The readout (attention) and the soft aggregation are not ONNX: they are written here as plain
functions that the Rust engine reproduces exactly (readout(), aggregate()).

Inputs of the feature-level parts broadcast over objects (batch 1 against N), so every fusion of
a per-object tensor with a per-frame tensor is an Add of two convolutions (never a Concat across
batches); that keeps the ONNX graphs to Conv, Relu, Add, Resize (+ Shape/Slice/Concat for the
Resize target size).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CK = 64  # key channels
CV = 64  # value channels
C8 = 32  # decoder channels at stride 8
C4 = 16  # decoder channels at stride 4


def conv3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv1(cin, cout):
    return nn.Conv2d(cin, cout, 1)


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = conv3(c, c)
        self.b = conv3(c, c)

    def forward(self, x):
        return x + self.b(F.relu(self.a(x)))


class KeyProj(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = conv3(112, CK)

    def forward(self, f16):
        return self.conv(f16)


class ValueEnc(nn.Module):
    def __init__(self):
        super().__init__()
        self.m1 = conv3(2, 16, stride=2)  # masks at stride 4 -> 8
        self.m2 = conv3(16, 32, stride=2)  # stride 8 -> 16
        self.fproj = conv1(112, CV)
        self.mproj = conv1(32, CV)
        self.fuse = conv3(CV, CV)

    def forward(self, f16, mask, others):
        m = torch.cat([mask, others], 1)
        m = F.relu(self.m1(m))
        m = F.relu(self.m2(m))
        v = F.relu(self.fproj(f16) + self.mproj(m))
        return v + self.fuse(v)


def resize_to(x, ref):
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """Channel reductions happen before each upsampling (1x1 conv at the coarse grid, then
    bilinear Resize to the finer grid), so the fine grids only see narrow tensors."""

    def __init__(self):
        super().__init__()
        self.r16 = conv3(CV, CV)
        self.f16 = conv1(112, CV)
        self.res16 = ResBlock(CV)
        self.d8 = conv1(CV, C8)
        self.f8 = conv1(40, C8)
        self.c8 = conv3(C8, C8)
        self.d4 = conv1(C8, C4)
        self.f4 = conv1(24, C4)
        self.c4 = conv3(C4, C4)
        self.out = conv3(C4, 1)

    def forward(self, readout, f16, f8, f4):
        x = F.relu(self.r16(readout) + self.f16(f16))
        x = self.res16(x)
        x = F.relu(resize_to(self.d8(x), f8) + self.f8(f8))
        x = F.relu(self.c8(x))
        x = F.relu(resize_to(self.d4(x), f4) + self.f4(f4))
        x = F.relu(self.c4(x))
        return self.out(x)


class MemNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.key = KeyProj()
        self.value = ValueEnc()
        self.decoder = Decoder()


# ----------------------------------------------------------------------------- readout, aggregation


def affinity(mk, qk):
    """mk [B,Ck,M] memory keys, qk [B,Ck,Q] query keys -> [B,M,Q] logits.
    Negative squared L2 distance (STCN) without the query's own norm (constant per query, so it
    cancels in the softmax over memory), scaled by 1/sqrt(Ck):
        s[i,j] = (2 * mk_i . qk_j - |mk_i|^2) / sqrt(Ck)."""
    ck = mk.shape[1]
    ab = 2 * torch.einsum("bci,bcj->bij", mk, qk)
    a2 = mk.pow(2).sum(1).unsqueeze(2)
    return (ab - a2) / math.sqrt(ck)


def readout(mk, mv, qk, top_k=None):
    """mk [B,Ck,M], mv [B,N,Cv,M] (N objects share the keys), qk [B,Ck,Q] -> [B,N,Cv,Q].
    Weights: softmax over the memory axis (over the top_k largest logits per query when top_k is
    given; ties keep the lower memory index as torch.topk does)."""
    s = affinity(mk, qk)
    if top_k is not None and top_k < s.shape[1]:
        vals, idx = torch.topk(s, top_k, dim=1)
        w = torch.softmax(vals, dim=1)
        s = torch.zeros_like(s).scatter_(1, idx, w)
        w = s
    else:
        w = torch.softmax(s, dim=1)
    B, N, Cv, M = mv.shape
    return torch.einsum("bnvm,bmq->bnvq", mv, w)


def aggregate(logits, valid=None):
    """Soft aggregation (STM/XMem). logits [B,N,H,W] per object -> (agg_logits, probs) of
    shape [B,N+1,H,W], channel 0 = background:
        p_i = sigmoid(l_i); p_bg = prod_i (1 - p_i);
        q = clamp([p_bg, p_1..p_N], 1e-7, 1 - 1e-7); z = log(q / (1 - q)); probs = softmax(z).
    `valid` [B,N] masks out padded object slots (their p_i is 0)."""
    p = torch.sigmoid(logits)
    if valid is not None:
        p = p * valid[:, :, None, None]
    bg = torch.prod(1 - p, dim=1, keepdim=True)
    q = torch.cat([bg, p], 1).clamp(1e-7, 1 - 1e-7)
    z = torch.log(q / (1 - q))
    if valid is not None:
        pad = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)[:, :, None, None]
        z = torch.where(pad > 0, z, torch.full_like(z, -1e4))
    return z, torch.softmax(z, dim=1)


def mask_to_stride4(m):
    """[..., H, W] float masks -> stride-4 grid: mean over each 4x4 pixel block; partial blocks at
    the right/bottom edge average the pixels they have (grid ceil(H/4) x ceil(W/4))."""
    shp = m.shape
    x = m.reshape(-1, 1, shp[-2], shp[-1])
    x = F.avg_pool2d(x, 4, 4, ceil_mode=True, count_include_pad=False)
    return x.reshape(shp[:-2] + x.shape[-2:])


def upsample4(x, h, w):
    """Stride-4 grid -> pixels: bilinear, pixel centres aligned (src = (x + 0.5) / 4 - 0.5,
    clamped), then cropped to h x w."""
    y = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    return y[..., :h, :w]


# ----------------------------------------------------------------------------- losses


def bootstrapped_ce(logits, target, frac):
    """XMem's bootstrapped cross-entropy: the mean over the hardest `frac` of pixels."""
    raw = F.cross_entropy(logits, target, reduction="none").flatten(1)
    if frac >= 1.0:
        return raw.mean()
    k = max(1, int(raw.shape[1] * frac))
    return torch.topk(raw, k, dim=1).values.mean()


def dice_loss(probs, target_onehot, valid):
    """probs/target [B,N,H,W] for objects (no background); mean over valid objects."""
    inter = (probs * target_onehot).flatten(2).sum(-1)
    den = probs.flatten(2).sum(-1) + target_onehot.flatten(2).sum(-1)
    d = 1 - (2 * inter + 1) / (den + 1)
    return (d * valid).sum() / valid.sum().clamp(min=1)


def count_params(m):
    return sum(p.numel() for p in m.parameters())


def macs_per_frame(net, w=512, h=288, objects=1):
    """Multiply-accumulates of key + value + decoder for one frame (conv layers only)."""
    from data import feat_shapes

    sh = feat_shapes(w, h)
    total = {}

    def hook(name):
        def f(mod, inp, out):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[name] = total.get(name, 0) + out.numel() * mod.in_channels * k // mod.groups
        return f

    hs = []
    for part in ("key", "value", "decoder"):
        for mod in getattr(net, part).modules():
            if isinstance(mod, nn.Conv2d):
                hs.append(mod.register_forward_hook(hook(part)))
    with torch.no_grad():
        f16 = torch.zeros(1, *sh["feat16"])
        f8 = torch.zeros(1, *sh["feat8"])
        f4 = torch.zeros(1, *sh["feat4"])
        m = torch.zeros(objects, 1, *sh["feat4"][1:])
        net.key(f16)
        net.value(f16, m, m)
        net.decoder(torch.zeros(objects, CV, *sh["feat16"][1:]), f16, f8, f4)
    for hnd in hs:
        hnd.remove()
    return total
