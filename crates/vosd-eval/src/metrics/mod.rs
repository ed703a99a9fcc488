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
//! * T ([`t_stability`], the toolkit's `db_eval_t_stab`) is the temporal
//!   (in)stability of consecutive predicted masks: shape-context descriptors
//!   of their longest contours matched along the contour; lower is better.
//! * [`score_sequence`] and [`overall`] reproduce the semi-supervised
//!   evaluation: first and last frame skipped, one J/F series per object,
//!   final figures averaged over all objects of all sequences; T as DAVIS
//!   2016 computes it (consecutive pairs of the evaluated frames, × 5).
//!
//! Masks are row-major, `width * height` pixels. Sums are done the way numpy
//! does them (pairwise summation), so the figures agree with the Python
//! toolkit to the last bit on ordinary inputs; `docs/metrics.md` says how this
//! was cross-checked with `scripts/crosscheck_metrics.py`.
//!
//! NaN: statistics of an empty series are NaN (as in numpy). `serde_json`
//! writes a NaN `f64` as `null`, so a JSON consumer sees `null` there.
//!
//! The code is split by concept into private modules whose public items are
//! re-exported here: `region` (J), `contour` (boundary map, dilation radius,
//! F), `stats` (numpy-exact sums and means, decay bins, [`statistics`]) and
//! `sequence` (per-object and per-sequence scoring, [`overall`]), `polycont`
//! (mask to contours for T) and `temporal` (T).

use thiserror::Error;

mod contour;
mod polycont;
mod region;
mod sequence;
mod stats;
mod temporal;
#[cfg(test)]
mod test_support;

pub use contour::{boundary_map, boundary_radius, f_measure};
pub use region::jaccard;
pub use sequence::{
    overall, score_annotated, score_sequence, score_sequence_with, ObjectScores, ObjectStart,
    Overall, SequenceScores,
};
pub use stats::{statistics, Statistics};
pub use temporal::{t_stability, T_SCALE};

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric reports inputs whose sizes do not fit together as the
    /// matching [`MetricsError`], never a panic.
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
}
