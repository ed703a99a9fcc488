//! `vosd bench`: per-stage timing of the VOS engine on real or synthetic frames.
//!
//! Frames are decoded up front so that only the engine is timed. Figures are
//! printed, never asserted: speed targets are checked by reading them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use vosd::source::synthetic::{Scene, SyntheticConfig};
use vosd_engine::backend::BackendChoice;
use vosd_engine::config::{EngineConfig, Method, Precision};
use vosd_engine::engine::{StageTimes, Tracker};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{list_images, load_mask, load_rgb};

use super::{write_json, EngineArgs};

/// `vosd bench`'s arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Frames to time.
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// DAVIS root whose `bear` sequence is used (default ../shared/data/davis2016
    /// if present, else synthetic 854x480 frames).
    #[arg(long, value_name = "ROOT")]
    davis: Option<PathBuf>,
    /// Sequence of the DAVIS root to use.
    #[arg(long, default_value = "bear")]
    sequence: String,
    /// Also write the figures as JSON (an array with --backends).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run once per backend and print each one's figures, e.g.
    /// --backends cpu,onnxruntime,opencl (default: the configured backend).
    #[arg(long, value_enum, value_delimiter = ',')]
    backends: Vec<BackendChoice>,
    /// Run each backend once per encoder precision, e.g. --precisions
    /// fp32,int8 (default: the configured precision).
    #[arg(long, value_enum, value_delimiter = ',')]
    precisions: Vec<Precision>,
    /// Run each of these engines, e.g. --methods
    /// memory-network,label-propagation (default: the configured method).
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Vec<Method>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `vosd bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let cfg = args.engine.resolve()?;
    let root = args.davis.or_else(|| {
        let d = PathBuf::from("../shared/data/davis2016");
        d.join("JPEGImages/480p").is_dir().then_some(d)
    });
    let davis_sequence = root.map(|r| {
        (
            r.join("JPEGImages/480p").join(&args.sequence),
            r.join("Annotations/480p")
                .join(&args.sequence)
                .join("00000.png"),
        )
    });
    let opts = EngineBenchOptions {
        frames: args.frames.max(1),
        davis_sequence,
    };
    // One run per backend and precision asked for (`--backends
    // cpu,onnxruntime --precisions fp32,int8`), else the configured ones.
    let backends = if args.backends.is_empty() {
        vec![cfg.backend]
    } else {
        args.backends
    };
    let precisions = if args.precisions.is_empty() {
        vec![cfg.precision]
    } else {
        args.precisions
    };
    let methods = if args.methods.is_empty() {
        vec![cfg.method]
    } else {
        args.methods
    };
    let mut reports = Vec::with_capacity(methods.len() * backends.len() * precisions.len());
    for &method in &methods {
        for &backend in &backends {
            for &precision in &precisions {
                let cfg = EngineConfig {
                    method,
                    backend,
                    precision,
                    ..cfg.clone()
                };
                let r = bench_engine(&cfg, &opts).with_context(|| {
                    format!(
                        "{}, backend {backend}, precision {precision:?}",
                        method.label()
                    )
                })?;
                print_bench(&r);
                reports.push(r);
            }
        }
    }
    if let Some(path) = &args.json {
        if let [one] = reports.as_slice() {
            write_json(path, one)?;
        } else {
            write_json(path, &reports)?;
        }
    }
    Ok(())
}

/// Prints one engine benchmark's figures.
fn print_bench(r: &EngineBenchReport) {
    println!("method     {}", r.method.label());
    println!("model      {}", r.model);
    println!("backend    {}", r.backend.describe());
    println!(
        "size       {}x{} (frames {}x{}), {} object(s), {} thread(s), {} frames",
        r.size[0], r.size[1], r.frame_size[0], r.frame_size[1], r.objects, r.threads, r.frames
    );
    let stage = |name: &str, mean: f64, t: &StageStats| {
        println!(
            "{name:<10} {mean:7.1} ms/frame (p50 {:.1}, p99 {:.1})",
            t.p50_ms, t.p99_ms
        )
    };
    for (name, s) in STAGES.iter().zip(&r.stages) {
        // A stage the method does not have is not printed.
        if r.method == Method::MemoryNetwork || !MEMNET_ONLY.contains(name) {
            stage(name, s.mean_ms, &s.stats);
        }
    }
    println!(
        "total      p50 {:.1} ms, p99 {:.1} ms",
        r.total_p50_ms, r.total_p99_ms
    );
    println!("fps        {:7.1}", r.fps);
    println!(
        "memory     {:.1} MiB (fixed)",
        r.memory_bytes as f64 / (1024.0 * 1024.0)
    );
    println!();
}

/// The stages timed, in the order of a frame ([`StageTimes`]'s fields):
/// resize + encoder (+ label propagation's keys), the memory network's key
/// projection, the readout, the decoder, aggregation + upsampling +
/// arg-max, the value encoder (frames kept in memory).
pub const STAGES: [&str; 6] = ["encode", "key", "readout", "decode", "upsample", "value"];
/// The stages only the memory network has.
const MEMNET_ONLY: [&str; 3] = ["key", "decode", "value"];

/// `t`'s durations in the order of [`STAGES`].
fn stage_durations(t: &StageTimes) -> [std::time::Duration; 6] {
    [t.encode, t.key, t.readout, t.decode, t.upsample, t.value]
}

/// One stage's figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StageReport {
    /// Mean ms per frame.
    pub mean_ms: f64,
    /// Per-frame percentiles.
    #[serde(flatten)]
    pub stats: StageStats,
}

/// One stage's per-frame times.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StageStats {
    /// Median ms.
    pub p50_ms: f64,
    /// 99th percentile ms.
    pub p99_ms: f64,
}

impl StageStats {
    /// The median and 99th percentile of `ms` (sorted in place).
    fn of(ms: &mut [f64]) -> Self {
        ms.sort_by(f64::total_cmp);
        Self {
            p50_ms: percentile(ms, 0.5),
            p99_ms: percentile(ms, 0.99),
        }
    }
}

/// The `p` quantile of sorted `values` (nearest rank); 0 when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// What to run the benchmark on.
#[derive(Clone, Debug)]
pub struct EngineBenchOptions {
    /// Frames to time (after one warm-up frame).
    pub frames: usize,
    /// A DAVIS sequence folder pair (frames, first mask); `None` = synthetic 854×480.
    pub davis_sequence: Option<(PathBuf, PathBuf)>,
}

/// The figures `vosd bench` prints.
#[derive(Clone, Debug, Serialize)]
pub struct EngineBenchReport {
    /// Encoder file.
    pub model: String,
    /// Processing size.
    pub size: [usize; 2],
    /// Frame size.
    pub frame_size: [usize; 2],
    /// Objects tracked.
    pub objects: usize,
    /// Threads used.
    pub threads: usize,
    /// Frames timed.
    pub frames: usize,
    /// The encoder precision asked for.
    pub precision: Precision,
    /// The engine.
    pub method: Method,
    /// Names of the stages, in the order of `stages`.
    pub stage_names: [&'static str; 6],
    /// Each stage's figures (see [`STAGES`]).
    pub stages: [StageReport; 6],
    /// Per-frame total, median ms.
    pub total_p50_ms: f64,
    /// Per-frame total, 99th percentile ms.
    pub total_p99_ms: f64,
    /// Frames per second (1000 / mean total).
    pub fps: f64,
    /// Bytes of the fixed memory store.
    pub memory_bytes: usize,
    /// The backend that ran the frames (after the last one).
    pub backend: vosd_engine::backend::BackendStatus,
}

fn load_clip(frames_dir: &Path, mask: &Path, n: usize) -> Result<(Vec<RgbFrame>, LabelMask)> {
    let files = list_images(frames_dir)?;
    if files.is_empty() {
        bail!("{}: no frames", frames_dir.display());
    }
    let frames = files
        .iter()
        .take(n + 1)
        .map(|p| load_rgb(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((frames, load_mask(mask)?))
}

fn synthetic_clip(n: usize) -> Result<(Vec<RgbFrame>, LabelMask)> {
    let cfg = SyntheticConfig {
        width: 854,
        height: 480,
        ..Default::default()
    };
    let scene = Scene::new(&cfg).context("synthetic scene")?;
    let mut mask = LabelMask::new(854, 480);
    let frames = (0..=n as u64)
        .map(|k| {
            let mut f = RgbFrame::new(854, 480);
            scene.render(k, Some(&mut f), if k == 0 { Some(&mut mask) } else { None });
            f
        })
        .collect();
    Ok((frames, mask))
}

/// Runs the engine over the clip and measures each stage.
pub fn bench_engine(cfg: &EngineConfig, opts: &EngineBenchOptions) -> Result<EngineBenchReport> {
    let (clip, mask) = match &opts.davis_sequence {
        Some((frames, mask)) => load_clip(frames, mask, opts.frames)?,
        None => synthetic_clip(opts.frames)?,
    };
    let (w, h) = (clip[0].width, clip[0].height);
    let mut tracker = Tracker::new(cfg, w, h)?;
    tracker.start(&clip[0], &mask)?;
    let mut out = LabelMask::new(w, h);
    // Warm-up (first allocation of tract's scratch buffers, caches).
    tracker.step(&clip[1.min(clip.len() - 1)], &mut out)?;
    let before = tracker.stage_times();
    let mut totals = Vec::with_capacity(opts.frames);
    let mut stages: [Vec<f64>; 6] = std::array::from_fn(|_| Vec::with_capacity(opts.frames));
    let to_ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for i in 0..opts.frames {
        // Ping-pong through the clip so that motion stays continuous.
        let period = 2 * (clip.len() - 1).max(1);
        let k = (i + 2) % period;
        let idx = if k < clip.len() { k } else { period - k };
        let t0 = tracker.stage_times();
        let t = Instant::now();
        tracker.step(&clip[idx], &mut out)?;
        totals.push(t.elapsed().as_secs_f64() * 1e3);
        let t1 = tracker.stage_times();
        let (d0, d1) = (stage_durations(&t0), stage_durations(&t1));
        for ((v, a), b) in stages.iter_mut().zip(d0).zip(d1) {
            v.push(to_ms(b - a));
        }
    }
    let after = tracker.stage_times();
    let n = opts.frames.max(1) as f64;
    let ms = |a: std::time::Duration, b: std::time::Duration| (a - b).as_secs_f64() * 1e3 / n;
    let mean_total = totals.iter().sum::<f64>() / n;
    let total = StageStats::of(&mut totals);
    let (d0, d1) = (stage_durations(&before), stage_durations(&after));
    let mut means = d1.iter().zip(d0).map(|(a, b)| ms(*a, b));
    let stages = stages.map(|mut v| StageReport {
        mean_ms: means.next().unwrap_or(0.0),
        stats: StageStats::of(&mut v),
    });
    Ok(EngineBenchReport {
        model: tracker.model_path().display().to_string(),
        size: cfg.size,
        frame_size: [w, h],
        objects: tracker.object_ids().len(),
        threads: cfg.thread_count(),
        frames: opts.frames,
        precision: cfg.precision,
        method: cfg.method,
        stage_names: STAGES,
        stages,
        total_p50_ms: total.p50_ms,
        total_p99_ms: total.p99_ms,
        fps: if mean_total > 0.0 {
            1e3 / mean_total
        } else {
            0.0
        },
        memory_bytes: tracker.memory_bytes(),
        backend: tracker.backend_status(),
    })
}
