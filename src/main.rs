//! The `vosd` command: the daemon and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use vosd_engine::config::{FileConfig, Precision};
use vosd_eval::davis::{evaluate, Davis, Init, Predictions};

/// Real-time video object segmentation daemon for edge boards.
#[derive(Parser, Debug)]
#[command(name = "vosd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Engine options shared by the commands that segment.
#[derive(clap::Args, Debug, Clone)]
struct EngineArgs {
    /// TOML configuration file (its [engine] table is used).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Processing size WxH (overrides engine.size), e.g. 854x480.
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    /// Encoder precision of the bundled model (overrides engine.precision).
    #[arg(long, value_parser = ["fp32", "int8", "fp16"])]
    precision: Option<String>,
    /// Encoder ONNX file (overrides engine.model).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Where the encoder and readout run (overrides engine.backend): auto
    /// (an OpenCL GPU that passes the self-test, else the CPU), opencl, cpu.
    #[arg(long, value_enum)]
    backend: Option<vosd_engine::backend::BackendChoice>,
    /// Override any engine key, e.g. --set top_k=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Segment a folder of frames from the first frame's mask.
    Segment {
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
    },
    /// Evaluate on a DAVIS dataset (J, F, J&F; DAVIS definitions).
    Eval {
        /// DAVIS root (with JPEGImages/480p and Annotations/480p).
        #[arg(long, value_name = "ROOT")]
        davis: PathBuf,
        /// Split name (ImageSets/{2017,2016,480p}/NAME.txt); default: all sequences.
        #[arg(long)]
        split: Option<String>,
        /// Comma-separated sequence names (overrides --split).
        #[arg(long, value_delimiter = ',')]
        sequences: Option<Vec<String>>,
        /// Score existing predictions DIR/SEQUENCE/NNNNN.png instead of segmenting.
        #[arg(long, value_name = "DIR")]
        results: Option<PathBuf>,
        /// Keep the predicted masks as DIR/SEQUENCE/NNNNN.png.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Write the figures as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Start each sequence from its first-frame mask, or from the bounding
        /// box of each object in it (box prompt: the mask is derived from the box).
        #[arg(long, value_parser = ["mask", "box"], default_value = "mask")]
        init: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run the daemon: capture, segment, publish to shared memory.
    Run {
        /// Daemon configuration (TOML: [engine], [source], [publish], [pipeline]).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only check the configuration, then exit.
        #[arg(long)]
        check: bool,
    },
    /// Print one line per frame published to shared memory.
    Tail {
        /// Shared-memory name of the pipeline.
        #[arg(long, value_name = "NAME", default_value = "/vosd-demo")]
        shm: String,
        /// Exit after N frames (0: until the writer ends).
        #[arg(long, value_name = "N", default_value_t = 0)]
        frames: u64,
        /// Seconds to wait for the segment to appear.
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        wait: f64,
    },
    /// List the cameras (V4L2 device nodes) and the compute devices (OpenCL
    /// platforms and devices, and the backend `auto` would choose).
    Probe,
    /// Benchmark the VOS engine: per-stage times (encode, readout, upsample) and fps.
    Bench {
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
        /// --backends cpu,opencl (default: the configured backend).
        #[arg(long, value_enum, value_delimiter = ',')]
        backends: Vec<vosd_engine::backend::BackendChoice>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Benchmark the pipeline on the synthetic source (latency, fps, publication cost).
    BenchPipeline {
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
    },
    /// Control a running daemon through its control socket (add, correct,
    /// remove objects; pause, resume; status). Prints the reply (JSON).
    Ctl {
        /// The daemon's control socket ([control] socket in its config).
        #[arg(long, value_name = "PATH", default_value = "/run/vosd/control.sock")]
        socket: PathBuf,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        #[command(subcommand)]
        action: CtlAction,
    },
}

/// What `vosd ctl` asks for.
#[derive(Subcommand, Debug)]
enum CtlAction {
    /// Objects with their states, fps, drops, backend, memory.
    Status,
    /// Track a new object from a mask PNG (read here, sent inline) or a box.
    Add(CtlObjectMask),
    /// Replace a tracked object's mask in the current frame.
    Correct(CtlObjectMask),
    /// Stop tracking an object.
    Remove {
        /// Object id (1..=255).
        #[arg(long)]
        object: u8,
    },
    /// Stop tracking every object.
    RemoveAll,
    /// Stop segmenting and publishing.
    Pause,
    /// Segment and publish again.
    Resume,
    /// Send one raw JSON request line (see docs/control.md).
    Send {
        /// The request, e.g. '{"cmd":"status"}'.
        json: String,
    },
}

/// An object id and where its mask comes from.
#[derive(clap::Args, Debug)]
struct CtlObjectMask {
    /// Object id (1..=255).
    #[arg(long)]
    object: u8,
    /// Mask PNG (binary, or labels containing the id), frame size.
    #[arg(
        long,
        value_name = "PNG",
        conflicts_with = "bbox",
        required_unless_present = "bbox"
    )]
    mask: Option<PathBuf>,
    /// Bounding box X,Y,W,H in frame pixels: the daemon derives the mask.
    #[arg(long = "box", value_name = "X,Y,W,H", id = "bbox")]
    bbox: Option<String>,
}

impl CtlObjectMask {
    /// The request line for `cmd` ("add" or "correct").
    fn request(&self, cmd: &str) -> Result<String> {
        let mut req = serde_json::json!({"v": 1, "cmd": cmd, "object": self.object});
        if let Some(path) = &self.mask {
            let rle = vosd::control::client::rle_from_png(path, self.object)?;
            req["rle"] = serde_json::json!({"size": rle.size, "counts": rle.counts});
        } else if let Some(b) = &self.bbox {
            let parts: Vec<u32> = b
                .split(',')
                .map(|p| p.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--box '{b}': expected X,Y,W,H (whole pixels)"))?;
            if parts.len() != 4 {
                bail!("--box '{b}': expected four numbers X,Y,W,H");
            }
            req["box"] = serde_json::json!(parts);
        }
        Ok(req.to_string())
    }
}

fn parse_size(s: &str) -> Result<[usize; 2]> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size '{s}': expected WxH, e.g. 854x480"))?;
    let w = w
        .trim()
        .parse()
        .with_context(|| format!("--size '{s}': bad width"))?;
    let h = h
        .trim()
        .parse()
        .with_context(|| format!("--size '{s}': bad height"))?;
    Ok([w, h])
}

impl EngineArgs {
    fn resolve(&self) -> Result<vosd_engine::config::EngineConfig> {
        let mut file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        if !self.set.is_empty() {
            // Re-parse the engine table with the overrides applied, so that
            // --set goes through the same key and type checks as the file.
            let mut table = toml::Table::try_from(&file.engine)?;
            for kv in &self.set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set '{kv}': expected KEY=VALUE"))?;
                let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                    .or_else(|_| toml::from_str::<toml::Table>(&format!("v = \"{v}\"")))
                    .with_context(|| format!("--set '{kv}': bad value"))?
                    .remove("v")
                    .context("--set: no value")?;
                table.insert(k.trim().to_string(), value);
            }
            file.engine = table.try_into().context("--set")?;
        }
        let e = &mut file.engine;
        if let Some(s) = &self.size {
            e.size = parse_size(s)?;
        }
        if let Some(p) = &self.precision {
            e.precision = match p.as_str() {
                "int8" => Precision::Int8,
                "fp16" => Precision::Fp16,
                _ => Precision::Fp32,
            };
        }
        if let Some(m) = &self.model {
            e.model = m.clone();
        }
        if let Some(b) = self.backend {
            e.backend = b;
        }
        e.validate()?;
        Ok(file.engine)
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Segment {
            frames,
            mask,
            out,
            overlay,
            engine,
        } => {
            let cfg = engine.resolve()?;
            let s = vosd::segment::segment_folder(
                &cfg,
                &frames,
                &mask,
                &out,
                overlay.as_deref(),
                true,
            )?;
            eprintln!(
                "segmented {} frames, objects {:?}, {:.1} fps (engine only), masks in {}",
                s.frames,
                s.objects,
                s.fps,
                out.display()
            );
        }
        Command::Eval {
            davis,
            split,
            sequences,
            results,
            out,
            json,
            init,
            engine,
        } => {
            let init = if init == "box" {
                if results.is_some() {
                    bail!(
                        "--init box starts the engine from boxes: it cannot be used with --results"
                    );
                }
                Init::Box(vosd_engine::prompt::BoxPromptConfig::default())
            } else {
                Init::Mask
            };
            let ds = Davis::open(&davis)?;
            let names = match sequences {
                Some(s) => s,
                None => ds.sequence_names(split.as_deref())?,
            };
            if names.is_empty() {
                bail!("no sequences to evaluate");
            }
            let cfg;
            let source = match &results {
                Some(dir) => Predictions::Results(dir),
                None => {
                    cfg = engine.resolve()?;
                    eprintln!(
                        "engine: {} at {}x{}, started from the first {}",
                        cfg.model_path().display(),
                        cfg.size[0],
                        cfg.size[1],
                        if init == Init::Mask { "mask" } else { "boxes" }
                    );
                    Predictions::Segment {
                        config: &cfg,
                        out: out.as_deref(),
                        init: &init,
                    }
                }
            };
            let report = evaluate(&ds, &names, source)?;
            let o = &report.overall.scores;
            println!("{:<20} {:>7} {:>7}", "sequence", "J mean", "F mean");
            for (name, s) in &report.sequences {
                println!(
                    "{name:<20} {:>7.3} {:>7.3}",
                    s.scores.j_mean, s.scores.f_mean
                );
            }
            println!("J&F mean {:.3}", o.jf_mean);
            println!(
                "J mean {:.3}  recall {:.3}  decay {:.3}",
                o.j_mean, o.j_recall, o.j_decay
            );
            println!(
                "F mean {:.3}  recall {:.3}  decay {:.3}",
                o.f_mean, o.f_recall, o.f_decay
            );
            if let Some(b) = &report.backend {
                println!("backend {}", b.describe());
            }
            if let Some(iou) = report.overall.first_mask_iou {
                println!("first-mask IoU (box-derived vs annotation) {iou:.3}");
            }
            if report.overall.fps > 0.0 {
                println!(
                    "fps {:.2} (segmentation only, {} sequences)",
                    report.overall.fps,
                    report.sequences.len()
                );
            }
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
        Command::Run { config, check } => {
            let cfg = vosd::service::DaemonConfig::load(&config)?;
            if check {
                let model = cfg.engine.model_path();
                if !model.is_file() {
                    bail!(
                        "{}: engine model {}: no such file (set engine.model, or VOSD_MODEL_DIR to the folder of the bundled models)",
                        config.display(),
                        model.display()
                    );
                }
                println!("{}: ok (model {})", config.display(), model.display());
                return Ok(());
            }
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            vosd::service::install_signal_handlers(&stop)?;
            let notifier = vosd::service::Notifier::from_env().context("NOTIFY_SOCKET")?;
            vosd::service::run(&cfg, stop, &notifier)?;
        }
        Command::Tail { shm, frames, wait } => {
            let opts = vosd::tail::TailOptions {
                shm,
                frames,
                wait_s: wait,
                stall_s: 2.0,
            };
            let stdout = std::io::stdout();
            let (n, end) = vosd::tail::tail(&opts, &mut stdout.lock())?;
            if end == vosd::tail::TailEnd::Ended {
                eprintln!("vosd tail: the writer ended (end marker) after {n} frames read");
            }
        }
        Command::Bench {
            frames,
            davis,
            sequence,
            json,
            backends,
            engine,
        } => {
            let cfg = engine.resolve()?;
            let root = davis.or_else(|| {
                let d = PathBuf::from("../shared/data/davis2016");
                d.join("JPEGImages/480p").is_dir().then_some(d)
            });
            let davis_sequence = root.map(|r| {
                (
                    r.join("JPEGImages/480p").join(&sequence),
                    r.join("Annotations/480p").join(&sequence).join("00000.png"),
                )
            });
            let opts = vosd::bench::EngineBenchOptions {
                frames: frames.max(1),
                davis_sequence,
            };
            // One run per backend asked for (`--backends cpu,opencl`), else
            // the configured one.
            let runs: Vec<_> = if backends.is_empty() {
                vec![cfg.backend]
            } else {
                backends
            };
            let mut reports = Vec::with_capacity(runs.len());
            for backend in runs {
                let cfg = vosd_engine::config::EngineConfig {
                    backend,
                    ..cfg.clone()
                };
                let r = vosd::bench::bench_engine(&cfg, &opts)
                    .with_context(|| format!("backend {backend}"))?;
                print_bench(&r);
                reports.push(r);
            }
            if let Some(path) = json {
                let text = if reports.len() == 1 {
                    serde_json::to_string_pretty(&reports[0])?
                } else {
                    serde_json::to_string_pretty(&reports)?
                };
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
        Command::Probe => {
            print!(
                "{}",
                vosd::service::probe::report(
                    std::path::Path::new("/dev"),
                    std::path::Path::new("/sys/class/video4linux")
                )
            );
            print!("{}", vosd::service::probe::compute_report());
        }
        Command::Ctl {
            socket,
            timeout,
            action,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                bail!("--timeout must be a positive number of seconds");
            }
            let line = match &action {
                CtlAction::Status => r#"{"v":1,"cmd":"status"}"#.to_string(),
                CtlAction::Add(m) => m.request("add")?,
                CtlAction::Correct(m) => m.request("correct")?,
                CtlAction::Remove { object } => {
                    serde_json::json!({"v": 1, "cmd": "remove", "object": object}).to_string()
                }
                CtlAction::RemoveAll => r#"{"v":1,"cmd":"remove_all"}"#.to_string(),
                CtlAction::Pause => r#"{"v":1,"cmd":"pause"}"#.to_string(),
                CtlAction::Resume => r#"{"v":1,"cmd":"resume"}"#.to_string(),
                CtlAction::Send { json } => json.clone(),
            };
            let reply = vosd::control::client::request(
                &socket,
                &line,
                std::time::Duration::from_secs_f64(timeout),
            )?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            if reply["ok"] != serde_json::Value::Bool(true) {
                bail!(
                    "the daemon refused: {}",
                    reply["error"].as_str().unwrap_or("(no reason given)")
                );
            }
        }
        Command::BenchPipeline {
            config,
            fps,
            seconds,
            warmup,
            json,
        } => {
            let cfg = vosd::service::DaemonConfig::load(&config)?;
            let mut source = match cfg.source {
                vosd::source::SourceConfig::Synthetic(s) => s,
                _ => vosd::source::synthetic::SyntheticConfig::default(),
            };
            source.fps = fps;
            source.frames = 0;
            if !(seconds > 0.0 && warmup >= 0.0) {
                bail!("--seconds must be positive and --warmup not negative");
            }
            let opts = vosd::service::bench::BenchOptions {
                engine: cfg.engine.clone(),
                source: source.clone(),
                warmup_s: warmup,
                seconds,
            };
            eprintln!(
                "bench: synthetic {}x{} at {fps} fps, engine {}x{} ({} threads), {warmup} s warm-up + {seconds} s",
                source.width,
                source.height,
                cfg.engine.size[0],
                cfg.engine.size[1],
                cfg.engine.thread_count()
            );
            let r = vosd::service::bench::run(&opts)?;
            println!("offered {:.1} fps: published {:.2} fps, captured {:.2} fps, dropped {} ({} frames read back)", r.source_fps, r.published_fps, r.captured_fps, r.dropped, r.frames_read);
            println!(
                "capture->publish latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms
            );
            println!("publication per frame (states + shm): p50 {:.1} us, p99 {:.1} us; shm publish alone p50 {:.1} us", r.publish_p50_us, r.publish_p99_us, r.shm_publish_p50_us);
            println!(
                "resident memory: {:.1} MiB after warm-up, {:.1} MiB at the end, {:.1} MiB max (sampled each second)",
                r.rss_after_warmup_mib, r.rss_end_mib, r.rss_max_mib
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&r)? + "\n")
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vosd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one engine benchmark's figures.
fn print_bench(r: &vosd::bench::EngineBenchReport) {
    println!("model      {}", r.model);
    println!("backend    {}", r.backend.describe());
    println!(
        "size       {}x{} (frames {}x{}), {} object(s), {} thread(s), {} frames",
        r.size[0], r.size[1], r.frame_size[0], r.frame_size[1], r.objects, r.threads, r.frames
    );
    println!("encode     {:7.1} ms/frame", r.encode_ms);
    println!("readout    {:7.1} ms/frame", r.readout_ms);
    println!("upsample   {:7.1} ms/frame", r.upsample_ms);
    println!(
        "total      p50 {:.1} ms, p99 {:.1} ms",
        r.total_p50_ms, r.total_p99_ms
    );
    println!("fps        {:7.1}", r.fps);
    println!(
        "memory     {:.1} MiB (fixed)",
        r.memory_bytes as f64 / (1024.0 * 1024.0)
    );
}
