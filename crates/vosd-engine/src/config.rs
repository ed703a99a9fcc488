//! Engine configuration: every knob of the VOS engine with its meaning.
//!
//! Read from the `[engine]` table of a vosd TOML file, and the box
//! prompt's from its `[engine.prompt]` sub-table ([`BoxPromptConfig`]).
//! Unknown keys are an error (a typo must not silently fall back to a
//! default).

mod discover;
mod memory_network;
mod prompt;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use discover::{DiscoverConfig, DiscoverPrompt};
pub use memory_network::{MemoryNetworkConfig, Method};
pub use prompt::BoxPromptConfig;

/// Which encoder file to use when `model` is not given.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `int8` when ONNX Runtime runs the encoder (its integer kernels are
    /// the fastest there, at the same accuracy), `fp32` on tract and
    /// OpenCL.
    #[default]
    Auto,
    /// `encoder_lite0_fp32.onnx`: float weights (fastest on tract/CPU).
    Fp32,
    /// `encoder_lite0_int8.onnx`: int8 QDQ weights (integer kernels on ONNX
    /// Runtime and OpenCL; tract runs it in float, more slowly than fp32).
    Int8,
    /// `encoder_lite0_fp32.onnx` with its activations stored as fp16 on an
    /// OpenCL device (half the memory traffic); fp32 on the CPU.
    Fp16,
}

/// How coarse probabilities are brought to frame resolution.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Upsampling {
    /// Joint bilateral upsampling guided by the frame's colours.
    #[default]
    EdgeAware,
    /// Plain bilinear interpolation of the cell probabilities.
    Bilinear,
}

/// What a frame stores as its memory values.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryValues {
    /// The readout's soft probabilities per cell.
    #[default]
    Soft,
    /// The final (edge-refined) label mask, averaged back onto the cells.
    Mask,
}

/// The VOS engine's settings. Defaults are tuned on DAVIS 2016 train.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Which engine segments: the trained memory network
    /// (`[engine.memory_network]`) or label propagation (the readout keys
    /// below).
    pub method: Method,
    /// Encoder ONNX file; empty = the bundled file for `precision`.
    pub model: PathBuf,
    /// Bundled encoder to use when `model` is empty.
    pub precision: Precision,
    /// Processing size `[width, height]`: frames are resized to it before
    /// encoding; masks come back at frame size. Multiples of 16 keep the
    /// feature grids uniform.
    pub size: [usize; 2],
    /// Threads for the encoder and the readout; 0 = all cores.
    pub threads: usize,
    /// Where the encoder and readout run: "auto" (ONNX Runtime, else an
    /// OpenCL GPU, else tract: the first that starts and passes the
    /// self-test), "onnxruntime", "opencl" or "cpu".
    pub backend: crate::backend::BackendChoice,
    /// The libonnxruntime file to load; empty = `ORT_DYLIB_PATH`, then the
    /// system library paths, then an installed `onnxruntime` Python
    /// package.
    pub onnxruntime_library: PathBuf,
    /// Longest wait for the OpenCL device to finish one frame's work before
    /// it counts as failed (and tract takes over), in milliseconds.
    pub device_timeout_ms: u64,
    /// Most objects tracked at once (buffers are sized for it).
    pub max_objects: usize,
    /// Working-memory capacity in frames (besides the permanent first frame).
    pub working_memory: usize,
    /// A frame enters working memory every `mem_every` frames.
    pub mem_every: usize,
    /// Number of best-matching memory cells each query cell reads from.
    pub top_k: usize,
    /// Softmax temperature on cosine affinities (smaller = sharper).
    pub temperature: f32,
    /// Search radius, in stride-8 cells, around each query cell in working
    /// memory frames; `0` = whole frame.
    pub window_radius: usize,
    /// Search radius in the first (annotated) frame; `0` = whole frame.
    pub first_frame_radius: usize,
    /// What a frame stores as its memory values.
    pub memory_values: MemoryValues,
    /// How probabilities are upsampled to frame resolution.
    pub upsampling: Upsampling,
    /// Edge-aware upsampling: colour similarity scale (0–255 RGB distance).
    pub edge_sigma_color: f32,
    /// Edge-aware upsampling: spatial scale, in feature cells.
    pub edge_sigma_space: f32,
    /// The box prompt (`[engine.prompt]`): how a box becomes an object's
    /// first mask.
    pub prompt: BoxPromptConfig,
    /// The memory network (`[engine.memory_network]`), used when `method`
    /// is `memory-network`.
    pub memory_network: MemoryNetworkConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            method: Method::default(),
            model: PathBuf::new(),
            precision: Precision::Auto,
            size: [512, 288],
            threads: 0,
            backend: crate::backend::BackendChoice::Auto,
            onnxruntime_library: PathBuf::new(),
            device_timeout_ms: 5000,
            max_objects: 8,
            working_memory: 7,
            mem_every: 1,
            top_k: 5,
            temperature: 0.1,
            window_radius: 6,
            first_frame_radius: 0,
            memory_values: MemoryValues::Soft,
            upsampling: Upsampling::EdgeAware,
            edge_sigma_color: 20.0,
            edge_sigma_space: 1.0,
            prompt: BoxPromptConfig::default(),
            memory_network: MemoryNetworkConfig::default(),
        }
    }
}

/// An `[engine]` value that is out of range (a [`KeyError`] of the
/// `engine` table).
#[derive(Debug, thiserror::Error)]
#[error("engine.{key}: {reason}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

/// An unusable configuration value of any table: where it is, as
/// `table.key` (or `table` for a whole table), and why. The check of every
/// table of a vosd configuration converts to it, so that messages read
/// `publish.slots: 1 is not within 2..=1024`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct KeyError {
    /// `table.key`, e.g. `engine.top_k`, or `table` alone.
    pub key: String,
    /// Why it is rejected.
    pub reason: String,
}

impl KeyError {
    /// The error of `key` in `table` (`table.key`; `key` may be empty for
    /// the whole table).
    pub fn new(table: &str, key: &str, reason: impl Into<String>) -> Self {
        let key = if key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{key}")
        };
        Self {
            key,
            reason: reason.into(),
        }
    }
}

impl From<ConfigError> for KeyError {
    fn from(e: ConfigError) -> Self {
        KeyError::new("engine", e.key, e.reason)
    }
}

impl EngineConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_string(),
            })
        };
        let [w, h] = self.size;
        if !(32..=1920).contains(&w) || !(32..=1920).contains(&h) {
            return bad("size", "width and height must be within 32..=1920");
        }
        if !(1..=254).contains(&self.max_objects) {
            return bad("max_objects", "must be within 1..=254");
        }
        if self.working_memory > 64 {
            return bad("working_memory", "must be at most 64 frames");
        }
        if self.mem_every == 0 {
            return bad("mem_every", "must be at least 1");
        }
        if !(1..=crate::readout::MAX_TOP_K).contains(&self.top_k) {
            return bad("top_k", "must be within 1..=64");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("temperature", "must be a positive number");
        }
        if !(self.edge_sigma_color.is_finite() && self.edge_sigma_color > 0.0) {
            return bad("edge_sigma_color", "must be a positive number");
        }
        if !(self.edge_sigma_space.is_finite() && self.edge_sigma_space > 0.0) {
            return bad("edge_sigma_space", "must be a positive number");
        }
        if !(1..=600_000).contains(&self.device_timeout_ms) {
            return bad("device_timeout_ms", "must be within 1..=600000");
        }
        if self.threads > 256 {
            return bad("threads", "must be at most 256");
        }
        self.memory_network.validate()?;
        self.prompt.validate()
    }

    /// The readout's settings.
    pub fn readout_params(&self) -> crate::readout::ReadoutParams {
        crate::readout::ReadoutParams {
            top_k: self.top_k,
            temperature: self.temperature,
            window_radius: self.window_radius,
            first_frame_radius: self.first_frame_radius,
        }
    }

    /// The encoder file tract and OpenCL run: `model` if set, else the
    /// bundled file for `precision` (`auto`: fp32).
    pub fn model_path(&self) -> PathBuf {
        self.model_for(self.precision == Precision::Int8)
    }

    /// The encoder file ONNX Runtime runs: `model` if set, else the bundled
    /// file for `precision` (`auto`: int8).
    pub fn onnxruntime_model_path(&self) -> PathBuf {
        self.model_for(matches!(self.precision, Precision::Int8 | Precision::Auto))
    }

    fn model_for(&self, int8: bool) -> PathBuf {
        if !self.model.as_os_str().is_empty() {
            return self.model.clone();
        }
        let name = if int8 {
            "encoder_lite0_int8.onnx"
        } else {
            "encoder_lite0_fp32.onnx"
        };
        bundled_model_dir().join(name)
    }

    /// How the encoder opens a device backend.
    pub fn device_options(&self) -> crate::backend::DeviceOptions {
        crate::backend::DeviceOptions {
            timeout: std::time::Duration::from_millis(self.device_timeout_ms),
            half_storage: self.precision == Precision::Fp16,
            threads: self.thread_count(),
            onnxruntime_library: Some(self.onnxruntime_library.clone())
                .filter(|p| !p.as_os_str().is_empty()),
        }
    }

    /// Threads to use (resolves 0 to the number of cores).
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// Where the bundled models are: `$VOSD_MODEL_DIR`, else `./models`, else
/// `/usr/share/vosd/models` (installed), else the source tree's `models/`.
pub fn bundled_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VOSD_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let candidates = [
        PathBuf::from("models"),
        PathBuf::from("/usr/share/vosd/models"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    ];
    candidates
        .iter()
        .find(|d| d.join("encoder_lite0_fp32.onnx").is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn auto_precision_is_int8_on_onnxruntime_only() {
        let auto = EngineConfig::default();
        assert_eq!(auto.precision, Precision::Auto);
        assert!(auto.model_path().ends_with("encoder_lite0_fp32.onnx"));
        assert!(auto
            .onnxruntime_model_path()
            .ends_with("encoder_lite0_int8.onnx"));
        let fp32 = EngineConfig {
            precision: Precision::Fp32,
            ..Default::default()
        };
        assert_eq!(fp32.model_path(), fp32.onnxruntime_model_path());
        let own = EngineConfig {
            model: "/models/mine.onnx".into(),
            ..Default::default()
        };
        assert_eq!(
            own.onnxruntime_model_path(),
            PathBuf::from("/models/mine.onnx")
        );
        assert_eq!(own.model_path(), PathBuf::from("/models/mine.onnx"));
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let e = toml::from_str::<EngineConfig>("top_kk = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("top_kk"), "{e}");
    }

    #[test]
    fn out_of_range_names_the_key() {
        let c = EngineConfig {
            temperature: 0.0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("engine.temperature"));
        let c = EngineConfig {
            top_k: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("engine.top_k"));
    }
}

/// Why a configuration file could not be used (the engine's and the
/// daemon's files alike): the file, and what in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read (the I/O error is the source: `{:#}`
    /// shows it after the path).
    #[error("{path}: cannot read")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Syntax, unknown key, missing key or wrong type (the parser's message
    /// shows the key and its line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A value is out of range, or a table that is needed is missing.
    #[error("{path}: {error}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key (`table.key`) and why.
        error: KeyError,
    },
}

impl ConfigFileError {
    /// The error of `path` whose value `error` names is unusable.
    pub fn invalid(path: &Path, error: KeyError) -> Self {
        ConfigFileError::Invalid {
            path: path.into(),
            error,
        }
    }
}

/// Parses TOML `text` (read from `path`, named in errors) and checks the
/// result with `validate`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), KeyError>,
) -> Result<T, ConfigFileError> {
    let cfg: T = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
        path: path.into(),
        message: e.to_string().trim_end().to_string(),
    })?;
    validate(&cfg).map_err(|error| ConfigFileError::invalid(path, error))?;
    Ok(cfg)
}
