//! `vosd eval`: J, F, J&F and T of the engine's masks, or of masks
//! already on disk, on DAVIS, YouTube-VOS, SegTrack v2 or a plain folder.

use std::path::PathBuf;

use anyhow::{bail, Result};

use vosd_engine::config::{EngineConfig, Method};
use vosd_eval::dataset::{Dataset, DatasetKind};
use vosd_eval::davis::{EvalReport, Init, Predictions};

use super::{write_json, EngineArgs};

/// What each sequence starts from (`--init`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitArg {
    /// The first-frame mask.
    #[default]
    Mask,
    /// The bounding box of each object of the first-frame mask (box
    /// prompt: the mask is derived from the box, with `[engine.prompt]`).
    Box,
}

/// `vosd eval`'s arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Dataset root: DAVIS, YouTube-VOS, SegTrack v2 or a plain folder
    /// (frames/ and masks/); the layout is detected unless --dataset names it.
    #[arg(value_name = "ROOT", required_unless_present = "davis")]
    root: Option<PathBuf>,
    /// The layout of ROOT (default: detected).
    #[arg(long, value_name = "KIND", value_parser = ["davis", "youtube-vos", "segtrack", "folder"])]
    dataset: Option<String>,
    /// DAVIS root (with JPEGImages/480p and Annotations/480p); the same as
    /// `--dataset davis ROOT`.
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["root", "dataset"])]
    davis: Option<PathBuf>,
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
    /// Evaluate each of these engines in turn and compare them, e.g.
    /// --methods memory-network,label-propagation (default: --method, else
    /// engine.method).
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Vec<Method>,
    /// Start each sequence from its first-frame mask, or from the bounding
    /// box of each object in it (box prompt: the mask is derived from the box).
    #[arg(long, value_enum, default_value_t = InitArg::Mask)]
    init: InitArg,
    /// The unsupervised protocol: no mask is given; objects are discovered
    /// ([discover] settings, `--set discover.KEY=VALUE`), and the union of
    /// the discovered objects is scored as the foreground against the
    /// annotations' union (DAVIS only). With --results: score existing
    /// masks that way.
    #[arg(long)]
    unsupervised: bool,
    /// Skip the temporal stability T of the engine's masks (by far the
    /// slowest measure: J and F only; T is then NaN).
    #[arg(long)]
    no_t: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `vosd eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.init == InitArg::Box && args.results.is_some() {
        bail!("--init box starts the engine from boxes: it cannot be used with --results");
    }
    if args.init == InitArg::Box && args.unsupervised {
        bail!("--unsupervised gives the engine no mask and no box: drop --init box");
    }
    let ds = match (&args.davis, &args.root) {
        (Some(root), _) => Dataset::open(root, Some(DatasetKind::Davis))?,
        (None, Some(root)) => {
            let kind = args.dataset.as_deref().map(str::parse).transpose()?;
            Dataset::open(root, kind)?
        }
        (None, None) => bail!("give the dataset ROOT (or --davis ROOT)"),
    };
    let names = match args.sequences {
        Some(s) => s,
        None => ds.sequence_names(args.split.as_deref())?,
    };
    if names.is_empty() {
        bail!("no sequences to evaluate");
    }
    let Some(dir) = &args.results else {
        let base = args.engine.resolve()?;
        let methods = if args.methods.is_empty() {
            vec![base.method]
        } else {
            args.methods.clone()
        };
        let mut reports = Vec::with_capacity(methods.len());
        for &method in &methods {
            let cfg = EngineConfig {
                method,
                ..base.clone()
            };
            let init = match args.init {
                _ if args.unsupervised => Init::Discover(args.engine.discover()?),
                InitArg::Mask => Init::Mask,
                InitArg::Box => Init::Box(cfg.prompt.clone()),
            };
            eprintln!(
                "engine: {} on {} at {}x{}, started from {}",
                method.label(),
                models_line(&cfg),
                cfg.size[0],
                cfg.size[1],
                match args.init {
                    _ if args.unsupervised => "nothing (unsupervised: objects are discovered)",
                    InitArg::Mask => "the first mask",
                    InitArg::Box => "the first boxes",
                }
            );
            let out = match (&args.out, methods.len()) {
                (Some(dir), 1) => Some(dir.clone()),
                (Some(dir), _) => Some(dir.join(method.label())),
                (None, _) => None,
            };
            let source = Predictions::Segment {
                config: &cfg,
                out: out.as_deref(),
                init: &init,
                temporal: !args.no_t,
            };
            let report = ds.evaluate(&names, source)?;
            println!("== {} ==", method.label());
            print_report(&report);
            reports.push((method, report));
        }
        if reports.len() > 1 {
            println!("== side by side ==");
            println!(
                "{:<20} {:>8} {:>7} {:>7} {:>8} {:>7}",
                "method", "J&F", "J", "F", "J decay", "fps"
            );
            for (method, r) in &reports {
                let o = &r.overall.scores;
                println!(
                    "{:<20} {:>8.3} {:>7.3} {:>7.3} {:>8.3} {:>7.2}",
                    method.label(),
                    o.jf_mean,
                    o.j_mean,
                    o.f_mean,
                    o.j_decay,
                    r.overall.fps
                );
            }
        }
        if let Some(path) = &args.json {
            match reports.as_slice() {
                [(_, one)] => write_json(path, one)?,
                all => {
                    let by_method: std::collections::BTreeMap<&str, &EvalReport> =
                        all.iter().map(|(m, r)| (m.label(), r)).collect();
                    write_json(path, &by_method)?
                }
            }
        }
        return Ok(());
    };
    let source = if args.unsupervised {
        Predictions::UnsupervisedResults(dir)
    } else {
        Predictions::Results(dir)
    };
    let report = ds.evaluate(&names, source)?;
    print_report(&report);
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

/// Prints one evaluation's figures: per sequence, then overall.
fn print_report(report: &EvalReport) {
    let o = &report.overall.scores;
    println!(
        "{:<20} {:>7} {:>7} {:>7}",
        "sequence", "J mean", "F mean", "T mean"
    );
    for (name, s) in &report.sequences {
        println!(
            "{name:<20} {:>7.3} {:>7.3} {:>7.3}",
            s.scores.j_mean, s.scores.f_mean, s.scores.t_mean
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
    println!(
        "T mean {:.3} (temporal instability, lower is better)",
        o.t_mean
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
}

/// The encoder file(s) `cfg` runs: one, or with `precision = "auto"` the
/// fp32 file and the int8 one ONNX Runtime runs.
fn models_line(cfg: &EngineConfig) -> String {
    let (model, ort) = (cfg.model_path(), cfg.onnxruntime_model_path());
    let encoder = if model == ort {
        model.display().to_string()
    } else {
        format!("{} (on ONNX Runtime: {})", model.display(), ort.display())
    };
    match cfg.method {
        Method::MemoryNetwork => format!(
            "{encoder}, heads {}",
            cfg.memory_network.file("{key,value,decoder}").display()
        ),
        Method::LabelPropagation => encoder,
    }
}
