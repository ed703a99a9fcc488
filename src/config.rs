//! The one configuration model of vosd: [`DaemonConfig`], a TOML file of
//! optional tables `[engine]`, `[source]`, `[publish]`, `[pipeline]`,
//! `[control]`, `[metrics]`, `[zenoh]` and `[discover]`.
//!
//! Every command reads the same file: `vosd segment`, `eval` and `bench`
//! use its `[engine]`, `bench-pipeline` its `[engine]` and a synthetic
//! `[source]`, and `vosd run` all of it. Tables a command does not use may
//! be there; `vosd run` needs `[source]` and `[publish]`
//! ([`DaemonConfig::check_run`]), the other tables have defaults.
//!
//! Unknown tables and keys are errors. Every error is a
//! [`ConfigFileError`]: the file, then what in it: a parse error (the
//! parser names the key and its line) or a [`KeyError`], which names
//! `table.key` and the reason (`publish.slots: 1 is not within 2..=1024`).
//! Each table's own check converts to it here: the engine's
//! [`ConfigError`](vosd_engine::config::ConfigError), the pipeline's
//! [`PipelineConfigError`], the source's [`SourceError::Config`], the
//! control socket's (a [`KeyError`] already) and the shared-memory crate's
//! [`PublishOptionError`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::control::ControlConfig;
use crate::metrics::MetricsConfig;
use crate::pipeline::{PipelineConfig, PipelineConfigError};
use crate::source::{SourceConfig, SourceError};
use crate::zenoh::ZenohConfig;
use vosd_engine::config::{DiscoverConfig, EngineConfig};
use vosd_shm::{PublishOptionError, PublishOptions};

pub use vosd_engine::config::{ConfigFileError, KeyError};

/// A whole vosd configuration file; every table is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The VOS engine (defaults when absent).
    #[serde(default)]
    pub engine: EngineConfig,
    /// Where frames come from (`vosd run` needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceConfig>,
    /// The shared-memory segment results go to (`vosd run` needs it; its
    /// mask size is the source's frame size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishOptions>,
    /// Pools, statistics, frame limit.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The control socket (absent or `socket = ""`: none).
    #[serde(default)]
    pub control: ControlConfig,
    /// Unsupervised mode: present, the daemon discovers moving objects by
    /// itself (the source's first-frame objects are not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<DiscoverConfig>,
    /// The Prometheus endpoint (absent or `listen = ""`: none).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// ROS 2 topics over Zenoh (absent: none; needs the `zenoh` feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zenoh: Option<ZenohConfig>,
}

/// The `source.KEY` error of a `[source]` check.
fn source_error(e: SourceError) -> KeyError {
    match e {
        SourceError::Config { key, reason } => KeyError::new("source", key, reason),
        other => KeyError::new("source", "", other.to_string()),
    }
}

/// The `pipeline.KEY` error of a `[pipeline]` check.
fn pipeline_error(e: PipelineConfigError) -> KeyError {
    KeyError::new("pipeline", e.key, e.reason)
}

/// The `publish.KEY` error of a `[publish]` check.
fn publish_error(e: PublishOptionError) -> KeyError {
    KeyError::new("publish", e.key, e.reason)
}

/// Names the key behind a type error in the `[source]` table. The table is
/// tagged by `kind`, and serde reports a mistyped value there at the table,
/// without the key: each key is tried alone (with `kind`) to find the one
/// that fails. `None` when the table is fine or the failing key cannot be
/// told.
fn source_key_error(text: &str) -> Option<String> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let source = doc.get("source")?.as_table()?;
    let kind = source.get("kind")?.clone();
    source
        .iter()
        .filter(|(key, _)| key.as_str() != "kind")
        .find_map(|(key, value)| {
            let mut one = toml::Table::new();
            one.insert("kind".into(), kind.clone());
            one.insert(key.clone(), value.clone());
            match SourceConfig::deserialize(toml::Value::Table(one)) {
                // Other kinds' required keys are missing from a one-key table.
                Err(e) if !e.to_string().contains("missing field") => {
                    Some(format!("source.{key}: {}", e.to_string().trim_end()))
                }
                _ => None,
            }
        })
}

/// Names the key behind a type error in the `[zenoh]` table: each key is
/// tried alone (the others have defaults). `None` when the table is fine or
/// absent.
fn zenoh_key_error(text: &str) -> Option<String> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let zenoh = doc.get("zenoh")?.as_table()?;
    zenoh.iter().find_map(|(key, value)| {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        ZenohConfig::deserialize(toml::Value::Table(one))
            .err()
            .map(|e| format!("zenoh.{key}: {}", e.to_string().trim_end()))
    })
}

impl DaemonConfig {
    /// Parses a configuration from TOML text (`path` is for messages) and
    /// checks every table present.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigFileError> {
        vosd_engine::config::parse_toml(text, path, Self::validate).map_err(|e| match e {
            ConfigFileError::Parse { path, message } => {
                let message = match source_key_error(text).or_else(|| zenoh_key_error(text)) {
                    Some(key_error) => format!("{message}\n{key_error}"),
                    None => message,
                };
                ConfigFileError::Parse { path, message }
            }
            other => other,
        })
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::Read {
            path: path.into(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// Reads a configuration file for `vosd run`: [`load`](Self::load),
    /// then [`check_run`](Self::check_run).
    pub fn load_for_run(path: &Path) -> Result<Self, ConfigFileError> {
        let cfg = Self::load(path)?;
        cfg.check_run()
            .map_err(|e| ConfigFileError::invalid(path, e))?;
        Ok(cfg)
    }

    /// Checks the range of every value of the tables present, and that
    /// `publish.max_objects` holds `engine.max_objects`.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.engine.validate()?;
        if let Some(source) = &self.source {
            source.validate().map_err(source_error)?;
        }
        self.pipeline.validate().map_err(pipeline_error)?;
        self.control.validate()?;
        if let Some(d) = &self.discover {
            d.validate(self.engine.max_objects)?;
        }
        self.metrics.validate()?;
        if let Some(z) = &self.zenoh {
            z.validate()?;
        }
        if let Some(p) = &self.publish {
            p.validate().map_err(publish_error)?;
            if (p.max_objects as usize) < self.engine.max_objects {
                return Err(KeyError::new(
                    "publish",
                    "max_objects",
                    format!(
                        "{} is below engine.max_objects ({}): every tracked object needs a record",
                        p.max_objects, self.engine.max_objects
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `[source]` table; an error naming it when it is absent.
    pub fn require_source(&self) -> Result<&SourceConfig, KeyError> {
        self.source.as_ref().ok_or_else(|| {
            KeyError::new(
                "source",
                "",
                "the table is missing: `vosd run` needs it (`kind` at least)",
            )
        })
    }

    /// The `[publish]` table; an error naming it when it is absent.
    pub fn require_publish(&self) -> Result<&PublishOptions, KeyError> {
        self.publish.as_ref().ok_or_else(|| {
            KeyError::new(
                "publish",
                "",
                "the table is missing: `vosd run` needs it (`name` at least)",
            )
        })
    }

    /// Checks that the tables `vosd run` needs are there: `[source]` and
    /// `[publish]`.
    pub fn check_run(&self) -> Result<(), KeyError> {
        self.require_source()?;
        self.require_publish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[engine]
size = [256, 144]
[source]
kind = "synthetic"
width = 320
height = 240
fps = 15
[publish]
name = "/vosd-test"
mode = 0o640
[pipeline]
stats_interval_s = 2
"#;

    fn parse(text: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    /// Parses `text` as `vosd run` does (the tables it needs required).
    fn parse_run(text: &str) -> Result<DaemonConfig, String> {
        let path = Path::new("t.toml");
        DaemonConfig::parse(text, path)
            .and_then(|c| {
                c.check_run()
                    .map_err(|e| ConfigFileError::invalid(path, e))?;
                Ok(c)
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn discover_table_is_checked_against_the_engine() {
        let c = parse(&format!("{GOOD}[discover]\nmin_persistence = 5\n")).unwrap();
        assert_eq!(c.discover.unwrap().min_persistence, 5);
        let e = parse(&format!("{GOOD}[discover]\nmax_objects = 99\n")).unwrap_err();
        assert!(
            e.contains("discover.max_objects") && e.contains("engine.max_objects"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}[discover]\nmin_area = 0\n")).unwrap_err();
        assert!(e.contains("discover.min_area"), "{e}");
        let e = parse(&format!("{GOOD}[discover]\nmin_aera = 0.1\n")).unwrap_err();
        assert!(e.contains("min_aera"), "{e}");
    }

    #[test]
    fn good_config_parses() {
        let c = parse_run(GOOD).unwrap();
        assert_eq!(c.engine.size, [256, 144]);
        let p = c.publish.as_ref().unwrap();
        assert_eq!(p.mode, 0o640);
        assert_eq!(p.slots, 4);
        match c.source {
            Some(SourceConfig::Synthetic(s)) => {
                assert_eq!((s.width, s.height, s.fps), (320, 240, 15.0))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        for (from, to, key) in [
            ("fps = 15", "fps = 15\nfsp = 3", "fsp"),
            ("mode = 0o640", "mode = 0o640\nslot = 3", "slot"),
            ("size = [256, 144]", "size = [256, 144]\ntopk = 3", "topk"),
            (
                "stats_interval_s = 2",
                "stats_interval_s = 2\nframe_pol = 3",
                "frame_pol",
            ),
            ("[pipeline]", "[pipelin]", "pipelin"),
            (
                "[pipeline]",
                "[control]\nsockett = \"/a\"\n[pipeline]",
                "sockett",
            ),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.contains(key) && e.contains("t.toml"), "{key}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, key) in [
            ("fps = 15", "fps = 0", "source.fps"),
            // A mistyped value inside the tagged [source] table: serde
            // reports it at the table; the key is found and named after.
            (
                "fps = 15",
                "fps = \"fast\"",
                "source.fps: invalid type: string \"fast\"",
            ),
            ("width = 320", "width = -3", "source.width: invalid value"),
            ("mode = 0o640", "mode = 0o1777", "publish.mode"),
            (
                "name = \"/vosd-test\"",
                "name = \"vosd test\"",
                "publish.name",
            ),
            (
                "size = [256, 144]",
                "size = [256, 144]\nmax_objects = 20",
                "publish.max_objects",
            ),
            ("size = [256, 144]", "size = [8, 144]", "engine.size"),
            (
                "stats_interval_s = 2",
                "frame_pool = 1",
                "pipeline.frame_pool",
            ),
            ("kind = \"synthetic\"", "kind = \"webcam\"", "webcam"),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    /// One bad value in each table: the message is `FILE: table.key: why`.
    #[test]
    fn a_bad_value_in_each_table_names_table_and_key() {
        for (from, to, want) in [
            (
                "size = [256, 144]",
                "size = [256, 144]\ntop_k = 0",
                "t.toml: engine.top_k: must be within 1..=64",
            ),
            (
                "fps = 15",
                "fps = 15\nobjects = 9",
                "t.toml: source.objects: 9 is not within 1..=3",
            ),
            (
                "mode = 0o640",
                "mode = 0o640\nslots = 1",
                "t.toml: publish.slots: 1 is not within 2..=1024",
            ),
            (
                "mode = 0o640",
                "mode = 0o200",
                "t.toml: publish.mode: 0o200 does not let the owner read the segment",
            ),
            (
                "stats_interval_s = 2",
                "latency_window = 3",
                "t.toml: pipeline.latency_window: 3 is not within 16..=65536",
            ),
            (
                "[pipeline]",
                "[control]\nmax_clients = 0\n[pipeline]",
                "t.toml: control.max_clients: 0 is not within 1..=64",
            ),
            (
                "[pipeline]",
                "[control]\nsocket = \"relative.sock\"\n[pipeline]",
                "t.toml: control.socket: relative.sock is not an absolute path",
            ),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert_eq!(e, want);
        }
    }

    /// The `[zenoh]` table: unknown keys, mistyped and out-of-range values
    /// are named `zenoh.KEY`.
    #[test]
    fn zenoh_table_errors_name_the_key() {
        for (table, want) in [
            ("[zenoh]\nnodes = \"v\"", "nodes"),
            ("[zenoh]\ndomain_id = \"zero\"", "zenoh.domain_id"),
            ("[zenoh]\nmode = \"router\"", "zenoh.mode"),
            ("[zenoh]\nconnect = \"tcp/127.0.0.1:7447\"", "zenoh.connect"),
            (
                "[zenoh]\nlisten = [\"tcp/127.0.0.1\"]",
                "t.toml: zenoh.listen: \"tcp/127.0.0.1\": expected `tcp/HOST:PORT`",
            ),
            (
                "[zenoh]\nnode = \"my-node\"",
                "t.toml: zenoh.node: \"my-node\" is not a ROS node name",
            ),
        ] {
            let e = parse(&format!("{GOOD}{table}\n")).unwrap_err();
            assert!(e.contains(want), "{table}: {e}");
        }
        let c = parse(&format!("{GOOD}[zenoh]\nnode = \"cam1\"\n")).unwrap();
        assert_eq!(c.zenoh.unwrap().node, "cam1");
    }

    #[test]
    fn missing_tables_are_named() {
        let e = parse_run("[source]\nkind = \"synthetic\"\n").unwrap_err();
        assert!(e.contains("publish"), "{e}");
        let e = parse_run("[publish]\nname = \"/x\"\n").unwrap_err();
        assert!(e.contains("source"), "{e}");
        assert!(e.starts_with("t.toml: source: the table is missing"), "{e}");
    }

    /// The offline commands read the same file: every table is optional.
    #[test]
    fn tables_are_optional_outside_run() {
        let c = parse("").unwrap();
        assert_eq!(c, DaemonConfig::default());
        let c = parse("[engine]\ntop_k = 3\n").unwrap();
        assert_eq!((c.engine.top_k, c.source, c.publish), (3, None, None));
        // A full daemon file, as `vosd segment --config` reads it.
        let c = parse(GOOD).unwrap();
        assert!(c.source.is_some() && c.publish.is_some());
        // Checks apply to the tables present only.
        let e = parse("[publish]\nname = \"/x\"\nslots = 2000\n").unwrap_err();
        assert!(e.contains("publish.slots"), "{e}");
    }

    #[test]
    fn shipped_configs_load_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let c = DaemonConfig::load_for_run(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // What is written out reads back the same.
                let text = toml::to_string(&c).unwrap();
                assert_eq!(DaemonConfig::parse(&text, &path).unwrap(), c);
                n += 1;
            }
        }
        assert!(n >= 3, "{n} configs in {}", dir.display());
    }
}
