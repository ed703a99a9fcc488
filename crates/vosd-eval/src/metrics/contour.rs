//! Contour accuracy F: the toolkit's one-pixel boundary map (`_seg2bmap`),
//! the radius and shape of the disk that dilates it, and the F-measure of
//! two boundaries, computed without materialising the dilation.

use super::MetricsError;

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

#[cfg(test)]
mod tests {
    use super::super::test_support::{mask, rect};
    use super::*;

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
