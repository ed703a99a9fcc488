//! SegTrack v2: frames in `JPEGImages/SEQ/` (PNG or BMP), ground truth in
//! `GroundTruth/SEQ/` named like the frames: binary masks directly there
//! for a single object, or one sub-folder per object (`1/`, `2/`, ...) for
//! multi-object sequences. Object ids are the sub-folders' order (numeric
//! names by value), from 1. A frame is annotated when its objects' masks
//! are there; where one object has a mask and another not, that is an
//! error naming the missing file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use vosd_engine::frame::LabelMask;

use super::files::{find_by_stem, frames_in, load_binary_mask, stem, subdirs};
use super::VideoSequence;

const MASK_EXTS: [&str; 3] = ["png", "bmp", "jpg"];

/// Loads sequence `name` of the SegTrack v2 root `root`.
pub(super) fn load(root: &Path, name: &str) -> Result<VideoSequence> {
    let frames = frames_in(&root.join("JPEGImages").join(name))?;
    let gt_dir = root.join("GroundTruth").join(name);
    if !gt_dir.is_dir() {
        bail!(
            "{}: no ground-truth folder for sequence {name}",
            gt_dir.display()
        );
    }
    let mut object_dirs: Vec<String> = subdirs(&gt_dir)?;
    object_dirs.sort_by_key(|d| (d.parse::<u64>().unwrap_or(u64::MAX), d.clone()));
    let object_dirs: Vec<PathBuf> = if object_dirs.is_empty() {
        vec![gt_dir.clone()]
    } else {
        object_dirs.iter().map(|d| gt_dir.join(d)).collect()
    };
    if object_dirs.len() > 255 {
        bail!("{}: more than 255 object folders", gt_dir.display());
    }
    let mut annotations = Vec::with_capacity(frames.len());
    let mut files = Vec::with_capacity(frames.len());
    for f in &frames {
        let s = stem(f);
        let found: Vec<Option<PathBuf>> = object_dirs
            .iter()
            .map(|d| find_by_stem(d, &s, &MASK_EXTS))
            .collect();
        if found.iter().all(Option::is_none) {
            annotations.push(None);
            files.push(None);
            continue;
        }
        if let Some(i) = found.iter().position(Option::is_none) {
            bail!(
                "{}: no mask {s}.png/.bmp for object {} (other objects have one for this frame)",
                object_dirs[i].display(),
                i + 1
            );
        }
        let mut label: Option<LabelMask> = None;
        let mut first_file: Option<PathBuf> = None;
        for (i, p) in found.into_iter().flatten().enumerate() {
            let m = load_binary_mask(&p, (i + 1) as u8)?;
            match &mut label {
                None => {
                    label = Some(m);
                    first_file = Some(p);
                }
                Some(l) => {
                    if (l.width, l.height) != (m.width, m.height) {
                        bail!(
                            "{}: mask is {}x{}, {} is {}x{}",
                            p.display(),
                            m.width,
                            m.height,
                            first_file
                                .as_ref()
                                .map(|f| f.display().to_string())
                                .unwrap_or_default(),
                            l.width,
                            l.height
                        );
                    }
                    for (o, &v) in l.data.iter_mut().zip(&m.data) {
                        if v != 0 {
                            *o = v;
                        }
                    }
                }
            }
        }
        annotations.push(label);
        files.push(first_file);
    }
    Ok(VideoSequence {
        name: name.to_string(),
        frames,
        annotations,
        annotation_files: files,
        objects: Vec::new(),
        width: 0,
        height: 0,
    })
}
