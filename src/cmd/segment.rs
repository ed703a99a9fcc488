//! `vosd segment`: segment a folder of frames from a first-frame mask.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use vosd_engine::config::EngineConfig;
use vosd_engine::engine::Tracker;
use vosd_engine::frame::LabelMask;
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
    #[arg(long, value_name = "FIRST.png")]
    mask: PathBuf,
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
    let s = segment_folder(
        &cfg,
        &args.frames,
        &args.mask,
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

/// What a segmentation run did.
#[derive(Clone, Debug)]
pub struct SegmentSummary {
    /// Frames written (including the first).
    pub frames: usize,
    /// Object ids tracked.
    pub objects: Vec<u8>,
    /// Engine frames per second (excluding file I/O).
    pub fps: f64,
}

/// Segments every image in `frames_dir` (name order) starting from
/// `mask_path` (the first frame's labels); writes `out_dir/STEM.png` palette
/// masks and, with `overlay_dir`, `STEM.jpg` overlays. Progress goes to stderr
/// when `progress` is set.
pub fn segment_folder(
    cfg: &EngineConfig,
    frames_dir: &Path,
    mask_path: &Path,
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
    let first_mask = load_mask(mask_path)?;
    let frame0 = load_rgb(&frames[0])?;
    if (first_mask.width, first_mask.height) != (frame0.width, frame0.height) {
        bail!(
            "{}: mask is {}x{} but the frames ({}) are {}x{}",
            mask_path.display(),
            first_mask.width,
            first_mask.height,
            frames[0].display(),
            frame0.width,
            frame0.height
        );
    }
    for dir in std::iter::once(out_dir).chain(overlay_dir) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let mut tracker = Tracker::new(cfg, frame0.width, frame0.height)?;
    tracker
        .start(&frame0, &first_mask)
        .with_context(|| format!("{}", mask_path.display()))?;
    let objects = tracker.object_ids().to_vec();
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
    write(0, &frame0, &first_mask)?;
    let mut out = LabelMask::new(frame0.width, frame0.height);
    let mut busy = 0.0f64;
    for (i, path) in frames.iter().enumerate().skip(1) {
        let frame = load_rgb(path)?;
        if (frame.width, frame.height) != (frame0.width, frame0.height) {
            bail!(
                "{}: frame is {}x{}, the first frame is {}x{}",
                path.display(),
                frame.width,
                frame.height,
                frame0.width,
                frame0.height
            );
        }
        let t = Instant::now();
        tracker
            .step(&frame, &mut out)
            .with_context(|| format!("{}", path.display()))?;
        busy += t.elapsed().as_secs_f64();
        write(i, &frame, &out)?;
        if progress {
            eprint!(
                "\r{}/{} frames, {:.1} fps",
                i + 1,
                frames.len(),
                i as f64 / busy.max(1e-9)
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
    }
    let fps = if busy > 0.0 {
        (frames.len() - 1) as f64 / busy
    } else {
        0.0
    };
    Ok(SegmentSummary {
        frames: frames.len(),
        objects,
        fps,
    })
}
