//! The memory network's three trained heads (`models/memnet/`): the key
//! projection, the value encoder and the decoder, each a [`NetBackend`]
//! behind a [`Fallback`]: on the encoder's device while it runs there
//! (ONNX Runtime; checked against tract first), else tract.
//!
//! Shapes are fixed at load for one processing size and one object per
//! run (the value encoder and the decoder run once per object).

use std::path::{Path, PathBuf};

use crate::backend::net::{NetBackend, NetSpec, TensorSpec, TractNet};
use crate::backend::{BackendError, BackendHandle, Device, Fallback, SelfTest, Tolerance};
use crate::encoder::CHANNELS;
use crate::prng::unit;

/// Channels of the learned keys.
pub const KEY_CHANNELS: usize = 64;
/// Channels of the learned values (and of the readout).
pub const VALUE_CHANNELS: usize = 64;

/// Why the heads cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The file cannot be read.
    #[error("{path}: cannot read the {role} network: {source} ({})", hint(role))]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Which head.
        role: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// tract cannot load it, or it is not the head vosd expects.
    #[error("{path}: not vosd's {role} network: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Which head.
        role: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The setting that names a head's file, and the way to do without it.
fn hint(role: &str) -> &'static str {
    match role {
        "objectness" => "discover.objectness_model, or discover.prompt = \"box\"",
        _ => "engine.memory_network.model_dir, or method = \"label-propagation\"",
    }
}

/// The grid sizes a processing size gives: `(width, height)` at strides
/// 4, 8 and 16 (the encoder's own grids, `ceil(size / stride)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadGrids {
    /// Stride 4.
    pub s4: (usize, usize),
    /// Stride 8.
    pub s8: (usize, usize),
    /// Stride 16.
    pub s16: (usize, usize),
}

impl HeadGrids {
    /// The grids of a `width`×`height` processing size.
    pub fn new(width: usize, height: usize) -> Self {
        let g = |s: usize| (width.div_ceil(s), height.div_ceil(s));
        Self {
            s4: g(4),
            s8: g(8),
            s16: g(16),
        }
    }

    /// Cells of the stride-4 grid.
    pub fn cells4(&self) -> usize {
        self.s4.0 * self.s4.1
    }

    /// Cells of the stride-16 grid.
    pub fn cells16(&self) -> usize {
        self.s16.0 * self.s16.1
    }
}

fn tensor(name: &'static str, c: usize, (w, h): (usize, usize)) -> TensorSpec {
    TensorSpec {
        name,
        shape: vec![1, c, h, w],
    }
}

/// `key.onnx`: `feat16` → `key`.
pub fn key_spec(g: &HeadGrids) -> NetSpec {
    NetSpec {
        role: "key",
        inputs: vec![tensor("feat16", CHANNELS[2], g.s16)],
        output: tensor("key", KEY_CHANNELS, g.s16),
    }
}

/// `value.onnx`: `feat16`, the object's `mask` and the `others`' at
/// stride 4 → `value`.
pub fn value_spec(g: &HeadGrids) -> NetSpec {
    NetSpec {
        role: "value",
        inputs: vec![
            tensor("feat16", CHANNELS[2], g.s16),
            tensor("mask", 1, g.s4),
            tensor("others", 1, g.s4),
        ],
        output: tensor("value", VALUE_CHANNELS, g.s16),
    }
}

/// `decoder.onnx`: the `readout` and the three feature maps → `logits`
/// at stride 4.
pub fn decoder_spec(g: &HeadGrids) -> NetSpec {
    NetSpec {
        role: "decoder",
        inputs: vec![
            tensor("readout", VALUE_CHANNELS, g.s16),
            tensor("feat16", CHANNELS[2], g.s16),
            tensor("feat8", CHANNELS[1], g.s8),
            tensor("feat4", CHANNELS[0], g.s4),
        ],
        output: tensor("logits", 1, g.s4),
    }
}

/// The heads' self-test on a device: ONNX Runtime's fp32 against tract's
/// (they differ by summation order only).
const HEAD_SELF_TEST: SelfTest<'static> = SelfTest {
    name: "memory network self-test",
    reference: "tract",
    outputs: &["output"],
    tolerance: Tolerance::Relative {
        max: crate::encoder::SELF_TEST_TOLERANCE_FP32.0,
        mean: crate::encoder::SELF_TEST_TOLERANCE_FP32.1,
    },
    kernels: "fp32",
};

/// A fixed pseudo-random input for each of `spec`'s inputs (features in
/// [0, 2), masks in [0, 1)).
fn probe_inputs(spec: &NetSpec) -> Vec<Vec<f32>> {
    let mut state = 0x05ee_d0f4_ead5_u64;
    spec.inputs
        .iter()
        .map(|t| {
            let scale = if t.shape[1] == 1 { 1.0 } else { 2.0 };
            (0..t.len()).map(|_| unit(&mut state) * scale).collect()
        })
        .collect()
}

/// One head: tract, and the device's implementation while it runs.
pub struct Head {
    spec: NetSpec,
    fallback: Fallback<dyn NetBackend>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({}, {:?})", self.spec.role, self.fallback)
    }
}

impl Head {
    /// Loads `path` for `spec` on tract and, when `device` is given and
    /// runs networks, on the device too (kept if its self-test passes; a
    /// device that cannot start it switches every user of `status` to
    /// the CPU, as the encoder's and the readout's do).
    pub fn load(
        path: &Path,
        spec: NetSpec,
        device: Option<Device>,
        status: BackendHandle,
    ) -> Result<Self, HeadError> {
        let role = spec.role;
        let bytes = std::fs::read(path).map_err(|source| HeadError::Unreadable {
            path: path.into(),
            role,
            source,
        })?;
        let cpu = TractNet::load(&bytes, &spec).map_err(|reason| HeadError::Load {
            path: path.into(),
            role,
            reason,
        })?;
        let mut fallback: Fallback<dyn NetBackend> =
            Fallback::new(Box::new(cpu), status, Some(role));
        if let Some(device) = device {
            let attached = Device::clone(&device)
                .net(&bytes, &spec)
                .and_then(|backend| match backend {
                    Some(backend) => {
                        let inputs = probe_inputs(&spec);
                        let len = spec.output.len();
                        fallback.attach(device, backend, &HEAD_SELF_TEST, |net| {
                            let refs: Vec<&[f32]> = inputs.iter().map(|v| &v[..]).collect();
                            let mut out = vec![0.0; len];
                            net.run(&refs, &mut out)?;
                            Ok(vec![out])
                        })
                    }
                    None => Ok(()),
                });
            if let Err(e) = attached {
                fallback.fail(&e);
            }
        }
        Ok(Self { spec, fallback })
    }

    /// Runs the head on `inputs` into `output` (on the device while it
    /// works; a device failure redoes the run on tract and switches).
    pub fn run(&mut self, inputs: &[&[f32]], output: &mut [f32]) -> Result<(), BackendError> {
        self.fallback.run(|net| net.run(inputs, output))
    }

    /// The head's shapes.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// Whether the device runs it now.
    pub fn on_device(&self) -> bool {
        self.fallback.on_device()
    }
}

/// The three heads of one processing size.
#[derive(Debug)]
pub struct Heads {
    /// `key.onnx`.
    pub key: Head,
    /// `value.onnx`.
    pub value: Head,
    /// `decoder.onnx`.
    pub decoder: Head,
}

impl Heads {
    /// Loads the three files of `cfg` for the grids `g`, beside an encoder
    /// on `device` (if any) reporting to `status`.
    pub fn load(
        cfg: &crate::config::MemoryNetworkConfig,
        g: &HeadGrids,
        device: Option<Device>,
        status: BackendHandle,
    ) -> Result<Self, HeadError> {
        let load = |name: &str, spec: NetSpec| {
            Head::load(&cfg.file(name), spec, device.clone(), status.clone())
        };
        Ok(Self {
            key: load("key", key_spec(g))?,
            value: load("value", value_spec(g))?,
            decoder: load("decoder", decoder_spec(g))?,
        })
    }
}
