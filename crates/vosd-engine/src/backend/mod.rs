//! Inference backends behind one seam: where the encoder and the memory
//! readout run.
//!
//! # The traits
//!
//! - [`EncoderBackend`] runs the image encoder: it takes the input tensor
//!   (the normalised image, NCHW `1 × 3 × H × W`, of an [`EncoderSpec`])
//!   and fills the three feature outputs (strides 4, 8 and 16,
//!   channels-first).
//! - [`ReadoutBackend`] runs the memory readout for one tracker: it takes
//!   the query keys and the [`MemoryStore`] and fills each cell's values
//!   and best affinity.
//! - [`Accelerator`] is an opened device ([`Device`] is a shared handle on
//!   one). It makes the device implementations of both traits (one encoder,
//!   and one readout per tracker, on the same device) and carries the test
//!   hook that makes the device fail ([`FAIL_HOOK_ENV`]).
//!
//! Each trait has a CPU implementation, always built: [`cpu::TractEncoder`]
//! (tract) and [`cpu::CpuReadout`] (vosd's own readout,
//! [`crate::readout`]). The device implementations are OpenCL's
//! (`opencl`, cargo feature `opencl`, on by default). This module is the
//! only place that names the feature: without it [`open_device`] says so,
//! and everything else runs unchanged on the CPU.
//!
//! # The fallback
//!
//! [`Fallback`] pairs a CPU implementation with an optional device one and
//! is the one place that decides which runs:
//! - [`Fallback::attach`] runs the self-test (the device's outputs against
//!   the CPU's on a fixed input, within a [`Tolerance`]; the inputs are in
//!   [`self_test`]) and uses the device only if it passes;
//! - [`Fallback::run`] calls the device and, when the call fails, redoes it
//!   on the CPU, switches to the CPU for good, logs the switch and counts
//!   it in the [`BackendStatus`].
//!
//! The encoder's fallback and those of its trackers' readouts share one
//! status ([`BackendHandle`]). A switch by any of them moves them all: each
//! drops its device at its next call.
//!
//! # Choosing a backend
//!
//! [`device_order`] gives the device backends a choice tries, in order, and
//! [`open_device`] opens one. `auto` tries ONNX Runtime (TensorRT, then
//! CUDA, where the library has them and a GPU answers, then its CPU
//! provider), then the first OpenCL GPU or accelerator, and keeps tract
//! when none starts and passes the self-test; `onnxruntime` and `opencl`
//! make any failure to start an error; `cpu` never opens a device.
//!
//! # The backends
//!
//! - `onnxruntime` (cargo feature `onnxruntime`, on by default): the
//!   encoder as an ONNX Runtime session; libonnxruntime is loaded at run
//!   time. It has no readout of its own: [`Accelerator::readout`] returns
//!   `None` and the CPU readout runs beside it.
//! - `opencl` (cargo feature `opencl`, on by default): vosd's OpenCL
//!   kernels for the encoder and the readout.
//!
//! Each adds a [`BackendChoice`] and an [`ActiveBackend`] variant, an arm
//! in [`open_device`] (behind its cargo feature, in this module only), and
//! an [`Arithmetic`] for its self-test tolerance. The fallback, the
//! self-tests, the status and the test hook are shared.

pub mod compare;
pub mod cpu;
pub mod fallback;
pub mod net;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
#[cfg(feature = "opencl")]
pub mod opencl;
pub mod self_test;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use fallback::{
    arm_failure_hook, Fallback, InjectedFailure, SelfTest, Tolerance, FAIL_HOOK_ENV,
    FAIL_HOOK_ENV_ONNXRUNTIME,
};
pub use status::{current, ActiveBackend, BackendChoice, BackendHandle, BackendStatus};

use crate::memory::MemoryStore;
use crate::readout::{GridSize, ReadoutParams};

/// Why a backend could not start, or failed while running.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    /// The ONNX Runtime backend failed.
    #[cfg(feature = "onnxruntime")]
    #[error(transparent)]
    Onnxruntime(#[from] onnxruntime::OrtError),
    /// The OpenCL backend failed.
    #[cfg(feature = "opencl")]
    #[error(transparent)]
    Opencl(#[from] opencl::OpenclError),
    /// A self-test found the device's outputs too far from the CPU's.
    #[error("the encoder cannot run on {device}: {reason}")]
    SelfTest {
        /// The device backend ("OpenCL", "ONNX Runtime").
        device: &'static str,
        /// Which output differs, and by how much.
        reason: String,
    },
    /// The CPU implementation failed (tract's message).
    #[error("{0}")]
    Cpu(String),
    /// No such device in this build or on this machine.
    #[error("{0}")]
    Unavailable(String),
}

/// The arithmetic an encoder backend runs, which sets how close its
/// outputs must come to tract's in the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// Float throughout (tract runs the int8 QDQ graph this way too).
    Fp32,
    /// Float arithmetic on activations stored as IEEE half.
    Fp16Storage,
    /// Integer kernels on uint8 activations (the QDQ graph fused).
    Int8,
}

impl Arithmetic {
    /// Its name in the backend status ("fp32", "fp16-storage", "int8").
    pub fn label(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16Storage => "fp16-storage",
            Self::Int8 => "int8",
        }
    }
}

/// One output of the encoder: a channels-first feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// Its name in the model and in messages ("feat4").
    pub name: &'static str,
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl OutputSpec {
    /// Number of values (`channels × height × width`).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The encoder a backend is built for: its input size and its three
/// outputs (strides 4, 8 and 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderSpec {
    /// Input columns.
    pub width: usize,
    /// Input rows.
    pub height: usize,
    /// The outputs, in the model's order.
    pub outputs: [OutputSpec; 3],
}

impl EncoderSpec {
    /// Values of the input tensor (`3 × height × width`).
    pub fn input_len(&self) -> usize {
        3 * self.width * self.height
    }
}

/// Runs the image encoder.
///
/// `&mut self`: an implementation may keep per-call state (staging
/// buffers, a session that runs mutably).
///
/// A frame is written straight into the backend's own input tensor
/// ([`EncoderBackend::input_mut`]) and then run
/// ([`EncoderBackend::run_input`]), so that the per-frame path copies no
/// input; [`EncoderBackend::encode`] does both from a given slice.
pub trait EncoderBackend: Send {
    /// The arithmetic it runs (its self-test tolerance).
    fn arithmetic(&self) -> Arithmetic;

    /// The input tensor that [`EncoderBackend::run_input`] reads: the
    /// normalised image of the spec it was built for,
    /// [`EncoderSpec::input_len`] values, to be written in full before
    /// each run (its contents are unspecified until then; ONNX Runtime's
    /// and tract's own tensor, OpenCL's host staging buffer).
    fn input_mut(&mut self) -> Result<&mut [f32], BackendError>;

    /// Encodes the input as last written through
    /// [`EncoderBackend::input_mut`] into `outputs` (the three feature
    /// maps, each of its [`OutputSpec::len`] values).
    fn run_input(&mut self, outputs: [&mut [f32]; 3]) -> Result<(), BackendError>;

    /// Encodes `input` (the normalised image of the spec it was built for,
    /// [`EncoderSpec::input_len`] values) into `outputs`: a copy into the
    /// input tensor and a run.
    fn encode(&mut self, input: &[f32], outputs: [&mut [f32]; 3]) -> Result<(), BackendError>;
}

/// Runs the memory readout of one tracker (one grid, one memory geometry).
pub trait ReadoutBackend: Send {
    /// Same contract as [`crate::readout::readout`]: `query` holds a key per
    /// cell, `out` receives `cells × memory.channels()` values and
    /// `confidence` the best affinity per cell.
    fn readout(
        &mut self,
        query: &[f32],
        memory: &MemoryStore,
        params: &ReadoutParams,
        out: &mut [f32],
        confidence: &mut [f32],
    ) -> Result<(), BackendError>;
}

/// An opened device that runs the device implementations of the traits.
pub trait Accelerator: Send + Sync + std::fmt::Debug {
    /// The backend it is (the status's `active` while it runs).
    fn kind(&self) -> ActiveBackend;

    /// The device's name (the status's `device`).
    fn name(&self) -> &str;

    /// The encoder for `spec` from the ONNX `model` bytes, with activations
    /// stored as fp16 when `half_storage` (float models only).
    fn encoder(
        self: Arc<Self>,
        model: &[u8],
        spec: &EncoderSpec,
        half_storage: bool,
    ) -> Result<Box<dyn EncoderBackend>, BackendError>;

    /// The readout for a memory of `memory`'s geometry on `grid`, or `None`
    /// when the device has no readout (the CPU readout runs beside it).
    fn readout(
        self: Arc<Self>,
        grid: GridSize,
        memory: &MemoryStore,
    ) -> Result<Option<Box<dyn ReadoutBackend>>, BackendError>;

    /// The small network of `spec` from the ONNX `model` bytes on this
    /// device (the memory network's heads), or `None` when the device runs
    /// no such networks (the CPU runs them beside it).
    fn net(
        self: Arc<Self>,
        model: &[u8],
        spec: &net::NetSpec,
    ) -> Result<Option<Box<dyn net::NetBackend>>, BackendError> {
        let _ = (model, spec);
        Ok(None)
    }

    /// Test hook: makes the `n+1`-th later use fail, as a lost device would
    /// ([`Fallback::run`] counts the uses; self-tests do not).
    fn inject_failure_after(&self, n: u64);

    /// Counts one use down towards an injected failure; `Err` when it fires.
    fn check_injected(&self) -> Result<(), BackendError>;
}

/// A shared handle on an opened device.
pub type Device = Arc<dyn Accelerator>;

/// How a device backend is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Longest wait for one call's OpenCL device work.
    pub timeout: Duration,
    /// Store activations as fp16 (OpenCL), or TensorRT's fp16 mode
    /// (`precision = "fp16"`; float graphs only).
    pub half_storage: bool,
    /// Threads for ONNX Runtime's intra-op pool.
    pub threads: usize,
    /// `engine.onnxruntime_library`: the library to load (`None`: search).
    pub onnxruntime_library: Option<PathBuf>,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            half_storage: false,
            threads: 1,
            onnxruntime_library: None,
        }
    }
}

/// The device backends `choice` tries, best first (empty for `cpu`).
pub fn device_order(choice: BackendChoice) -> &'static [ActiveBackend] {
    match choice {
        BackendChoice::Cpu => &[],
        BackendChoice::Auto => &[ActiveBackend::Onnxruntime, ActiveBackend::Opencl],
        BackendChoice::Onnxruntime => &[ActiveBackend::Onnxruntime],
        BackendChoice::Opencl => &[ActiveBackend::Opencl],
    }
}

/// Opens the device backend `kind` for `choice`: ONNX Runtime (its GPU
/// providers too, unless `choice` is `cpu`), or OpenCL (for `auto` the
/// first GPU or accelerator; for `opencl` the first device of any kind).
pub fn open_device(
    kind: ActiveBackend,
    choice: BackendChoice,
    options: &DeviceOptions,
) -> Result<Device, BackendError> {
    match kind {
        ActiveBackend::Cpu => Err(BackendError::Unavailable("backend = cpu".into())),
        ActiveBackend::Onnxruntime => open_onnxruntime(options),
        ActiveBackend::Opencl => open_opencl(choice == BackendChoice::Opencl, options.timeout),
    }
}

#[cfg(feature = "onnxruntime")]
fn open_onnxruntime(options: &DeviceOptions) -> Result<Device, BackendError> {
    let device = onnxruntime::OnnxRuntime::open(onnxruntime::OrtOptions {
        library: options.onnxruntime_library.clone(),
        threads: options.threads,
        fp16: options.half_storage,
    })?;
    Ok(device)
}

#[cfg(not(feature = "onnxruntime"))]
fn open_onnxruntime(_options: &DeviceOptions) -> Result<Device, BackendError> {
    Err(BackendError::Unavailable(
        "this vosd was built without the `onnxruntime` feature".into(),
    ))
}

#[cfg(feature = "opencl")]
fn open_opencl(any_kind: bool, timeout: Duration) -> Result<Device, BackendError> {
    Ok(opencl::Gpu::open_first(any_kind, timeout)?)
}

#[cfg(not(feature = "opencl"))]
fn open_opencl(_any_kind: bool, _timeout: Duration) -> Result<Device, BackendError> {
    Err(BackendError::Unavailable(
        "this vosd was built without the `opencl` feature".into(),
    ))
}

/// What `auto` would choose among OpenCL devices on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoChoice {
    /// The named device (the first GPU or accelerator); used if its
    /// self-test against tract passes at start.
    Device(String),
    /// The loader lists no device.
    NoDevice,
    /// Only CPU devices, where tract is faster (`opencl` uses them anyway).
    OnlyCpuDevices,
    /// This build has no device backend (no `opencl` feature).
    NotBuilt,
}

/// The compute devices `vosd probe` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSurvey {
    /// One line per OpenCL device of every platform.
    pub devices: Vec<String>,
    /// What `backend = "auto"` would run on.
    pub auto: AutoChoice,
}

/// Lists the OpenCL devices and which one `auto` would choose (opens
/// none).
pub fn survey_devices() -> DeviceSurvey {
    #[cfg(feature = "opencl")]
    {
        let devices = opencl::list_devices();
        let auto = match opencl::auto_choice(&devices) {
            Some(d) => AutoChoice::Device(d.name.clone()),
            None if devices.is_empty() => AutoChoice::NoDevice,
            None => AutoChoice::OnlyCpuDevices,
        };
        DeviceSurvey {
            devices: devices.iter().map(|d| d.to_string()).collect(),
            auto,
        }
    }
    #[cfg(not(feature = "opencl"))]
    {
        DeviceSurvey {
            devices: Vec::new(),
            auto: AutoChoice::NotBuilt,
        }
    }
}

/// What `vosd probe` reports of ONNX Runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrtSurvey {
    /// The loaded library, or why none loads (each place tried).
    pub library: Result<OrtLibrary, String>,
    /// `libonnxruntime.so*` files of installed Python packages (where the
    /// search's last step looks).
    pub python_packages: Vec<PathBuf>,
}

/// A loaded ONNX Runtime library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrtLibrary {
    /// Its path, as given to the loader.
    pub path: PathBuf,
    /// Where that path came from ("ORT_DYLIB_PATH", ...).
    pub source: String,
    /// Its version ("1.32.0").
    pub version: String,
    /// The execution providers it was built with.
    pub providers: Vec<String>,
    /// Those vosd uses, in the order it tries them ("TensorRT", "CUDA",
    /// "CPU").
    pub order: Vec<&'static str>,
}

/// Loads ONNX Runtime as the backend would (from `library`, else the
/// search) and says what it is and offers.
pub fn survey_onnxruntime(library: Option<&std::path::Path>) -> OrtSurvey {
    #[cfg(feature = "onnxruntime")]
    {
        let loaded = onnxruntime::library::load(library)
            .map(|rt| OrtLibrary {
                path: rt.path.clone(),
                source: rt.source.to_string(),
                version: rt.version.clone(),
                providers: rt.providers.clone(),
                order: onnxruntime::providers::usable(&rt.providers)
                    .into_iter()
                    .map(|p| p.label())
                    .collect(),
            })
            .map_err(|e| e.to_string());
        OrtSurvey {
            library: loaded,
            python_packages: onnxruntime::python_package_libraries(),
        }
    }
    #[cfg(not(feature = "onnxruntime"))]
    {
        let _ = library;
        OrtSurvey {
            library: Err("this vosd was built without the `onnxruntime` feature".into()),
            python_packages: Vec::new(),
        }
    }
}
