//! File helpers shared by the readers: listing folders and images, and
//! reading binary masks in any format the `image` crate decodes (SegTrack
//! v2's PNG and BMP ground truth).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vosd_engine::frame::LabelMask;

/// Extensions read as frames.
pub(super) const FRAME_EXTS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// The sub-folders of `dir`, by name.
pub(super) fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    names.sort();
    Ok(names)
}

/// The files of `dir` whose extension (any case) is one of `exts`, by name.
pub(super) fn files_with(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The frames of `dir`, which must hold at least one.
pub(super) fn frames_in(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: no such folder of frames", dir.display());
    }
    let frames = files_with(dir, &FRAME_EXTS)?;
    if frames.is_empty() {
        bail!(
            "{}: no frames (.jpg, .jpeg, .png or .bmp files)",
            dir.display()
        );
    }
    Ok(frames)
}

/// The file stem as a string.
pub(super) fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file of `dir` named `stem` with one of `exts`, if any.
pub(super) fn find_by_stem(dir: &Path, stem: &str, exts: &[&str]) -> Option<PathBuf> {
    exts.iter()
        .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
        .map(|e| dir.join(format!("{stem}.{e}")))
        .find(|p| p.is_file())
}

/// Reads a binary mask (PNG, BMP, any bit depth or colour type: grey, grey
/// and alpha, RGB): a pixel is foreground when its luma is above half of
/// the largest luma in the image (so 0/1 and 0/255 masks both work);
/// foreground pixels get `id`. An all-zero mask is empty.
pub(super) fn load_binary_mask(path: &Path, id: u8) -> Result<LabelMask> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot decode mask: {e}", path.display()))?
        .to_luma8();
    let (w, h) = img.dimensions();
    let data = img.into_raw();
    let max = data.iter().copied().max().unwrap_or(0);
    Ok(LabelMask {
        width: w as usize,
        height: h as usize,
        data: data
            .iter()
            .map(|&v| {
                if max > 0 && u16::from(v) * 2 > u16::from(max) {
                    id
                } else {
                    0
                }
            })
            .collect(),
    })
}
