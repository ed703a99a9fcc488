//! `vosd run`: the daemon (capture, segment, publish to shared memory,
//! control socket), or `--check` of its configuration.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use vosd::config::DaemonConfig;
use vosd::service::{self, Notifier};
use vosd_engine::config::{DiscoverPrompt, Method};

/// `vosd run`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Daemon configuration (TOML: [engine], [source], [publish], [pipeline]).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only check the configuration, then exit.
    #[arg(long)]
    check: bool,
}

/// Runs `vosd run`.
pub fn run(args: RunArgs) -> Result<()> {
    let cfg = DaemonConfig::load_for_run(&args.config)?;
    if args.check {
        for (what, file, fix) in model_files(&cfg) {
            if !file.is_file() {
                bail!(
                    "{}: {what} {}: no such file ({fix})",
                    args.config.display(),
                    file.display()
                );
            }
        }
        let model = cfg.engine.model_path();
        println!("{}: ok (model {})", args.config.display(), model.display());
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    service::install_signal_handlers(&stop)?;
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    service::run(&cfg, stop, &notifier)?;
    Ok(())
}

/// The model files that `cfg` needs at start, each with what it is and the
/// settings that fix its absence.
fn model_files(cfg: &DaemonConfig) -> Vec<(String, PathBuf, &'static str)> {
    let mut files = vec![(
        "engine model".to_string(),
        cfg.engine.model_path(),
        "set engine.model, or VOSD_MODEL_DIR to the folder of the bundled models",
    )];
    if cfg.engine.method == Method::MemoryNetwork {
        for head in ["key", "value", "decoder"] {
            files.push((
                format!("the memory network's {head}"),
                cfg.engine.memory_network.file(head),
                "set engine.memory_network.model_dir, VOSD_MODEL_DIR, or engine.method = \"label-propagation\"",
            ));
        }
    }
    if let Some(d) = cfg
        .discover
        .as_ref()
        .filter(|d| d.prompt == DiscoverPrompt::Objectness)
    {
        files.push((
            "the objectness head".to_string(),
            d.objectness_file(),
            "set discover.objectness_model, VOSD_MODEL_DIR, or discover.prompt = \"box\"",
        ));
    }
    files
}
