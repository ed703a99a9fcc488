//! Memory readout: for every query cell, the top-k most similar memory cells
//! (cosine affinity of L2-normalised keys), softmax with a temperature, and
//! the weighted sum of their values.
//!
//! The search can be restricted to a square window around the query's
//! position in each memory frame; the keys inside the window are gathered
//! row by row (never a full affinity matrix that is then masked).

use rayon::prelude::*;

use crate::memory::{MemoryFrame, MemoryStore};

/// Largest supported `top_k`.
pub const MAX_TOP_K: usize = 64;

/// Readout settings (see [`crate::config::EngineConfig`] for meanings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadoutParams {
    /// Memory cells kept per query cell.
    pub top_k: usize,
    /// Softmax temperature on cosine affinities.
    pub temperature: f32,
    /// Window radius in working-memory frames (cells); 0 = whole frame.
    pub window_radius: usize,
    /// Window radius in the first frame (cells); 0 = whole frame.
    pub first_frame_radius: usize,
}

/// Grid size of the key maps (all frames share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridSize {
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// Dot product of two equally long vectors.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

/// A small ascending list of the best `(score, index)` pairs.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    len: usize,
    k: usize,
    items: [(f32, u32); MAX_TOP_K],
}

impl TopK {
    /// An empty list keeping the best `k` (1..=[`MAX_TOP_K`]).
    pub(crate) fn new(k: usize) -> Self {
        Self {
            len: 0,
            k: k.clamp(1, MAX_TOP_K),
            items: [(f32::NEG_INFINITY, 0); MAX_TOP_K],
        }
    }

    /// Offers a pair; kept when among the best `k` so far.
    #[inline]
    pub(crate) fn push(&mut self, score: f32, index: u32) {
        let mut i = if self.len < self.k {
            self.len += 1;
            self.len - 1
        } else if score > self.items[0].0 {
            // Drop the smallest, then sift the new item into place.
            let mut i = 0;
            while i + 1 < self.len && self.items[i + 1].0 < score {
                self.items[i] = self.items[i + 1];
                i += 1;
            }
            self.items[i] = (score, index);
            return;
        } else {
            return;
        };
        while i > 0 && self.items[i - 1].0 > score {
            self.items[i] = self.items[i - 1];
            i -= 1;
        }
        self.items[i] = (score, index);
    }

    /// The kept pairs, ascending by score.
    pub(crate) fn as_slice(&self) -> &[(f32, u32)] {
        &self.items[..self.len]
    }
}

/// Per-row working buffers of the readout, allocated once per grid size.
///
/// Frames read without a window (radius 0) are compared with a dense
/// matrix product per row of query cells, which needs a `width × cells`
/// score buffer per row in flight.
#[derive(Debug, Default)]
pub struct ReadoutScratch {
    scores: Vec<f32>,
    tops: Vec<TopK>,
}

impl ReadoutScratch {
    /// Buffers for `rows_in_flight` rows of `grid` at once.
    pub fn new(grid: GridSize, rows_in_flight: usize) -> Self {
        let rows = rows_in_flight.max(1);
        let cells = grid.width * grid.height;
        Self {
            scores: vec![0.0; rows * grid.width * cells],
            tops: (0..rows * grid.width).map(|_| TopK::new(1)).collect(),
        }
    }

    fn rows_in_flight(&self, grid: GridSize) -> usize {
        self.tops.len().checked_div(grid.width).unwrap_or(0)
    }
}

/// Reads the memory for every query cell.
///
/// `query` holds `grid.width * grid.height * memory.dim()` keys; `out`
/// receives `cells * memory.channels()` values; `confidence` (one per cell)
/// receives the best affinity found. Rows are spread over rayon's threads,
/// `scratch` bounds how many are in flight at once.
pub fn readout(
    query: &[f32],
    grid: GridSize,
    memory: &MemoryStore,
    params: &ReadoutParams,
    scratch: &mut ReadoutScratch,
    out: &mut [f32],
    confidence: &mut [f32],
) {
    let (dim, ch) = (memory.dim(), memory.channels());
    let cells = grid.width * grid.height;
    let in_flight = scratch.rows_in_flight(grid).max(1);
    if scratch.scores.len() < in_flight * grid.width * cells {
        *scratch = ReadoutScratch::new(grid, in_flight);
    }
    let frames: heapless::Vec<MemoryFrame<'_>, { MAX_FRAMES }> =
        memory.frames().take(MAX_FRAMES).collect();
    let ctx = RowContext {
        query,
        grid,
        frames: &frames,
        params,
        dim,
        ch,
    };
    for group in (0..grid.height).step_by(in_flight) {
        let rows = in_flight.min(grid.height - group);
        let out_rows = &mut out[group * grid.width * ch..(group + rows) * grid.width * ch];
        let conf_rows = &mut confidence[group * grid.width..(group + rows) * grid.width];
        out_rows
            .par_chunks_mut(grid.width * ch)
            .zip(conf_rows.par_chunks_mut(grid.width))
            .zip(scratch.scores.par_chunks_mut(grid.width * cells))
            .zip(scratch.tops.par_chunks_mut(grid.width))
            .enumerate()
            .for_each(|(i, (((out_row, conf_row), scores), tops))| {
                let y = group + i;
                #[cfg(target_arch = "x86_64")]
                {
                    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                        return unsafe { read_row_avx2(&ctx, y, scores, tops, out_row, conf_row) };
                    }
                }
                read_row(&ctx, y, scores, tops, out_row, conf_row)
            });
    }
}

/// `n` pseudo-random L2-normalised keys of `dim` values each, drawn from
/// `state` (the device readout's self-test and the tests).
pub(crate) fn random_unit_keys(state: &mut u64, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * dim)
        .map(|_| crate::prng::unit(state) - 0.5)
        .collect();
    for key in v.chunks_mut(dim.max(1)) {
        let norm = key.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        key.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Most frames the readout looks at (first frame + working memory).
pub const MAX_FRAMES: usize = 65;

/// What every row of the readout needs.
struct RowContext<'a> {
    query: &'a [f32],
    grid: GridSize,
    frames: &'a [MemoryFrame<'a>],
    params: &'a ReadoutParams,
    dim: usize,
    ch: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn read_row_avx2(
    ctx: &RowContext<'_>,
    y: usize,
    scores: &mut [f32],
    tops: &mut [TopK],
    out_row: &mut [f32],
    conf_row: &mut [f32],
) {
    read_row(ctx, y, scores, tops, out_row, conf_row)
}

/// Reads one row of query cells (inlined into each instruction-set variant).
#[inline(always)]
fn read_row(
    ctx: &RowContext<'_>,
    y: usize,
    scores: &mut [f32],
    tops: &mut [TopK],
    out_row: &mut [f32],
    conf_row: &mut [f32],
) {
    let RowContext {
        query,
        grid,
        frames,
        params,
        dim,
        ch,
    } = *ctx;
    let cells = grid.width * grid.height;
    let row_query = &query[y * grid.width * dim..(y + 1) * grid.width * dim];
    tops.iter_mut().for_each(|t| *t = TopK::new(params.top_k));
    for (f, frame) in frames.iter().enumerate() {
        let r = if frame.is_first {
            params.first_frame_radius
        } else {
            params.window_radius
        };
        if r == 0 {
            // Whole frame: scores = row_query (width × dim) · keysᵀ (dim × cells).
            // SAFETY: the slices hold exactly the sizes given with these strides.
            unsafe {
                matrixmultiply::sgemm(
                    grid.width,
                    dim,
                    cells,
                    1.0,
                    row_query.as_ptr(),
                    dim as isize,
                    1,
                    frame.keys.as_ptr(),
                    1,
                    dim as isize,
                    0.0,
                    scores.as_mut_ptr(),
                    cells as isize,
                    1,
                );
            }
            for (x, top) in tops.iter_mut().enumerate() {
                let base = (f * cells) as u32;
                for (i, &s) in scores[x * cells..(x + 1) * cells].iter().enumerate() {
                    top.push(s, base + i as u32);
                }
            }
            continue;
        }
        for (x, top) in tops.iter_mut().enumerate() {
            let q = &row_query[x * dim..(x + 1) * dim];
            let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(grid.height));
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(grid.width));
            for my in y0..y1 {
                let base = my * grid.width;
                let keys = &frame.keys[(base + x0) * dim..(base + x1) * dim];
                for (i, k) in keys.chunks_exact(dim).enumerate() {
                    top.push(dot_portable(q, k), (f * cells + base + x0 + i) as u32);
                }
            }
        }
    }
    for (x, top) in tops.iter().enumerate() {
        let dst = &mut out_row[x * ch..(x + 1) * ch];
        dst.fill(0.0);
        let best = top.as_slice();
        let Some(&(max, _)) = best.last() else {
            conf_row[x] = 0.0;
            continue;
        };
        conf_row[x] = max;
        let mut total = 0.0f32;
        for &(score, idx) in best {
            let w = ((score - max) / params.temperature).exp();
            total += w;
            let (f, cell) = (idx as usize / cells, idx as usize % cells);
            let v = &frames[f].values[cell * ch..(cell + 1) * ch];
            for (d, s) in dst.iter_mut().zip(v) {
                *d += w * s;
            }
        }
        let inv = 1.0 / total;
        dst.iter_mut().for_each(|d| *d *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference: full affinity list, sort, softmax.
    fn naive(query: &[f32], grid: GridSize, memory: &MemoryStore, p: &ReadoutParams) -> Vec<f32> {
        let (dim, ch) = (memory.dim(), memory.channels());
        let frames: Vec<_> = memory.frames().collect();
        let mut out = vec![0.0; grid.width * grid.height * ch];
        for y in 0..grid.height {
            for x in 0..grid.width {
                let q = &query[(y * grid.width + x) * dim..][..dim];
                let mut cands = Vec::new();
                for fr in &frames {
                    let r = if fr.is_first {
                        p.first_frame_radius
                    } else {
                        p.window_radius
                    } as isize;
                    for my in 0..grid.height {
                        for mx in 0..grid.width {
                            let inside = r == 0
                                || ((my as isize - y as isize).abs() <= r
                                    && (mx as isize - x as isize).abs() <= r);
                            if inside {
                                let k = &fr.keys[(my * grid.width + mx) * dim..][..dim];
                                let s: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                                cands.push((s, &fr.values[(my * grid.width + mx) * ch..][..ch]));
                            }
                        }
                    }
                }
                cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
                cands.truncate(p.top_k);
                let max = cands[0].0;
                let total: f32 = cands
                    .iter()
                    .map(|c| ((c.0 - max) / p.temperature).exp())
                    .sum();
                for c in &cands {
                    let w = ((c.0 - max) / p.temperature).exp() / total;
                    for k in 0..ch {
                        out[(y * grid.width + x) * ch + k] += w * c.1[k];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_reference() {
        let mut seed = 0x9e3779b97f4a7c15;
        let grid = GridSize {
            width: 9,
            height: 7,
        };
        let (dim, ch) = (19, 3);
        let cells = grid.width * grid.height;
        let mut mem = MemoryStore::new(cells, dim, ch, 3);
        let vals = |seed: &mut u64| -> Vec<f32> {
            (0..cells * ch).map(|_| crate::prng::unit(seed)).collect()
        };
        mem.set_first(
            0,
            &random_unit_keys(&mut seed, cells, dim),
            &vals(&mut seed),
        );
        for f in 1..=4 {
            mem.push_working(
                f,
                &random_unit_keys(&mut seed, cells, dim),
                &vals(&mut seed),
            );
        }
        let query = random_unit_keys(&mut seed, cells, dim);
        for (k, r, rf) in [(1, 0, 0), (5, 2, 3), (7, 1, 0), (64, 0, 2)] {
            let p = ReadoutParams {
                top_k: k,
                temperature: 0.1,
                window_radius: r,
                first_frame_radius: rf,
            };
            let mut out = vec![0.0; cells * ch];
            let mut conf = vec![0.0; cells];
            let mut scratch = ReadoutScratch::new(grid, 3);
            readout(&query, grid, &mem, &p, &mut scratch, &mut out, &mut conf);
            let want = naive(&query, grid, &mem, &p);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "k={k} r={r}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn identical_memory_copies_values() {
        // Query equal to the first frame: each cell's best match is itself.
        let grid = GridSize {
            width: 4,
            height: 4,
        };
        let mut seed = 42;
        let keys = random_unit_keys(&mut seed, 16, 8);
        let values: Vec<f32> = (0..16)
            .flat_map(|i| if i % 3 == 0 { [0.0, 1.0] } else { [1.0, 0.0] })
            .collect();
        let mut mem = MemoryStore::new(16, 8, 2, 0);
        mem.set_first(0, &keys, &values);
        let p = ReadoutParams {
            top_k: 1,
            temperature: 0.1,
            window_radius: 0,
            first_frame_radius: 0,
        };
        let mut out = vec![0.0; 32];
        let mut conf = vec![0.0; 16];
        readout(
            &keys,
            grid,
            &mem,
            &p,
            &mut ReadoutScratch::new(grid, 2),
            &mut out,
            &mut conf,
        );
        assert_eq!(out, values);
        assert!(conf.iter().all(|&c| (c - 1.0).abs() < 1e-5));
    }

    #[test]
    fn dot_handles_odd_lengths() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2.0; 19];
        assert_eq!(dot(&a, &b), 342.0);
        assert_eq!(dot(&a[..3], &b[..3]), 6.0);
    }
}
