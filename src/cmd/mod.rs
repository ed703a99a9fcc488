//! The commands of the `vosd` binary, one file each, and what they share:
//! the engine options of the commands that segment ([`EngineArgs`]) and
//! the JSON report writer.
//!
//! Each command module has its arguments (a `clap::Args` struct) and a
//! `run` function; `main.rs` only parses and dispatches. The daemon, the
//! engine and the readers are the libraries (`vosd`, `vosd-engine`,
//! `vosd-shm`, `vosd-eval`).

pub mod bench;
pub mod bench_pipeline;
pub mod ctl;
pub mod eval;
pub mod probe;
pub mod run;
pub mod segment;
pub mod tail;
pub mod view;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use vosd::config::DaemonConfig;
use vosd_engine::backend::BackendChoice;
use vosd_engine::config::{DiscoverConfig, EngineConfig, Method, Precision};

/// Engine options shared by the commands that segment.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// TOML configuration file (its [engine] table is used; a whole daemon
    /// configuration is accepted).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Processing size WxH (overrides engine.size), e.g. 854x480.
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    /// Encoder precision of the bundled model (overrides engine.precision).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Encoder ONNX file (overrides engine.model).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Where the encoder and readout run (overrides engine.backend): auto
    /// (ONNX Runtime, else an OpenCL GPU, else tract: the first that passes
    /// the self-test), onnxruntime, opencl, cpu.
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
    /// The engine (overrides engine.method): memory-network (the trained
    /// network) or label-propagation.
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Override any engine key, e.g. --set top_k=10 or
    /// --set memory_network.top_k=20, or a key of [discover], e.g.
    /// --set discover.min_persistence=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Parses `--size WxH`.
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

/// `table` (named `name` in messages) with `--set KEY=VALUE` overrides
/// applied: the table is parsed again with them, so that they go through
/// the same key and type checks as the file.
fn apply_sets<T: serde::Serialize + serde::de::DeserializeOwned>(
    engine: &T,
    sets: &[&str],
    name: &str,
) -> Result<T> {
    let mut table = toml::Table::try_from(engine)?;
    for kv in sets {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set '{kv}': expected KEY=VALUE"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .or_else(|_| toml::from_str::<toml::Table>(&format!("v = \"{v}\"")))
            .with_context(|| format!("--set '{kv}': bad value"))?
            .remove("v")
            .context("--set: no value")?;
        // A dotted key reaches into a sub-table: `prompt.top_k=3`.
        let mut path: Vec<&str> = k.trim().split('.').map(str::trim).collect();
        let leaf = path.pop().unwrap_or_default();
        let mut at = &mut table;
        for part in path {
            at = at
                .get_mut(part)
                .and_then(toml::Value::as_table_mut)
                .with_context(|| format!("--set '{kv}': {name} has no table '{part}'"))?;
        }
        at.insert(leaf.to_string(), value);
    }
    table
        .try_into()
        .with_context(|| format!("--set: the {name} table"))
}

/// The `--set` overrides of the `[discover]` table (`discover.KEY=VALUE`).
const DISCOVER_PREFIX: &str = "discover.";

impl EngineArgs {
    /// The configuration file (`--config`), or the defaults without one.
    pub fn daemon_config(&self) -> Result<DaemonConfig> {
        Ok(match &self.config {
            Some(p) => DaemonConfig::load(p)?,
            None => DaemonConfig::default(),
        })
    }

    /// The engine configuration: the file's `[engine]` with the flags
    /// applied, checked.
    pub fn resolve(&self) -> Result<EngineConfig> {
        let file = self.daemon_config()?;
        let sets: Vec<&str> = self
            .set
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.starts_with(DISCOVER_PREFIX))
            .collect();
        let mut e = if sets.is_empty() {
            file.engine
        } else {
            apply_sets(&file.engine, &sets, "engine")?
        };
        if let Some(s) = &self.size {
            e.size = parse_size(s)?;
        }
        if let Some(p) = self.precision {
            e.precision = p;
        }
        if let Some(m) = &self.model {
            e.model = m.clone();
        }
        if let Some(b) = self.backend {
            e.backend = b;
        }
        if let Some(m) = self.method {
            e.method = m;
        }
        e.validate()?;
        Ok(e)
    }

    /// The unsupervised mode's settings: the file's `[discover]` (or the
    /// defaults) with the `--set discover.KEY=VALUE` flags applied,
    /// checked against the engine's.
    pub fn discover(&self) -> Result<DiscoverConfig> {
        let file = self.daemon_config()?;
        let engine = self.resolve()?;
        let base = file.discover.unwrap_or_default();
        let sets: Vec<&str> = self
            .set
            .iter()
            .filter_map(|s| s.trim().strip_prefix(DISCOVER_PREFIX))
            .collect();
        let d = if sets.is_empty() {
            base
        } else {
            apply_sets(&base, &sets, "discover")?
        };
        d.validate(engine.max_objects)?;
        Ok(d)
    }
}

/// Writes `value` as pretty JSON (and a newline) to `path`.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_or_say_why() {
        assert_eq!(parse_size("854x480").unwrap(), [854, 480]);
        assert_eq!(parse_size(" 64 X 32 ").unwrap(), [64, 32]);
        for bad in ["854", "x480", "854x", "ax3"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("--size"), "{bad}: {e}");
        }
    }

    #[test]
    fn sets_go_through_the_engine_checks() {
        let base = EngineConfig::default();
        let e = apply_sets(&base, &["top_k=9", "upsampling=bilinear"], "engine").unwrap();
        assert_eq!(e.top_k, 9);
        assert_eq!(e.upsampling, vosd_engine::config::Upsampling::Bilinear);
        let err = format!(
            "{:#}",
            apply_sets(&base, &["top_kk=9"], "engine").unwrap_err()
        );
        assert!(err.contains("top_kk"), "{err}");
        let err = format!("{:#}", apply_sets(&base, &["top_k"], "engine").unwrap_err());
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn dotted_sets_reach_the_prompt_table() {
        let base = EngineConfig::default();
        let e = apply_sets(
            &base,
            &["prompt.top_k=3", "prompt.refine_bg=false"],
            "engine",
        )
        .unwrap();
        assert_eq!((e.prompt.top_k, e.prompt.refine_bg), (3, false));
        assert_eq!(e.top_k, base.top_k, "the engine's own top_k is untouched");
        let err = format!(
            "{:#}",
            apply_sets(&base, &["prompt.topk=3"], "engine").unwrap_err()
        );
        assert!(err.contains("topk"), "{err}");
        let err = format!(
            "{:#}",
            apply_sets(&base, &["top_k.x=3"], "engine").unwrap_err()
        );
        assert!(err.contains("no table 'top_k'"), "{err}");
    }

    #[test]
    fn discover_sets_reach_the_discover_table_only() {
        let args = EngineArgs {
            config: None,
            size: None,
            precision: None,
            model: None,
            backend: None,
            method: None,
            set: vec!["discover.min_persistence=7".into(), "top_k=9".into()],
        };
        assert_eq!(args.discover().unwrap().min_persistence, 7);
        assert_eq!(args.resolve().unwrap().top_k, 9);
        let bad = EngineArgs {
            set: vec!["discover.min_area=2.0".into()],
            ..args.clone()
        };
        let err = format!("{:#}", bad.discover().unwrap_err());
        assert!(err.contains("discover.min_area"), "{err}");
        let bad = EngineArgs {
            set: vec!["discover.min_aera=0.1".into()],
            ..args
        };
        let err = format!("{:#}", bad.discover().unwrap_err());
        assert!(err.contains("min_aera"), "{err}");
    }
}
