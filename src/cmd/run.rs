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
        let model = cfg.engine.model_path();
        if !model.is_file() {
            bail!(
                "{}: engine model {}: no such file (set engine.model, or VOSD_MODEL_DIR to the folder of the bundled models)",
                args.config.display(),
                model.display()
            );
        }
        if cfg.engine.method == Method::MemoryNetwork {
            for head in ["key", "value", "decoder"] {
                let file = cfg.engine.memory_network.file(head);
                if !file.is_file() {
                    bail!(
                        "{}: the memory network's {head} {}: no such file (set engine.memory_network.model_dir, VOSD_MODEL_DIR, or engine.method = \"label-propagation\")",
                        args.config.display(),
                        file.display()
                    );
                }
            }
        }
        if let Some(d) = cfg.discover.as_ref() {
            let file = d.objectness_file();
            if d.prompt == DiscoverPrompt::Objectness && !file.is_file() {
                bail!(
                    "{}: the objectness head {}: no such file (set discover.objectness_model, VOSD_MODEL_DIR, or discover.prompt = \"box\")",
                    args.config.display(),
                    file.display()
                );
            }
        }
        println!("{}: ok (model {})", args.config.display(), model.display());
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    service::install_signal_handlers(&stop)?;
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    service::run(&cfg, stop, &notifier)?;
    Ok(())
}
