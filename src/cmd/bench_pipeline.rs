//! `vosd bench-pipeline`: the daemon's figures on the synthetic source.
//!
//! Runs the real pipeline (source → engine → shared memory) with the given
//! engine configuration for a while, reads every frame back through
//! [`ShmReader`] in another thread, and reports capture→publish latency
//! percentiles, sustained fps and drops after a warm-up; then measures the
//! publication cost per frame (object states + `ShmWriter::publish`) alone.
//! Resident memory is sampled once a second while measuring: a long run
//! (`--seconds 600`) shows whether memory stays flat.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use vosd::config::DaemonConfig;
use vosd::pipeline::{Pipeline, PipelineConfig, Segmenter};
use vosd::procfs::resident_bytes;
use vosd::source::synthetic::{Scene, Synthetic, SyntheticConfig};
use vosd::source::SourceConfig;
use vosd_engine::config::EngineConfig;
use vosd_engine::engine::Tracker;
use vosd_engine::frame::LabelMask;
use vosd_shm::{
    monotonic_ns, ObjectState, PublishConfig, ReadStatus, ShmReader, ShmWriter, SlotData,
};

use super::write_json;

/// `vosd bench-pipeline`'s arguments.
#[derive(clap::Args, Debug)]
pub struct BenchPipelineArgs {
    /// Daemon configuration whose [engine] (and synthetic [source]) to use.
    #[arg(long, value_name = "FILE", default_value = "config/demo.toml")]
    config: PathBuf,
    /// Offered frame rate of the synthetic source.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `vosd bench-pipeline`.
pub fn run(args: BenchPipelineArgs) -> Result<()> {
    let cfg = DaemonConfig::load(&args.config)?;
    let mut source = match cfg.source {
        Some(SourceConfig::Synthetic(s)) => s,
        _ => SyntheticConfig::default(),
    };
    let (fps, seconds, warmup) = (args.fps, args.seconds, args.warmup);
    source.fps = fps;
    source.frames = 0;
    // A day at most: beyond, a Duration from the float would overflow.
    let day = 86_400.0;
    if !(seconds > 0.0 && seconds <= day && (0.0..=day).contains(&warmup)) {
        bail!("--seconds must be positive and --warmup not negative (each at most 86400)");
    }
    eprintln!(
        "bench: synthetic {}x{} at {fps} fps, engine {}x{} ({} threads), {warmup} s warm-up + {seconds} s",
        source.width,
        source.height,
        cfg.engine.size[0],
        cfg.engine.size[1],
        cfg.engine.thread_count()
    );
    let opts = BenchOptions {
        engine: cfg.engine,
        source,
        warmup_s: warmup,
        seconds,
    };
    let r = bench(&opts)?;
    println!(
        "offered {:.1} fps: published {:.2} fps, captured {:.2} fps, dropped {} ({} frames read back)",
        r.source_fps, r.published_fps, r.captured_fps, r.dropped, r.frames_read
    );
    println!(
        "capture->publish latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms
    );
    println!(
        "publication per frame (states + shm): p50 {:.1} us, p99 {:.1} us; shm publish alone p50 {:.1} us",
        r.publish_p50_us, r.publish_p99_us, r.shm_publish_p50_us
    );
    println!(
        "resident memory: {:.1} MiB after warm-up, {:.1} MiB at the end, {:.1} MiB max (sampled each second)",
        r.rss_after_warmup_mib, r.rss_end_mib, r.rss_max_mib
    );
    if let Some(path) = &args.json {
        write_json(path, &r)?;
    }
    Ok(())
}

/// Bench settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Engine to run.
    pub engine: EngineConfig,
    /// The synthetic source (its fps is the offered rate).
    pub source: SyntheticConfig,
    /// Seconds excluded at the start.
    pub warmup_s: f64,
    /// Seconds measured.
    pub seconds: f64,
}

/// The figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Offered frame rate.
    pub source_fps: f64,
    /// Frames published per second during the measured period.
    pub published_fps: f64,
    /// Frames captured per second during the measured period.
    pub captured_fps: f64,
    /// Frames dropped (all stages) during the measured period.
    pub dropped: u64,
    /// Frames the reader saw during the measured period.
    pub frames_read: usize,
    /// Capture→publish latency, median, ms.
    pub latency_p50_ms: f64,
    /// Capture→publish latency, 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Capture→publish latency, maximum, ms.
    pub latency_max_ms: f64,
    /// Object states + publish of one frame, median, µs.
    pub publish_p50_us: f64,
    /// Object states + publish of one frame, 99th percentile, µs.
    pub publish_p99_us: f64,
    /// `ShmWriter::publish` alone, median, µs.
    pub shm_publish_p50_us: f64,
    /// Resident memory at the end of the warm-up, MiB (0 where unknown).
    pub rss_after_warmup_mib: f64,
    /// Resident memory at the end of the measured period, MiB.
    pub rss_end_mib: f64,
    /// Largest resident memory sampled (once a second) while measuring, MiB.
    pub rss_max_mib: f64,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark.
pub fn bench(opts: &BenchOptions) -> Result<BenchReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let source = Synthetic::new(&opts.source, stop.clone())?;
    let (w, h) = (opts.source.width, opts.source.height);
    let tracker = Tracker::new(&opts.engine, w, h).context("[engine]")?;
    let name = format!("/vosd-bench-{}", std::process::id());
    let writer = ShmWriter::create(&PublishConfig::new(name.clone(), w as u32, h as u32))?;
    let mut reader = ShmReader::open(&name)?;
    let pcfg = PipelineConfig {
        stats_interval_s: 0.0,
        ..Default::default()
    };
    let pipeline = Pipeline::start(
        Box::new(source),
        Box::new(tracker) as Box<dyn Segmenter>,
        writer,
        &pcfg,
        stop.clone(),
    )?;
    let stats = pipeline.stats().clone();

    let measure_from = monotonic_ns() + (opts.warmup_s * 1e9) as u64;
    let reader_thread = std::thread::spawn(move || -> Result<Vec<u64>> {
        let mut buf = reader.new_frame_buf();
        let mut lat = Vec::with_capacity(100_000);
        loop {
            match reader.wait_next(&mut buf, Duration::from_millis(100))? {
                ReadStatus::Frame { .. } => {
                    if buf.capture_ns() >= measure_from {
                        lat.push(buf.latency_ns());
                    }
                }
                ReadStatus::Ended => return Ok(lat),
                ReadStatus::Empty => {}
            }
        }
    });
    std::thread::sleep(Duration::from_secs_f64(opts.warmup_s));
    let a = stats.snapshot();
    let mib = |b: Option<u64>| b.unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let rss_after_warmup = mib(resident_bytes());
    let mut rss_max = rss_after_warmup;
    let end = Instant::now() + Duration::from_secs_f64(opts.seconds);
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_secs(1)));
        rss_max = rss_max.max(mib(resident_bytes()));
    }
    let b = stats.snapshot();
    let rss_end = mib(resident_bytes());
    stop.store(true, Ordering::SeqCst);
    pipeline.join()?;
    let mut lat = reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    lat.sort_unstable();
    let (captured_fps, published_fps) = b.rates_since(&a);

    // Publication alone: states of the scene's objects + publish, on a
    // writer of the same geometry with a reader attached.
    let scene = Scene::new(&opts.source)?;
    let pub_name = format!("/vosd-bench-pub-{}", std::process::id());
    let mut writer = ShmWriter::create(&PublishConfig::new(pub_name.clone(), w as u32, h as u32))?;
    let mut masks = Vec::new();
    for k in 0..16 {
        let mut m = LabelMask::default();
        scene.ground_truth(k * 7, &mut m);
        masks.push(m);
    }
    let ids = scene.object_ids();
    let mut states: Vec<ObjectState> = Vec::with_capacity(16);
    let (mut total, mut shm_only) = (Vec::with_capacity(2000), Vec::with_capacity(2000));
    for i in 0..2000u64 {
        let m = &masks[i as usize % masks.len()];
        let t0 = Instant::now();
        states.clear();
        states.extend(
            ids.iter()
                .map(|&id| ObjectState::from_mask(&m.data, w, h, id)),
        );
        let t1 = Instant::now();
        writer.publish(&SlotData {
            frame_number: i,
            capture_ns: monotonic_ns(),
            objects: &states,
            mask: &m.data,
        })?;
        let t2 = Instant::now();
        total.push((t2 - t0).as_nanos() as u64);
        shm_only.push((t2 - t1).as_nanos() as u64);
    }
    drop(writer);
    total.sort_unstable();
    shm_only.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let us = |ns: u64| ns as f64 / 1e3;
    Ok(BenchReport {
        source_fps: opts.source.fps,
        published_fps,
        captured_fps,
        dropped: b.dropped().saturating_sub(a.dropped()),
        frames_read: lat.len(),
        latency_p50_ms: ms(pct(&lat, 50.0)),
        latency_p99_ms: ms(pct(&lat, 99.0)),
        latency_max_ms: ms(lat.last().copied().unwrap_or(0)),
        publish_p50_us: us(pct(&total, 50.0)),
        publish_p99_us: us(pct(&total, 99.0)),
        shm_publish_p50_us: us(pct(&shm_only, 50.0)),
        rss_after_warmup_mib: rss_after_warmup,
        rss_end_mib: rss_end,
        rss_max_mib: rss_max,
    })
}
