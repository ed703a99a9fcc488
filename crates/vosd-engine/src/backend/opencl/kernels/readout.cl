// vosd memory readout: for each query cell, the top-k most similar memory
// cells (dot product of L2-normalised keys), softmax with a temperature over
// them, and the weighted sum of their values. Same algorithm, order and
// tie-breaking as the CPU readout (src/readout.rs).
//
// keys:   [slot][cell][dim]   values: [slot][cell][channels]   (on the device)
// frames: the slots to read, in order; radius per frame (0 = whole frame).
// One work-item per query cell: global size (grid_w, grid_h) rounded up to
// the work-group size; items past the grid only help load tiles.
//
// Whole-frame scans (radius 0) read every memory key once per work-group:
// the group loads `tile_keys` keys into local memory, then each item scores
// them. Windowed scans read their own window from global memory.

#define MAX_TOP_K 64
// Keys up to this long are held in private memory while scanning.
#define MAX_PRIVATE_DIM 256

// s = the query . key, for a key in local (tile) or global memory (OpenCL
// 1.2 has no generic address space, hence a macro): float4 from the private
// copy q4 when `vec`, else scalar from the query in global memory qg.
#define DOT_QUERY(key, s)                                                      \
  do {                                                                         \
    s = 0.0f;                                                                  \
    if (vec) {                                                                 \
      float4 acc = (float4)(0.0f);                                             \
      for (int d = 0; d < dim / 4; d++)                                        \
        acc = fma(q4[d], vload4(d, (key)), acc);                               \
      s = (acc.x + acc.y) + (acc.z + acc.w);                                   \
    } else {                                                                   \
      for (int d = 0; d < dim; d++)                                            \
        s = fma(qg[d], (key)[d], s);                                           \
    }                                                                          \
  } while (0)

// Ascending insertion of (s, idx) into the k best, as TopK::push on the CPU.
inline void push_top(float *score, int *index, int *len, int k, float s,
                     int idx) {
  int i;
  if (*len < k) {
    i = (*len)++;
    while (i > 0 && score[i - 1] > s) {
      score[i] = score[i - 1];
      index[i] = index[i - 1];
      i--;
    }
    score[i] = s;
    index[i] = idx;
  } else if (s > score[0]) {
    i = 0;
    while (i + 1 < *len && score[i + 1] < s) {
      score[i] = score[i + 1];
      index[i] = index[i + 1];
      i++;
    }
    score[i] = s;
    index[i] = idx;
  }
}

__kernel void readout(__global const float *query, __global const float *keys,
                      __global const float *values,
                      __global const int *frame_slots,
                      __global const int *frame_radius, int frames, int grid_w,
                      int grid_h, int dim, int channels, int top_k,
                      float temperature, __global float *out,
                      __global float *confidence, __local float *tile,
                      int tile_keys) {
  int x = get_global_id(0), y = get_global_id(1);
  int active = x < grid_w && y < grid_h;
  int cells = grid_w * grid_h;
  int cell = active ? y * grid_w + x : 0;
  int lid = get_local_id(1) * get_local_size(0) + get_local_id(0);
  int group = get_local_size(0) * get_local_size(1);
  __global const float *qg = query + cell * dim;
  // The query in private memory, as float4 (keys of a length divisible by
  // 4 and at most MAX_PRIVATE_DIM; others read it from global memory).
  float4 q4[MAX_PRIVATE_DIM / 4];
  int vec = dim % 4 == 0 && dim <= MAX_PRIVATE_DIM;
  if (vec)
    for (int d = 0; d < dim / 4; d++)
      q4[d] = vload4(d, qg);
  float score[MAX_TOP_K];
  int index[MAX_TOP_K];
  int len = 0;
  int k = clamp(top_k, 1, MAX_TOP_K);
  for (int f = 0; f < frames; f++) {
    int slot = frame_slots[f];
    int r = frame_radius[f];
    __global const float *slot_keys = keys + (long)slot * cells * dim;
    if (r == 0) {
      // Uniform across the group: every item reaches the barriers.
      for (int m0 = 0; m0 < cells; m0 += tile_keys) {
        int n = min(tile_keys, cells - m0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = lid; i < n * dim; i += group)
          tile[i] = slot_keys[m0 * dim + i];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active)
          continue;
        for (int t = 0; t < n; t++) {
          __local const float *key = tile + t * dim;
          float s;
          DOT_QUERY(key, s);
          push_top(score, index, &len, k, s, f * cells + m0 + t);
        }
      }
      continue;
    }
    if (!active)
      continue;
    int y0 = max(y - r, 0), y1 = min(y + r + 1, grid_h);
    int x0 = max(x - r, 0), x1 = min(x + r + 1, grid_w);
    for (int my = y0; my < y1; my++) {
      for (int mx = x0; mx < x1; mx++) {
        int m = my * grid_w + mx;
        __global const float *key = slot_keys + m * dim;
        float s;
        DOT_QUERY(key, s);
        push_top(score, index, &len, k, s, f * cells + m);
      }
    }
  }
  if (!active)
    return;
  __global float *dst = out + cell * channels;
  for (int c = 0; c < channels; c++)
    dst[c] = 0.0f;
  if (len == 0) {
    confidence[cell] = 0.0f;
    return;
  }
  float best = score[len - 1];
  confidence[cell] = best;
  float total = 0.0f;
  for (int j = 0; j < len; j++) {
    float w = exp((score[j] - best) / temperature);
    total += w;
    int f = index[j] / cells, m = index[j] % cells;
    __global const float *v =
        values + ((long)frame_slots[f] * cells + m) * channels;
    for (int c = 0; c < channels; c++)
      dst[c] += w * v[c];
  }
  float inv = 1.0f / total;
  for (int c = 0; c < channels; c++)
    dst[c] *= inv;
}
