//! `vosd segment`: segment a folder of frames from a first-frame mask, or
//! with no mask by discovering the moving objects (`--discover`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use vosd_engine::config::{DiscoverConfig, EngineConfig};
use vosd_engine::discover::{Clock, Discovery, DiscoveryEvent};
use vosd_engine::engine::Tracker;
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{
    list_images, load_mask, load_rgb, render_overlay, save_jpeg, save_mask,
};

use super::EngineArgs;

/// `vosd segment`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Folder of frames (jpg/png, processed in name order).
    #[arg(long, value_name = "DIR")]
    frames: PathBuf,
    /// Label mask of the first frame (PNG: palette ids, or binary 0/255).
    #[arg(long, value_name = "FIRST.png", required_unless_present = "discover")]
    mask: Option<PathBuf>,
    /// Unsupervised mode: no mask; objects that move against the scene are
    /// discovered and tracked ([discover] settings of --config, or
    /// --set discover.KEY=VALUE).
    #[arg(long, conflicts_with = "mask")]
    discover: bool,
    /// With --discover: the frames' rate (the clock of `lost_after_s`).
    #[arg(long, default_value_t = 30.0, requires = "discover")]
    fps: f64,
    /// Output folder for palette PNG masks (one per frame).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also write JPEG overlays (frame + coloured masks and contours) here.
    #[arg(long, value_name = "DIR")]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `vosd segment`.
pub fn run(args: SegmentArgs) -> Result<()> {
    let cfg = args.engine.resolve()?;
    let start = match &args.mask {
        Some(mask) => Start::Mask(mask),
        None => {
            if !(args.fps > 0.0 && args.fps.is_finite()) {
                bail!(
                    "--fps {}: must be a positive number of frames per second",
                    args.fps
                );
            }
            Start::Discover(args.engine.discover()?, args.fps)
        }
    };
    let s = segment_folder(
        &cfg,
        &args.frames,
        &start,
        &args.out,
        args.overlay.as_deref(),
        true,
    )?;
    eprintln!(
        "segmented {} frames, objects {:?}, {:.1} fps (engine only), masks in {}",
        s.frames,
        s.objects,
        s.fps,
        args.out.display()
    );
    Ok(())
}

/// What a segmentation run starts from.
#[derive(Clone, Debug)]
pub enum Start<'a> {
    /// The first frame's label mask, a PNG file.
    Mask(&'a Path),
    /// Nothing: objects are discovered with these settings, the frames
    /// this many per second apart.
    Discover(DiscoverConfig, f64),
}

/// What a segmentation run did.
#[derive(Clone, Debug)]
pub struct SegmentSummary {
    /// Frames written (including the first).
    pub frames: usize,
    /// Object ids tracked (with discovery: every id ever discovered).
    pub objects: Vec<u8>,
    /// Engine frames per second (excluding file I/O).
    pub fps: f64,
}

/// Segments every image in `frames_dir` (name order) from `start` (the
/// first frame's labels, or discovery); writes `out_dir/STEM.png` palette
/// masks and, with `overlay_dir`, `STEM.jpg` overlays. Progress goes to
/// stderr when `progress` is set.
pub fn segment_folder(
    cfg: &EngineConfig,
    frames_dir: &Path,
    start: &Start<'_>,
    out_dir: &Path,
    overlay_dir: Option<&Path>,
    progress: bool,
) -> Result<SegmentSummary> {
    let frames = list_images(frames_dir)?;
    if frames.is_empty() {
        bail!(
            "{}: no frames (jpg, jpeg or png) in this folder",
            frames_dir.display()
        );
    }
    let frame0 = load_rgb(&frames[0])?;
    let (w, h) = (frame0.width, frame0.height);
    for dir in std::iter::once(out_dir).chain(overlay_dir) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let tracker = Tracker::new(cfg, w, h)?;
    let stem = |p: &Path| p.file_stem().map(|s| s.to_os_string()).unwrap_or_default();
    let write = |i: usize, frame: &vosd_engine::frame::RgbFrame, mask: &LabelMask| -> Result<()> {
        let name = stem(&frames[i]);
        save_mask(&out_dir.join(&name).with_extension("png"), mask)?;
        if let Some(dir) = overlay_dir {
            save_jpeg(
                &dir.join(&name).with_extension("jpg"),
                &render_overlay(frame, mask),
                85,
            )?;
        }
        Ok(())
    };
    let mut engine = match start {
        Start::Mask(mask_path) => {
            let first_mask = load_mask(mask_path)?;
            if (first_mask.width, first_mask.height) != (w, h) {
                bail!(
                    "{}: mask is {}x{} but the frames ({}) are {w}x{h}",
                    mask_path.display(),
                    first_mask.width,
                    first_mask.height,
                    frames[0].display(),
                );
            }
            let mut tracker = tracker;
            tracker
                .start(&frame0, &first_mask)
                .with_context(|| format!("{}", mask_path.display()))?;
            write(0, &frame0, &first_mask)?;
            FolderEngine::Tracker(tracker)
        }
        Start::Discover(d, fps) => FolderEngine::Discovery(Box::new(Discovery::new(
            tracker,
            d,
            Clock::FrameRate(*fps),
            w,
            h,
        )?)),
    };
    let mut objects: Vec<u8> = engine.object_ids().to_vec();
    let mut out = LabelMask::new(w, h);
    let mut busy = 0.0f64;
    let first = match engine {
        FolderEngine::Tracker(_) => 1,
        FolderEngine::Discovery(_) => 0,
    };
    for (i, path) in frames.iter().enumerate().skip(first) {
        let frame = if i == 0 {
            frame0.clone()
        } else {
            load_rgb(path)?
        };
        if (frame.width, frame.height) != (w, h) {
            bail!(
                "{}: frame is {}x{}, the first frame is {w}x{h}",
                path.display(),
                frame.width,
                frame.height,
            );
        }
        let t = Instant::now();
        engine
            .step(&frame, &mut out, progress)
            .with_context(|| format!("{}", path.display()))?;
        busy += t.elapsed().as_secs_f64();
        for &id in engine.object_ids() {
            if !objects.contains(&id) {
                objects.push(id);
            }
        }
        write(i, &frame, &out)?;
        if progress {
            eprint!(
                "\r{}/{} frames, {:.1} fps",
                i + 1,
                frames.len(),
                (i + 1 - first) as f64 / busy.max(1e-9)
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
        if let FolderEngine::Discovery(d) = &engine {
            eprintln!(
                "discovery itself: {:.2} ms per frame (besides the tracker and the encoder)",
                d.mean_time().as_secs_f64() * 1e3
            );
        }
    }
    let stepped = frames.len() - first;
    let fps = if busy > 0.0 {
        stepped as f64 / busy
    } else {
        0.0
    };
    Ok(SegmentSummary {
        frames: frames.len(),
        objects,
        fps,
    })
}

/// The engine of a folder run: a tracker from a first mask, or discovery.
enum FolderEngine {
    Tracker(Tracker),
    Discovery(Box<Discovery>),
}

impl FolderEngine {
    fn object_ids(&self) -> &[u8] {
        match self {
            Self::Tracker(t) => t.object_ids(),
            Self::Discovery(d) => d.object_ids(),
        }
    }

    /// Segments `frame` into `out`; discoveries and losses are printed
    /// when `progress` is set.
    fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask, progress: bool) -> Result<()> {
        match self {
            Self::Tracker(t) => t.step(frame, out)?,
            Self::Discovery(d) => {
                for e in d.step(frame, out)? {
                    if progress {
                        match e {
                            DiscoveryEvent::Added { id, bbox } => {
                                eprintln!("\nobject {id} discovered in box {bbox:?}")
                            }
                            DiscoveryEvent::Extended { id, bbox } => {
                                eprintln!("\nobject {id} extended by box {bbox:?}")
                            }
                            DiscoveryEvent::Lost { id } => eprintln!("\nobject {id} lost: removed"),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
