//! Temporal stability T: a port of the DAVIS toolkit's `db_eval_t_stab`
//! (`measures/t_stability.py` and its `tstab` C++ module, identical in
//! fperazzi/davis and fperazzi/davis-2017).
//!
//! For two masks (frame t and frame t+1):
//!
//! 1. each mask's closed contours are extracted and simplified
//!    ([`super::polycont`], tolerance 3) and the longest one is kept (the
//!    last of equally long ones); if either mask has no contour, T is NaN;
//! 2. the contour is upsampled so that no segment is longer than 3 pixels
//!    (`contour_upsample`, in `float` as the C++);
//! 3. every point gets a shape-context descriptor (`sc_compute`: 12 angle
//!    bins × 5 log-distance bins, `r_inner = 1/8`, `r_outer = 2`, distances
//!    normalised by the mean of all pairwise distances);
//! 4. the descriptors of the two contours are compared with the χ² cost
//!    (`hist_cost_2`), and matched in order along the contours by a
//!    shortest path through the cost matrix (`match_dijkstra`: moves right,
//!    down or diagonal, a step costing the cost of the cell entered); the
//!    matrix is rolled so that the path starts just after the cheapest cell of
//!    a first path, the path is recomputed, and made one-to-one by keeping,
//!    for each point, its cheapest pair (`get_bijective_pairs`);
//! 5. T is the mean cost of the kept pairs.
//!
//! The shortest path is Boost's Dijkstra reproduced step by step, heap
//! included, because equal-cost paths are the rule (a closed contour
//! repeats its first point) and the toolkit's choice among them changes T.
//! Sums follow numpy's pairwise order. `docs/metrics.md` says how this was checked against the
//! toolkit built from source.

use super::polycont::mask_contours;
use super::stats::{np_mean, np_sum};

/// Contour simplification tolerance and upsampling step (`cont_th`).
const CONT_TH: f64 = 3.0;
const R_INNER: f64 = 1.0 / 8.0;
const R_OUTER: f64 = 2.0;
const NBINS_R: usize = 5;
const NBINS_THETA: usize = 12;
const NBINS: usize = NBINS_R * NBINS_THETA;

/// The factor DAVIS 2016's evaluation multiplies each `db_eval_t_stab`
/// value by (`magic_number = 5.0` in its `loader.py`) before averaging.
pub const T_SCALE: f64 = 5.0;

/// `db_eval_t_stab(a, b)`: the temporal (in)stability between mask `a`
/// (frame t) and mask `b` (frame t+1), both `width * height` row-major.
/// Lower is more stable; 0 for identical masks. NaN when either mask has no
/// contour longer than 3 points after simplification (an empty mask, or
/// only specks), as in the toolkit, and when the sizes do not fit. Not
/// multiplied by [`T_SCALE`].
pub fn t_stability(a: &[bool], b: &[bool], width: usize, height: usize) -> f64 {
    match (descriptor(a, width, height), descriptor(b, width, height)) {
        (Some(da), Some(db)) => t_between(&da, &db),
        _ => f64::NAN,
    }
}

/// What T compares of one mask: its upsampled longest contour's shape
/// contexts. Computed once per frame when a series is scored.
pub(super) struct Descriptor {
    sc: Vec<[u32; NBINS]>,
}

/// The [`Descriptor`] of a mask, `None` when it has no contour.
pub(super) fn descriptor(mask: &[bool], width: usize, height: usize) -> Option<Descriptor> {
    let c = longest_contour(mask, width, height)?;
    Some(Descriptor {
        sc: shape_context(&contour_upsample(&c, CONT_TH)),
    })
}

/// T between two descriptors (steps 4 and 5 of the module doc).
pub(super) fn t_between(a: &Descriptor, b: &Descriptor) -> f64 {
    let (n1, n2) = (a.sc.len(), b.sc.len());
    let cost = hist_cost(&a.sc, &b.sc, n1, n2);
    let (_, max_sx, max_sy) = match_path(&cost, n1, n2);
    let (sx, sy) = ((max_sx + 1) % n1, (max_sy + 1) % n2);
    let mut rolled = vec![0.0; n1 * n2];
    for i in 0..n1 {
        for j in 0..n2 {
            rolled[i * n2 + j] = cost[((i + sx) % n1) * n2 + (j + sy) % n2];
        }
    }
    let (path, _, _) = match_path(&rolled, n1, n2);
    let pairs: Vec<(usize, usize)> = path
        .iter()
        .map(|&(i, j)| ((i + sx) % n1, (j + sy) % n2))
        .collect();
    let pairs = bijective(&pairs, &cost, n2);
    let costs: Vec<f64> = pairs.iter().map(|&(i, j)| cost[i * n2 + j]).collect();
    np_mean(&costs)
}

/// The longest contour (`get_longest_cont`: the last of the longest), or
/// `None` when there is none.
fn longest_contour(mask: &[bool], width: usize, height: usize) -> Option<Vec<[i64; 2]>> {
    let contours = mask_contours(mask, width, height, CONT_TH)?;
    let mut best: Option<Vec<[i64; 2]>> = None;
    for c in contours {
        if best.as_ref().is_none_or(|b| b.len() <= c.len()) {
            best = Some(c);
        }
    }
    best
}

/// `contour_upsample`: segments longer than `th` are split into
/// `ceil(len / th)` equal parts, in `float`.
fn contour_upsample(cont: &[[i64; 2]], th: f64) -> Vec<[f32; 2]> {
    let th = th as f32;
    let p: Vec<[f32; 2]> = cont.iter().map(|q| [q[0] as f32, q[1] as f32]).collect();
    let mut up = vec![p[0]];
    for w in p.windows(2) {
        let d = [w[1][0] - w[0][0], w[1][1] - w[0][1]];
        let len = (d[0] * d[0] + d[1] * d[1]).sqrt();
        if len > th {
            let n = (len / th).ceil();
            let step = [d[0] / n, d[1] / n];
            let mut cur = *up.last().unwrap_or(&w[0]);
            for _ in 0..(n as usize).saturating_sub(1) {
                cur[0] += step[0];
                cur[1] += step[1];
                up.push(cur);
            }
        }
        up.push(w[1]);
    }
    up
}

/// `sc_compute`: one 60-bin shape-context histogram per point (bin
/// `(r_q - 1) * 12 + (theta_q - 1)`), with `mean_dist` the mean of all
/// pairwise distances (the diagonal included).
fn shape_context(pts: &[[f32; 2]]) -> Vec<[u32; NBINS]> {
    let n = pts.len();
    let p: Vec<[f64; 2]> = pts.iter().map(|q| [q[0] as f64, q[1] as f64]).collect();
    let mut r = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let mut s = 0.0;
            let d0 = p[i][0] - p[j][0];
            s += d0 * d0;
            let d1 = p[i][1] - p[j][1];
            s += d1 * d1;
            let d = s.sqrt();
            r[i * n + j] = d;
            r[j * n + i] = d;
        }
    }
    let mean_dist = np_mean(&r);
    // np.logspace(log10(r_inner), log10(r_outer), 5)
    let (start, stop) = (R_INNER.log10(), R_OUTER.log10());
    let step = (stop - start) / (NBINS_R - 1) as f64;
    let edges: Vec<f64> = (0..NBINS_R)
        .map(|m| {
            let y = if m == NBINS_R - 1 {
                stop
            } else {
                m as f64 * step + start
            };
            10f64.powf(y)
        })
        .collect();
    let two_pi = 2.0 * std::f64::consts::PI;
    let bin_width = two_pi / NBINS_THETA as f64;
    let mut out = vec![[0u32; NBINS]; n];
    for (i, hist) in out.iter_mut().enumerate() {
        for j in 0..n {
            let rn = r[i * n + j] / mean_dist;
            let rq = edges.iter().filter(|&&e| rn < e).count();
            if rq == 0 {
                continue;
            }
            let theta = (p[j][1] - p[i][1]).atan2(p[j][0] - p[i][0]);
            let t2 = ((theta % two_pi) + two_pi) % two_pi;
            // theta_q - 1; 12 would need an angle a rounding step below
            // 2π, where numpy's ravel_multi_index would have failed.
            let tq = ((t2 / bin_width).floor() as usize).min(NBINS_THETA - 1);
            hist[(rq - 1) * NBINS_THETA + tq] += 1;
        }
    }
    out
}

/// `hist_cost_2`: χ² cost `0.5 * Σ (a-b)² / (a+b+eps)` between the
/// normalised histograms, row-major `n1 × n2`.
fn hist_cost(a: &[[u32; NBINS]], b: &[[u32; NBINS]], n1: usize, n2: usize) -> Vec<f64> {
    const EPS: f64 = 2.2204e-16;
    let norm = |h: &[[u32; NBINS]]| -> Vec<[f64; NBINS]> {
        h.iter()
            .map(|row| {
                let s = row.iter().map(|&v| v as u64).sum::<u64>() as f64 + EPS;
                let mut o = [0.0; NBINS];
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = v as f64 / s;
                }
                o
            })
            .collect()
    };
    let (an, bn) = (norm(a), norm(b));
    let mut cost = vec![0.0; n1 * n2];
    let mut terms = [0.0f64; NBINS];
    for i in 0..n1 {
        for j in 0..n2 {
            for k in 0..NBINS {
                let (x, y) = (an[i][k], bn[j][k]);
                terms[k] = if x == 0.0 && y == 0.0 {
                    0.0
                } else {
                    (x - y) * (x - y) / (x + y + EPS)
                };
            }
            cost[i * n2 + j] = 0.5 * np_sum(&terms);
        }
    }
    cost
}

/// `match_dijkstra`: the cheapest monotone path from cell (0, 0) to
/// (n1-1, n2-1) (a step right, down or diagonal costs the cell entered),
/// listed from the end to the start, and the cheapest cell on it (the start
/// excluded; the one nearest the end among equals).
///
/// Paths of equal cost are common (a closed contour repeats its first point
/// at its end, so two rows and two columns of the matrix are equal), and
/// which one Boost's `dijkstra_shortest_paths` returns depends on the order
/// it settles vertices in. So this is that algorithm step by step: the same
/// graph (out-edges of (a, b) in the order (a, b+1), (a+1, b), (a+1, b+1),
/// as the toolkit's edge list adds them), strict-less relaxation, and
/// Boost's 4-ary indirect heap ([`DaryHeap`]).
fn match_path(cost: &[f64], n1: usize, n2: usize) -> (Vec<(usize, usize)>, usize, usize) {
    let n = n1 * n2;
    let mut dist = vec![f64::MAX; n];
    let mut pred: Vec<usize> = (0..n).collect();
    // 0 white, 1 gray, 2 black
    let mut color = vec![0u8; n];
    let mut heap = DaryHeap::new(n);
    dist[0] = 0.0;
    color[0] = 1;
    heap.push(0, &dist);
    while let Some(u) = heap.pop(&dist) {
        let (a, b) = (u / n2, u % n2);
        let targets = [
            (b + 1 < n2).then(|| u + 1),
            (a + 1 < n1).then(|| u + n2),
            (a + 1 < n1 && b + 1 < n2).then(|| u + n2 + 1),
        ];
        for v in targets.into_iter().flatten() {
            let w = cost[v];
            // closed_plus: inf stays inf
            let cand = if dist[u] == f64::MAX || w == f64::MAX {
                f64::MAX
            } else {
                dist[u] + w
            };
            match color[v] {
                0 => {
                    if cand < dist[v] {
                        dist[v] = cand;
                        pred[v] = u;
                    }
                    color[v] = 1;
                    heap.push(v, &dist);
                }
                1 if cand < dist[v] => {
                    dist[v] = cand;
                    pred[v] = u;
                    heap.update(v, &dist);
                }
                _ => {}
            }
        }
        color[u] = 2;
    }
    let mut path = Vec::with_capacity(n1 + n2);
    let mut cur = n - 1;
    let (mut min_cost, mut min_at) = (f64::MAX, cur);
    while cur != 0 {
        if cost[cur] < min_cost {
            min_cost = cost[cur];
            min_at = cur;
        }
        path.push((cur / n2, cur % n2));
        if pred[cur] == cur || path.len() > n {
            break; // unreachable: every cell is reachable from (0, 0)
        }
        cur = pred[cur];
    }
    path.push((0, 0));
    (path, min_at / n2, min_at % n2)
}

/// Boost's `d_ary_heap_indirect` with arity 4 and `std::less` on the
/// distances: the same sift-up (count levels, then move) and sift-down
/// (smallest of the children, first among equals), so that vertices of
/// equal distance come out in the same order.
struct DaryHeap {
    data: Vec<usize>,
    index: Vec<usize>,
}

impl DaryHeap {
    const ARITY: usize = 4;

    fn new(n: usize) -> Self {
        Self {
            data: Vec::new(),
            index: vec![usize::MAX; n],
        }
    }

    fn push(&mut self, v: usize, dist: &[f64]) {
        self.data.push(v);
        self.index[v] = self.data.len() - 1;
        self.up(self.data.len() - 1, dist);
    }

    fn update(&mut self, v: usize, dist: &[f64]) {
        let i = self.index[v];
        if i < self.data.len() {
            self.up(i, dist);
        }
    }

    fn pop(&mut self, dist: &[f64]) -> Option<usize> {
        let top = *self.data.first()?;
        self.index[top] = usize::MAX;
        let last = self.data.pop()?;
        if !self.data.is_empty() {
            self.data[0] = last;
            self.index[last] = 0;
            self.down(dist);
        }
        Some(top)
    }

    fn up(&mut self, mut i: usize, dist: &[f64]) {
        if i == 0 {
            return;
        }
        let moving = self.data[i];
        let d = dist[moving];
        let mut levels = 0;
        let mut j = i;
        while j != 0 {
            let parent = (j - 1) / Self::ARITY;
            if d < dist[self.data[parent]] {
                levels += 1;
                j = parent;
            } else {
                break;
            }
        }
        for _ in 0..levels {
            let parent = (i - 1) / Self::ARITY;
            let pv = self.data[parent];
            self.index[pv] = i;
            self.data[i] = pv;
            i = parent;
        }
        self.data[i] = moving;
        self.index[moving] = i;
    }

    fn down(&mut self, dist: &[f64]) {
        let size = self.data.len();
        let mut i = 0;
        let d = dist[self.data[0]];
        loop {
            let first = i * Self::ARITY + 1;
            if first >= size {
                break;
            }
            let count = Self::ARITY.min(size - first);
            let mut best = 0;
            let mut best_d = dist[self.data[first]];
            for k in 1..count {
                let kd = dist[self.data[first + k]];
                if kd < best_d {
                    best = k;
                    best_d = kd;
                }
            }
            if best_d < d {
                let c = first + best;
                self.data.swap(c, i);
                self.index[self.data[c]] = c;
                self.index[self.data[i]] = i;
                i = c;
            } else {
                break;
            }
        }
    }
}

/// `get_bijective_pairs`: for each first index (ascending) its cheapest
/// pair (the first of equals, in path order), then the same for each second
/// index.
fn bijective(pairs: &[(usize, usize)], cost: &[f64], n2: usize) -> Vec<(usize, usize)> {
    let one_dim = |pairs: &[(usize, usize)], key: fn(&(usize, usize)) -> usize| {
        let mut ids: Vec<usize> = pairs.iter().map(key).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|&id| {
                let mut best: Option<((usize, usize), f64)> = None;
                for p in pairs.iter().filter(|p| key(p) == id) {
                    let c = cost[p.0 * n2 + p.1];
                    if best.is_none_or(|(_, bc)| c < bc) {
                        best = Some((*p, c));
                    }
                }
                best.map(|b| b.0)
            })
            .collect::<Vec<_>>()
    };
    let first = one_dim(pairs, |p| p.0);
    one_dim(&first, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::rect;
    use super::*;

    #[test]
    fn identical_masks_are_stable_and_motion_is_not() {
        let (w, h) = (40, 30);
        let a = rect(w, h, 10, 8, 25, 20);
        assert_eq!(t_stability(&a, &a, w, h), 0.0);
        // A shift keeps the shape: shape context is translation invariant.
        let shifted = rect(w, h, 12, 9, 27, 21);
        assert!(t_stability(&a, &shifted, w, h).abs() < 1e-12);
        // A change of shape costs something.
        let wide = rect(w, h, 5, 8, 35, 12);
        let t = t_stability(&a, &wide, w, h);
        // The toolkit's db_eval_t_stab on the same masks (numpy, built from
        // source by scripts/crosscheck_tstab.py): 0.4705704173628939.
        assert!((t - 0.4705704173628939).abs() < 1e-12, "{t}");
        let full = t_stability(&vec![true; w * h], &a, w, h);
        assert!((full - 0.060863906646575754).abs() < 1e-12, "{full}");
        // No contour on either side: NaN. An all-foreground mask has one,
        // along the image border (the mask is padded with background).
        let empty = vec![false; w * h];
        assert!(t_stability(&a, &empty, w, h).is_nan());
        assert!(t_stability(&empty, &empty, w, h).is_nan());
        // Wrong sizes: NaN, no panic.
        assert!(t_stability(&a[1..], &a, w, h).is_nan());
    }

    #[test]
    fn matching_pieces() {
        // 3x3 costs with a cheap diagonal: the path is the diagonal.
        let cost = [0.1, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.05];
        let (path, mx, my) = match_path(&cost, 3, 3);
        assert_eq!(path, vec![(2, 2), (1, 1), (0, 0)]);
        assert_eq!((mx, my), (2, 2));
        // Bijective: one pair per index on each side, the cheapest.
        let pairs = [(0, 0), (0, 1), (1, 1), (2, 1), (2, 2)];
        let b = bijective(&pairs, &cost, 3);
        assert_eq!(b, vec![(0, 0), (1, 1), (2, 2)]);
        // Upsampling: a 7-pixel segment becomes 3 steps.
        let up = contour_upsample(&[[0, 0], [7, 0]], 3.0);
        assert_eq!(up.len(), 4);
        assert_eq!(up[3], [7.0, 0.0]);
    }

    /// One T call on a 854×480 object costs a few milliseconds in release
    /// mode (the figure in docs/metrics.md); a bound generous enough for a
    /// debug build on a loaded machine.
    #[test]
    fn t_on_480p_masks_is_fast_enough() {
        let (w, h) = (854, 480);
        let disk = |cx: f64, cy: f64, r: f64| -> Vec<bool> {
            (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f64, (i / w) as f64);
                    (x - cx).powi(2) + (y - cy).powi(2) <= r * r
                })
                .collect()
        };
        let a = disk(400.0, 240.0, 150.0);
        let b = disk(404.0, 241.0, 146.0);
        let t0 = std::time::Instant::now();
        let t = t_stability(&a, &b, w, h);
        let took = t0.elapsed();
        assert!(t.is_finite() && t > 0.0 && t < 0.5, "{t}");
        assert!(took.as_secs_f64() < 20.0, "{took:?}");
    }
}
