//! DAVIS-style evaluation: segment each sequence from its first-frame
//! annotation, or from the bounding boxes of its objects (a box prompt),
//! or read existing predictions; score it with [`crate::metrics`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::metrics::{jaccard, overall, score_sequence_with, Overall, SequenceScores};
use vosd_engine::config::{DiscoverConfig, EngineConfig};
use vosd_engine::discover::{Clock, Discovery};
use vosd_engine::encoder::Encoder;
use vosd_engine::engine::Tracker;
use vosd_engine::frame::LabelMask;
use vosd_engine::imageio::{list_images, load_mask, load_rgb, save_mask};
use vosd_engine::prompt::{mask_from_box, BoxPrompt, BoxPromptConfig};

/// One DAVIS sequence on disk.
#[derive(Clone, Debug)]
pub struct Sequence {
    /// Sequence name (folder name).
    pub name: String,
    /// Frame files, in order.
    pub frames: Vec<PathBuf>,
    /// Annotation file for each frame (same stem), where present.
    pub annotations: Vec<PathBuf>,
}

/// A DAVIS dataset root (`JPEGImages/480p`, `Annotations/480p`, `ImageSets`).
#[derive(Clone, Debug)]
pub struct Davis {
    root: PathBuf,
}

impl Davis {
    /// Checks that `root` looks like a DAVIS root.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["JPEGImages/480p", "Annotations/480p"] {
            if !root.join(sub).is_dir() {
                bail!("{}: not a DAVIS root (no {sub} folder)", root.display());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Sequence names: of `split` if given (`ImageSets/2017/NAME.txt` or
    /// `ImageSets/2016/NAME.txt` listing names, or DAVIS 2016's
    /// `ImageSets/480p/NAME.txt` listing frame paths), else every folder.
    pub fn sequence_names(&self, split: Option<&str>) -> Result<Vec<String>> {
        let Some(split) = split else {
            let mut names: Vec<String> = std::fs::read_dir(self.root.join("JPEGImages/480p"))
                .with_context(|| format!("{}: cannot list sequences", self.root.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect();
            names.sort();
            return Ok(names);
        };
        for dir in ["2017", "2016", "480p"] {
            let file = self
                .root
                .join("ImageSets")
                .join(dir)
                .join(format!("{split}.txt"));
            if !file.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read split", file.display()))?;
            let mut names: Vec<String> = Vec::new();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                // "/JPEGImages/480p/bear/00000.jpg /Annotations/..." or "bear".
                let name = match line
                    .split_whitespace()
                    .next()
                    .unwrap_or(line)
                    .split('/')
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [.., seq, _file] if line.contains('/') => seq.to_string(),
                    _ => line.to_string(),
                };
                if names.last() != Some(&name) && !names.contains(&name) {
                    names.push(name);
                }
            }
            return Ok(names);
        }
        bail!(
            "split '{split}' not found under {}/ImageSets (looked in 2017/, 2016/, 480p/)",
            self.root.display()
        )
    }

    /// Frames and annotations of one sequence.
    pub fn sequence(&self, name: &str) -> Result<Sequence> {
        let frames = list_images(&self.root.join("JPEGImages/480p").join(name))?;
        if frames.is_empty() {
            bail!(
                "sequence {name}: no frames in {}",
                self.root.join("JPEGImages/480p").join(name).display()
            );
        }
        let ann_dir = self.root.join("Annotations/480p").join(name);
        let annotations = frames
            .iter()
            .map(|f| ann_dir.join(f.with_extension("png").file_name().unwrap_or_default()))
            .collect();
        Ok(Sequence {
            name: name.to_string(),
            frames,
            annotations,
        })
    }
}

/// Figures for one sequence (J and F as fractions in 0..1; each statistic
/// is the mean over the sequence's objects).
#[derive(Clone, Debug, Serialize)]
pub struct SequenceReport {
    /// J and F mean/recall/decay and J&F mean.
    #[serde(flatten)]
    pub scores: Overall,
    /// Frames in the sequence.
    pub frames: usize,
    /// Objects scored.
    pub objects: usize,
    /// Segmentation speed (frames per second, excluding file I/O); 0 when
    /// scoring existing results.
    pub fps: f64,
    /// With `--init box`: mean over the objects of the IoU between the
    /// box-derived first mask and the true first mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_mask_iou: Option<f64>,
    /// Per object (in the order scored), T × 5 of each pair of consecutive
    /// evaluated frames; NaN (`null`) where a mask has no contour.
    pub t_per_frame: Vec<Vec<f64>>,
}

/// Overall figures (official aggregation: mean over all objects).
#[derive(Clone, Debug, Serialize)]
pub struct OverallReport {
    /// J and F mean/recall/decay and J&F mean.
    #[serde(flatten)]
    pub scores: Overall,
    /// Segmentation fps over all sequences (0 when scoring existing results).
    pub fps: f64,
    /// With `--init box`: mean over all objects of the IoU between the
    /// box-derived first mask and the true first mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_mask_iou: Option<f64>,
}

/// The whole evaluation, as written by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Per-sequence figures.
    pub sequences: BTreeMap<String, SequenceReport>,
    /// Overall figures.
    pub overall: OverallReport,
    /// Engine settings used (absent when scoring existing results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineConfig>,
    /// How the engine was started: `"mask"` or `"box"` (absent when
    /// scoring existing results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The backend that ran the engine at the end (absent when scoring
    /// existing results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<vosd_engine::backend::BackendStatus>,
}

/// What the engine starts each sequence from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Init {
    /// The first-frame annotation itself.
    #[default]
    Mask,
    /// The bounding box of each object in the first-frame annotation, turned
    /// into a mask by [`mask_from_box`] with these settings. The box-derived
    /// mask is frame 0's prediction; scoring is against the annotations.
    Box(BoxPromptConfig),
    /// No mask at all: the unsupervised protocol. Objects are discovered
    /// ([`vosd_engine::discover`], with these settings and the frames 24
    /// per second apart, DAVIS's rate), and the union of the discovered
    /// objects is scored as the foreground against the union of the
    /// annotated ones.
    Discover(DiscoverConfig),
}

impl Init {
    fn name(&self) -> &'static str {
        match self {
            Init::Mask => "mask",
            Init::Box(_) => "box",
            Init::Discover(_) => "discover",
        }
    }
}

/// DAVIS's frame rate (frames per second): the clock of discovery in an
/// evaluation.
pub const DAVIS_FPS: f64 = 24.0;

/// Where predictions come from.
pub enum Predictions<'a> {
    /// Run the engine with this configuration; optionally keep masks in a folder.
    Segment {
        /// Engine settings.
        config: &'a EngineConfig,
        /// Folder for DIR/SEQUENCE/NNNNN.png, if wanted.
        out: Option<&'a Path>,
        /// What each sequence starts from.
        init: &'a Init,
        /// Also score the temporal stability T (by far the slowest measure).
        temporal: bool,
    },
    /// Read existing masks from DIR/SEQUENCE/NNNNN.png.
    Results(&'a Path),
    /// Read existing unsupervised masks from DIR/SEQUENCE/NNNNN.png and
    /// score them like [`Init::Discover`]: their union against the
    /// annotations' union.
    UnsupervisedResults(&'a Path),
}

impl Predictions<'_> {
    /// Whether the unsupervised protocol scores them (the union of all
    /// objects as one foreground).
    pub fn unsupervised(&self) -> bool {
        matches!(
            self,
            Predictions::Segment {
                init: Init::Discover(_),
                ..
            } | Predictions::UnsupervisedResults(_)
        )
    }
}

/// Every object id of `mask` made 1: the foreground of the unsupervised
/// protocol.
pub fn foreground(mask: &mut [u8]) {
    mask.iter_mut().for_each(|v| *v = u8::from(*v != 0));
}

/// Segments one sequence with no mask: objects are discovered
/// ([`Discovery`], with `discover`'s settings, frames [`DAVIS_FPS`] apart).
/// Returns one mask per frame and the time spent in the engine.
pub fn discover_sequence(
    seq: &Sequence,
    cfg: &EngineConfig,
    discover: &DiscoverConfig,
    encoder: &Arc<Encoder>,
) -> Result<(Vec<LabelMask>, Duration)> {
    let frame0 = load_rgb(&seq.frames[0])?;
    let (w, h) = (frame0.width, frame0.height);
    let tracker = Tracker::with_encoder(cfg, encoder.clone(), w, h)?;
    let mut discovery = Discovery::new(tracker, discover, Clock::FrameRate(DAVIS_FPS), w, h)?;
    let mut busy = Duration::ZERO;
    let mut preds = Vec::with_capacity(seq.frames.len());
    for (i, path) in seq.frames.iter().enumerate() {
        let frame = if i == 0 {
            frame0.clone()
        } else {
            load_rgb(path)?
        };
        let mut out = LabelMask::new(w, h);
        let t = Instant::now();
        let events = discovery
            .step(&frame, &mut out)
            .with_context(|| format!("{}", path.display()))?;
        busy += t.elapsed();
        for e in events {
            log::debug!("{} frame {i}: {e:?}", seq.name);
        }
        preds.push(out);
    }
    Ok((preds, busy))
}

fn sequence_report(
    s: &SequenceScores,
    frames: usize,
    fps: f64,
    first_mask_iou: Option<f64>,
) -> SequenceReport {
    SequenceReport {
        scores: overall(std::slice::from_ref(s)),
        frames,
        objects: s.objects.len(),
        fps,
        first_mask_iou,
        t_per_frame: s.objects.iter().map(|o| o.t_per_frame.clone()).collect(),
    }
}

/// The first mask made from the bounding box of each object of `first`
/// (the annotation) with [`mask_from_box`]; an object painted later (higher
/// id) wins where two overlap. Also returns, per object, the IoU of its
/// box-derived mask with its true mask.
pub fn first_mask_from_boxes(
    seq: &Sequence,
    first: &LabelMask,
    encoder: &Encoder,
    cfg: &BoxPromptConfig,
) -> Result<(LabelMask, Vec<f64>)> {
    let frame0 = load_rgb(&seq.frames[0])?;
    let mut out = LabelMask::new(first.width, first.height);
    let mut ious = Vec::new();
    for id in first.object_ids() {
        let bbox = BoxPrompt::of_object(first, id).context("object has pixels")?;
        let m = mask_from_box(encoder, &frame0, bbox, id, cfg).with_context(|| {
            format!(
                "{}: object {id}: no mask from its {bbox}",
                seq.annotations[0].display()
            )
        })?;
        for (o, &v) in out.data.iter_mut().zip(&m.data) {
            if v == id {
                *o = id;
            }
        }
        let pred: Vec<bool> = m.data.iter().map(|&v| v == id).collect();
        let gt: Vec<bool> = first.data.iter().map(|&v| v == id).collect();
        ious.push(jaccard(&pred, &gt)?);
    }
    Ok((out, ious))
}

/// Segments one sequence from `first` (frame 0's mask: the annotation, or
/// the box-derived mask); returns the predicted masks (frame 0 = `first`)
/// and the time spent in the engine.
pub fn segment_sequence(
    seq: &Sequence,
    first: &LabelMask,
    cfg: &EngineConfig,
    encoder: &Arc<Encoder>,
) -> Result<(Vec<LabelMask>, Duration)> {
    let frame0 = load_rgb(&seq.frames[0])?;
    let mut tracker = Tracker::with_encoder(cfg, encoder.clone(), frame0.width, frame0.height)?;
    let mut busy = Duration::ZERO;
    let t = Instant::now();
    tracker
        .start(&frame0, first)
        .with_context(|| format!("{}: cannot start", seq.annotations[0].display()))?;
    busy += t.elapsed();
    let mut preds = vec![first.clone()];
    for path in &seq.frames[1..] {
        let frame = load_rgb(path)?;
        let mut out = LabelMask::new(frame0.width, frame0.height);
        let t = Instant::now();
        tracker
            .step(&frame, &mut out)
            .with_context(|| format!("{}", path.display()))?;
        busy += t.elapsed();
        preds.push(out);
    }
    let st = tracker.stage_times();
    let per = |d: Duration| d.as_secs_f64() * 1e3 / st.frames.max(1) as f64;
    log::debug!(
        "{}: per frame encode {:.1} ms, readout {:.1} ms, upsample {:.1} ms",
        seq.name,
        per(st.encode),
        per(st.readout),
        per(st.upsample)
    );
    Ok((preds, busy))
}

/// Runs the evaluation over `names` and prints one line per sequence to
/// stderr as it goes.
pub fn evaluate(davis: &Davis, names: &[String], source: Predictions<'_>) -> Result<EvalReport> {
    let encoder = match &source {
        Predictions::Segment { config, .. } => {
            config.validate()?;
            Some(Arc::new(Encoder::from_config(config)?))
        }
        Predictions::Results(_) | Predictions::UnsupervisedResults(_) => None,
    };
    let mut scores = Vec::new();
    let mut sequences = BTreeMap::new();
    let (mut total_frames, mut total_time) = (0usize, Duration::ZERO);
    let mut first_ious: Vec<f64> = Vec::new();
    for name in names {
        let seq = davis.sequence(name)?;
        let gt: Vec<LabelMask> = seq
            .annotations
            .iter()
            .map(|p| load_mask(p))
            .collect::<Result<_, _>>()?;
        let (w, h) = (gt[0].width, gt[0].height);
        if let Some((i, m)) = gt
            .iter()
            .enumerate()
            .find(|(_, m)| m.width != w || m.height != h)
        {
            bail!(
                "{}: mask is {}x{}, the first is {w}x{h}",
                seq.annotations[i].display(),
                m.width,
                m.height
            );
        }
        let ids = gt[0].object_ids();
        let mut first_mask_iou = None;
        let (preds, fps) = match &source {
            Predictions::Segment {
                config, out, init, ..
            } => {
                let encoder = encoder.as_ref().expect("encoder loaded for Segment");
                let first = match init {
                    Init::Discover(_) => LabelMask::new(w, h),
                    Init::Mask => gt[0].clone(),
                    Init::Box(prompt) => {
                        let (first, ious) = first_mask_from_boxes(&seq, &gt[0], encoder, prompt)?;
                        first_mask_iou = Some(ious.iter().sum::<f64>() / ious.len().max(1) as f64);
                        first_ious.extend(ious);
                        first
                    }
                };
                let (preds, busy) = match init {
                    Init::Discover(d) => discover_sequence(&seq, config, d, encoder)?,
                    _ => segment_sequence(&seq, &first, config, encoder)?,
                };
                if let Some(out) = out {
                    let dir = out.join(name);
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("{}: cannot create", dir.display()))?;
                    for (p, f) in preds.iter().zip(&seq.annotations) {
                        save_mask(&dir.join(f.file_name().unwrap_or_default()), p)?;
                    }
                }
                total_frames += preds.len() - 1;
                total_time += busy;
                let fps = (preds.len() - 1) as f64 / busy.as_secs_f64().max(1e-9);
                (preds, fps)
            }
            Predictions::Results(dir) | Predictions::UnsupervisedResults(dir) => {
                let preds = seq
                    .annotations
                    .iter()
                    .map(|f| {
                        let p = dir.join(name).join(f.file_name().unwrap_or_default());
                        let m = load_mask(&p)?;
                        if m.width != w || m.height != h {
                            bail!(
                                "{}: prediction is {}x{}, ground truth is {w}x{h}",
                                p.display(),
                                m.width,
                                m.height
                            );
                        }
                        Ok(m)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (preds, 0.0)
            }
        };
        let mut pred_data: Vec<Vec<u8>> = preds.into_iter().map(|m| m.data).collect();
        let mut gt_data: Vec<Vec<u8>> = gt.into_iter().map(|m| m.data).collect();
        let ids = if source.unsupervised() {
            pred_data
                .iter_mut()
                .chain(&mut gt_data)
                .for_each(|m| foreground(m));
            vec![1]
        } else {
            ids
        };
        let temporal = match &source {
            Predictions::Segment { temporal, .. } => *temporal,
            Predictions::Results(_) | Predictions::UnsupervisedResults(_) => true,
        };
        let s = score_sequence_with(&pred_data, &gt_data, w, h, &ids, temporal)
            .with_context(|| format!("scoring {name}"))?;
        let report = sequence_report(&s, pred_data.len(), fps, first_mask_iou);
        eprintln!(
            "{name:<20} J {:.3}  F {:.3}  T {:.3}  frames {:>3}  {}{}",
            report.scores.j_mean,
            report.scores.f_mean,
            report.scores.t_mean,
            report.frames,
            if fps > 0.0 {
                format!("{fps:.1} fps")
            } else {
                String::new()
            },
            match first_mask_iou {
                Some(iou) => format!("  first-mask IoU {iou:.3}"),
                None => String::new(),
            }
        );
        sequences.insert(name.clone(), report);
        scores.push(s);
    }
    let o = overall(&scores);
    let fps = if total_time > Duration::ZERO {
        total_frames as f64 / total_time.as_secs_f64()
    } else {
        0.0
    };
    let (engine, init) = match source {
        Predictions::Segment { config, init, .. } => {
            (Some(config.clone()), Some(init.name().to_string()))
        }
        Predictions::Results(_) => (None, None),
        Predictions::UnsupervisedResults(_) => (None, Some("discover".to_string())),
    };
    let first_mask_iou =
        (!first_ious.is_empty()).then(|| first_ious.iter().sum::<f64>() / first_ious.len() as f64);
    let backend = encoder.as_ref().map(|e| e.backend_status());
    Ok(EvalReport {
        backend,
        sequences,
        overall: OverallReport {
            scores: o,
            fps,
            first_mask_iou,
        },
        engine,
        init,
    })
}
