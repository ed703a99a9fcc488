//! The seeds and the affinity margins: which cells stand for the object
//! and the background, and how much more each cell in the box looks like
//! the one than the other (steps 2 and 3 of the method).

use super::window::View;
use super::{PromptError, MIN_BACKGROUND_CELLS};
use crate::config::BoxPromptConfig;
use crate::keys::KEY_DIM;
use crate::readout::dot;

/// The window's cells by their place relative to the box.
#[derive(Clone, Debug)]
pub(super) struct Cells {
    /// The cells whose centre is inside the box.
    pub(super) inside: Vec<usize>,
    /// Per inside cell: whether it may be a foreground seed (within the
    /// ellipse inscribed in the box, scaled by `core`).
    core: Vec<bool>,
    /// The background seeds.
    background: Vec<usize>,
}

impl Cells {
    /// Sorts the cells of `view` (a frame of `frame_w`×`frame_h`): inside
    /// the box, or outside and at what distance, in cells. Too few cells
    /// outside the box is an error: there is no background to compare with.
    pub(super) fn around(
        view: &View,
        frame_w: usize,
        frame_h: usize,
        cfg: &BoxPromptConfig,
    ) -> Result<Self, PromptError> {
        let View {
            bbox, grid, sx, sy, ..
        } = *view;
        let (bw, bh) = (bbox.width() as f32, bbox.height() as f32);
        let cell_step = (grid.x.stride as f32 * sx).max(grid.y.stride as f32 * sy);
        let (mut inside, mut core, mut outside) = (Vec::new(), Vec::new(), Vec::new());
        for gy in 0..grid.y.cells {
            for gx in 0..grid.x.cells {
                let (fx, fy) = view.centre(gx, gy);
                let cell = gy * grid.x.cells + gx;
                let in_x = fx >= bbox.x0 as f32 && fx < bbox.x1 as f32;
                let in_y = fy >= bbox.y0 as f32 && fy < bbox.y1 as f32;
                if in_x && in_y {
                    let u = (fx - bbox.x0 as f32) / bw - 0.5;
                    let v = (fy - bbox.y0 as f32) / bh - 0.5;
                    let r = cfg.core / 2.0;
                    inside.push(cell);
                    core.push((u / r).powi(2) + (v / r).powi(2) <= 1.0);
                } else {
                    // Distance from the box, in cells.
                    let dx = (bbox.x0 as f32 - fx).max(fx - bbox.x1 as f32).max(0.0);
                    let dy = (bbox.y0 as f32 - fy).max(fy - bbox.y1 as f32).max(0.0);
                    outside.push((cell, dx.max(dy) / cell_step));
                }
            }
        }
        if outside.len() < MIN_BACKGROUND_CELLS {
            return Err(PromptError::NoBackground {
                bbox,
                width: frame_w,
                height: frame_h,
                cells: outside.len(),
                min: MIN_BACKGROUND_CELLS,
            });
        }
        let mut background: Vec<usize> = outside
            .iter()
            .filter(|&&(_, d)| d >= cfg.gap && (cfg.ring == 0 || d <= cfg.ring as f32))
            .map(|&(c, _)| c)
            .collect();
        if background.len() < MIN_BACKGROUND_CELLS {
            // A box at the frame's edges leaves little ring: take all there is.
            background = outside.iter().map(|&(c, _)| c).collect();
        }
        Ok(Self {
            inside,
            core,
            background,
        })
    }

    /// The foreground margin of each inside cell (in the order of
    /// [`Cells::inside`]; empty when no cell centre is inside the box), from
    /// `keys` (`KEY_DIM` per cell of the window's grid).
    pub(super) fn margins(&self, view: &View, keys: &[f32], cfg: &BoxPromptConfig) -> Vec<f32> {
        let Self {
            inside, background, ..
        } = self;
        if inside.is_empty() {
            // A box between cell centres holds no cell: the upsampling
            // still gives its pixels the nearest cells' (background)
            // values, and the fallback makes the mask.
            return Vec::new();
        }
        let key = |c: usize| &keys[c * KEY_DIM..(c + 1) * KEY_DIM];
        let mut core = self.core.clone();
        if !core.iter().any(|&c| c) {
            // A small box: its cell nearest the centre is the seed.
            let View { bbox, grid, .. } = *view;
            let centre = |c: usize| {
                let (fx, fy) = view.centre(c % grid.x.cells, c / grid.x.cells);
                let (cx, cy) = (
                    (bbox.x0 + bbox.x1) as f32 / 2.0,
                    (bbox.y0 + bbox.y1) as f32 / 2.0,
                );
                (fx - cx).powi(2) + (fy - cy).powi(2)
            };
            if let Some(i) =
                (0..inside.len()).min_by(|&a, &b| centre(inside[a]).total_cmp(&centre(inside[b])))
            {
                core[i] = true;
            }
        }
        let candidates: Vec<usize> = inside.iter().chain(background).copied().collect();
        let mut sim = vec![0.0f32; inside.len() * candidates.len()];
        for (row, &q) in sim.chunks_exact_mut(candidates.len()).zip(inside) {
            for (s, &c) in row.iter_mut().zip(&candidates) {
                *s = dot(key(q), key(c));
            }
        }
        classify(&sim, inside.len(), &core, cfg)
    }
}

/// Mean of the `k` largest values of `v` (reordered), or `None` if empty.
fn top_k_mean(v: &mut [f32], k: usize) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let k = k.min(v.len());
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    }
    Some(v[..k].iter().sum::<f32>() / k as f32)
}

/// Foreground margin of each in-box cell: the mean of its `top_k`
/// affinities to the foreground seeds minus that to the background seeds
/// (positive = foreground).
///
/// `sim[i * cand + j]`: affinity of in-box cell `i` to candidate `j`, where
/// candidates `0..inside` are the in-box cells themselves and the rest are
/// the background seeds. `core[i]`: whether in-box cell `i` may be a
/// foreground seed.
fn classify(sim: &[f32], inside: usize, core: &[bool], cfg: &BoxPromptConfig) -> Vec<f32> {
    let cand = sim.len() / inside.max(1);
    let mut vals = Vec::with_capacity(cand);
    // Round 0: the core cells least like the background are the seeds.
    let bg_affinity: Vec<f32> = (0..inside)
        .map(|i| {
            vals.clear();
            vals.extend_from_slice(&sim[i * cand + inside..(i + 1) * cand]);
            top_k_mean(&mut vals, cfg.top_k).unwrap_or(-1.0)
        })
        .collect();
    let mut order: Vec<usize> = (0..inside).filter(|&i| core[i]).collect();
    order.sort_by(|&a, &b| bg_affinity[a].total_cmp(&bg_affinity[b]));
    let seeds =
        ((order.len() as f32 * cfg.seed_fraction).ceil() as usize).clamp(1, order.len().max(1));
    let mut fg = vec![false; inside];
    for &i in order.iter().take(seeds) {
        fg[i] = true;
    }
    let mut bg_inside = vec![false; inside];
    let mut margin = vec![0.0f32; inside];
    let (mut fg_vals, mut bg_vals) = (Vec::with_capacity(cand), Vec::with_capacity(cand));
    for round in 0..=cfg.iterations {
        for i in 0..inside {
            let row = &sim[i * cand..(i + 1) * cand];
            fg_vals.clear();
            bg_vals.clear();
            for j in 0..inside {
                if j == i {
                    continue;
                }
                if fg[j] {
                    fg_vals.push(row[j]);
                } else if bg_inside[j] {
                    bg_vals.push(row[j]);
                }
            }
            bg_vals.extend_from_slice(&row[inside..]);
            // A lone foreground seed is its own best match.
            let f = top_k_mean(&mut fg_vals, cfg.top_k).unwrap_or(row[i]);
            let b = top_k_mean(&mut bg_vals, cfg.top_k).unwrap_or(-1.0);
            margin[i] = f - b;
        }
        if round == cfg.iterations {
            break;
        }
        if margin.iter().any(|&m| m > 0.0) {
            for ((f, b), &m) in fg.iter_mut().zip(&mut bg_inside).zip(&margin) {
                *f = m > 0.0;
                *b = !*f && cfg.refine_bg;
            }
        }
    }
    margin
}
