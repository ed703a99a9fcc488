//! The ONNX Runtime backend: the encoder as an ONNX Runtime session, on
//! its TensorRT, CUDA or CPU execution provider (cargo feature
//! `onnxruntime`, on by default).
//!
//! - [`library`] finds libonnxruntime and loads it at run time: nothing is
//!   linked or downloaded at build time, and a missing, foreign or too old
//!   library is an error that names it, never an abort.
//! - [`providers`] reads what the library offers and orders the providers
//!   (TensorRT, then CUDA, then the CPU).
//! - [`session`] is the encoder: one session per input size, its options
//!   set once, its tensors allocated at start.
//!
//! The memory readout stays vosd's own: its `Accelerator::readout` returns
//! `None`, so the CPU readout runs beside this encoder. The self-test
//! against tract, the switch to tract on a failure and the status are the
//! backend seam's ([`crate::backend::Fallback`]).

pub mod library;
pub mod net;
pub mod providers;
pub mod session;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub use library::{python_package_libraries, Runtime, DYLIB_ENV};
pub use providers::Provider;

use super::net::{NetBackend, NetSpec};
use super::{
    ActiveBackend, BackendError, EncoderBackend, EncoderSpec, InjectedFailure, ReadoutBackend,
};
use crate::memory::MemoryStore;
use crate::readout::GridSize;
use session::{OrtEncoder, SessionOptions};

/// Why the ONNX Runtime backend cannot start or run.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OrtError {
    /// No library could be loaded: each place tried, and why.
    #[error("no usable ONNX Runtime library: {0}")]
    Library(String),
    /// No execution provider could run the encoder.
    #[error("ONNX Runtime cannot run the encoder: {0}")]
    Session(String),
    /// The model's inputs or outputs are not the encoder's.
    #[error("not the vosd encoder: {0}")]
    WrongModel(String),
    /// A run failed (ONNX Runtime's message).
    #[error("ONNX Runtime inference failed: {0}")]
    Run(String),
    /// A failure injected by a test ([`crate::backend::FAIL_HOOK_ENV`]).
    #[error("injected ONNX Runtime failure (test hook)")]
    Injected,
}

/// How the backend is opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrtOptions {
    /// `engine.onnxruntime_library`: the library to load (`None`: search).
    pub library: Option<PathBuf>,
    /// Intra-op threads.
    pub threads: usize,
    /// TensorRT's fp16 mode (`precision = "fp16"`).
    pub fp16: bool,
}

/// The loaded ONNX Runtime, as a device of the backend seam.
#[derive(Debug)]
pub struct OnnxRuntime {
    runtime: &'static Runtime,
    options: OrtOptions,
    /// The providers to try, best first.
    providers: Vec<Provider>,
    /// "ONNX Runtime 1.32.0".
    base_name: String,
    /// With the provider of the first session ("ONNX Runtime 1.32.0, CPU
    /// provider"), once one runs.
    named: OnceLock<String>,
    /// Test hook: fail the use after this many.
    injected: InjectedFailure,
}

impl OnnxRuntime {
    /// Loads the library (or takes the loaded one) and lists the providers
    /// to try.
    pub fn open(options: OrtOptions) -> Result<Arc<Self>, OrtError> {
        let runtime = library::load(options.library.as_deref())?;
        let providers = providers::usable(&runtime.providers);
        if providers.is_empty() {
            return Err(OrtError::Session(format!(
                "{} lists no provider vosd can use ({})",
                runtime.path.display(),
                runtime.providers.join(", ")
            )));
        }
        let name = format!("ONNX Runtime {}", runtime.version);
        Ok(Arc::new(Self {
            runtime,
            options,
            providers,
            base_name: name,
            named: OnceLock::new(),
            injected: InjectedFailure::default(),
        }))
    }

    /// The loaded library.
    pub fn runtime(&self) -> &'static Runtime {
        self.runtime
    }
}

/// Whether an ONNX file is a quantized (QDQ) graph: its nodes include
/// `QuantizeLinear` (operator names are stored as plain strings).
fn is_quantized(model: &[u8]) -> bool {
    model.windows(14).any(|w| w == b"QuantizeLinear")
}

impl super::Accelerator for OnnxRuntime {
    fn kind(&self) -> ActiveBackend {
        ActiveBackend::Onnxruntime
    }

    fn name(&self) -> &str {
        self.named.get().unwrap_or(&self.base_name)
    }

    fn encoder(
        self: Arc<Self>,
        model: &[u8],
        spec: &EncoderSpec,
        half_storage: bool,
    ) -> Result<Box<dyn EncoderBackend>, BackendError> {
        let quantized = is_quantized(model);
        let mut failures = Vec::new();
        for &provider in &self.providers {
            let options = SessionOptions {
                provider,
                threads: self.options.threads,
                fp16: half_storage,
            };
            match OrtEncoder::new(self.runtime, model, spec, options, quantized) {
                Ok(encoder) => {
                    let full = format!("{}, {} provider", self.base_name, provider.label());
                    if half_storage && provider != Provider::TensorRt {
                        log::info!(
                            "onnxruntime: precision = \"fp16\" needs TensorRT; the {} provider runs fp32",
                            provider.label()
                        );
                    }
                    log::info!("onnxruntime: the encoder runs on {full}");
                    let _ = self.named.set(full);
                    return Ok(Box::new(encoder));
                }
                Err(e @ OrtError::WrongModel(_)) => return Err(e.into()),
                Err(e) => {
                    log::info!(
                        "onnxruntime: the {} provider is not used: {e}",
                        provider.label()
                    );
                    failures.push(format!("{}: {e}", provider.label()));
                }
            }
        }
        Err(OrtError::Session(failures.join("; ")).into())
    }

    fn readout(
        self: Arc<Self>,
        _grid: GridSize,
        _memory: &MemoryStore,
    ) -> Result<Option<Box<dyn ReadoutBackend>>, BackendError> {
        Ok(None)
    }

    fn net(
        self: Arc<Self>,
        model: &[u8],
        spec: &NetSpec,
    ) -> Result<Option<Box<dyn NetBackend>>, BackendError> {
        let net = net::open(
            self.runtime,
            &self.providers,
            model,
            spec,
            self.options.threads,
        )?;
        Ok(Some(Box::new(net)))
    }

    fn inject_failure_after(&self, n: u64) {
        self.injected.arm(n);
    }

    fn check_injected(&self) -> Result<(), BackendError> {
        if self.injected.fires() {
            return Err(OrtError::Injected.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_int8_model_is_seen_as_quantized() {
        let dir = crate::config::bundled_model_dir();
        let int8 = std::fs::read(dir.join("encoder_lite0_int8.onnx")).unwrap();
        let fp32 = std::fs::read(dir.join("encoder_lite0_fp32.onnx")).unwrap();
        assert!(is_quantized(&int8));
        assert!(!is_quantized(&fp32));
    }
}
