//! The camera's motion between two frames: an affine map of cell
//! coordinates fitted robustly (RANSAC, then least squares on the inliers)
//! to the cell matches, so that independently moving objects are the
//! outliers. The frame's border is weighted up: it shows the scene, rarely
//! the object, and it keeps a large object from passing for the scene.

use super::motion::CellMatches;
use crate::prng::splitmix;

/// Matches whose weight is below this are not used (flat regions).
const MIN_WEIGHT: f32 = 0.02;
/// Fewer usable matches than this: the camera is taken as still.
const MIN_MATCHES: usize = 8;
/// RANSAC hypotheses per fit.
const ITERATIONS: usize = 96;
/// A match within this many cells of the model is an inlier.
const INLIER_CELLS: f32 = 0.6;
/// Extra weight of a cell on the frame's outermost ring (fading to none
/// `BORDER_CELLS` cells in).
const BORDER_BOOST: f32 = 2.0;
/// Width of the weighted border, in cells.
const BORDER_CELLS: f32 = 3.0;

/// `(x, y) ↦ (a·x + b·y + c, d·x + e·y + f)`, in cell coordinates: where a
/// cell of the current frame was in the earlier frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Affine {
    /// `[a, b, c, d, e, f]`.
    pub(crate) m: [f32; 6],
}

impl Affine {
    /// A pure shift by `(dx, dy)` cells.
    pub(crate) fn translation(dx: f32, dy: f32) -> Self {
        Self {
            m: [1.0, 0.0, dx, 0.0, 1.0, dy],
        }
    }

    /// Where `(x, y)` maps to.
    pub(crate) fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.m;
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }
}

/// Solves the 3×3 system `a · s = b` by Cramer's rule; `None` if singular.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut s = [0.0; 3];
    for (k, sk) in s.iter_mut().enumerate() {
        let mut m = a;
        for r in 0..3 {
            m[r][k] = b[r];
        }
        *sk = det(m) / d;
    }
    Some(s)
}

/// The weighted least-squares affine map through `(p, q, w)` triples;
/// `None` when they do not determine one.
fn least_squares<I: Iterator<Item = ((f32, f32), (f32, f32), f32)>>(pts: I) -> Option<Affine> {
    let mut ata = [[0.0f64; 3]; 3];
    let (mut atx, mut aty) = ([0.0f64; 3], [0.0f64; 3]);
    for ((x, y), (qx, qy), w) in pts {
        let row = [x as f64, y as f64, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                ata[i][j] += w as f64 * row[i] * row[j];
            }
            atx[i] += w as f64 * row[i] * qx as f64;
            aty[i] += w as f64 * row[i] * qy as f64;
        }
    }
    let sx = solve3(ata, atx)?;
    let sy = solve3(ata, aty)?;
    let m = [sx[0], sx[1], sx[2], sy[0], sy[1], sy[2]].map(|v| v as f32);
    m.iter().all(|v| v.is_finite()).then_some(Affine { m })
}

/// Fits the camera's motion to `matches`. Deterministic (fixed seed).
/// Buffers: `usable` holds the indices of the cells used.
pub(crate) fn fit(matches: &CellMatches, usable: &mut Vec<u32>) -> Affine {
    let (w, h) = (matches.width, matches.height);
    usable.clear();
    usable.extend((0..(w * h) as u32).filter(|&c| matches.weight[c as usize] >= MIN_WEIGHT));
    if usable.len() < MIN_MATCHES {
        return Affine::translation(0.0, 0.0);
    }
    let border = |c: usize| {
        let (x, y) = ((c % w) as f32, (c / w) as f32);
        let d = x.min(y).min((w - 1) as f32 - x).min((h - 1) as f32 - y);
        1.0 + BORDER_BOOST * (1.0 - d / BORDER_CELLS).max(0.0)
    };
    let point = |c: usize| {
        let (x, y) = ((c % w) as f32, (c / w) as f32);
        ((x, y), (x + matches.dx[c], y + matches.dy[c]))
    };
    let score = |model: &Affine| -> f32 {
        usable
            .iter()
            .map(|&c| {
                let c = c as usize;
                let ((x, y), (qx, qy)) = point(c);
                let (px, py) = model.apply(x, y);
                let e2 = (px - qx).powi(2) + (py - qy).powi(2);
                if e2 <= INLIER_CELLS * INLIER_CELLS {
                    matches.weight[c] * border(c)
                } else {
                    0.0
                }
            })
            .sum()
    };
    let mut state = 0x5eed_u64;
    let mut best = Affine::translation(0.0, 0.0);
    let mut best_score = score(&best);
    let n = usable.len() as u64;
    for _ in 0..ITERATIONS {
        let pick = |s: &mut u64| usable[(splitmix(s) % n) as usize] as usize;
        let (a, b, c) = (pick(&mut state), pick(&mut state), pick(&mut state));
        let model = least_squares([a, b, c].into_iter().map(|i| {
            let (p, q) = point(i);
            (p, q, 1.0)
        }));
        let Some(model) = model else { continue };
        let s = score(&model);
        if s > best_score {
            best_score = s;
            best = model;
        }
    }
    // Refit on the inliers of the best hypothesis.
    let refit = least_squares(usable.iter().filter_map(|&c| {
        let c = c as usize;
        let ((x, y), (qx, qy)) = point(c);
        let (px, py) = best.apply(x, y);
        let inlier = (px - qx).powi(2) + (py - qy).powi(2) <= INLIER_CELLS * INLIER_CELLS;
        inlier.then_some(((x, y), (qx, qy), matches.weight[c] * border(c)))
    }));
    refit.unwrap_or(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_camera_motion_despite_a_moving_object() {
        let (w, h) = (24, 14);
        let mut m = CellMatches::new(w, h);
        let truth = Affine {
            m: [1.02, 0.01, -1.5, -0.01, 0.98, 0.7],
        };
        for y in 0..h {
            for x in 0..w {
                let c = y * w + x;
                let (px, py) = truth.apply(x as f32, y as f32);
                m.dx[c] = px - x as f32;
                m.dy[c] = py - y as f32;
                m.weight[c] = 0.3;
                // An object covering a third of the frame moves its own way.
                if (8..16).contains(&x) && (3..11).contains(&y) {
                    m.dx[c] = 2.5;
                    m.dy[c] = -2.0;
                }
            }
        }
        let fitted = fit(&m, &mut Vec::new());
        for (a, b) in fitted.m.iter().zip(truth.m) {
            assert!((a - b).abs() < 1e-3, "{:?} vs {:?}", fitted.m, truth.m);
        }
    }

    #[test]
    fn too_few_matches_mean_a_still_camera() {
        let m = CellMatches::new(10, 6);
        assert_eq!(fit(&m, &mut Vec::new()), Affine::translation(0.0, 0.0));
    }
}
