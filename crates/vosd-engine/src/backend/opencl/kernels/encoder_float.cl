// vosd float encoder kernels, as a template: the host builds this text twice
// (src/backend/opencl/mod.rs, `encoder_source`), once with float
// activations and once with half ones (fp16 storage: IEEE half in memory,
// float arithmetic; vload_half/vstore_half are core OpenCL 1.2). Weights and
// biases are float either way. The instantiation defines:
//   ACT              the activation element type (float or half)
//   KERNEL(name)     the kernel's name with the variant's suffix
//   LOAD1(p, i)      activation i of p, as float
//   STORE1(p, i, v)  stores float v as activation i of p
//   LOAD4(p, i)      activations i..i+3 of p, as float4
//   STORE4(p, i, v)  stores float4 v as activations i..i+3 of p
// Layout, padding and work sizes as in encoder.cl.

// Convolution, grouped (groups = 1: standard, groups = channels:
// depthwise), any square kernel and stride, bias, then clamp to [lo, hi]
// (a fused Clip/ReLU6; -inf..inf when the graph has none). One work-item
// per output value: global size (out_w, out_h, out_c).
__kernel void KERNEL(conv)(__global const ACT *x, __global const float *w,
                           __global const float *bias, __global ACT *y,
                           int in_c, int in_h, int in_w, int out_c,
                           int out_h, int out_w, int k, int stride,
                           int pad_top, int pad_left, int groups, float lo,
                           float hi) {
  int ox = get_global_id(0), oy = get_global_id(1), oc = get_global_id(2);
  if (ox >= out_w || oy >= out_h || oc >= out_c)
    return;
  int cin_g = in_c / groups, cout_g = out_c / groups;
  int g = oc / cout_g;
  float acc = bias[oc];
  __global const float *wk = w + oc * cin_g * k * k;
  int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
  for (int ic = 0; ic < cin_g; ic++) {
    int xc = (g * cin_g + ic) * in_h * in_w;
    __global const float *wc = wk + ic * k * k;
    for (int ky = 0; ky < k; ky++) {
      int iy = iy0 + ky;
      if (iy < 0 || iy >= in_h)
        continue;
      for (int kx = 0; kx < k; kx++) {
        int ix = ix0 + kx;
        if (ix < 0 || ix >= in_w)
          continue;
        acc = fma(LOAD1(x, xc + iy * in_w + ix), wc[ky * k + kx], acc);
      }
    }
  }
  STORE1(y, (oc * out_h + oy) * out_w + ox, fmin(fmax(acc, lo), hi));
}

// 1x1 stride-1 convolution (most of the encoder's work) as a matrix
// product Y[oc][p] = W[oc][:] . X[:][p] + b[oc]: each work-item computes an
// OC_BLOCK-channel x 4-pixel block, so every loaded input value is used
// OC_BLOCK times. Global size (ceil(P / 4), ceil(out_c / OC_BLOCK)),
// P = h * w.
__kernel void KERNEL(conv1x1)(__global const ACT *x, __global const float *w,
                              __global const float *bias, __global ACT *y,
                              int in_c, int pixels, int out_c, float lo,
                              float hi) {
  int p0 = get_global_id(0) * 4, oc0 = get_global_id(1) * OC_BLOCK;
  if (p0 >= pixels || oc0 >= out_c)
    return;
  float4 acc[OC_BLOCK];
  for (int o = 0; o < OC_BLOCK; o++)
    acc[o] = (float4)(oc0 + o < out_c ? bias[oc0 + o] : 0.0f);
  int full = p0 + 4 <= pixels;
  int oc_n = min(OC_BLOCK, out_c - oc0);
  for (int ic = 0; ic < in_c; ic++) {
    int base = ic * pixels + p0;
    float4 xv;
    if (full) {
      xv = LOAD4(x, base);
    } else {
      xv = (float4)(LOAD1(x, base),
                    p0 + 1 < pixels ? LOAD1(x, base + 1) : 0.0f,
                    p0 + 2 < pixels ? LOAD1(x, base + 2) : 0.0f,
                    p0 + 3 < pixels ? LOAD1(x, base + 3) : 0.0f);
    }
    __global const float *wc = w + oc0 * in_c + ic;
    for (int o = 0; o < OC_BLOCK; o++) {
      float wv = o < oc_n ? wc[o * in_c] : 0.0f;
      acc[o] = fma(xv, (float4)(wv), acc[o]);
    }
  }
  for (int o = 0; o < oc_n; o++) {
    float4 v = fmin(fmax(acc[o], (float4)(lo)), (float4)(hi));
    int base = (oc0 + o) * pixels + p0;
    if (full) {
      STORE4(y, base, v);
    } else {
      STORE1(y, base, v.x);
      if (p0 + 1 < pixels)
        STORE1(y, base + 1, v.y);
      if (p0 + 2 < pixels)
        STORE1(y, base + 2, v.z);
    }
  }
}

// Residual add.
__kernel void KERNEL(add)(__global const ACT *a, __global const ACT *b,
                          __global ACT *y, int n) {
  int i = get_global_id(0);
  if (i < n)
    STORE1(y, i, LOAD1(a, i) + LOAD1(b, i));
}
