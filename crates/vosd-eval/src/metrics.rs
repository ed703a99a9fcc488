//! DAVIS evaluation metrics: region similarity J, contour accuracy F and the
//! per-sequence statistics (mean, recall, decay), computed exactly as the
//! official DAVIS toolkit (`davis2017-evaluation`, `davisinteractive`'s
//! `metrics/jaccard.py`) computes them.
//!
//! * J ([`jaccard`]) is |M∩G| / |M∪G|, 1 when both masks are empty.
//! * F ([`f_measure`]) compares the one-pixel boundaries ([`boundary_map`],
//!   the toolkit's `_seg2bmap`) of both masks, each dilated by a disk of
//!   radius [`boundary_radius`] (`ceil(0.008 * sqrt(H² + W²))`, 8 at 854×480).
//! * [`statistics`] is the toolkit's `db_statistics` (numpy `nanmean`,
//!   `linspace`, round-half-to-even and its `uint8` bin indices included).
//! * [`score_sequence`] and [`overall`] reproduce the semi-supervised
//!   evaluation: first and last frame skipped, one J/F series per object,
//!   final figures averaged over all objects of all sequences.
//!
//! Masks are row-major, `width * height` pixels. Sums are done the way numpy
//! does them (pairwise summation), so the figures agree with the Python
//! toolkit to the last bit on ordinary inputs; `docs/metrics.md` says how this
//! was cross-checked with `scripts/crosscheck_metrics.py`.
//!
//! NaN: statistics of an empty series are NaN (as in numpy). `serde_json`
//! writes a NaN `f64` as `null`, so a JSON consumer sees `null` there.

use serde::Serialize;
use thiserror::Error;

/// Errors of the metric functions: every one of them is an input whose
/// sizes do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetricsError {
    /// The prediction and the ground truth have different pixel counts.
    #[error("prediction has {pred} pixels but ground truth has {gt}")]
    LengthMismatch {
        /// Pixels in the prediction.
        pred: usize,
        /// Pixels in the ground truth.
        gt: usize,
    },
    /// A mask does not hold `width * height` pixels.
    #[error("mask has {len} pixels, expected {width}x{height}")]
    DimensionMismatch {
        /// Pixels in the mask.
        len: usize,
        /// Expected width.
        width: usize,
        /// Expected height.
        height: usize,
    },
    /// The prediction and the ground truth have different frame counts.
    #[error("prediction has {pred} frames but ground truth has {gt}")]
    FrameCountMismatch {
        /// Frames in the prediction.
        pred: usize,
        /// Frames in the ground truth.
        gt: usize,
    },
    /// One frame of a sequence does not hold `width * height` pixels.
    #[error("{which} frame {frame} has {len} pixels, expected {width}x{height}")]
    FrameSize {
        /// `"prediction"` or `"ground truth"`.
        which: &'static str,
        /// Index of the frame in the sequence (0-based, first frame included).
        frame: usize,
        /// Pixels in that frame.
        len: usize,
        /// Expected width.
        width: usize,
        /// Expected height.
        height: usize,
    },
}

/// Region similarity J (Jaccard index, IoU) of two binary masks:
/// |pred ∧ gt| / |pred ∨ gt|, and 1.0 when both masks are empty (the
/// toolkit's `db_eval_iou` / `batched_jaccard`).
///
/// The masks may be of any shape; only their lengths must agree, otherwise
/// [`MetricsError::LengthMismatch`] is returned.
pub fn jaccard(pred: &[bool], gt: &[bool]) -> Result<f64, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::LengthMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    let (mut inter, mut union) = (0u64, 0u64);
    for (&p, &g) in pred.iter().zip(gt) {
        inter += u64::from(p & g);
        union += u64::from(p | g);
    }
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}

/// Calls `f(y, x)` for every boundary pixel of `mask` (already checked to
/// hold `width * height` pixels, both non-zero), in row-major order, with the
/// toolkit's `_seg2bmap` rule:
///
/// * inside: `b = seg^e | seg^s | seg^se` (east, south, south-east neighbour);
/// * last row: `b = seg ^ e`; last column: `b = seg ^ s`;
/// * bottom-right pixel: never a boundary.
fn for_each_boundary_pixel(
    mask: &[bool],
    width: usize,
    height: usize,
    mut f: impl FnMut(usize, usize),
) {
    for y in 0..height {
        let row = &mask[y * width..(y + 1) * width];
        if y + 1 < height {
            let next = &mask[(y + 1) * width..(y + 2) * width];
            for x in 0..width - 1 {
                let s = row[x];
                if (s ^ row[x + 1]) | (s ^ next[x]) | (s ^ next[x + 1]) {
                    f(y, x);
                }
            }
            if row[width - 1] ^ next[width - 1] {
                f(y, width - 1);
            }
        } else {
            for x in 0..width - 1 {
                if row[x] ^ row[x + 1] {
                    f(y, x);
                }
            }
        }
    }
}

/// `width * height` if it does not overflow and both are non-zero.
fn area(width: usize, height: usize) -> Option<usize> {
    width.checked_mul(height).filter(|&n| n > 0)
}

/// One-pixel-wide boundary map of a binary mask, exactly the toolkit's
/// `_seg2bmap` without resizing (the boundary lies half a pixel towards the
/// origin):
///
/// ```text
/// e[:, :-1] = seg[:, 1:]; s[:-1, :] = seg[1:, :]; se[:-1, :-1] = seg[1:, 1:]
/// b = seg^e | seg^s | seg^se
/// b[-1, :] = seg[-1, :] ^ e[-1, :]
/// b[:, -1] = seg[:, -1] ^ s[:, -1]
/// b[-1, -1] = 0
/// ```
///
/// `mask` is row-major with `width * height` pixels; the result has the same
/// layout. This function cannot report an error: if `mask.len()` is not
/// `width * height` (or that product overflows) it returns an empty vector;
/// a 0×N or N×0 image also gives an empty vector.
pub fn boundary_map(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    match area(width, height) {
        Some(n) if n == mask.len() => {
            let mut b = vec![false; n];
            for_each_boundary_pixel(mask, width, height, |y, x| b[y * width + x] = true);
            b
        }
        _ => Vec::new(),
    }
}

/// Radius in pixels of the disk that dilates the boundaries in
/// [`f_measure`]: `ceil(0.008 * sqrt(height² + width²))`, i.e. the toolkit's
/// `np.ceil(bound_th * np.linalg.norm(mask.shape))` with `bound_th = 0.008`.
/// It is 8 at 854×480 and 0 for a 0×0 image.
pub fn boundary_radius(width: usize, height: usize) -> usize {
    let (w, h) = (width as f64, height as f64);
    (0.008 * (h * h + w * w).sqrt()).ceil() as usize
}

/// Boundary pixels of a mask, row by row: `xs[row_start[y]..row_start[y + 1]]`
/// are the columns (ascending) of the boundary pixels of row `y`.
struct BoundaryRows {
    xs: Vec<u32>,
    row_start: Vec<usize>,
}

impl BoundaryRows {
    fn new(mask: &[bool], width: usize, height: usize) -> Self {
        let mut xs = Vec::new();
        let mut row_start = vec![0usize; height + 1];
        for_each_boundary_pixel(mask, width, height, |y, x| {
            xs.push(x as u32);
            row_start[y + 1] = xs.len();
        });
        // Rows without a boundary pixel start where the previous one ended.
        let mut prev = 0;
        for s in &mut row_start {
            *s = (*s).max(prev);
            prev = *s;
        }
        BoundaryRows { xs, row_start }
    }

    fn count(&self) -> usize {
        self.xs.len()
    }

    fn row(&self, y: usize) -> &[u32] {
        &self.xs[self.row_start[y]..self.row_start[y + 1]]
    }

    /// Whether row `y` has a boundary pixel in columns `lo..=hi`.
    fn any_in(&self, y: usize, lo: usize, hi: usize) -> bool {
        let row = self.row(y);
        let i = row.partition_point(|&v| (v as usize) < lo);
        i < row.len() && row[i] as usize <= hi
    }

    /// How many of our boundary pixels lie in the dilation of `other`'s
    /// boundary by the disk whose half-width at vertical offset `dy` is
    /// `half_widths[dy]` (i.e. have a boundary pixel of `other` within the
    /// disk around them: the disk is symmetric).
    fn matched_in(&self, other: &BoundaryRows, half_widths: &[usize], height: usize) -> usize {
        let r = half_widths.len() - 1;
        let mut matched = 0;
        for y in 0..height {
            for &x in self.row(y) {
                let x = x as usize;
                // dy = 0 first, then outwards: most pixels match early.
                let hit = (0..=r).any(|dy| {
                    let hw = half_widths[dy];
                    let (lo, hi) = (x.saturating_sub(hw), x + hw);
                    (y + dy < height && other.any_in(y + dy, lo, hi))
                        || (dy > 0 && dy <= y && other.any_in(y - dy, lo, hi))
                });
                matched += usize::from(hit);
            }
        }
        matched
    }
}

/// Half-widths of skimage's `disk(r)` (offsets with `dx² + dy² <= r²`):
/// element `dy` (0..=r) is the largest `dx` in the disk at that row offset.
fn disk_half_widths(r: usize) -> Vec<usize> {
    (0..=r)
        .map(|dy| {
            let rem = r * r - dy * dy;
            let mut dx = (rem as f64).sqrt() as usize;
            while dx * dx > rem {
                dx -= 1;
            }
            while (dx + 1) * (dx + 1) <= rem {
                dx += 1;
            }
            dx
        })
        .collect()
}

/// Contour accuracy F of a predicted binary mask against the ground truth,
/// exactly the toolkit's `f_measure` (`bound_th = 0.008`, no void pixels).
///
/// Both boundaries ([`boundary_map`]) are dilated by a disk of radius
/// [`boundary_radius`]`(width, height)` (skimage `disk(r)`: offsets with
/// dx² + dy² <= r², pixels outside the image ignored); then
/// precision P = |Mb ∧ dil(Gb)| / |Mb|, recall R = |Gb ∧ dil(Mb)| / |Gb|,
/// where Mb, Gb are the boundaries of `pred` and `gt`. Empty boundaries:
/// Mb empty and Gb not: P = 1, R = 0; Gb empty and Mb not: P = 0, R = 1;
/// both empty: P = R = 1. F = 0 when P + R = 0, otherwise 2PR / (P + R).
///
/// The dilation is never materialised: boundary pixels are kept per row and
/// each one looks up, row by row in its disk, whether the other boundary has
/// a pixel within the disk's half-width (a binary search).
///
/// Errors: [`MetricsError::LengthMismatch`] when the masks' lengths differ,
/// [`MetricsError::DimensionMismatch`] when they are not `width * height`.
/// An image with no pixels (0×N) counts as two empty boundaries: F = 1.
pub fn f_measure(
    pred: &[bool],
    gt: &[bool],
    width: usize,
    height: usize,
) -> Result<f64, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::LengthMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    if width.checked_mul(height) != Some(pred.len()) {
        return Err(MetricsError::DimensionMismatch {
            len: pred.len(),
            width,
            height,
        });
    }
    if pred.is_empty() {
        return Ok(1.0);
    }
    let fg = BoundaryRows::new(pred, width, height);
    let gtb = BoundaryRows::new(gt, width, height);
    let (n_fg, n_gt) = (fg.count(), gtb.count());
    let (precision, recall) = match (n_fg, n_gt) {
        (0, 0) => (1.0, 1.0),
        (0, _) => (1.0, 0.0),
        (_, 0) => (0.0, 1.0),
        _ => {
            let hw = disk_half_widths(boundary_radius(width, height));
            let fg_match = fg.matched_in(&gtb, &hw, height);
            let gt_match = gtb.matched_in(&fg, &hw, height);
            (fg_match as f64 / n_fg as f64, gt_match as f64 / n_gt as f64)
        }
    };
    Ok(if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    })
}

/// Mean, recall and decay of one per-frame series (the toolkit's
/// `db_statistics`). Fields may be NaN (see [`statistics`]); `serde_json`
/// writes NaN as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Statistics {
    /// `nanmean(X)`: mean of the non-NaN values.
    pub mean: f64,
    /// `nanmean(X > 0.5)`: fraction of frames scoring above 0.5 (NaN frames
    /// count as not above).
    pub recall: f64,
    /// Mean of the first quarter of the series minus mean of the last one.
    pub decay: f64,
}

/// numpy's `np.add.reduce` of a contiguous float64 array: pairwise summation
/// with an 8-way unrolled base case of at most 128 elements, added to 0.
fn np_sum(a: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            let mut res = 0.0;
            for &v in a {
                res += v;
            }
            res
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let full = n - n % 8;
            let mut i = 8;
            while i < full {
                for (j, rj) in r.iter_mut().enumerate() {
                    *rj += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for &v in &a[i..] {
                res += v;
            }
            res
        } else {
            let mut n2 = n / 2;
            n2 -= n2 % 8;
            pairwise(&a[..n2]) + pairwise(&a[n2..])
        }
    }
    0.0 + pairwise(a)
}

/// numpy's `nanmean` of a 1-D float64 array: NaNs replaced by 0, summed as
/// numpy sums, divided by the count of non-NaN values (NaN when none).
fn nanmean(a: &[f64]) -> f64 {
    let cleaned: Vec<f64> = a
        .iter()
        .map(|&v| if v.is_nan() { 0.0 } else { v })
        .collect();
    let count = a.iter().filter(|v| !v.is_nan()).count();
    np_sum(&cleaned) / count as f64
}

/// numpy's `mean` of a 1-D float64 array (NaN propagates; NaN when empty).
fn np_mean(a: &[f64]) -> f64 {
    np_sum(a) / a.len() as f64
}

/// The toolkit's decay bin bounds for a series of `n` values:
/// `ids = round(linspace(1, n, 5) + 1e-10) - 1` cast to `uint8`, with
/// numpy's `linspace` arithmetic and round-half-to-even. Returns the slices
/// `X[ids[i] : ids[i+1] + 1]` of bins 0 and 3 as clamped `(start, end)`
/// ranges (`ids[i+1] + 1` computed without wrapping, as numpy 1.x did).
fn decay_bins(n: usize) -> [(usize, usize); 2] {
    const N_BINS: usize = 4;
    let (start, stop) = (1.0f64, n as f64);
    let div = N_BINS as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut ids = [0usize; N_BINS + 1];
    for (i, id) in ids.iter_mut().enumerate() {
        let y = if i == N_BINS {
            stop
        } else if step == 0.0 {
            (i as f64 / div) * delta + start
        } else {
            i as f64 * step + start
        };
        let r = (y + 1e-10).round_ties_even() - 1.0;
        // `astype(np.uint8)`: -1 becomes 255 and indices past 255 wrap.
        *id = (r as i64).rem_euclid(256) as usize;
    }
    let slice = |i: usize| {
        let s = ids[i].min(n);
        let e = (ids[i + 1] + 1).min(n);
        (s, e.max(s))
    };
    [slice(0), slice(N_BINS - 1)]
}

/// The toolkit's `db_statistics` of a per-frame series X:
///
/// * `mean = nanmean(X)`;
/// * `recall = nanmean(X > 0.5)` (a NaN frame counts as 0, not skipped);
/// * `decay = nanmean(D[0]) - nanmean(D[3])` with
///   `ids = uint8(round(linspace(1, len(X), 5) + 1e-10) - 1)` and
///   `D[i] = X[ids[i] : ids[i+1] + 1]`.
///
/// The bin indices follow numpy exactly. For short series: len 1 gives
/// ids `[0,0,0,0,0]` (decay = X0 − X0 = 0), len 2 gives `[0,0,1,1,1]`
/// (decay = X0 − X1), len 3 gives `[0,1,1,2,2]` (decay = mean(X0,X1) − X2),
/// len 4 gives `[0,1,2,2,3]` (decay = mean(X0,X1) − mean(X2,X3)).
/// Like the toolkit, indices are cast to `uint8`, so for series longer than
/// 256 values the bins wrap and the decay is that of the official code, not a
/// meaningful one (DAVIS sequences are far shorter). An empty series, or an
/// all-NaN bin, gives NaN where numpy gives NaN: empty input →
/// `{NaN, NaN, NaN}`; all-NaN input → `{NaN, 0, NaN}`.
pub fn statistics(per_frame: &[f64]) -> Statistics {
    let mean = nanmean(per_frame);
    let above = per_frame.iter().filter(|&&v| v > 0.5).count();
    let recall = above as f64 / per_frame.len() as f64;
    let [(s0, e0), (s3, e3)] = decay_bins(per_frame.len());
    let decay = nanmean(&per_frame[s0..e0]) - nanmean(&per_frame[s3..e3]);
    Statistics {
        mean,
        recall,
        decay,
    }
}

/// Scores of one object over the evaluated frames of a sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectScores {
    /// Object id (label value in the masks).
    pub id: u8,
    /// Statistics of `j_per_frame`.
    pub j: Statistics,
    /// Statistics of `f_per_frame`.
    pub f: Statistics,
    /// J of each evaluated frame (frames 1..n-1 of the sequence).
    pub j_per_frame: Vec<f64>,
    /// F of each evaluated frame (frames 1..n-1 of the sequence).
    pub f_per_frame: Vec<f64>,
}

/// Scores of every requested object of one sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceScores {
    /// One entry per requested object id, in the order requested.
    pub objects: Vec<ObjectScores>,
}

/// Scores one sequence as the official semi-supervised evaluation does.
///
/// `pred` and `gt` hold ALL frames of the sequence as label masks (one `u8`
/// object id per pixel, row-major, `width * height` pixels, 0 = background).
/// The first and the last frame are skipped (`[:, 1:-1]`); for each id in
/// `object_ids` (in that order; the caller maps DAVIS 2016's 0/255
/// annotations to id 1) J and F are computed on every remaining frame between
/// the masks `pred == id` and `gt == id`, and summarised by [`statistics`].
/// With fewer than 3 frames no frame is evaluated: the per-frame series are
/// empty and their statistics NaN.
///
/// Errors: [`MetricsError::FrameCountMismatch`] when the frame counts differ,
/// [`MetricsError::FrameSize`] when a frame (any, skipped ones included) does
/// not hold `width * height` pixels.
pub fn score_sequence(
    pred: &[Vec<u8>],
    gt: &[Vec<u8>],
    width: usize,
    height: usize,
    object_ids: &[u8],
) -> Result<SequenceScores, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::FrameCountMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    let expected = width.checked_mul(height);
    for (which, frames) in [("prediction", pred), ("ground truth", gt)] {
        if let Some((frame, f)) = frames
            .iter()
            .enumerate()
            .find(|(_, f)| Some(f.len()) != expected)
        {
            return Err(MetricsError::FrameSize {
                which,
                frame,
                len: f.len(),
                width,
                height,
            });
        }
    }
    let evaluated = if pred.len() >= 3 {
        1..pred.len() - 1
    } else {
        0..0
    };
    let mut objects: Vec<ObjectScores> = object_ids
        .iter()
        .map(|&id| ObjectScores {
            id,
            j: statistics(&[]),
            f: statistics(&[]),
            j_per_frame: Vec::with_capacity(evaluated.len()),
            f_per_frame: Vec::with_capacity(evaluated.len()),
        })
        .collect();
    for t in evaluated {
        for obj in &mut objects {
            let p: Vec<bool> = pred[t].iter().map(|&v| v == obj.id).collect();
            let g: Vec<bool> = gt[t].iter().map(|&v| v == obj.id).collect();
            obj.j_per_frame.push(jaccard(&p, &g)?);
            obj.f_per_frame.push(f_measure(&p, &g, width, height)?);
        }
    }
    for obj in &mut objects {
        obj.j = statistics(&obj.j_per_frame);
        obj.f = statistics(&obj.f_per_frame);
    }
    Ok(SequenceScores { objects })
}

/// Final figures over a set of sequences (the toolkit's global results).
/// Fields are NaN when there is no object, or when some object's statistic
/// is NaN (numpy's `mean` propagates NaN); `serde_json` writes NaN as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Overall {
    /// Mean over all objects of their J mean.
    pub j_mean: f64,
    /// Mean over all objects of their J recall.
    pub j_recall: f64,
    /// Mean over all objects of their J decay.
    pub j_decay: f64,
    /// Mean over all objects of their F mean.
    pub f_mean: f64,
    /// Mean over all objects of their F recall.
    pub f_recall: f64,
    /// Mean over all objects of their F decay.
    pub f_decay: f64,
    /// (j_mean + f_mean) / 2.
    pub jf_mean: f64,
}

/// Official aggregation: every field is numpy's `mean` over ALL objects of
/// all `sequences` of that object's statistic (a sequence with more objects
/// weighs more), and `jf_mean = (j_mean + f_mean) / 2`.
pub fn overall(sequences: &[SequenceScores]) -> Overall {
    let objects: Vec<&ObjectScores> = sequences.iter().flat_map(|s| &s.objects).collect();
    let field = |get: fn(&ObjectScores) -> f64| {
        np_mean(&objects.iter().map(|o| get(o)).collect::<Vec<_>>())
    };
    let j_mean = field(|o| o.j.mean);
    let f_mean = field(|o| o.f.mean);
    Overall {
        j_mean,
        j_recall: field(|o| o.j.recall),
        j_decay: field(|o| o.j.decay),
        f_mean,
        f_recall: field(|o| o.f.recall),
        f_decay: field(|o| o.f.decay),
        jf_mean: (j_mean + f_mean) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a mask drawn with `#` (true) and `.` (false), one row per line.
    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let m: Vec<bool> = rows
            .iter()
            .flat_map(|r| {
                assert_eq!(r.len(), w);
                r.chars().map(|c| c == '#')
            })
            .collect();
        (m, w, h)
    }

    /// Rectangle `[x0, x1) × [y0, y1)` in a `w × h` image.
    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Vec<bool> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                x >= x0 && x < x1 && y >= y0 && y < y1
            })
            .collect()
    }

    /// Straightforward reference: materialised disk dilation.
    fn f_measure_naive(pred: &[bool], gt: &[bool], w: usize, h: usize) -> f64 {
        let r = boundary_radius(w, h) as i64;
        let dil = |b: &[bool]| {
            let mut d = vec![false; w * h];
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    if !b[(y * w as i64 + x) as usize] {
                        continue;
                    }
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let (yy, xx) = (y + dy, x + dx);
                            if dx * dx + dy * dy <= r * r
                                && yy >= 0
                                && xx >= 0
                                && yy < h as i64
                                && xx < w as i64
                            {
                                d[(yy * w as i64 + xx) as usize] = true;
                            }
                        }
                    }
                }
            }
            d
        };
        let (pb, gb) = (boundary_map(pred, w, h), boundary_map(gt, w, h));
        let (pd, gd) = (dil(&pb), dil(&gb));
        let n_fg = pb.iter().filter(|&&v| v).count();
        let n_gt = gb.iter().filter(|&&v| v).count();
        let fg_match = pb.iter().zip(&gd).filter(|(&a, &b)| a && b).count();
        let gt_match = gb.iter().zip(&pd).filter(|(&a, &b)| a && b).count();
        let (p, rc) = match (n_fg, n_gt) {
            (0, 0) => (1.0, 1.0),
            (0, _) => (1.0, 0.0),
            (_, 0) => (0.0, 1.0),
            _ => (fg_match as f64 / n_fg as f64, gt_match as f64 / n_gt as f64),
        };
        if p + rc == 0.0 {
            0.0
        } else {
            2.0 * p * rc / (p + rc)
        }
    }

    #[test]
    fn jaccard_4x4_by_hand() {
        // pred: a 3x2 block (6 px); gt: an 8-px shape overlapping it on 4 px.
        let (p, _, _) = mask(&["###.", "###.", "....", "...."]);
        let (g, _, _) = mask(&[".##.", ".###", ".###", "...."]);
        // intersection: (1,0),(2,0),(1,1),(2,1) = 4
        // union: pred 6 + gt 8 - 4 = 10
        assert_eq!(jaccard(&p, &g).unwrap(), 0.4);
        assert_eq!(jaccard(&g, &p).unwrap(), 0.4);
        assert_eq!(jaccard(&p, &p).unwrap(), 1.0);
        let none = vec![false; 16];
        assert_eq!(jaccard(&p, &none).unwrap(), 0.0);
    }

    #[test]
    fn jaccard_both_empty_is_one() {
        assert_eq!(jaccard(&[false; 16], &[false; 16]).unwrap(), 1.0);
        assert_eq!(jaccard(&[], &[]).unwrap(), 1.0);
    }

    #[test]
    fn size_mismatches_are_errors() {
        assert_eq!(
            jaccard(&[true; 3], &[true; 4]),
            Err(MetricsError::LengthMismatch { pred: 3, gt: 4 })
        );
        assert_eq!(
            f_measure(&[true; 3], &[true; 4], 2, 2),
            Err(MetricsError::LengthMismatch { pred: 3, gt: 4 })
        );
        assert_eq!(
            f_measure(&[true; 6], &[true; 6], 2, 2),
            Err(MetricsError::DimensionMismatch {
                len: 6,
                width: 2,
                height: 2
            })
        );
        assert!(f_measure(&[true; 6], &[true; 6], usize::MAX, 2).is_err());
        assert!(boundary_map(&[true; 6], 2, 2).is_empty());
        assert!(boundary_map(&[true; 6], usize::MAX, 3).is_empty());
        let ok = vec![0u8; 4];
        let two = vec![ok.clone(), ok.clone()];
        assert_eq!(
            score_sequence(&two[..1], &two, 2, 2, &[1]),
            Err(MetricsError::FrameCountMismatch { pred: 1, gt: 2 })
        );
        assert_eq!(
            score_sequence(
                &[ok.clone(), vec![0; 3]],
                &[ok.clone(), ok.clone()],
                2,
                2,
                &[1]
            ),
            Err(MetricsError::FrameSize {
                which: "prediction",
                frame: 1,
                len: 3,
                width: 2,
                height: 2
            })
        );
        assert_eq!(
            score_sequence(
                &[ok.clone(), ok.clone()],
                &[vec![0; 5], ok.clone()],
                2,
                2,
                &[1]
            ),
            Err(MetricsError::FrameSize {
                which: "ground truth",
                frame: 0,
                len: 5,
                width: 2,
                height: 2
            })
        );
    }

    #[test]
    fn boundary_map_of_square_pixel_by_pixel() {
        // 2x2 square at (1..3, 1..3) of a 5x4 image. With the seg2bmap rule
        // a pixel is boundary when it differs from its E, S or SE neighbour,
        // so the boundary sits half a pixel towards the origin: the pixels
        // just above/left of the square are boundary, its bottom/right
        // edge pixels are too, and its top-left interior pixel is not.
        let (m, w, h) = mask(&[".....", ".##..", ".##..", "....."]);
        let b = boundary_map(&m, w, h);
        let (expect, _, _) = mask(&[
            "###..", // (0,0): SE=1; (1,0),(2,0): S=1; (3,0): all 0
            "#.#..", // (0,1): E=1; (1,1): E,S,SE all 1; (2,1): E=0
            "###..", // (0,2): E=1; (1,2): S=0; (2,2): E=0
            ".....", // last row: seg^e only: all equal 0
        ]);
        assert_eq!(b, expect);
    }

    #[test]
    fn boundary_map_last_row_and_column_rules() {
        // Object touching the last row and the last column.
        let (m, w, h) = mask(&["....", "..##", "..##"]);
        let b = boundary_map(&m, w, h);
        let (expect, _, _) = mask(&[
            ".###", // (1,0): SE=1; (2,0),(3,0): S=1 ((3,0) is last column: seg^s)
            ".#..", // (1,1): E=1; (2,1): E,S,SE all 1 -> 0; (3,1): last col, s=1 -> 0
            ".#..", // last row: seg^e: (1,2): 0^1; (2,2): 1^1 = 0; (3,2): corner = 0
        ]);
        assert_eq!(b, expect);
        // A lone pixel in the bottom-right corner: (1,1) differs from its SE
        // neighbour, (2,1) is in the last column (seg ^ s = 0 ^ 1), (1,2) in
        // the last row (seg ^ e = 0 ^ 1); the corner pixel itself is 0.
        let (m, w, h) = mask(&["...", "...", "..#"]);
        let (expect, _, _) = mask(&["...", ".##", ".#."]);
        assert_eq!(boundary_map(&m, w, h), expect);
        // One-row and one-column images.
        assert_eq!(
            boundary_map(&[false, true, true, false], 4, 1),
            vec![true, false, true, false]
        );
        assert_eq!(
            boundary_map(&[true, false, false], 1, 3),
            vec![true, false, false]
        );
        assert_eq!(boundary_map(&[true], 1, 1), vec![false]);
        assert!(boundary_map(&[], 0, 5).is_empty());
    }

    #[test]
    fn radius_and_disk() {
        assert_eq!(boundary_radius(854, 480), 8);
        assert_eq!(boundary_radius(1920, 1080), 18);
        assert_eq!(boundary_radius(10, 10), 1);
        assert_eq!(boundary_radius(0, 0), 0);
        assert_eq!(disk_half_widths(0), vec![0]);
        assert_eq!(disk_half_widths(1), vec![1, 0]);
        // r = 8: floor(sqrt(64 - dy²)) = 8, 7, 7, 7, 6, 6, 5, 3, 0
        assert_eq!(disk_half_widths(8), vec![8, 7, 7, 7, 6, 6, 5, 3, 0]);
        // skimage disk(8).sum() == 197
        let hw = disk_half_widths(8);
        let area: usize = (2 * hw[0] + 1) + 2 * hw[1..].iter().map(|h| 2 * h + 1).sum::<usize>();
        assert_eq!(area, 197);
    }

    #[test]
    fn f_identical_is_one() {
        let m = rect(64, 48, 10, 5, 40, 30);
        assert_eq!(f_measure(&m, &m, 64, 48).unwrap(), 1.0);
    }

    #[test]
    fn f_shift_beyond_radius_is_zero() {
        // 100x50: radius ceil(0.008 * 111.8) = 1. A 20x20 square moved 40 px
        // to the right has no boundary pixel within the radius: P = R = 0.
        let (w, h) = (100, 50);
        assert_eq!(boundary_radius(w, h), 1);
        let a = rect(w, h, 10, 10, 30, 30);
        let b = rect(w, h, 50, 10, 70, 30);
        assert_eq!(f_measure(&a, &b, w, h).unwrap(), 0.0);
        // Shift by 1 px: every boundary pixel is within radius 1 of the other
        // boundary, except the ends of the horizontal edges.
        let c = rect(w, h, 11, 10, 31, 30);
        let f = f_measure(&a, &c, w, h).unwrap();
        assert_eq!(f, f_measure_naive(&a, &c, w, h));
        assert!(f > 0.9 && f <= 1.0, "{f}");
    }

    #[test]
    fn f_shift_by_hand() {
        // 10x1 image (radius ceil(0.008*10.05) = 1). Row boundaries: pixel x
        // is boundary iff seg[x] != seg[x+1] (x < 9).
        // pred ..###..... -> boundary at x=1 and x=4
        // gt   .....###.. -> boundary at x=4 and x=7
        // P = |{4}| / 2 (x=1 has nothing within 1) = 0.5, R = 1/2 = 0.5, F = 0.5
        let (p, w, h) = mask(&["..###....."]);
        let (g, _, _) = mask(&[".....###.."]);
        assert_eq!(f_measure(&p, &g, w, h).unwrap(), 0.5);
        // gt ......###. -> boundary at 5 and 8: pred's 4 is within 1 of 5.
        let (g, _, _) = mask(&["......###."]);
        assert_eq!(f_measure(&p, &g, w, h).unwrap(), 0.5);
        // gt .......###: boundary at 6 only (the last pixel has no east).
        // P = 0/2, R = 0/1 -> F = 0.
        let (g, _, _) = mask(&[".......###"]);
        assert_eq!(f_measure(&p, &g, w, h).unwrap(), 0.0);
    }

    #[test]
    fn f_empty_cases() {
        let (w, h) = (16, 16);
        let empty = vec![false; w * h];
        let full = vec![true; w * h]; // a full mask has no boundary either
        let sq = rect(w, h, 4, 4, 8, 8);
        // pred empty, gt not: P=1, R=0 -> F=0
        assert_eq!(f_measure(&empty, &sq, w, h).unwrap(), 0.0);
        // pred not, gt empty: P=0, R=1 -> F=0
        assert_eq!(f_measure(&sq, &empty, w, h).unwrap(), 0.0);
        // both empty: P=R=1 -> F=1
        assert_eq!(f_measure(&empty, &empty, w, h).unwrap(), 1.0);
        assert_eq!(f_measure(&empty, &full, w, h).unwrap(), 1.0);
        assert_eq!(f_measure(&[], &[], 0, 7).unwrap(), 1.0);
    }

    #[test]
    fn f_matches_naive_dilation() {
        // Pseudo-random blobs on a small image, radius 1, and on 854x480
        // cut-outs, radius 8: the sparse lookup equals a real dilation.
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Radii: 1, 2, 1, 1, 6.
        for &(w, h, n) in &[
            (37usize, 23usize, 20),
            (200, 120, 20),
            (7, 1, 20),
            (1, 9, 20),
            (640, 360, 2),
        ] {
            for _ in 0..n {
                let mut m = [vec![false; w * h], vec![false; w * h]];
                for mm in &mut m {
                    for _ in 0..4 {
                        let (x0, y0) = ((rnd() as usize) % w, (rnd() as usize) % h);
                        let (x1, y1) = (x0 + (rnd() as usize) % w, y0 + (rnd() as usize) % h);
                        for y in y0..y1.min(h) {
                            for x in x0..x1.min(w) {
                                mm[y * w + x] ^= true;
                            }
                        }
                    }
                    for _ in 0..(w * h / 50) {
                        let i = (rnd() as usize) % (w * h);
                        mm[i] = !mm[i];
                    }
                }
                let fast = f_measure(&m[0], &m[1], w, h).unwrap();
                assert_eq!(fast, f_measure_naive(&m[0], &m[1], w, h), "{w}x{h}");
            }
        }
    }

    #[test]
    fn statistics_by_hand() {
        // X = [0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3], len 7:
        // linspace(1, 7, 5) = [1, 2.5, 4, 5.5, 7]; +1e-10 and round ->
        // [1, 3, 4, 6, 7]; -1 -> ids = [0, 2, 3, 5, 6].
        // D0 = X[0:3] = [0.9, 0.8, 0.4]; D3 = X[5:7] = [0.6, 0.3].
        let x = [0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3];
        assert_eq!(decay_bins(7), [(0, 3), (5, 7)]);
        let s = statistics(&x);
        let mean = (((((0.9 + 0.8) + 0.4) + 0.7) + 0.2) + 0.6 + 0.3) / 7.0;
        assert_eq!(s.mean, mean);
        assert_eq!(s.recall, 4.0 / 7.0); // 0.9, 0.8, 0.7, 0.6
        assert_eq!(s.decay, (0.9 + 0.8 + 0.4) / 3.0 - (0.6 + 0.3) / 2.0);
        assert!((s.decay - 0.25).abs() < 1e-12);

        // A NaN frame: skipped by the means, counted as "not above" by recall.
        let s = statistics(&[1.0, f64::NAN, 0.0, 1.0]);
        assert_eq!(s.mean, 2.0 / 3.0);
        assert_eq!(s.recall, 0.5);
        // len 4: ids = [0, 1, 2, 2, 3] -> D0 = X[0:2], D3 = X[2:4]
        assert_eq!(s.decay, 1.0 - 0.5);
    }

    #[test]
    fn statistics_short_and_empty() {
        // len 1: ids [0,0,0,0,0] -> D0 = D3 = X[0:1]
        assert_eq!(decay_bins(1), [(0, 1), (0, 1)]);
        let s = statistics(&[0.7]);
        assert_eq!((s.mean, s.recall, s.decay), (0.7, 1.0, 0.0));
        // len 2: linspace [1, 1.25, 1.5, 1.75, 2] -> ids [0,0,1,1,1]
        assert_eq!(decay_bins(2), [(0, 1), (1, 2)]);
        let s = statistics(&[0.75, 0.25]);
        assert_eq!((s.mean, s.recall, s.decay), (0.5, 0.5, 0.5));
        // len 3: linspace [1, 1.5, 2, 2.5, 3] -> ids [0,1,1,2,2]
        assert_eq!(decay_bins(3), [(0, 2), (2, 3)]);
        let s = statistics(&[1.0, 0.5, 0.25]);
        assert_eq!(s.decay, 0.75 - 0.25);
        // len 0: ids [0,0,0,255,255] over an empty array: everything NaN.
        let s = statistics(&[]);
        assert!(s.mean.is_nan() && s.recall.is_nan() && s.decay.is_nan());
        // all NaN: mean and decay NaN, recall 0.
        let s = statistics(&[f64::NAN, f64::NAN]);
        assert!(s.mean.is_nan() && s.decay.is_nan());
        assert_eq!(s.recall, 0.0);
        // Long series reproduce the toolkit's uint8 indices: len 257 gives
        // ids [0, 64, 128, 192, 0] -> D3 = X[192:1] is empty -> NaN.
        assert_eq!(decay_bins(256), [(0, 65), (191, 256)]);
        assert!(statistics(&[0.5; 257]).decay.is_nan());
        assert_eq!(decay_bins(300), [(0, 76), (224, 224)]);
    }

    #[test]
    fn numpy_sum_order() {
        // numpy 2.4: v = [0.1*i + 1e-3/(i+1) for i in range(300)];
        // np.sum(v).hex() == '0x1.185019bbd9be6p+12' while a left fold gives
        // '0x1.185019bbd9be4p+12'; np.mean(v).hex() == '0x1.de669251aa3abp+3'.
        let v: Vec<f64> = (0..300)
            .map(|i| 0.1 * i as f64 + 1e-3 / (i + 1) as f64)
            .collect();
        assert_eq!(np_sum(&v).to_bits(), 0x40b185019bbd9be6);
        assert_eq!(
            v.iter().fold(0.0, |a, b| a + b).to_bits(),
            0x40b185019bbd9be4
        );
        assert_eq!(np_mean(&v).to_bits(), 0x402de669251aa3ab);
        assert_eq!(np_sum(&[]), 0.0);
        assert_eq!(np_sum(&[1.0, 2.0]), 3.0);
    }

    #[test]
    fn sequence_skips_first_and_last_frame() {
        let (w, h) = (8, 8);
        let obj = |x0, y0, x1, y1, id: u8| -> Vec<u8> {
            rect(w, h, x0, y0, x1, y1)
                .iter()
                .map(|&b| if b { id } else { 0 })
                .collect()
        };
        let gt: Vec<Vec<u8>> = (0..4).map(|_| obj(2, 2, 6, 6, 1)).collect();
        // Frames 0 and 3 are wrong (would give J = 0); frames 1 and 2 are
        // right (frame 1) and half right (frame 2: 2x4 of the 4x4 square).
        let pred = vec![
            vec![0u8; 64],
            obj(2, 2, 6, 6, 1),
            obj(2, 2, 4, 6, 1),
            vec![0u8; 64],
        ];
        let s = score_sequence(&pred, &gt, w, h, &[1, 2]).unwrap();
        assert_eq!(s.objects.len(), 2);
        let o = &s.objects[0];
        assert_eq!(o.id, 1);
        assert_eq!(o.j_per_frame, vec![1.0, 0.5]);
        assert_eq!(o.f_per_frame.len(), 2);
        assert_eq!(o.f_per_frame[0], 1.0);
        assert_eq!(o.j.mean, 0.75);
        assert_eq!(o.j.recall, 0.5);
        assert_eq!(o.j.decay, 0.5);
        // Object 2 appears nowhere: J = F = 1 on every frame.
        let o2 = &s.objects[1];
        assert_eq!(o2.j_per_frame, vec![1.0, 1.0]);
        assert_eq!(o2.f_per_frame, vec![1.0, 1.0]);

        // Fewer than 3 frames: nothing evaluated, NaN statistics.
        let s = score_sequence(&pred[..2], &gt[..2], w, h, &[1]).unwrap();
        assert!(s.objects[0].j_per_frame.is_empty());
        assert!(s.objects[0].j.mean.is_nan());

        // Overall: mean over all objects of all sequences.
        let full = score_sequence(&pred, &gt, w, h, &[1, 2]).unwrap();
        let one = score_sequence(&pred, &gt, w, h, &[2]).unwrap();
        let all = overall(&[full.clone(), one]);
        assert_eq!(all.j_mean, (0.75 + 1.0 + 1.0) / 3.0);
        assert_eq!(all.j_recall, (0.5 + 1.0 + 1.0) / 3.0);
        assert_eq!(all.jf_mean, (all.j_mean + all.f_mean) / 2.0);
        let f0 = full.objects[0].f.mean;
        assert_eq!(all.f_mean, (f0 + 1.0 + 1.0) / 3.0);
        assert!(overall(&[]).j_mean.is_nan());
    }

    #[test]
    fn f_measure_480p_of_shifted_blobs() {
        // Speed is measured by `vosd bench`/`vosd eval`, not asserted here.
        let (w, h) = (854, 480);
        // A disc-ish blob and a shifted, slightly larger one.
        let blob = |cx: f64, cy: f64, r: f64| -> Vec<bool> {
            (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f64, (i / w) as f64);
                    let a = (y - cy).atan2(x - cx);
                    let rr = r * (1.0 + 0.2 * (5.0 * a).sin());
                    (x - cx).powi(2) + (y - cy).powi(2) <= rr * rr
                })
                .collect()
        };
        let (p, g) = (blob(420.0, 240.0, 150.0), blob(426.0, 236.0, 155.0));
        let f = f_measure(&p, &g, w, h).unwrap();
        assert!(f > 0.5 && f < 1.0, "{f}");
        assert_eq!(f_measure(&p, &p, w, h).unwrap(), 1.0);
    }
}
