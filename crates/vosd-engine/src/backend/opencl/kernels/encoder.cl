// vosd encoder kernels: the ops of models/encoder_lite0_{fp32,int8}.onnx.
//
// Tensors are one image, channels-first: t[(c * h + y) * w + x].
// Convolutions use ONNX "SAME_UPPER" padding (TensorFlow's SAME): the host
// computes pad_top/pad_left; padded input cells contribute nothing.
// One work-item per output value: global size (out_w, out_h, out_c).
//
// The float kernels (conv, conv1x1, add) are in encoder_float.cl, a template
// built twice: with float activations (suffix _f32) and with half ones
// (suffix _f16s, fp16 storage); see src/backend/opencl/mod.rs.

// OC_BLOCK, the output channels per work-item of the 1x1 kernels, is
// defined by the host (src/backend/opencl/mod.rs) for both files.

// Quantized convolution (QDQ pattern DQ(x) * DQ(w) + DQ(b) -> Q):
// uint8 activations with zero points, int8 weights with per-channel zero
// points, int32 bias (scale x_scale * w_scale[c]), int32 accumulation, then
// requantization: y = saturate(rint(acc * mult[c]) + y_zp), where
// mult[c] = x_scale * w_scale[c] / y_scale. Padded cells hold x_zp, which
// contributes nothing.
__kernel void conv_q8(__global const uchar *x, __global const char *w,
                      __global const int *w_zp, __global const int *bias,
                      __global const float *mult, __global uchar *y, int in_c,
                      int in_h, int in_w, int out_c, int out_h, int out_w,
                      int k, int stride, int pad_top, int pad_left, int groups,
                      int x_zp, int y_zp) {
  int ox = get_global_id(0), oy = get_global_id(1), oc = get_global_id(2);
  if (ox >= out_w || oy >= out_h || oc >= out_c)
    return;
  int cin_g = in_c / groups, cout_g = out_c / groups;
  int g = oc / cout_g;
  int acc = bias[oc];
  int wz = w_zp[oc];
  __global const char *wk = w + oc * cin_g * k * k;
  int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
  for (int ic = 0; ic < cin_g; ic++) {
    __global const uchar *xc = x + (g * cin_g + ic) * in_h * in_w;
    __global const char *wc = wk + ic * k * k;
    for (int ky = 0; ky < k; ky++) {
      int iy = iy0 + ky;
      if (iy < 0 || iy >= in_h)
        continue;
      for (int kx = 0; kx < k; kx++) {
        int ix = ix0 + kx;
        if (ix < 0 || ix >= in_w)
          continue;
        acc += ((int)xc[iy * in_w + ix] - x_zp) * ((int)wc[ky * k + kx] - wz);
      }
    }
  }
  float q = rint((float)acc * mult[oc]) + (float)y_zp;
  y[(oc * out_h + oy) * out_w + ox] = (uchar)clamp(q, 0.0f, 255.0f);
}

// Quantized residual add (DQ(a) + DQ(b) -> Q).
__kernel void add_q8(__global const uchar *a, __global const uchar *b,
                     __global uchar *y, float a_scale, int a_zp,
                     float b_scale, int b_zp, float y_scale, int y_zp, int n) {
  int i = get_global_id(0);
  if (i >= n)
    return;
  float v = ((float)((int)a[i] - a_zp) * a_scale +
             (float)((int)b[i] - b_zp) * b_scale) /
            y_scale;
  y[i] = (uchar)clamp(rint(v) + (float)y_zp, 0.0f, 255.0f);
}

// QuantizeLinear to uint8: saturate(rint(x / scale) + zp).
__kernel void quantize_u8(__global const float *x, __global uchar *y,
                          float scale, int zp, int n) {
  int i = get_global_id(0);
  if (i < n)
    y[i] = (uchar)clamp(rint(x[i] / scale) + (float)zp, 0.0f, 255.0f);
}

// DequantizeLinear from uint8: (x - zp) * scale.
__kernel void dequantize_u8(__global const uchar *x, __global float *y,
                            float scale, int zp, int n) {
  int i = get_global_id(0);
  if (i < n)
    y[i] = (float)((int)x[i] - zp) * scale;
}

// The quantized 1x1 convolution, blocked the same way (see conv_q8 for the
// arithmetic). Global size (ceil(P / 4), ceil(out_c / OC_BLOCK)).
__kernel void conv1x1_q8(__global const uchar *x, __global const char *w,
                         __global const int *w_zp, __global const int *bias,
                         __global const float *mult, __global uchar *y,
                         int in_c, int pixels, int out_c, int x_zp,
                         int y_zp) {
  int p0 = get_global_id(0) * 4, oc0 = get_global_id(1) * OC_BLOCK;
  if (p0 >= pixels || oc0 >= out_c)
    return;
  int oc_n = min(OC_BLOCK, out_c - oc0);
  int4 acc[OC_BLOCK];
  int wz[OC_BLOCK];
  for (int o = 0; o < OC_BLOCK; o++) {
    acc[o] = (int4)(o < oc_n ? bias[oc0 + o] : 0);
    wz[o] = o < oc_n ? w_zp[oc0 + o] : 0;
  }
  int full = p0 + 4 <= pixels;
  for (int ic = 0; ic < in_c; ic++) {
    int4 xv;
    if (full) {
      xv = convert_int4(vload4(0, x + ic * pixels + p0));
    } else {
      __global const uchar *xr = x + ic * pixels;
      xv = (int4)(xr[p0], p0 + 1 < pixels ? xr[p0 + 1] : x_zp,
                  p0 + 2 < pixels ? xr[p0 + 2] : x_zp,
                  p0 + 3 < pixels ? xr[p0 + 3] : x_zp);
    }
    xv -= (int4)(x_zp);
    __global const char *wc = w + oc0 * in_c + ic;
    for (int o = 0; o < OC_BLOCK; o++) {
      int wv = o < oc_n ? (int)wc[o * in_c] - wz[o] : 0;
      acc[o] += xv * (int4)(wv);
    }
  }
  for (int o = 0; o < oc_n; o++) {
    float m = mult[oc0 + o];
    float4 q = rint(convert_float4(acc[o]) * m) + (float4)((float)y_zp);
    uchar4 v = convert_uchar4(clamp(q, 0.0f, 255.0f));
    __global uchar *yr = y + (oc0 + o) * pixels + p0;
    if (full) {
      vstore4(v, 0, yr);
    } else {
      yr[0] = v.x;
      if (p0 + 1 < pixels) yr[1] = v.y;
      if (p0 + 2 < pixels) yr[2] = v.z;
    }
  }
}

// ---- fp16 storage ("precision = fp16"): activations are stored as IEEE
// half (vload_half/vstore_half, core OpenCL 1.2, no cl_khr_fp16 needed) and
// computed in float; weights stay float. Half the memory traffic of fp32.

// Float input image to half.
__kernel void to_half(__global const float *x, __global half *y, int n) {
  int i = get_global_id(0);
  if (i < n)
    vstore_half(x[i], i, y);
}

// Half output to float.
__kernel void to_float(__global const half *x, __global float *y, int n) {
  int i = get_global_id(0);
  if (i < n)
    y[i] = vload_half(i, x);
}
