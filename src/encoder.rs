//! The image encoder: EfficientNet-Lite0 up to stride 16, run by tract on the CPU.
//!
//! The ONNX file comes from `models/export_encoder.py`; its model card is
//! `models/README.md`. Input: one RGB image, normalised with the ImageNet
//! mean/std, NCHW. Outputs: feature maps at strides 4, 8 and 16.

use std::path::{Path, PathBuf};

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

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

/// A loaded, optimised encoder for one processing size.
pub struct Encoder {
    plan: Arc<TypedRunnableModel>,
    executor: Executor,
    width: usize,
    height: usize,
    grids: [Grid; 3],
    path: PathBuf,
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
        })
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

    /// Encodes a frame that already has the processing size.
    pub fn encode(&self, image: &RgbFrame, out: &mut Features) -> Result<(), EncoderError> {
        if image.width != self.width || image.height != self.height {
            return Err(EncoderError::InputSize {
                got_w: image.width,
                got_h: image.height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        let run = |e: TractError| EncoderError::Run(format!("{e:#}"));
        let plane = self.width * self.height;
        let mut input = Tensor::zero::<f32>(&[1, 3, self.height, self.width]).map_err(run)?;
        {
            let mut view = input.try_as_plain_ram_mut().map_err(run)?;
            let dst = view.as_slice_mut::<f32>().map_err(run)?;
            for (i, px) in image.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
                }
            }
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
