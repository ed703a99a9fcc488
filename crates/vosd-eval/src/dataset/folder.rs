//! A plain folder: `frames/` (JPEG, PNG or BMP) and `masks/` (PNG label
//! masks as [`vosd_engine::imageio::load_mask`] reads them: palette, grey,
//! grey + alpha; pixel = object id, 0/255 = object 1), a mask named like its
//! frame (`frames/0042.jpg` ↔ `masks/0042.png`). Masks may be sparse; the
//! first frame with a mask starts each object in it. The root is one
//! sequence (named after the folder), or holds several as `SEQ/frames` and
//! `SEQ/masks`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use vosd_engine::imageio::load_mask;

use super::files::{find_by_stem, frames_in, stem, subdirs};
use super::VideoSequence;

fn is_sequence(dir: &Path) -> bool {
    dir.join("frames").is_dir() && dir.join("masks").is_dir()
}

/// The sequences under `root` and their folders: `root` itself, or its
/// sub-folders with `frames/` and `masks/`. Empty when none.
pub(super) fn sequence_dirs(root: &Path) -> Vec<(String, PathBuf)> {
    if is_sequence(root) {
        let name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "sequence".to_string());
        return vec![(name, root.to_path_buf())];
    }
    subdirs(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| is_sequence(&root.join(n)))
        .map(|n| {
            let dir = root.join(&n);
            (n, dir)
        })
        .collect()
}

/// Loads sequence `name` of the folder dataset at `root`.
pub(super) fn load(root: &Path, name: &str) -> Result<VideoSequence> {
    let Some((_, dir)) = sequence_dirs(root).into_iter().find(|(n, _)| n == name) else {
        bail!(
            "{}: no sequence {name} (expected {0}/frames and {0}/masks, or {0}/{name}/frames and {0}/{name}/masks)",
            root.display()
        );
    };
    let frames = frames_in(&dir.join("frames"))?;
    let masks = dir.join("masks");
    let mut annotations = Vec::with_capacity(frames.len());
    let mut files = Vec::with_capacity(frames.len());
    for f in &frames {
        match find_by_stem(&masks, &stem(f), &["png"]) {
            Some(p) => {
                annotations.push(Some(load_mask(&p)?));
                files.push(Some(p));
            }
            None => {
                annotations.push(None);
                files.push(None);
            }
        }
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
