//! Evaluation over a non-DAVIS dataset: objects that appear after the
//! first frame are given to the engine at their first annotated frame (the
//! YouTube-VOS protocol), frames without an annotation are segmented but not
//! scored, and the figures are those of [`score_annotated`]. DAVIS itself
//! goes through [`crate::davis::evaluate`], whose protocol differs (first
//! and last frame skipped).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vosd_engine::config::EngineConfig;
use vosd_engine::encoder::Encoder;
use vosd_engine::engine::Tracker;
use vosd_engine::frame::LabelMask;
use vosd_engine::imageio::{load_mask, load_rgb, save_mask};

use super::{Dataset, VideoSequence};
use crate::davis::{EvalReport, Init, OverallReport, Predictions, SequenceReport};
use crate::metrics::{overall, score_annotated};

/// The mask of the objects of `seq` that start at frame `t` (their pixels
/// in that frame's annotation), or `None` when none starts there.
fn starting_at(seq: &VideoSequence, t: usize) -> Option<LabelMask> {
    let ann = seq.annotations.get(t)?.as_ref()?;
    let ids: Vec<u8> = seq
        .objects
        .iter()
        .filter(|o| o.first_frame == t)
        .map(|o| o.id)
        .collect();
    if ids.is_empty() {
        return None;
    }
    let mut m = LabelMask::new(ann.width, ann.height);
    for (o, &v) in m.data.iter_mut().zip(&ann.data) {
        if ids.contains(&v) {
            *o = v;
        }
    }
    Some(m)
}

/// Segments `seq` with the engine, adding each object at its first
/// annotated frame (its annotation is that frame's prediction for it).
/// Frames before the first object are predicted empty. Returns one mask per
/// frame and the time spent in the engine.
pub fn segment_with_new_objects(
    seq: &VideoSequence,
    cfg: &EngineConfig,
    encoder: &Arc<Encoder>,
) -> Result<(Vec<LabelMask>, Duration)> {
    let (w, h) = (seq.width, seq.height);
    let mut tracker: Option<Tracker> = None;
    let mut busy = Duration::ZERO;
    let mut preds = Vec::with_capacity(seq.frames.len());
    for (t, path) in seq.frames.iter().enumerate() {
        let new = starting_at(seq, t);
        let Some(tr) = tracker.as_mut() else {
            let Some(first) = new else {
                preds.push(LabelMask::new(w, h));
                continue;
            };
            let frame = load_rgb(path)?;
            let mut tr = Tracker::with_encoder(cfg, encoder.clone(), frame.width, frame.height)?;
            let t0 = Instant::now();
            tr.start(&frame, &first)
                .with_context(|| format!("{}: cannot start the engine", path.display()))?;
            busy += t0.elapsed();
            preds.push(first);
            tracker = Some(tr);
            continue;
        };
        let frame = load_rgb(path)?;
        let mut out = LabelMask::new(frame.width, frame.height);
        let t0 = Instant::now();
        tr.step(&frame, &mut out)
            .with_context(|| format!("{}", path.display()))?;
        if let Some(new) = new {
            for id in new.object_ids() {
                tr.set_object_mask(&frame, id, &new)
                    .with_context(|| format!("{}: cannot add object {id}", path.display()))?;
            }
            for (o, &v) in out.data.iter_mut().zip(&new.data) {
                if v != 0 {
                    *o = v;
                }
            }
        }
        busy += t0.elapsed();
        preds.push(out);
    }
    Ok((preds, busy))
}

/// Runs the evaluation of `names` of a YouTube-VOS, SegTrack or folder
/// dataset, printing one line per sequence to stderr as it goes. Starting
/// from boxes (`Init::Box`) is DAVIS-only.
pub fn evaluate_annotated(
    ds: &Dataset,
    names: &[String],
    source: Predictions<'_>,
) -> Result<EvalReport> {
    let encoder = match &source {
        _ if source.unsupervised() => bail!(
            "the unsupervised protocol is DAVIS's (2016): a {} dataset is scored per object, from its masks",
            ds.kind().name()
        ),
        Predictions::Segment { config, init, .. } => {
            if **init != Init::Mask {
                bail!(
                    "--init box is supported on DAVIS only; a {} dataset starts from its masks",
                    ds.kind().name()
                );
            }
            config.validate()?;
            Some(Arc::new(Encoder::from_config(config)?))
        }
        Predictions::Results(_) | Predictions::UnsupervisedResults(_) => None,
    };
    let mut all = Vec::new();
    let mut sequences = BTreeMap::new();
    let (mut total_frames, mut total_time) = (0usize, Duration::ZERO);
    for name in names {
        let seq = ds.load(name)?;
        let (w, h) = (seq.width, seq.height);
        let (preds, fps) = match &source {
            Predictions::Segment { config, out, .. } => {
                let encoder = encoder.as_ref().context("encoder loaded for Segment")?;
                let (preds, busy) = segment_with_new_objects(&seq, config, encoder)?;
                if let Some(out) = out {
                    let dir = out.join(name);
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("{}: cannot create", dir.display()))?;
                    for (t, p) in preds.iter().enumerate() {
                        save_mask(&dir.join(seq.mask_name(t)), p)?;
                    }
                }
                let n = preds.len().saturating_sub(1);
                total_frames += n;
                total_time += busy;
                (preds, n as f64 / busy.as_secs_f64().max(1e-9))
            }
            Predictions::Results(dir) | Predictions::UnsupervisedResults(dir) => {
                let mut preds = Vec::with_capacity(seq.frames.len());
                for t in 0..seq.frames.len() {
                    let p = dir.join(name).join(seq.mask_name(t));
                    let m = load_mask(&p)?;
                    if (m.width, m.height) != (w, h) {
                        bail!(
                            "{}: prediction is {}x{}, ground truth is {w}x{h}",
                            p.display(),
                            m.width,
                            m.height
                        );
                    }
                    preds.push(m);
                }
                (preds, 0.0)
            }
        };
        if let Some((t, m)) = preds
            .iter()
            .enumerate()
            .find(|(_, m)| (m.width, m.height) != (w, h))
        {
            bail!(
                "{}: frame is {}x{}, its masks are {w}x{h}",
                seq.frames[t].display(),
                m.width,
                m.height
            );
        }
        let pred: Vec<Vec<u8>> = preds.into_iter().map(|m| m.data).collect();
        let gt: Vec<Option<Vec<u8>>> = seq
            .annotations
            .iter()
            .map(|a| a.as_ref().map(|a| a.data.clone()))
            .collect();
        let s = score_annotated(&pred, &gt, w, h, &seq.objects)
            .with_context(|| format!("scoring {name}"))?;
        let report = SequenceReport {
            scores: overall(std::slice::from_ref(&s)),
            frames: pred.len(),
            objects: s.objects.len(),
            fps,
            first_mask_iou: None,
            t_per_frame: s.objects.iter().map(|o| o.t_per_frame.clone()).collect(),
        };
        let late = seq.objects.iter().filter(|o| o.first_frame > 0).count();
        eprintln!(
            "{name:<20} J {:.3}  F {:.3}  T {:.3}  frames {:>3}  annotated {:>3}  objects {} ({late} appear later){}",
            report.scores.j_mean,
            report.scores.f_mean,
            report.scores.t_mean,
            report.frames,
            gt.iter().filter(|g| g.is_some()).count(),
            report.objects,
            if fps > 0.0 {
                format!("  {fps:.1} fps")
            } else {
                String::new()
            }
        );
        sequences.insert(name.clone(), report);
        all.push(s);
    }
    let fps = if total_time > Duration::ZERO {
        total_frames as f64 / total_time.as_secs_f64()
    } else {
        0.0
    };
    let (engine, init) = match source {
        Predictions::Segment { config, .. } => (Some(config.clone()), Some("mask".to_string())),
        Predictions::Results(_) | Predictions::UnsupervisedResults(_) => (None, None),
    };
    Ok(EvalReport {
        backend: encoder.as_ref().map(|e| e.backend_status()),
        sequences,
        overall: OverallReport {
            scores: overall(&all),
            fps,
            first_mask_iou: None,
        },
        engine,
        init,
    })
}
