//! A folder of images or a DAVIS sequence played as a paced stream.
//!
//! Frames are decoded one at a time when due (JPEG/PNG decoding allocates
//! inside the `image` crate; the decoded pixels are copied into the
//! pipeline's pooled buffer). The first-frame annotation, if any, gives the
//! objects to track; a looping stream restarts the tracker from it each time
//! it plays the first frame again.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{check_fps, FrameMeta, FrameSource, Pacer, SourceError, SourceEvent};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{list_images, load_mask, load_rgb};
use vosd_eval::davis::Davis;
use vosd_shm::monotonic_ns;

/// `kind = "frames"`: a folder of images (name order) or a DAVIS sequence.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FramesConfig {
    /// Folder of jpg/png frames; with `sequence`, a DAVIS root instead.
    pub path: PathBuf,
    /// DAVIS sequence name under `path` (JPEGImages/480p/NAME).
    #[serde(default)]
    pub sequence: Option<String>,
    /// Label mask PNG of the first frame (palette or binary). Default: the
    /// DAVIS sequence's first annotation; a plain folder has none.
    #[serde(default)]
    pub annotation: Option<PathBuf>,
    /// Frames per second to deliver.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Play the frames again from the first when the last was delivered.
    #[serde(default, rename = "loop")]
    pub looping: bool,
}

fn default_fps() -> f64 {
    30.0
}

impl FramesConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        check_fps(self.fps)?;
        if self.path.as_os_str().is_empty() {
            return Err(SourceError::Config {
                key: "path",
                reason: "is empty".into(),
            });
        }
        if let Some(s) = &self.sequence {
            if s.is_empty() || s.contains('/') {
                return Err(SourceError::Config {
                    key: "sequence",
                    reason: format!("'{s}' is not a sequence name"),
                });
            }
        }
        Ok(())
    }
}

/// A paced stream over image files.
#[derive(Debug)]
pub struct Frames {
    files: Vec<PathBuf>,
    width: usize,
    height: usize,
    initial: Option<LabelMask>,
    looping: bool,
    next: u64,
    pacer: Pacer,
    describe: String,
}

impl Frames {
    /// Lists the frames, decodes the first for the stream size and loads the
    /// first-frame annotation.
    pub fn open(cfg: &FramesConfig, stop: Arc<AtomicBool>) -> Result<Self, SourceError> {
        cfg.validate()?;
        let path_err = |path: &Path, reason: String| SourceError::Path {
            path: path.to_path_buf(),
            reason,
        };
        let (files, annotation, what) = match &cfg.sequence {
            Some(name) => {
                let davis = Davis::open(&cfg.path)
                    .map_err(|e| path_err(&cfg.path, format!("source.path: {e:#}")))?;
                let seq = davis
                    .sequence(name)
                    .map_err(|e| path_err(&cfg.path, format!("source.sequence: {e:#}")))?;
                let ann = cfg
                    .annotation
                    .clone()
                    .or_else(|| seq.annotations.first().cloned());
                (
                    seq.frames,
                    ann,
                    format!("DAVIS sequence {name} in {}", cfg.path.display()),
                )
            }
            None => {
                if !cfg.path.is_dir() {
                    return Err(path_err(&cfg.path, "source.path: not a folder".into()));
                }
                (
                    list_images(&cfg.path)?,
                    cfg.annotation.clone(),
                    format!("folder {}", cfg.path.display()),
                )
            }
        };
        let Some(first) = files.first() else {
            return Err(path_err(
                &cfg.path,
                "source.path: no jpg/png frames in this folder".into(),
            ));
        };
        let first = load_rgb(first)?;
        let (width, height) = (first.width, first.height);
        let initial = match annotation {
            Some(p) => {
                if !p.is_file() {
                    return Err(path_err(&p, "source.annotation: no such file".into()));
                }
                let m = load_mask(&p)?;
                if (m.width, m.height) != (width, height) {
                    return Err(path_err(
                        &p,
                        format!(
                            "source.annotation: mask is {}x{} but the frames are {width}x{height}",
                            m.width, m.height
                        ),
                    ));
                }
                Some(m)
            }
            None => None,
        };
        let describe = format!(
            "{what}: {} frames {width}x{height} at {} fps{}{}",
            files.len(),
            cfg.fps,
            if cfg.looping { ", looping" } else { "" },
            match &initial {
                Some(m) => format!(", {} objects in the first frame", m.object_ids().len()),
                None => ", no first-frame annotation".into(),
            }
        );
        Ok(Self {
            files,
            width,
            height,
            initial,
            looping: cfg.looping,
            next: 0,
            pacer: Pacer::new(cfg.fps, stop),
            describe,
        })
    }

    /// Number of frame files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no frames (never: `open` refuses an empty folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for Frames {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError> {
        let n = self.files.len() as u64;
        let k = self.next;
        if !self.looping && k >= n {
            return Ok(SourceEvent::Ended);
        }
        let index = k % n;
        if !self.pacer.wait(k) {
            return Ok(SourceEvent::Stopped);
        }
        let path = &self.files[index as usize];
        let img = load_rgb(path)?;
        if (img.width, img.height) != (self.width, self.height) {
            return Err(SourceError::FrameSize {
                what: path.display().to_string(),
                got_w: img.width,
                got_h: img.height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        buf.ensure_size(self.width, self.height);
        buf.data.copy_from_slice(&img.data);
        self.next += 1;
        Ok(SourceEvent::Frame(FrameMeta {
            frame_number: k,
            capture_ns: monotonic_ns(),
            source_index: index,
            restart: index == 0,
        }))
    }

    fn initial_objects(&self) -> Option<LabelMask> {
        self.initial.clone()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAVIS: &str = "/work/shared/data/davis2016";

    fn davis_root() -> Option<PathBuf> {
        let p = std::env::var_os("VOSD_DAVIS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DAVIS));
        p.join("JPEGImages/480p").is_dir().then_some(p)
    }

    #[test]
    fn folder_with_annotation_loops() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(8, 6, |x, _| image::Rgb([i * 50, x as u8, 7]));
            img.save(dir.path().join(format!("{i:05}.png"))).unwrap();
        }
        let ann = dir.path().join("ann");
        std::fs::create_dir(&ann).unwrap();
        let mask = LabelMask {
            width: 8,
            height: 6,
            data: (0..48).map(|i| u8::from(i % 5 == 0)).collect(),
        };
        vosd_engine::imageio::save_mask(&ann.join("first.png"), &mask).unwrap();
        let cfg = FramesConfig {
            path: dir.path().into(),
            sequence: None,
            annotation: Some(ann.join("first.png")),
            fps: 500.0,
            looping: true,
        };
        let mut s = Frames::open(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(s.size(), (8, 6));
        assert_eq!(s.initial_objects(), Some(mask));
        let mut buf = RgbFrame::default();
        let next = |s: &mut Frames, buf: &mut RgbFrame| {
            s.next_frame(buf).unwrap().frame().expect("a frame")
        };
        let metas: Vec<FrameMeta> = (0..7).map(|_| next(&mut s, &mut buf)).collect();
        assert_eq!(
            metas.iter().map(|m| m.source_index).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2, 0]
        );
        assert_eq!(metas.iter().filter(|m| m.restart).count(), 3);
        assert_eq!(buf.data[0], 0);
        next(&mut s, &mut buf);
        assert_eq!(buf.data[0], 50);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = tempfile::tempdir().unwrap();
        let cfg = |path: PathBuf| FramesConfig {
            path,
            sequence: None,
            annotation: None,
            fps: 30.0,
            looping: false,
        };
        let e = Frames::open(&cfg(dir.path().into()), stop.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no jpg/png frames"), "{e}");
        let e = Frames::open(&cfg(dir.path().join("nope")), stop.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder") && e.contains("nope"), "{e}");
        std::fs::write(dir.path().join("00000.jpg"), b"not a jpeg").unwrap();
        let e = Frames::open(&cfg(dir.path().into()), stop.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("00000.jpg") && e.contains("decode"), "{e}");
        let e = Frames::open(
            &FramesConfig {
                fps: -1.0,
                ..cfg(dir.path().into())
            },
            stop,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source.fps"), "{e}");
    }

    #[test]
    fn davis_sequence_has_first_annotation() {
        let Some(root) = davis_root() else {
            eprintln!("skipped: no DAVIS data");
            return;
        };
        let cfg = FramesConfig {
            path: root.clone(),
            sequence: Some("bear".into()),
            annotation: None,
            fps: 1000.0,
            looping: false,
        };
        let mut s = Frames::open(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(s.size(), (854, 480));
        let init = s.initial_objects().expect("first annotation");
        assert_eq!(init.object_ids(), vec![1]);
        let mut buf = RgbFrame::default();
        let m = s.next_frame(&mut buf).unwrap().frame().expect("a frame");
        assert_eq!((m.frame_number, buf.width, buf.height), (0, 854, 480));
        let bad = FramesConfig {
            sequence: Some("no-such-seq".into()),
            ..cfg
        };
        let e = Frames::open(&bad, Arc::new(AtomicBool::new(false)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-seq"), "{e}");
    }
}
