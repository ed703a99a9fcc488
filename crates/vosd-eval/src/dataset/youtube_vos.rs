//! YouTube-VOS 2018/2019: `JPEGImages/VID/NNNNN.jpg`,
//! `Annotations/VID/NNNNN.png` (palette PNGs, pixel = object id; in the
//! train split every 5th frame, in valid/test only the frame where each
//! object first appears) and `meta.json`:
//! `{"videos": {VID: {"objects": {"1": {"category": .., "frames": [..]}}}}}`.
//!
//! The objects are those of `meta.json` when it is there (each must appear
//! in some annotation), otherwise every id found in the annotations. An
//! object starts at the first annotation it appears in; `meta.json`'s first
//! listed frame is checked against that.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use vosd_engine::imageio::load_mask;

use super::files::{find_by_stem, frames_in, stem};
use super::VideoSequence;
use crate::metrics::ObjectStart;

/// Object ids and their first listed frame name, from `meta.json`.
fn meta_objects(meta: &Path, video: &str) -> Result<Vec<(u8, Option<String>)>> {
    let text = std::fs::read_to_string(meta)
        .with_context(|| format!("{}: cannot read", meta.display()))?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", meta.display()))?;
    let Some(objects) = v
        .get("videos")
        .and_then(|v| v.get(video))
        .and_then(|v| v.get("objects"))
        .and_then(Value::as_object)
    else {
        bail!(
            "{}: no videos.{video}.objects entry for this video",
            meta.display()
        );
    };
    let mut out = Vec::new();
    for (key, obj) in objects {
        let id: u8 = key.parse().ok().filter(|&id| id > 0).with_context(|| {
            format!(
                "{}: video {video}: object key '{key}' is not an id 1..255",
                meta.display()
            )
        })?;
        let first = obj
            .get("frames")
            .and_then(Value::as_array)
            .and_then(|f| f.first())
            .and_then(Value::as_str)
            .map(String::from);
        out.push((id, first));
    }
    Ok(out)
}

/// Loads video `name` of the YouTube-VOS split at `root`.
pub(super) fn load(root: &Path, name: &str) -> Result<VideoSequence> {
    let frames = frames_in(&root.join("JPEGImages").join(name))?;
    let ann_dir = root.join("Annotations").join(name);
    if !ann_dir.is_dir() {
        bail!(
            "{}: no annotation folder for video {name}",
            ann_dir.display()
        );
    }
    let mut annotations = Vec::with_capacity(frames.len());
    let mut files = Vec::with_capacity(frames.len());
    for f in &frames {
        match find_by_stem(&ann_dir, &stem(f), &["png"]) {
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
    let meta = root.join("meta.json");
    let mut objects = Vec::new();
    let mut listed_first = Vec::new();
    if meta.is_file() {
        for (id, first) in meta_objects(&meta, name)? {
            objects.push(ObjectStart { id, first_frame: 0 });
            listed_first.push((id, first));
        }
    }
    let seq = VideoSequence {
        name: name.to_string(),
        frames,
        annotations,
        annotation_files: files,
        objects,
        width: 0,
        height: 0,
    }
    .finish()?;
    for (id, first) in listed_first {
        let (Some(first), Some(o)) = (first, seq.objects.iter().find(|o| o.id == id)) else {
            continue;
        };
        let found = stem(&seq.frames[o.first_frame]);
        if found != first {
            log::warn!(
                "{}: video {name} object {id}: meta.json lists it from frame {first}, \
                 its first annotation is frame {found}; scoring from the annotation",
                meta.display()
            );
        }
    }
    Ok(seq)
}
