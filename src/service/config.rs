//! The daemon configuration file: `[engine]`, `[source]`, `[publish]`,
//! `[pipeline]`. Unknown tables and keys are errors; every error names the
//! file and the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use vosd_engine::config::EngineConfig;
use crate::pipeline::PipelineConfig;
use vosd_shm::{GroupSpec, PublishConfig};
use crate::source::SourceConfig;

/// The `[publish]` table: the shared-memory segment (its mask size is the
/// source's frame size).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    /// POSIX shared-memory name, e.g. "/vosd-cam0" (/dev/shm/vosd-cam0).
    pub name: String,
    /// Slots in the ring (2..=1024).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Object states per slot (1..=255); at least `engine.max_objects`.
    #[serde(default = "default_max_objects")]
    pub max_objects: u32,
    /// Permission bits of the segment, e.g. 0o640 (readers need read).
    #[serde(default = "default_mode")]
    pub mode: u32,
    /// Group owning the segment (name or gid); absent = the daemon's group.
    #[serde(default)]
    pub group: Option<GroupSpec>,
}

fn default_slots() -> u32 {
    4
}
fn default_max_objects() -> u32 {
    16
}
fn default_mode() -> u32 {
    0o660
}

impl PublishSection {
    /// The writer configuration for frames of `width`×`height`.
    pub fn to_publish_config(&self, width: usize, height: usize) -> PublishConfig {
        PublishConfig {
            name: self.name.clone(),
            width: width as u32,
            height: height as u32,
            slots: self.slots,
            max_objects: self.max_objects,
            mode: self.mode,
            group: self.group.clone(),
        }
    }
}

/// A whole daemon configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The VOS engine.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Where frames come from.
    pub source: SourceConfig,
    /// Where results go.
    pub publish: PublishSection,
    /// Pools, statistics, frame limit.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The control socket (absent or `socket = ""`: none).
    #[serde(default)]
    pub control: crate::control::ControlConfig,
}

/// Why a daemon configuration is unusable (the engine's error type: the
/// same three cases).
pub use vosd_engine::config::ConfigFileError as DaemonConfigError;

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

impl DaemonConfig {
    /// Parses a configuration from TOML text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, DaemonConfigError> {
        vosd_engine::config::parse_toml(text, path, Self::validate).map_err(|e| match e {
            DaemonConfigError::Parse { path, message } => {
                let message = match source_key_error(text) {
                    Some(key_error) => format!("{message}\n{key_error}"),
                    None => message,
                };
                DaemonConfigError::Parse { path, message }
            }
            other => other,
        })
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, DaemonConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| DaemonConfigError::Read {
            path: path.into(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// Checks every range; the message names the key (`table.key: why`).
    pub fn validate(&self) -> Result<(), String> {
        self.engine.validate().map_err(|e| e.to_string())?;
        self.source.validate().map_err(|e| e.to_string())?;
        self.pipeline.validate().map_err(|e| e.to_string())?;
        self.control.validate()?;
        let p = &self.publish;
        let rest = p.name.strip_prefix('/').unwrap_or("");
        if rest.is_empty() || rest.contains('/') || p.name.len() > 255 || p.name.contains('\0') {
            return Err(format!("publish.name: {:?} is not a shared-memory name: '/' then 1..=254 characters, no other '/'", p.name));
        }
        if !(2..=1024).contains(&p.slots) {
            return Err(format!("publish.slots: {} is not within 2..=1024", p.slots));
        }
        if !(1..=255).contains(&p.max_objects) {
            return Err(format!(
                "publish.max_objects: {} is not within 1..=255",
                p.max_objects
            ));
        }
        if (p.max_objects as usize) < self.engine.max_objects {
            return Err(format!(
                "publish.max_objects: {} is below engine.max_objects ({}): every tracked object needs a record",
                p.max_objects, self.engine.max_objects
            ));
        }
        if p.mode & !0o777 != 0 {
            return Err(format!("publish.mode: {:#o} has bits beyond 0o777", p.mode));
        }
        if p.mode & 0o400 == 0 {
            return Err(format!(
                "publish.mode: {:#o} does not let the owner read the segment",
                p.mode
            ));
        }
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

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.engine.size, [256, 144]);
        assert_eq!(c.publish.mode, 0o640);
        assert_eq!(c.publish.slots, 4);
        match c.source {
            SourceConfig::Synthetic(s) => assert_eq!((s.width, s.height, s.fps), (320, 240, 15.0)),
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

    #[test]
    fn missing_tables_are_named() {
        let e = parse("[source]\nkind = \"synthetic\"\n").unwrap_err();
        assert!(e.contains("publish"), "{e}");
        let e = parse("[publish]\nname = \"/x\"\n").unwrap_err();
        assert!(e.contains("source"), "{e}");
    }
}
