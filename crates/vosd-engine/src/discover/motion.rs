//! Cell motion between two frames, from their keys: each stride-8 cell of
//! the current frame is matched to the most similar cell of the earlier
//! frame within a search window, with a sub-cell refinement; and, once the
//! camera's motion is known, how much each cell's appearance differs from
//! what that motion predicts.

use crate::readout::dot;

/// Search radius of the cell matching, in stride-8 cells (±32 pixels of
/// the processing size).
pub(crate) const SEARCH_RADIUS: usize = 4;

/// How much better than the cell itself another cell must match to count
/// as its displacement.
const TIE: f32 = 1e-4;

/// Side of the search window.
const WINDOW: usize = 2 * SEARCH_RADIUS + 1;

/// The match of every cell of the current frame in the earlier one, over
/// a `width`×`height` cell grid.
#[derive(Clone, Debug)]
pub(crate) struct CellMatches {
    /// Cells per row.
    pub(crate) width: usize,
    /// Cells per column.
    pub(crate) height: usize,
    /// Displacement from the current cell to its match, in cells.
    pub(crate) dx: Vec<f32>,
    /// Vertical displacement, in cells.
    pub(crate) dy: Vec<f32>,
    /// How distinctive the match is: best similarity minus the window's
    /// mean (0 on flat regions, where any match would do).
    pub(crate) weight: Vec<f32>,
}

impl CellMatches {
    /// Buffers for a `width`×`height` grid.
    pub(crate) fn new(width: usize, height: usize) -> Self {
        let n = width * height;
        Self {
            width,
            height,
            dx: vec![0.0; n],
            dy: vec![0.0; n],
            weight: vec![0.0; n],
        }
    }
}

/// The vertex offset of the parabola through `(−1, l)`, `(0, c)`, `(1, r)`,
/// within ±0.5 (0 when the three do not make a peak).
fn parabola_peak(l: f32, c: f32, r: f32) -> f32 {
    let curv = l - 2.0 * c + r;
    if curv >= -1e-6 {
        return 0.0;
    }
    (0.5 * (l - r) / curv).clamp(-0.5, 0.5)
}

/// Matches every cell of `cur` in `prev` (both `width*height*dim` keys,
/// unit length, cell-major) within [`SEARCH_RADIUS`] cells.
pub(crate) fn match_cells(cur: &[f32], prev: &[f32], dim: usize, out: &mut CellMatches) {
    let (w, h) = (out.width, out.height);
    let r = SEARCH_RADIUS as isize;
    let mut sims = [f32::NEG_INFINITY; WINDOW * WINDOW];
    for y in 0..h {
        for x in 0..w {
            let c = y * w + x;
            let q = &cur[c * dim..(c + 1) * dim];
            sims.fill(f32::NEG_INFINITY);
            // Ties go to no motion: the cell itself is the best match
            // unless another is clearly better (flat or repeated texture,
            // an unchanged frame).
            let itself = dot(q, &prev[c * dim..(c + 1) * dim]);
            let (mut best, mut best_at) = (itself + TIE, (0isize, 0isize));
            let (mut sum, mut n) = (0.0f32, 0u32);
            for oy in -r..=r {
                let yy = y as isize + oy;
                if yy < 0 || yy >= h as isize {
                    continue;
                }
                for ox in -r..=r {
                    let xx = x as isize + ox;
                    if xx < 0 || xx >= w as isize {
                        continue;
                    }
                    let p = yy as usize * w + xx as usize;
                    let s = dot(q, &prev[p * dim..(p + 1) * dim]);
                    sims[((oy + r) * WINDOW as isize + ox + r) as usize] = s;
                    sum += s;
                    n += 1;
                    if s > best {
                        best = s;
                        best_at = (ox, oy);
                    }
                }
            }
            if best_at == (0, 0) {
                best = itself;
            }
            let at = |ox: isize, oy: isize| -> Option<f32> {
                if ox.abs() > r || oy.abs() > r {
                    return None;
                }
                let s = sims[((oy + r) * WINDOW as isize + ox + r) as usize];
                s.is_finite().then_some(s)
            };
            let (bx, by) = best_at;
            let sub = |l: Option<f32>, rr: Option<f32>| match (l, rr) {
                (Some(l), Some(rr)) => parabola_peak(l, best, rr),
                _ => 0.0,
            };
            out.dx[c] = bx as f32 + sub(at(bx - 1, by), at(bx + 1, by));
            out.dy[c] = by as f32 + sub(at(bx, by - 1), at(bx, by + 1));
            out.weight[c] = if n > 1 {
                (best - sum / n as f32).max(0.0)
            } else {
                0.0
            };
        }
    }
}

/// For each cell of `cur`, 1 − the cosine similarity of its key to the key
/// of `prev` interpolated at the cell `model` maps it to (the place the
/// camera's motion predicts); 0 where that place is outside the frame
/// (content that just came into view). `scratch` holds `dim` values.
pub(crate) fn compensated_change(
    cur: &[f32],
    prev: &[f32],
    dim: usize,
    (w, h): (usize, usize),
    model: &super::global_motion::Affine,
    scratch: &mut [f32],
    change: &mut [f32],
) {
    for y in 0..h {
        for x in 0..w {
            let c = y * w + x;
            let (px, py) = model.apply(x as f32, y as f32);
            if px < 0.0 || py < 0.0 || px > (w - 1) as f32 || py > (h - 1) as f32 {
                change[c] = 0.0;
                continue;
            }
            let (x0, y0) = (px.floor() as usize, py.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (px - x0 as f32, py - y0 as f32);
            scratch.fill(0.0);
            for (xx, yy, wt) in [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x1, y0, fx * (1.0 - fy)),
                (x0, y1, (1.0 - fx) * fy),
                (x1, y1, fx * fy),
            ] {
                let p = yy * w + xx;
                for (s, v) in scratch.iter_mut().zip(&prev[p * dim..(p + 1) * dim]) {
                    *s += wt * v;
                }
            }
            let norm = dot(scratch, scratch).sqrt().max(1e-6);
            change[c] = 1.0 - dot(&cur[c * dim..(c + 1) * dim], scratch) / norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::global_motion::Affine;

    /// Unit keys of a random texture over a `w`×`h` grid, shifted by
    /// `(sx, sy)` cells (cell (x, y) shows texture point (x − sx, y − sy)).
    fn texture(w: usize, h: usize, dim: usize, sx: isize, sy: isize) -> Vec<f32> {
        let mut keys = vec![0.0; w * h * dim];
        for y in 0..h {
            for x in 0..w {
                let (tx, ty) = (x as isize - sx, y as isize - sy);
                let mut state = ((tx + 1000) as u64) << 32 | (ty + 1000) as u64;
                let k = &mut keys[(y * w + x) * dim..(y * w + x + 1) * dim];
                for v in k.iter_mut() {
                    *v = crate::prng::unit(&mut state) - 0.5;
                }
                let n = dot(k, k).sqrt();
                k.iter_mut().for_each(|v| *v /= n);
            }
        }
        keys
    }

    #[test]
    fn a_shifted_texture_is_matched_at_its_shift() {
        let (w, h, dim) = (20, 12, 16);
        let prev = texture(w, h, dim, 0, 0);
        let cur = texture(w, h, dim, 2, -1);
        let mut m = CellMatches::new(w, h);
        match_cells(&cur, &prev, dim, &mut m);
        // Interior cells (whose source is inside the earlier frame).
        for y in 2..h - 2 {
            for x in 3..w - 1 {
                let c = y * w + x;
                assert_eq!(
                    (m.dx[c].round(), m.dy[c].round()),
                    (-2.0, 1.0),
                    "cell {x},{y}"
                );
                assert!(m.weight[c] > 0.1, "weight {}", m.weight[c]);
            }
        }
    }

    #[test]
    fn change_is_low_where_the_model_explains_the_motion() {
        let (w, h, dim) = (20, 12, 16);
        let prev = texture(w, h, dim, 0, 0);
        let cur = texture(w, h, dim, 1, 0);
        let mut change = vec![0.0; w * h];
        let mut scratch = vec![0.0; dim];
        let right = Affine::translation(-1.0, 0.0);
        compensated_change(&cur, &prev, dim, (w, h), &right, &mut scratch, &mut change);
        let c = 5 * w + 10;
        assert!(change[c] < 1e-4, "{}", change[c]);
        let wrong = Affine::translation(0.0, 0.0);
        compensated_change(&cur, &prev, dim, (w, h), &wrong, &mut scratch, &mut change);
        assert!(change[c] > 0.5, "{}", change[c]);
    }
}
