//! The image encoder: EfficientNet-Lite0 up to stride 16, run by tract on the
//! CPU or on a device ([`crate::backend`]), with tract as fallback.
//!
//! The ONNX file comes from `models/export_encoder.py`; its model card is
//! `models/README.md`. Input: one RGB image, normalised with the ImageNet
//! mean/std, NCHW. Outputs: feature maps at strides 4, 8 and 16.
//!
//! [`Encoder`] is the front: it checks the frame, writes the input tensor
//! and hands it to its [`Fallback`], which runs the device backend while
//! it works and tract otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::backend::compare::OutputError;
use crate::backend::cpu::{ModelError, TractEncoder};
use crate::backend::self_test::{encoder_self_test, EncoderProbe};
pub use crate::backend::self_test::{
    SELF_TEST_TOLERANCE_FP16, SELF_TEST_TOLERANCE_FP32, SELF_TEST_TOLERANCE_INT8,
};
pub use crate::backend::FAIL_HOOK_ENV;
use crate::backend::{
    arm_failure_hook, ActiveBackend, BackendChoice, BackendError, BackendHandle, BackendStatus,
    Device, EncoderBackend, EncoderSpec, Fallback, OutputSpec,
};
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
    /// A device backend was asked for (`backend = "opencl"` or
    /// `"onnxruntime"`) and cannot run.
    #[error("{backend} backend unavailable: {reason}")]
    Backend {
        /// The backend asked for ("ONNX Runtime", "OpenCL").
        backend: &'static str,
        /// Why it cannot run.
        reason: String,
    },
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

/// The backends, used under one lock. Each has its own input tensor, into
/// which a frame is normalised just before it runs.
struct Backends {
    fallback: Fallback<dyn EncoderBackend>,
}

/// A loaded, optimised encoder for one processing size.
pub struct Encoder {
    spec: EncoderSpec,
    grids: [Grid; 3],
    path: PathBuf,
    backends: Mutex<Backends>,
    status: BackendHandle,
}

pub use crate::backend::DeviceOptions;

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoder({}, {}x{})",
            self.path.display(),
            self.spec.width,
            self.spec.height
        )
    }
}

/// The names of the encoder's outputs, in the model's order.
const OUTPUT_NAMES: [&str; 3] = ["feat4", "feat8", "feat16"];

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
        let grids = [
            Grid::new(width, height, 2),
            Grid::new(width, height, 3),
            Grid::new(width, height, 4),
        ];
        let output = |i: usize| OutputSpec {
            name: OUTPUT_NAMES[i],
            channels: CHANNELS[i],
            height: grids[i].y.cells,
            width: grids[i].x.cells,
        };
        let spec = EncoderSpec {
            width,
            height,
            outputs: [output(0), output(1), output(2)],
        };
        let tract = TractEncoder::load(&bytes, &spec, threads).map_err(|e| match e {
            ModelError::Load(reason) => EncoderError::Load {
                path: path.into(),
                reason,
            },
            ModelError::WrongModel(reason) => EncoderError::WrongModel {
                path: path.into(),
                reason,
            },
        })?;
        let status = Arc::new(Mutex::new(BackendStatus::cpu("tract on the CPU")));
        let fallback: Fallback<dyn EncoderBackend> =
            Fallback::new(Box::new(tract), status.clone(), None);
        Ok(Self {
            spec,
            grids,
            path: path.into(),
            backends: Mutex::new(Backends { fallback }),
            status,
        })
    }

    /// The encoder `cfg` asks for: its backend, and the file for its
    /// precision on that backend. With `precision = "auto"` ONNX Runtime
    /// runs the int8 file (checked against tract on the same file, which is
    /// then its fallback) and tract and OpenCL the fp32 file, so `auto`
    /// first tries ONNX Runtime on int8, then the rest of its order on
    /// fp32.
    pub fn from_config(cfg: &crate::config::EngineConfig) -> Result<Self, EncoderError> {
        let [width, height] = cfg.size;
        let threads = cfg.thread_count();
        let (model, ort_model) = (cfg.model_path(), cfg.onnxruntime_model_path());
        let order = crate::backend::device_order(cfg.backend);
        let (first, rest) = match order.split_first() {
            Some((first, rest)) if *first == ActiveBackend::Onnxruntime && ort_model != model => {
                (first, rest)
            }
            _ => {
                return Self::load_trying(
                    &model,
                    [width, height],
                    threads,
                    cfg.backend,
                    order,
                    cfg.device_options(),
                )
                .map(Self::log_choice)
            }
        };
        let on_ort = Self::load_trying(
            &ort_model,
            [width, height],
            threads,
            cfg.backend,
            std::slice::from_ref(first),
            cfg.device_options(),
        )?;
        if on_ort.device().is_some() || rest.is_empty() {
            return Ok(on_ort.log_choice());
        }
        let why = on_ort.backend_status().reason;
        log::info!(
            "backend auto: {why}; trying the rest on {}",
            model.display()
        );
        let encoder = Self::load_trying(
            &model,
            [width, height],
            threads,
            cfg.backend,
            rest,
            cfg.device_options(),
        )?;
        if encoder.device().is_none() {
            let reason = encoder.backend_status().reason;
            let rest_why = reason.strip_prefix("auto: ").unwrap_or(&reason);
            let why = why.strip_prefix("auto: ").unwrap_or(&why);
            encoder
                .lock()
                .fallback
                .stay_on_cpu(format!("auto: {why}; {rest_why}"));
        }
        Ok(encoder.log_choice())
    }

    /// Loads `path` for tract (always: it is the fallback) and then, as
    /// `choice` asks, moves the work to the first device backend of
    /// [`device_order`](crate::backend::device_order) that starts and
    /// passes the self-test. `auto` keeps tract when none does, logging
    /// why for each; `onnxruntime` and `opencl` fail instead. `device`
    /// sets the frame timeout, fp16, threads and the ONNX Runtime library.
    pub fn load_with_backend(
        path: &Path,
        width: usize,
        height: usize,
        threads: usize,
        choice: BackendChoice,
        device: DeviceOptions,
    ) -> Result<Self, EncoderError> {
        let order = crate::backend::device_order(choice);
        Self::load_trying(path, [width, height], threads, choice, order, device)
            .map(Self::log_choice)
    }

    /// [`Encoder::load_with_backend`] over the device backends `order`.
    fn load_trying(
        path: &Path,
        [width, height]: [usize; 2],
        threads: usize,
        choice: BackendChoice,
        order: &[ActiveBackend],
        device: DeviceOptions,
    ) -> Result<Self, EncoderError> {
        let encoder = Self::load(path, width, height, threads)?;
        if choice == BackendChoice::Cpu {
            encoder.lock().fallback.stay_on_cpu("backend = cpu");
            return Ok(encoder);
        }
        let mut passed_over = Vec::new();
        for &kind in order {
            let opened = crate::backend::open_device(kind, choice, &device).and_then(|d| {
                encoder
                    .attach_device(d.clone(), device.half_storage)
                    .map(|()| d)
            });
            match opened {
                Ok(d) => {
                    arm_failure_hook(&d);
                    break;
                }
                Err(e) if choice != BackendChoice::Auto => {
                    return Err(EncoderError::Backend {
                        backend: kind.label(),
                        reason: e.to_string(),
                    })
                }
                Err(e) => {
                    log::info!("backend auto: {} is not used: {e}", kind.label());
                    passed_over.push(format!("{}: {e}", kind.label()));
                }
            }
        }
        if encoder.device().is_none() {
            encoder
                .lock()
                .fallback
                .stay_on_cpu(format!("auto: {}", passed_over.join("; ")));
        }
        Ok(encoder)
    }

    /// Logs the backend this encoder ended up on, and its file.
    fn log_choice(self) -> Self {
        log::info!(
            "encoder backend: {} ({})",
            self.backend_status().describe(),
            self.path.display()
        );
        self
    }

    /// The encoder file it runs.
    pub fn model_path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Backends> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prepares this encoder on `device` (with `half_storage`, activations
    /// stored as fp16), runs the self-test against tract and, if it passes,
    /// uses the device from now on.
    pub fn attach_device(&self, device: Device, half_storage: bool) -> Result<(), BackendError> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            BackendError::Unavailable(format!(
                "{}: cannot read the encoder model: {e}",
                self.path.display()
            ))
        })?;
        let backend = Device::clone(&device).encoder(&bytes, &self.spec, half_storage)?;
        let test = encoder_self_test(backend.arithmetic());
        // A fixed textured image through both, within tolerance.
        let mut input = vec![0.0; self.spec.input_len()];
        normalise(
            &self_test_image(self.spec.width, self.spec.height),
            &mut input,
        );
        let probe = EncoderProbe::new(input, &self.spec);
        self.lock()
            .fallback
            .attach(device, backend, &test, |b| probe.run(b))
    }

    /// The device in use, if any (the trackers' readouts share it).
    pub fn device(&self) -> Option<Device> {
        self.lock().fallback.device().cloned()
    }

    /// Switches to tract after a device failure, logging why; later frames
    /// run on the CPU. Safe to call more than once.
    pub fn fall_back(&self, why: &str) {
        self.lock().fallback.fall_back(why);
    }

    /// A live handle on the backend status (it changes on a fallback).
    pub fn backend_handle(&self) -> BackendHandle {
        self.status.clone()
    }

    /// Whether a device runs the work now (cheap: no copy of the status,
    /// for the per-frame path).
    pub fn on_device(&self) -> bool {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).active
            != crate::backend::ActiveBackend::Cpu
    }

    /// The backend in use and why.
    pub fn backend_status(&self) -> BackendStatus {
        crate::backend::current(&self.status)
    }

    /// Processing width.
    pub fn width(&self) -> usize {
        self.spec.width
    }

    /// Processing height.
    pub fn height(&self) -> usize {
        self.spec.height
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
        self.run(image, out, false)
    }

    /// Encodes with tract, whatever the backend.
    pub fn encode_tract(&self, image: &RgbFrame, out: &mut Features) -> Result<(), EncoderError> {
        self.run(image, out, true)
    }

    fn run(&self, image: &RgbFrame, out: &mut Features, cpu: bool) -> Result<(), EncoderError> {
        self.check_size(image)?;
        self.check_features(out)?;
        let mut guard = self.lock();
        let fallback = &mut guard.fallback;
        // The frame is normalised straight into the input tensor of the
        // backend that runs it: a device call that fails is redone on the
        // CPU, whose own input this fills then.
        let mut op = |b: &mut (dyn EncoderBackend + 'static)| {
            let input = b.input_mut()?;
            if input.len() != image.data.len() {
                return Err(BackendError::Unavailable(format!(
                    "the encoder's input tensor has {} values, expected {}",
                    input.len(),
                    image.data.len()
                )));
            }
            normalise(image, input);
            b.run_input([
                &mut out.s4.data[..],
                &mut out.s8.data[..],
                &mut out.s16.data[..],
            ])
        };
        let ran = if cpu {
            op(fallback.cpu())
        } else {
            fallback.run(op)
        };
        ran.map_err(|e| EncoderError::Run(e.to_string()))
    }

    fn check_size(&self, image: &RgbFrame) -> Result<(), EncoderError> {
        if image.width != self.spec.width
            || image.height != self.spec.height
            || image.data.len() != 3 * image.width * image.height
        {
            return Err(EncoderError::InputSize {
                got_w: image.width,
                got_h: image.height,
                want_w: self.spec.width,
                want_h: self.spec.height,
            });
        }
        Ok(())
    }

    fn check_features(&self, out: &Features) -> Result<(), EncoderError> {
        for (map, o) in [&out.s4, &out.s8, &out.s16].iter().zip(&self.spec.outputs) {
            if map.data.len() != o.len() {
                return Err(EncoderError::Run(format!(
                    "output has {} values, expected {}",
                    map.data.len(),
                    o.len()
                )));
            }
        }
        Ok(())
    }
}

/// Writes `image` as the encoder's input: channels-first, scaled to [0, 1]
/// and normalised with [`MEAN`] and [`STD`] (through a table of the 256
/// values per channel: the same numbers as the formula, without its
/// per-pixel division).
fn normalise(image: &RgbFrame, dst: &mut [f32]) {
    let table: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - MEAN[c]) / STD[c]));
    let plane = image.width * image.height;
    let (red, rest) = dst.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    for (((px, r), g), b) in image
        .data
        .chunks_exact(3)
        .zip(red.iter_mut())
        .zip(green.iter_mut())
        .zip(blue.iter_mut())
    {
        *r = table[0][px[0] as usize];
        *g = table[1][px[1] as usize];
        *b = table[2][px[2] as usize];
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

#[cfg(test)]
mod tests;
