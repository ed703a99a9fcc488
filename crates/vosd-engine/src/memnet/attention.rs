//! The memory network's readout at stride 16: for each query cell, the
//! `top_k` memory cells of highest affinity, a softmax over them, and the
//! weighted sum of their values, per object.
//!
//! The affinity is STCN's negative squared L2 distance without the
//! query's own norm (constant per query):
//! `s(i, j) = (2 k_i·q_j − |k_i|²) / √C_k`. It is the formula the heads
//! were trained with (training/README.md, "Inference", step 4).
//!
//! Two passes, both spread over rayon's threads: affinities and top-k per
//! block of query cells (one matrix product per memory frame, into a
//! per-task score buffer), then the weighted sums per value plane. Every
//! buffer is allocated in [`Attention::new`].

use rayon::prelude::*;

use super::bank::MemoryBank;
use crate::readout::{TopK, MAX_TOP_K};

/// Query cells per task of the first pass (each matrix product packs the
/// memory frame's keys once per block: larger blocks pack less often).
const BLOCK: usize = 128;
/// Most memory frames a query reads (the first, up to 32 working frames,
/// the previous one).
const MAX_ENTRIES: usize = 34;

/// The readout's buffers for one grid and memory size.
#[derive(Debug)]
pub struct Attention {
    cells: usize,
    top_k: usize,
    tasks: usize,
    /// `tasks × BLOCK × max memory cells` affinities.
    scores: Vec<f32>,
    /// Per query cell, `top_k` pairs of (softmax weight, memory cell).
    picks: Vec<(f32, u32)>,
    /// How many of a query's pairs are valid (`min(top_k, memory cells)`).
    picked: usize,
}

impl Attention {
    /// Buffers for queries of `cells` cells against up to `max_entries`
    /// frames of the same grid, keeping `top_k` cells each, with `tasks`
    /// blocks in flight.
    pub fn new(cells: usize, max_entries: usize, top_k: usize, tasks: usize) -> Self {
        let tasks = tasks.max(1);
        let top_k = top_k.clamp(1, MAX_TOP_K);
        Self {
            cells,
            top_k,
            tasks,
            scores: vec![0.0; tasks * BLOCK * cells * max_entries.min(MAX_ENTRIES)],
            picks: vec![(0.0, 0); cells * top_k],
            picked: 0,
        }
    }

    /// Reads `bank` for the query keys `query` (`key_dim × cells`) into
    /// `out` (`objects × value_dim × cells`, the first `objects` value
    /// sets of each entry).
    pub fn read(&mut self, query: &[f32], bank: &MemoryBank, objects: usize, out: &mut [f32]) {
        let cells = self.cells;
        let (key_dim, value_dim) = (bank.key_dim(), bank.value_dim());
        let entries: heapless::Vec<_, MAX_ENTRIES> = bank.active().take(MAX_ENTRIES).collect();
        let memory_cells = entries.len() * cells;
        if memory_cells == 0 || query.len() != key_dim * cells {
            out.fill(0.0);
            return;
        }
        let (top_k, tasks) = (self.top_k, self.tasks);
        let scale = 1.0 / (key_dim as f32).sqrt();
        let stride = self.scores.len() / (tasks * BLOCK);
        // Pass 1: affinities, top-k and softmax per query cell.
        for group in (0..cells).step_by(tasks * BLOCK) {
            let rows = (tasks * BLOCK).min(cells - group);
            self.picks[group * top_k..(group + rows) * top_k]
                .par_chunks_mut(BLOCK * top_k)
                .zip(self.scores.par_chunks_mut(BLOCK * stride))
                .enumerate()
                .for_each(|(task, (picks, scores))| {
                    let j0 = group + task * BLOCK;
                    let n = picks.len() / top_k;
                    for (e, entry) in entries.iter().enumerate() {
                        // scores[r][e·cells + i] = 2 q_{j0+r}·k_i / √C.
                        // SAFETY: `query` holds key_dim × cells values
                        // (checked above) read at (c, j0 + r) for r < n;
                        // `entry.keys` holds key_dim × cells read at (c, i);
                        // `scores` holds BLOCK × stride values written at
                        // (r, e·cells + i) with e·cells + i < memory_cells
                        // <= stride.
                        unsafe {
                            matrixmultiply::sgemm(
                                n,
                                key_dim,
                                cells,
                                2.0 * scale,
                                query.as_ptr().add(j0),
                                1,
                                cells as isize,
                                entry.keys.as_ptr(),
                                cells as isize,
                                1,
                                0.0,
                                scores.as_mut_ptr().add(e * cells),
                                stride as isize,
                                1,
                            );
                        }
                    }
                    for r in 0..n {
                        let row = &scores[r * stride..r * stride + memory_cells];
                        let mut best = TopK::new(top_k);
                        for (e, entry) in entries.iter().enumerate() {
                            let block = &row[e * cells..(e + 1) * cells];
                            for (i, (s, norm)) in block.iter().zip(&entry.key_norms).enumerate() {
                                best.push(s - norm * scale, (e * cells + i) as u32);
                            }
                        }
                        let kept = best.as_slice();
                        let max = kept.last().map_or(0.0, |p| p.0);
                        let dst = &mut picks[r * top_k..(r + 1) * top_k];
                        let mut sum = 0.0;
                        for (d, &(s, i)) in dst.iter_mut().zip(kept) {
                            let w = (s - max).exp();
                            sum += w;
                            *d = (w, i);
                        }
                        for d in dst.iter_mut().take(kept.len()) {
                            d.0 /= sum;
                        }
                    }
                });
        }
        self.picked = top_k.min(memory_cells);
        // Pass 2: the weighted sums, one value plane per task.
        let picked = self.picked;
        let picks = &self.picks;
        let planes = objects * value_dim;
        out[..planes * cells]
            .par_chunks_mut(cells)
            .enumerate()
            .for_each(|(plane, dst)| {
                let offset = plane * cells;
                for (j, d) in dst.iter_mut().enumerate() {
                    let mut acc = 0.0;
                    for &(w, i) in &picks[j * top_k..j * top_k + picked] {
                        let (e, cell) = (i as usize / cells, i as usize % cells);
                        acc += w * entries[e].values[offset + cell];
                    }
                    *d = acc;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::unit;

    /// The readout written out plainly: every affinity, a full sort, the
    /// softmax over the best `top_k`.
    fn naive(
        query: &[f32],
        keys: &[Vec<f32>],
        values: &[Vec<f32>],
        dim: usize,
        vdim: usize,
        cells: usize,
        top_k: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; vdim * cells];
        for j in 0..cells {
            let mut s: Vec<(f32, usize, usize)> = Vec::new();
            for (e, k) in keys.iter().enumerate() {
                for i in 0..cells {
                    let (mut dot, mut norm) = (0.0f64, 0.0f64);
                    for c in 0..dim {
                        dot += (k[c * cells + i] * query[c * cells + j]) as f64;
                        norm += (k[c * cells + i] as f64).powi(2);
                    }
                    s.push((((2.0 * dot - norm) / (dim as f64).sqrt()) as f32, e, i));
                }
            }
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            s.truncate(top_k);
            let max = s[0].0;
            let sum: f32 = s.iter().map(|p| (p.0 - max).exp()).sum();
            for c in 0..vdim {
                out[c * cells + j] = s
                    .iter()
                    .map(|&(v, e, i)| (v - max).exp() / sum * values[e][c * cells + i])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_readout() {
        let (cells, dim, vdim) = (70, 16, 8);
        let mut state = 7u64;
        let mut rand = |n: usize| (0..n).map(|_| unit(&mut state) - 0.5).collect::<Vec<f32>>();
        for (frames, top_k) in [(1, 5), (3, 30), (3, 500)] {
            let mut bank = MemoryBank::new(cells, dim, vdim, 2, 4, 1, false);
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for t in 0..frames {
                let (slot, e) = bank.spare();
                e.frame = t as u64;
                e.keys.copy_from_slice(&rand(dim * cells));
                let v = rand(vdim * cells);
                e.values[..vdim * cells].copy_from_slice(&v);
                MemoryBank::finish_keys(e, dim, cells);
                keys.push(e.keys.clone());
                values.push(v);
                if t == 0 {
                    bank.set_first(slot)
                } else {
                    bank.store(slot)
                }
            }
            let query = rand(dim * cells);
            let want = naive(
                &query,
                &keys,
                &values,
                dim,
                vdim,
                cells,
                top_k.min(MAX_TOP_K),
            );
            let mut att = Attention::new(cells, bank.max_len(), top_k, 2);
            let mut out = vec![0.0; 2 * vdim * cells];
            att.read(&query, &bank, 1, &mut out);
            let worst = want
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-4,
                "frames {frames}, top_k {top_k}: max error {worst}"
            );
        }
    }
}
