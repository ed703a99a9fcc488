//! Semi-supervised scoring: J, F and T of every object over the evaluated
//! frames of a sequence ([`score_sequence`] for DAVIS, [`score_annotated`]
//! for sparse annotations and objects that appear later), and the final
//! figures over a set of sequences ([`overall`]).

use serde::Serialize;

use super::contour::f_measure;
use super::region::jaccard;
use super::stats::{nanmean, np_mean, statistics, Statistics};
use rayon::prelude::*;

use super::temporal::{descriptor, t_between, T_SCALE};
use super::MetricsError;

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
    /// Mean of the non-NaN values of `t_per_frame` (NaN when none): DAVIS
    /// 2016's T, lower is better.
    pub t_mean: f64,
    /// T × [`T_SCALE`] of each pair of consecutive evaluated predictions
    /// (NaN where either mask has no contour).
    pub t_per_frame: Vec<f64>,
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
/// T follows DAVIS 2016's `loader.py`: [`super::t_stability`] of `pred == id` on
/// each pair of consecutive evaluated frames (1 and 2, ..., n-3 and n-2),
/// times [`T_SCALE`]; its mean skips NaN (frames without a contour).
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
    score_sequence_with(pred, gt, width, height, object_ids, true)
}

/// [`score_sequence`], with T only when `temporal` (T costs far more than
/// J and F; without it `t_mean` is NaN and `t_per_frame` empty).
pub fn score_sequence_with(
    pred: &[Vec<u8>],
    gt: &[Vec<u8>],
    width: usize,
    height: usize,
    object_ids: &[u8],
    temporal: bool,
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
            t_mean: f64::NAN,
            t_per_frame: Vec::new(),
        })
        .collect();
    if temporal {
        for obj in &mut objects {
            obj.t_per_frame = t_series(pred, obj.id, evaluated.clone(), width, height);
        }
    }
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
        obj.t_mean = nanmean(&obj.t_per_frame);
    }
    Ok(SequenceScores { objects })
}

/// T × [`T_SCALE`] of object `id` between each pair of consecutive frames
/// of `frames` in `pred`; frames and pairs are spread over rayon's threads
/// (T costs far more than J and F).
fn t_series(
    pred: &[Vec<u8>],
    id: u8,
    frames: std::ops::Range<usize>,
    width: usize,
    height: usize,
) -> Vec<f64> {
    let descriptors: Vec<_> = frames
        .into_par_iter()
        .map(|t| {
            let m: Vec<bool> = pred[t].iter().map(|&v| v == id).collect();
            descriptor(&m, width, height)
        })
        .collect();
    descriptors
        .par_windows(2)
        .map(|w| match (&w[0], &w[1]) {
            (Some(a), Some(b)) => t_between(a, b) * T_SCALE,
            _ => f64::NAN,
        })
        .collect()
}

/// Where an object starts: its id and the first frame it is annotated in
/// (the frame the engine is given its mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStart {
    /// Object id (label value in the masks).
    pub id: u8,
    /// Index of its first annotated frame.
    pub first_frame: usize,
}

/// Scores a sequence whose annotations may be sparse and whose objects may
/// appear after frame 0 (YouTube-VOS, SegTrack v2, a plain folder).
///
/// `gt[t]` is `None` for a frame without an annotation file. For each
/// object, J and F are computed on every annotated frame after its first
/// annotated frame (that frame is given to the engine, so it is not
/// scored; the last frame is scored), as the YouTube-VOS evaluation does,
/// and T on each pair of consecutive frames after it. An annotated frame
/// where the object is absent counts like any other (J = 1 when the
/// prediction is empty too). Same errors as [`score_sequence`].
pub fn score_annotated(
    pred: &[Vec<u8>],
    gt: &[Option<Vec<u8>>],
    width: usize,
    height: usize,
    objects: &[ObjectStart],
) -> Result<SequenceScores, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::FrameCountMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    let expected = width.checked_mul(height);
    let frames = pred
        .iter()
        .map(|f| ("prediction", Some(f)))
        .enumerate()
        .chain(gt.iter().map(|f| ("ground truth", f.as_ref())).enumerate());
    for (frame, (which, f)) in frames {
        if let Some(f) = f.filter(|f| Some(f.len()) != expected) {
            return Err(MetricsError::FrameSize {
                which,
                frame,
                len: f.len(),
                width,
                height,
            });
        }
    }
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let (mut js, mut fs) = (Vec::new(), Vec::new());
        for (t, g) in gt.iter().enumerate().skip(o.first_frame + 1) {
            let Some(g) = g else { continue };
            let p: Vec<bool> = pred[t].iter().map(|&v| v == o.id).collect();
            let g: Vec<bool> = g.iter().map(|&v| v == o.id).collect();
            js.push(jaccard(&p, &g)?);
            fs.push(f_measure(&p, &g, width, height)?);
        }
        let start = (o.first_frame + 1).min(pred.len());
        let ts = t_series(pred, o.id, start..pred.len(), width, height);
        out.push(ObjectScores {
            id: o.id,
            j: statistics(&js),
            f: statistics(&fs),
            j_per_frame: js,
            f_per_frame: fs,
            t_mean: nanmean(&ts),
            t_per_frame: ts,
        });
    }
    Ok(SequenceScores { objects: out })
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
    /// Mean over the objects of their T mean, skipping NaN (objects never
    /// with a contour), as DAVIS 2016 averages T (`nanmean`). Lower is better.
    pub t_mean: f64,
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
        t_mean: nanmean(&objects.iter().map(|o| o.t_mean).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::rect;
    use super::*;

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
}
