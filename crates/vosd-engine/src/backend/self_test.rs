//! What a device implementation is checked on before first use: the
//! inputs of the encoder's and the readout's self-tests, their tolerances,
//! and the readout's fallback as a tracker builds it.
//!
//! The procedure itself (run both, compare, report) is
//! [`Fallback::attach`]'s.

use super::cpu::CpuReadout;
use super::{
    Arithmetic, BackendError, BackendHandle, Device, EncoderBackend, EncoderSpec, Fallback,
    ReadoutBackend, SelfTest, Tolerance,
};
use crate::memory::MemoryStore;
use crate::readout::{random_unit_keys, GridSize, ReadoutParams};

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

/// The encoder's self-test for a device encoder running `arithmetic`.
pub fn encoder_self_test(arithmetic: Arithmetic) -> SelfTest<'static> {
    let (max, mean) = match arithmetic {
        Arithmetic::Fp32 => SELF_TEST_TOLERANCE_FP32,
        Arithmetic::Fp16Storage => SELF_TEST_TOLERANCE_FP16,
        Arithmetic::Int8 => SELF_TEST_TOLERANCE_INT8,
    };
    SelfTest {
        name: "self-test",
        reference: "tract",
        outputs: &["feat4", "feat8", "feat16"],
        tolerance: Tolerance::Relative { max, mean },
        kernels: arithmetic.label(),
    }
}

/// The encoder's self-test input: one fixed input tensor.
#[derive(Clone, Debug)]
pub struct EncoderProbe {
    input: Vec<f32>,
    lens: [usize; 3],
}

impl EncoderProbe {
    /// `input` (the normalised self-test image) for an encoder of `spec`.
    pub fn new(input: Vec<f32>, spec: &EncoderSpec) -> Self {
        Self {
            input,
            lens: spec.outputs.map(|o| o.len()),
        }
    }

    /// The three outputs of `backend` on the input.
    pub fn run(&self, backend: &mut dyn EncoderBackend) -> Result<Vec<Vec<f32>>, BackendError> {
        let mut outs = self.lens.map(|n| vec![0.0; n]);
        {
            let [a, b, c] = &mut outs;
            backend.encode(&self.input, [&mut a[..], &mut b[..], &mut c[..]])?;
        }
        Ok(outs.into())
    }
}

/// The readout's self-test: within 1e-3 of the CPU readout, values and
/// confidences alike.
pub const READOUT_SELF_TEST: SelfTest<'static> = SelfTest {
    name: "readout self-test",
    reference: "the CPU readout",
    outputs: &["values", "confidence"],
    tolerance: Tolerance::Absolute(1e-3),
    kernels: "fp32",
};

/// The readout's self-test input: a memory of a tracker's geometry holding
/// a first and a working frame of deterministic pseudo-random keys and
/// values, a query, and search windows of radius 2 (quick at any size).
#[derive(Debug)]
pub struct ReadoutProbe {
    memory: MemoryStore,
    query: Vec<f32>,
    params: ReadoutParams,
}

impl ReadoutProbe {
    /// The probe for a memory like `like` on `grid`, with `params`' top-k
    /// and temperature.
    pub fn new(grid: GridSize, like: &MemoryStore, params: &ReadoutParams) -> Self {
        let cells = grid.width * grid.height;
        let (dim, ch) = (like.dim(), like.channels());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut keys = |n: usize| random_unit_keys(&mut state, n, dim);
        let working = like.slot_count().saturating_sub(1).min(1);
        let mut memory = MemoryStore::new(cells, dim, ch, working);
        let values: Vec<f32> = (0..cells * ch)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0)
            .collect();
        memory.set_first(0, &keys(cells), &values);
        memory.push_working(1, &keys(cells), &values);
        Self {
            memory,
            query: keys(cells),
            params: ReadoutParams {
                window_radius: 2,
                first_frame_radius: 2,
                ..*params
            },
        }
    }

    /// `backend`'s values and confidences on the probe.
    pub fn run(&self, backend: &mut dyn ReadoutBackend) -> Result<Vec<Vec<f32>>, BackendError> {
        let cells = self.memory.cells();
        let mut out = vec![0.0; cells * self.memory.channels()];
        let mut confidence = vec![0.0; cells];
        backend.readout(
            &self.query,
            &self.memory,
            &self.params,
            &mut out,
            &mut confidence,
        )?;
        Ok(vec![out, confidence])
    }
}

/// The readout of a tracker with `memory` on `grid`: the CPU readout (with
/// `threads` rows in flight) and, when `device` is given and has a readout
/// that passes the self-test, the device's. A device readout that cannot
/// start or fails its self-test switches every user of `status` to the CPU,
/// as a failure while running does.
pub fn readout_fallback(
    grid: GridSize,
    memory: &MemoryStore,
    params: &ReadoutParams,
    threads: usize,
    device: Option<Device>,
    status: BackendHandle,
) -> Fallback<dyn ReadoutBackend> {
    let cpu = Box::new(CpuReadout::new(grid, threads));
    let mut fallback: Fallback<dyn ReadoutBackend> = Fallback::new(cpu, status, Some("readout"));
    if let Some(device) = device {
        let attached =
            Device::clone(&device)
                .readout(grid, memory)
                .and_then(|backend| match backend {
                    Some(backend) => {
                        let probe = ReadoutProbe::new(grid, memory, params);
                        fallback.attach(device, backend, &READOUT_SELF_TEST, |r| probe.run(r))
                    }
                    None => Ok(()),
                });
        if let Err(e) = attached {
            fallback.fail(&e);
        }
    }
    fallback
}
