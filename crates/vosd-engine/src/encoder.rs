//! The image encoder: EfficientNet-Lite0 up to stride 16, run by tract on the
//! CPU or by the OpenCL backend ([`crate::backend`]), with tract as fallback.
//!
//! The ONNX file comes from `models/export_encoder.py`; its model card is
//! `models/README.md`. Input: one RGB image, normalised with the ImageNet
//! mean/std, NCHW. Outputs: feature maps at strides 4, 8 and 16.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

#[cfg(feature = "opencl")]
use crate::backend::{
    opencl::{encoder::OpenclEncoder, Gpu, OpenclError},
    ActiveBackend,
};
use crate::backend::{BackendChoice, BackendHandle, BackendStatus};
use crate::frame::RgbFrame;
use crate::geometry::Grid;

/// ImageNet channel means for RGB in [0, 1].
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Channels of the stride 4, 8 and 16 outputs.
pub const CHANNELS: [usize; 3] = [24, 40, 112];

/// Why the encoder could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The model file does not exist or cannot be read.
    #[error("{path}: cannot read encoder model: {source}")]
    Unreadable {
        /// The model file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// tract could not load or prepare the model.
    #[error("{path}: not a loadable ONNX encoder: {reason}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// tract's message.
        reason: String,
    },
    /// The model loads but is not the encoder vosd expects.
    #[error("{path}: not the vosd encoder: {reason}")]
    WrongModel {
        /// The model file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Running the model failed.
    #[error("encoder inference failed: {0}")]
    Run(String),
    /// The OpenCL backend was asked for (`backend = "opencl"`) and cannot run.
    #[error("OpenCL backend unavailable: {0}")]
    Backend(String),
    /// The input frame does not have the processing size.
    #[error("encoder input is {got_w}x{got_h}, expected {want_w}x{want_h}")]
    InputSize {
        /// Width given.
        got_w: usize,
        /// Height given.
        got_h: usize,
        /// Width expected.
        want_w: usize,
        /// Height expected.
        want_h: usize,
    },
}

/// One feature map, channels-first (`data[c * h * w + y * w + x]`).
#[derive(Clone, Debug, Default)]
pub struct FeatureMap {
    /// Channels.
    pub channels: usize,
    /// Cells per column.
    pub height: usize,
    /// Cells per row.
    pub width: usize,
    /// `channels * height * width` values.
    pub data: Vec<f32>,
}

impl FeatureMap {
    fn zeros(channels: usize, grid: &Grid) -> Self {
        let (height, width) = (grid.y.cells, grid.x.cells);
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }
}

/// The encoder's three outputs for one frame.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// Stride 4 (`_blocks.2`, 24 channels).
    pub s4: FeatureMap,
    /// Stride 8 (`_blocks.4`, 40 channels).
    pub s8: FeatureMap,
    /// Stride 16 (`_blocks.10`, 112 channels).
    pub s16: FeatureMap,
}

/// The encoder on an OpenCL device, with its reusable input buffer.
#[cfg(feature = "opencl")]
struct DeviceEncoder {
    encoder: OpenclEncoder,
    input: Vec<f32>,
}

/// A loaded, optimised encoder for one processing size.
pub struct Encoder {
    plan: Arc<TypedRunnableModel>,
    executor: Executor,
    width: usize,
    height: usize,
    grids: [Grid; 3],
    path: PathBuf,
    /// The OpenCL encoder while it is in use; `None` on tract.
    #[cfg(feature = "opencl")]
    device: Mutex<Option<DeviceEncoder>>,
    status: BackendHandle,
}

/// How far one encoder's outputs are from another's, per output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputError {
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Mean absolute difference.
    pub mean_abs: f32,
    /// Largest absolute value of the reference.
    pub ref_max: f32,
    /// Mean absolute value of the reference.
    pub ref_mean: f32,
}

impl OutputError {
    /// Compares `got` with `reference`.
    pub fn between(got: &[f32], reference: &[f32]) -> Self {
        let n = reference.len().max(1) as f64;
        let (mut max_abs, mut sum, mut ref_max, mut ref_sum) = (0f32, 0f64, 0f32, 0f64);
        for (a, b) in got.iter().zip(reference) {
            let d = (a - b).abs();
            max_abs = max_abs.max(if d.is_nan() { f32::INFINITY } else { d });
            sum += d as f64;
            ref_max = ref_max.max(b.abs());
            ref_sum += b.abs() as f64;
        }
        Self {
            max_abs,
            mean_abs: (sum / n) as f32,
            ref_max,
            ref_mean: (ref_sum / n) as f32,
        }
    }
}

/// Environment variable of the fallback test hook: the OpenCL device fails
/// (as a lost device would) after this many uses (encoder runs and readouts).
pub const FAIL_HOOK_ENV: &str = "VOSD_TEST_FAIL_OPENCL_AFTER";

/// Self-test tolerances, relative to the reference's scale: the largest
/// error against the largest value, the mean error against the mean value.
/// fp32 kernels differ from tract only by summation order; the int8 kernels
/// run integer arithmetic where tract runs the QDQ graph in float, so their
/// outputs differ by a few quantization steps.
pub const SELF_TEST_TOLERANCE_FP32: (f32, f32) = (1e-3, 1e-4);
/// See [`SELF_TEST_TOLERANCE_FP32`].
pub const SELF_TEST_TOLERANCE_INT8: (f32, f32) = (0.5, 0.1);
/// fp16 storage: every activation is rounded to 11 significant bits, and
/// the rounding errors add up over the layers (a few 1e-3 of the scale).
pub const SELF_TEST_TOLERANCE_FP16: (f32, f32) = (0.05, 0.01);

/// How the encoder uses an OpenCL device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceOptions {
    /// Longest wait for one frame's device work.
    pub timeout: Duration,
    /// Store activations as fp16 (`precision = "fp16"`; float graphs only).
    pub half_storage: bool,
}

impl DeviceOptions {
    /// The options `cfg` asks for.
    pub fn from_config(cfg: &crate::config::EngineConfig) -> Self {
        Self {
            timeout: Duration::from_millis(cfg.device_timeout_ms),
            half_storage: cfg.precision == crate::config::Precision::Fp16,
        }
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoder({}, {}x{})",
            self.path.display(),
            self.width,
            self.height
        )
    }
}

impl Encoder {
    /// Loads `path`, fixes the input to `width`×`height`, optimises, and
    /// checks that the outputs are the expected stride-4/8/16 feature maps.
    pub fn load(
        path: &Path,
        width: usize,
        height: usize,
        threads: usize,
    ) -> Result<Self, EncoderError> {
        let bytes = std::fs::read(path).map_err(|e| EncoderError::Unreadable {
            path: path.into(),
            source: e,
        })?;
        let load = |e: TractError| EncoderError::Load {
            path: path.into(),
            reason: format!("{e:#}"),
        };
        let wrong = |reason: String| EncoderError::WrongModel {
            path: path.into(),
            reason,
        };
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(load)?;
        if model.input_outlets().map_err(load)?.len() != 1 {
            return Err(wrong("expected exactly one input (the image)".into()));
        }
        if model.output_outlets().map_err(load)?.len() != 3 {
            return Err(wrong(
                "expected three outputs (feat4, feat8, feat16)".into(),
            ));
        }
        model
            .set_input_fact(0, f32::fact([1, 3, height, width]).into())
            .map_err(load)?;
        let typed = model
            .into_optimized()
            .map_err(|e| wrong(format!("{e:#}")))?;
        let grids = [
            Grid::new(width, height, 2),
            Grid::new(width, height, 3),
            Grid::new(width, height, 4),
        ];
        for (i, outlet) in typed.output_outlets().map_err(load)?.iter().enumerate() {
            let fact = typed.outlet_fact(*outlet).map_err(load)?;
            let want = [1, CHANNELS[i], grids[i].y.cells, grids[i].x.cells];
            let got: Vec<String> = fact.shape.iter().map(|d| d.to_string()).collect();
            let want_s: Vec<String> = want.iter().map(|d| d.to_string()).collect();
            if got != want_s || fact.datum_type != f32::datum_type() {
                return Err(wrong(format!(
                    "output {i} is {:?} [{}], expected f32 [{}]",
                    fact.datum_type,
                    got.join(","),
                    want_s.join(",")
                )));
            }
        }
        let plan = typed.into_runnable().map_err(load)?;
        let executor = if threads > 1 {
            Executor::multithread(threads)
        } else {
            Executor::SingleThread
        };
        Ok(Self {
            plan,
            executor,
            width,
            height,
            grids,
            path: path.into(),
            #[cfg(feature = "opencl")]
            device: Mutex::new(None),
            status: std::sync::Arc::new(Mutex::new(BackendStatus::cpu("tract on the CPU"))),
        })
    }

    /// Loads `path` for tract (always: it is the fallback) and then, as
    /// `choice` asks, moves the work to an OpenCL device that passes the
    /// self-test. `auto` keeps tract when no device qualifies; `opencl`
    /// fails instead. `device` sets the frame timeout and fp16 storage.
    pub fn load_with_backend(
        path: &Path,
        width: usize,
        height: usize,
        threads: usize,
        choice: BackendChoice,
        device: DeviceOptions,
    ) -> Result<Self, EncoderError> {
        let encoder = Self::load(path, width, height, threads)?;
        if choice == BackendChoice::Cpu {
            encoder.set_status(BackendStatus::cpu("backend = cpu"));
            return Ok(encoder);
        }
        #[cfg(feature = "opencl")]
        {
            let opened = Gpu::open_first(choice == BackendChoice::Opencl, device.timeout)
                .and_then(|gpu| encoder.attach_device(gpu, device.half_storage));
            match opened {
                Ok(()) => {
                    // Test hook (documented in README "Backends"): make the
                    // device fail after N uses, to exercise the fallback.
                    let hook = std::env::var(FAIL_HOOK_ENV).ok();
                    if let (Some(n), Some(gpu)) =
                        (hook.and_then(|v| v.parse().ok()), encoder.device())
                    {
                        log::warn!("{FAIL_HOOK_ENV}: the OpenCL device will fail after {n} uses");
                        gpu.inject_failure_after(n);
                    }
                }
                Err(e) if choice == BackendChoice::Opencl => {
                    return Err(EncoderError::Backend(e.to_string()))
                }
                Err(e) => encoder.set_status(BackendStatus::cpu(format!("auto: {e}"))),
            }
        }
        #[cfg(not(feature = "opencl"))]
        {
            let _ = device;
            let why = "this vosd was built without the `opencl` feature";
            if choice == BackendChoice::Opencl {
                return Err(EncoderError::Backend(why.into()));
            }
            encoder.set_status(BackendStatus::cpu(format!("auto: {why}")));
        }
        log::info!("encoder backend: {}", encoder.backend_status().describe());
        Ok(encoder)
    }

    /// Prepares this encoder on `gpu` (with `half_storage`, activations
    /// stored as fp16), runs the self-test against tract and, if it passes,
    /// uses the device from now on.
    #[cfg(feature = "opencl")]
    pub fn attach_device(
        &self,
        gpu: std::sync::Arc<Gpu>,
        half_storage: bool,
    ) -> Result<(), OpenclError> {
        let bytes = std::fs::read(&self.path).map_err(|e| OpenclError::Setup(e.to_string()))?;
        let mut graph = crate::backend::opencl::graph::lower(&bytes, self.width, self.height)
            .map_err(OpenclError::Unsupported)?;
        if half_storage {
            graph = crate::backend::opencl::graph::to_half_storage(graph)
                .map_err(OpenclError::Unsupported)?;
        }
        let device = OpenclEncoder::from_graph(gpu.clone(), graph)?;
        let int8 = device
            .graph()
            .ops
            .iter()
            .any(|o| matches!(o, crate::backend::opencl::graph::Op::ConvQ8 { .. }));
        let mut state = DeviceEncoder {
            encoder: device,
            input: vec![0.0; 3 * self.width * self.height],
        };
        // Self-test: a fixed textured image through both, within tolerance.
        let image = self_test_image(self.width, self.height);
        let mut want = self.new_features();
        self.encode_tract(&image, &mut want)
            .map_err(|e| OpenclError::Setup(format!("self-test reference: {e}")))?;
        let mut got = self.new_features();
        normalise(&image, &mut state.input);
        state.encoder.run(
            &state.input,
            &mut [
                &mut got.s4.data[..],
                &mut got.s8.data[..],
                &mut got.s16.data[..],
            ],
        )?;
        let (tol_max, tol_mean) = if int8 {
            SELF_TEST_TOLERANCE_INT8
        } else if half_storage {
            SELF_TEST_TOLERANCE_FP16
        } else {
            SELF_TEST_TOLERANCE_FP32
        };
        let mut worst = 0f32;
        for (name, g, w) in [
            ("feat4", &got.s4, &want.s4),
            ("feat8", &got.s8, &want.s8),
            ("feat16", &got.s16, &want.s16),
        ] {
            let e = OutputError::between(&g.data, &w.data);
            worst = worst.max(e.max_abs / e.ref_max.max(1e-6));
            if e.max_abs > tol_max * e.ref_max || e.mean_abs > tol_mean * e.ref_mean {
                return Err(OpenclError::Unsupported(format!(
                    "self-test failed on {}: {name} differs from tract by max {:.3e} / mean {:.3e} (scale {:.3e} / {:.3e})",
                    gpu.summary.name, e.max_abs, e.mean_abs, e.ref_max, e.ref_mean
                )));
            }
        }
        *self.device.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        self.set_status(BackendStatus {
            active: ActiveBackend::Opencl,
            device: Some(gpu.summary.name.clone()),
            reason: format!(
                "{} kernels, self-test passed (max error {:.1e} of scale)",
                if int8 {
                    "int8"
                } else if half_storage {
                    "fp16-storage"
                } else {
                    "fp32"
                },
                worst
            ),
            fallbacks: 0,
        });
        Ok(())
    }

    /// The OpenCL device in use, if any (the readout shares it).
    #[cfg(feature = "opencl")]
    pub fn device(&self) -> Option<std::sync::Arc<Gpu>> {
        let guard = self.device.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|d| d.encoder.gpu().clone())
    }

    /// Switches to tract after a device failure, logging why; later frames
    /// run on the CPU. Safe to call more than once.
    pub fn fall_back(&self, why: &str) {
        #[cfg(feature = "opencl")]
        {
            let was = self.device.lock().unwrap_or_else(|e| e.into_inner()).take();
            if was.is_none() && !self.on_device() {
                return;
            }
        }
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        log::warn!("OpenCL backend failed ({why}); switching to tract on the CPU");
        status.active = crate::backend::ActiveBackend::Cpu;
        status.reason = format!("fell back to tract: {why}");
        status.fallbacks += 1;
    }

    /// A live handle on the backend status (it changes on a fallback).
    pub fn backend_handle(&self) -> BackendHandle {
        self.status.clone()
    }

    /// Whether the OpenCL device runs the work now (cheap: no copy of the
    /// status, for the per-frame path).
    pub fn on_device(&self) -> bool {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).active
            == crate::backend::ActiveBackend::Opencl
    }

    /// The backend in use and why.
    pub fn backend_status(&self) -> BackendStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, status: BackendStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Processing width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Processing height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The grids of the stride 4, 8 and 16 outputs.
    pub fn grids(&self) -> &[Grid; 3] {
        &self.grids
    }

    /// Feature buffers of the right sizes, to be filled by [`Encoder::encode`].
    pub fn new_features(&self) -> Features {
        Features {
            s4: FeatureMap::zeros(CHANNELS[0], &self.grids[0]),
            s8: FeatureMap::zeros(CHANNELS[1], &self.grids[1]),
            s16: FeatureMap::zeros(CHANNELS[2], &self.grids[2]),
        }
    }

    /// Encodes a frame that already has the processing size, on the
    /// device when one is in use (falling back to tract if it fails).
    pub fn encode(&self, image: &RgbFrame, out: &mut Features) -> Result<(), EncoderError> {
        self.check_size(image)?;
        #[cfg(feature = "opencl")]
        {
            let mut guard = self.device.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = guard.as_mut() {
                normalise(image, &mut state.input);
                let ran = state.encoder.run(
                    &state.input,
                    &mut [
                        &mut out.s4.data[..],
                        &mut out.s8.data[..],
                        &mut out.s16.data[..],
                    ],
                );
                match ran {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        drop(guard);
                        self.fall_back(&e.to_string());
                    }
                }
            }
        }
        self.encode_tract(image, out)
    }

    fn check_size(&self, image: &RgbFrame) -> Result<(), EncoderError> {
        if image.width != self.width || image.height != self.height {
            return Err(EncoderError::InputSize {
                got_w: image.width,
                got_h: image.height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        Ok(())
    }

    /// Encodes with tract, whatever the backend.
    pub fn encode_tract(&self, image: &RgbFrame, out: &mut Features) -> Result<(), EncoderError> {
        self.check_size(image)?;
        let run = |e: TractError| EncoderError::Run(format!("{e:#}"));
        let mut input = Tensor::zero::<f32>(&[1, 3, self.height, self.width]).map_err(run)?;
        {
            let mut view = input.try_as_plain_ram_mut().map_err(run)?;
            normalise(image, view.as_slice_mut::<f32>().map_err(run)?);
        }
        let outputs =
            multithread_tract_scope(self.executor.clone(), || self.plan.run(tvec!(input.into())))
                .map_err(run)?;
        for (value, map) in outputs.iter().zip([&mut out.s4, &mut out.s8, &mut out.s16]) {
            let view = value.try_as_plain_ram().map_err(run)?;
            let src = view.as_slice::<f32>().map_err(run)?;
            if src.len() != map.data.len() {
                return Err(EncoderError::Run(format!(
                    "output has {} values, expected {}",
                    src.len(),
                    map.data.len()
                )));
            }
            map.data.copy_from_slice(src);
        }
        Ok(())
    }
}

/// Writes `image` as the encoder's input: channels-first, scaled to [0, 1]
/// and normalised with [`MEAN`] and [`STD`].
fn normalise(image: &RgbFrame, dst: &mut [f32]) {
    let plane = image.width * image.height;
    for (i, px) in image.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
}

/// The self-test's fixed input: smooth colour gradients with a few sharp
/// edges, so that every layer sees structure (deterministic, no file).
pub fn self_test_image(width: usize, height: usize) -> RgbFrame {
    let mut img = RgbFrame::new(width, height);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
            let stripe = if (x / 9 + y / 13) % 3 == 0 { 60.0 } else { 0.0 };
            let ring = if ((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt() < 0.25 {
                90.0
            } else {
                0.0
            };
            let px = &mut img.data[(y * width + x) * 3..(y * width + x + 1) * 3];
            px[0] = (fx * 200.0 + stripe) as u8;
            px[1] = (fy * 150.0 + ring) as u8;
            px[2] = ((fx * fy * 12.0).sin() * 100.0 + 120.0) as u8;
        }
    }
    img
}
