//! `engine.method` and `[engine.memory_network]`: which engine segments,
//! and the trained memory network's settings ([`crate::memnet`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which engine turns frames into masks.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The trained memory network ([`crate::memnet`]): learned keys and
    /// values, top-k readout at stride 16, a decoder with skip connections.
    #[default]
    MemoryNetwork,
    /// Label propagation ([`crate::engine`]): the encoder's own features
    /// as keys, the soft masks as values, no trained part.
    LabelPropagation,
}

impl Method {
    /// Its name in the config and in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::MemoryNetwork => "memory-network",
            Self::LabelPropagation => "label-propagation",
        }
    }
}

/// The `[engine.memory_network]` table. The memory defaults (the first
/// frame alone) were chosen by the fold protocol: on every held-out fold,
/// the other two folds preferred them to a working memory of 5 frames and
/// the previous frame (docs/results.md); `top_k` is the training's value.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryNetworkConfig {
    /// Folder with `key.onnx`, `value.onnx` and `decoder.onnx`; empty =
    /// the bundled `memnet/` beside the encoder files.
    pub model_dir: PathBuf,
    /// Memory cells each query cell reads from (top-k softmax), 1..=64.
    pub top_k: usize,
    /// A frame enters working memory every `mem_every` frames.
    pub mem_every: usize,
    /// Working-memory capacity in frames (oldest out first), besides the
    /// permanent first frame and the previous frame; 0..=32 (0: none).
    pub working_memory: usize,
    /// Keep the previous frame in memory too (when it is not already in
    /// working memory).
    pub keep_previous: bool,
}

impl Default for MemoryNetworkConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::new(),
            top_k: 30,
            mem_every: 5,
            working_memory: 0,
            keep_previous: false,
        }
    }
}

impl MemoryNetworkConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_string(),
            })
        };
        if !(1..=crate::readout::MAX_TOP_K).contains(&self.top_k) {
            return bad("memory_network.top_k", "must be within 1..=64");
        }
        if self.mem_every == 0 {
            return bad("memory_network.mem_every", "must be at least 1");
        }
        if self.working_memory > 32 {
            return bad("memory_network.working_memory", "must be at most 32 frames");
        }
        Ok(())
    }

    /// The folder of the head files: `model_dir`, else the bundled one.
    pub fn dir(&self) -> PathBuf {
        if self.model_dir.as_os_str().is_empty() {
            super::bundled_model_dir().join("memnet")
        } else {
            self.model_dir.clone()
        }
    }

    /// The file of head `name` ("key", "value", "decoder"): the fp32
    /// export (the int8 files beside it are not run yet: tract cannot load
    /// the quantized value encoder's batch axis).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.onnx"))
    }
}
