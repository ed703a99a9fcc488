//! Dataset readers behind one type: DAVIS ([`crate::davis::Davis`]),
//! YouTube-VOS 2018/2019, SegTrack v2 and a plain folder of frames and
//! masks. [`Dataset::open`] detects the layout (or checks the one asked
//! for) and [`Dataset::load`] gives a [`VideoSequence`]: its frames, the
//! annotation of each frame that has one, and where each object starts.
//!
//! Layouts (ROOT is what `vosd eval --dataset KIND ROOT` is given):
//!
//! | kind | frames | annotations |
//! |---|---|---|
//! | `davis` | `JPEGImages/480p/SEQ/*.jpg` | `Annotations/480p/SEQ/*.png` (every frame) |
//! | `youtube-vos` | `JPEGImages/VID/*.jpg` | `Annotations/VID/*.png` (palette, sparse), optional `meta.json` |
//! | `segtrack` | `JPEGImages/SEQ/*.{png,bmp,jpg}` | `GroundTruth/SEQ/*.{png,bmp}`, or `GroundTruth/SEQ/N/*` per object |
//! | `folder` | `frames/*.{jpg,png}` | `masks/*.png` (same stem as the frame, sparse) |
//!
//! A `folder` ROOT may also hold several sequences, `ROOT/SEQ/frames` and
//! `ROOT/SEQ/masks`. Objects are scored from the frame after their first
//! annotation ([`crate::metrics::score_annotated`]); DAVIS keeps its own
//! protocol ([`crate::metrics::score_sequence`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vosd_engine::frame::LabelMask;
use vosd_engine::imageio::load_mask;

use crate::davis::Davis;
use crate::metrics::ObjectStart;

mod evaluate;
mod files;
mod folder;
mod segtrack;
#[cfg(test)]
mod tests;
mod youtube_vos;

pub use evaluate::{evaluate_annotated, segment_with_new_objects};

/// The dataset layouts `vosd eval` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// DAVIS 2016/2017 (`JPEGImages/480p`, `Annotations/480p`).
    Davis,
    /// YouTube-VOS 2018/2019 (`JPEGImages/VID`, `Annotations/VID`, `meta.json`).
    YoutubeVos,
    /// SegTrack v2 (`JPEGImages/SEQ`, `GroundTruth/SEQ`).
    SegTrack,
    /// A plain folder: `frames/` and `masks/` named by frame.
    Folder,
}

impl DatasetKind {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Davis => "davis",
            DatasetKind::YoutubeVos => "youtube-vos",
            DatasetKind::SegTrack => "segtrack",
            DatasetKind::Folder => "folder",
        }
    }

    /// What a root of this kind must contain, for error messages.
    pub fn expected_layout(self) -> &'static str {
        match self {
            DatasetKind::Davis => "JPEGImages/480p/ and Annotations/480p/",
            DatasetKind::YoutubeVos => {
                "JPEGImages/VID/ and Annotations/VID/ (and optionally meta.json)"
            }
            DatasetKind::SegTrack => "JPEGImages/SEQ/ and GroundTruth/SEQ/",
            DatasetKind::Folder => "frames/ and masks/ (or SEQ/frames/ and SEQ/masks/)",
        }
    }

    const ALL: [DatasetKind; 4] = [
        DatasetKind::Davis,
        DatasetKind::YoutubeVos,
        DatasetKind::SegTrack,
        DatasetKind::Folder,
    ];

    /// Whether `root` has this kind's layout.
    fn matches(self, root: &Path) -> bool {
        let dir = |p: &str| root.join(p).is_dir();
        match self {
            DatasetKind::Davis => dir("JPEGImages/480p") && dir("Annotations/480p"),
            DatasetKind::YoutubeVos => {
                dir("JPEGImages") && dir("Annotations") && !dir("JPEGImages/480p")
            }
            DatasetKind::SegTrack => dir("JPEGImages") && dir("GroundTruth"),
            DatasetKind::Folder => !folder::sequence_dirs(root).is_empty(),
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                format!("unknown dataset kind '{s}' (davis, youtube-vos, segtrack or folder)")
            })
    }
}

/// One sequence, loaded: frame files, annotations and object starts.
#[derive(Debug, Clone)]
pub struct VideoSequence {
    /// Sequence name.
    pub name: String,
    /// Frame files, in order.
    pub frames: Vec<PathBuf>,
    /// The annotation of each frame that has one (object ids per pixel).
    pub annotations: Vec<Option<LabelMask>>,
    /// The file each annotation was read from (the first one, for SegTrack
    /// sequences with one folder per object), `None` where there is none.
    pub annotation_files: Vec<Option<PathBuf>>,
    /// Every object, with the first frame it is annotated in, by id.
    pub objects: Vec<ObjectStart>,
    /// Mask width.
    pub width: usize,
    /// Mask height.
    pub height: usize,
}

impl VideoSequence {
    /// The file name a predicted mask of frame `t` is written under
    /// (`NNNNN.png`, the frame's stem).
    pub fn mask_name(&self, t: usize) -> String {
        let stem = self.frames[t]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{t:05}"));
        format!("{stem}.png")
    }

    /// Checks sizes and fills `objects` from the annotations: each id's
    /// first frame is the first annotation it appears in. Ids already in
    /// `objects` (from `meta.json`) must appear somewhere; ids found only in
    /// the annotations are added.
    fn finish(mut self) -> Result<Self> {
        let Some((t0, first)) = self
            .annotations
            .iter()
            .enumerate()
            .find_map(|(t, a)| a.as_ref().map(|a| (t, a)))
        else {
            bail!("sequence {}: no annotated frame", self.name);
        };
        (self.width, self.height) = (first.width, first.height);
        for (t, a) in self.annotations.iter().enumerate() {
            if let Some(a) = a {
                if (a.width, a.height) != (self.width, self.height) {
                    bail!(
                        "{}: mask is {}x{}, the first ({}) is {}x{}",
                        file_of(&self.annotation_files, t),
                        a.width,
                        a.height,
                        file_of(&self.annotation_files, t0),
                        self.width,
                        self.height
                    );
                }
            }
        }
        let mut first_seen = [usize::MAX; 256];
        for (t, a) in self.annotations.iter().enumerate() {
            if let Some(a) = a {
                for id in a.object_ids() {
                    let f = &mut first_seen[id as usize];
                    *f = (*f).min(t);
                }
            }
        }
        let known: Vec<u8> = self.objects.iter().map(|o| o.id).collect();
        for o in &mut self.objects {
            if first_seen[o.id as usize] == usize::MAX {
                bail!(
                    "sequence {}: object {} is listed but appears in no annotation",
                    self.name,
                    o.id
                );
            }
            o.first_frame = first_seen[o.id as usize];
        }
        for (id, &t) in first_seen.iter().enumerate().skip(1) {
            if t != usize::MAX && !known.contains(&(id as u8)) {
                self.objects.push(ObjectStart {
                    id: id as u8,
                    first_frame: t,
                });
            }
        }
        self.objects.sort_by_key(|o| o.id);
        if self.objects.is_empty() {
            bail!("sequence {}: no object in any annotation", self.name);
        }
        Ok(self)
    }
}

fn file_of(files: &[Option<PathBuf>], t: usize) -> String {
    files
        .get(t)
        .and_then(|f| f.as_ref())
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| format!("frame {t}"))
}

/// An opened dataset of any supported kind.
#[derive(Debug, Clone)]
pub struct Dataset {
    kind: DatasetKind,
    root: PathBuf,
    davis: Option<Davis>,
}

impl Dataset {
    /// Opens `root` as `kind`, or detects the kind when `None` (the first
    /// layout that matches, in the order DAVIS, YouTube-VOS, SegTrack,
    /// folder). The error names the layouts that were expected.
    pub fn open(root: &Path, kind: Option<DatasetKind>) -> Result<Self> {
        if !root.is_dir() {
            bail!("{}: not a folder", root.display());
        }
        let kind = match kind {
            Some(k) if k.matches(root) => k,
            Some(k) => bail!(
                "{}: not a {} dataset: expected {}",
                root.display(),
                k.name(),
                k.expected_layout()
            ),
            None => Self::detect(root)?,
        };
        let davis = match kind {
            DatasetKind::Davis => Some(Davis::open(root)?),
            _ => None,
        };
        Ok(Self {
            kind,
            root: root.to_path_buf(),
            davis,
        })
    }

    /// The kind of dataset at `root`, or an error listing every layout.
    pub fn detect(root: &Path) -> Result<DatasetKind> {
        if let Some(k) = DatasetKind::ALL.into_iter().find(|k| k.matches(root)) {
            return Ok(k);
        }
        let expected: Vec<String> = DatasetKind::ALL
            .iter()
            .map(|k| format!("{}: {}", k.name(), k.expected_layout()))
            .collect();
        bail!(
            "{}: no known dataset layout; expected one of {}",
            root.display(),
            expected.join("; ")
        )
    }

    /// The dataset's kind.
    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    /// The DAVIS reader, when this is a DAVIS dataset.
    pub fn davis(&self) -> Option<&Davis> {
        self.davis.as_ref()
    }

    /// Sequence names, sorted; `split` is DAVIS-only (its `ImageSets`).
    pub fn sequence_names(&self, split: Option<&str>) -> Result<Vec<String>> {
        if let Some(d) = &self.davis {
            return d.sequence_names(split);
        }
        if let Some(split) = split {
            bail!(
                "--split {split}: splits are read from DAVIS's ImageSets; for a {} dataset list --sequences",
                self.kind.name()
            );
        }
        match self.kind {
            DatasetKind::Folder => Ok(folder::sequence_dirs(&self.root)
                .into_iter()
                .map(|(name, _)| name)
                .collect()),
            _ => files::subdirs(&self.root.join("JPEGImages")),
        }
    }

    /// Evaluates `names` with the protocol of this dataset: DAVIS through
    /// [`crate::davis::evaluate`] (first and last frame skipped), the others
    /// through [`evaluate_annotated`] (objects from their first annotation).
    pub fn evaluate(
        &self,
        names: &[String],
        source: crate::davis::Predictions<'_>,
    ) -> Result<crate::davis::EvalReport> {
        match &self.davis {
            Some(d) => crate::davis::evaluate(d, names, source),
            None => evaluate_annotated(self, names, source),
        }
    }

    /// Loads sequence `name`: frames, annotations (read and checked: every
    /// error names the file) and object starts.
    pub fn load(&self, name: &str) -> Result<VideoSequence> {
        let seq = match self.kind {
            DatasetKind::Davis => {
                let d = self.davis.as_ref().context("DAVIS reader")?;
                let s = d.sequence(name)?;
                let mut annotations = Vec::with_capacity(s.frames.len());
                for p in &s.annotations {
                    annotations.push(Some(load_mask(p)?));
                }
                let first = annotations
                    .first()
                    .and_then(|a| a.as_ref())
                    .with_context(|| format!("sequence {name}: no frames"))?;
                // DAVIS: the objects of the first annotation, all from frame 0.
                let objects = first
                    .object_ids()
                    .into_iter()
                    .map(|id| ObjectStart { id, first_frame: 0 })
                    .collect();
                VideoSequence {
                    name: name.to_string(),
                    frames: s.frames,
                    annotations,
                    annotation_files: s.annotations.into_iter().map(Some).collect(),
                    objects,
                    width: 0,
                    height: 0,
                }
            }
            DatasetKind::YoutubeVos => youtube_vos::load(&self.root, name)?,
            DatasetKind::SegTrack => segtrack::load(&self.root, name)?,
            DatasetKind::Folder => folder::load(&self.root, name)?,
        };
        seq.finish()
    }
}
