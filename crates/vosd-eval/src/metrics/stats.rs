//! Per-series statistics (the toolkit's `db_statistics`): mean, recall and
//! decay, with numpy's pairwise summation, `nanmean`, `linspace` and its
//! `uint8` decay-bin indices reproduced exactly.

use serde::Serialize;

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
pub(super) fn np_sum(a: &[f64]) -> f64 {
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
pub(super) fn nanmean(a: &[f64]) -> f64 {
    let cleaned: Vec<f64> = a
        .iter()
        .map(|&v| if v.is_nan() { 0.0 } else { v })
        .collect();
    let count = a.iter().filter(|v| !v.is_nan()).count();
    np_sum(&cleaned) / count as f64
}

/// numpy's `mean` of a 1-D float64 array (NaN propagates; NaN when empty).
pub(super) fn np_mean(a: &[f64]) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
