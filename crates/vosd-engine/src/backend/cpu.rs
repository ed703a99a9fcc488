//! The CPU implementations, always built and the fallback of every device:
//! tract for the encoder, vosd's own readout ([`crate::readout`]).

use std::sync::Arc;

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use super::{Arithmetic, BackendError, EncoderBackend, EncoderSpec, ReadoutBackend};
use crate::memory::MemoryStore;
use crate::readout::{readout, GridSize, ReadoutParams, ReadoutScratch};

/// Why tract cannot run a model as the encoder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// tract could not load or prepare the model (tract's message).
    #[error("not a loadable ONNX encoder: {0}")]
    Load(String),
    /// The model loads but does not have the spec's input and outputs.
    #[error("not the vosd encoder: {0}")]
    WrongModel(String),
}

/// The encoder run by tract, optimised for one input size.
pub struct TractEncoder {
    plan: Arc<TypedRunnableModel>,
    executor: Executor,
    spec: EncoderSpec,
    /// The input tensor, allocated once: tract takes a shared reference per
    /// run and drops it when the run ends, so the next frame is written in
    /// place.
    input: Arc<Tensor>,
}

impl std::fmt::Debug for TractEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TractEncoder({}x{})", self.spec.width, self.spec.height)
    }
}

impl TractEncoder {
    /// Loads the ONNX `model` bytes, fixes the input to the spec's size,
    /// optimises, and checks that the outputs are the spec's (f32, shapes
    /// `[1, channels, height, width]`). `threads` > 1 runs tract's matrix
    /// products on that many threads.
    pub fn load(model: &[u8], spec: &EncoderSpec, threads: usize) -> Result<Self, ModelError> {
        let load = |e: TractError| ModelError::Load(format!("{e:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .map_err(load)?;
        if model.input_outlets().map_err(load)?.len() != 1 {
            return Err(ModelError::WrongModel(
                "expected exactly one input (the image)".into(),
            ));
        }
        if model.output_outlets().map_err(load)?.len() != spec.outputs.len() {
            let names: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
            return Err(ModelError::WrongModel(format!(
                "expected three outputs ({})",
                names.join(", ")
            )));
        }
        model
            .set_input_fact(0, f32::fact([1, 3, spec.height, spec.width]).into())
            .map_err(load)?;
        let typed = model
            .into_optimized()
            .map_err(|e| ModelError::WrongModel(format!("{e:#}")))?;
        for (i, outlet) in typed.output_outlets().map_err(load)?.iter().enumerate() {
            let fact = typed.outlet_fact(*outlet).map_err(load)?;
            let o = &spec.outputs[i];
            let want = [1, o.channels, o.height, o.width];
            let got: Vec<String> = fact.shape.iter().map(|d| d.to_string()).collect();
            let want_s: Vec<String> = want.iter().map(|d| d.to_string()).collect();
            if got != want_s || fact.datum_type != f32::datum_type() {
                return Err(ModelError::WrongModel(format!(
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
        let input = Arc::new(Tensor::zero::<f32>(&[1, 3, spec.height, spec.width]).map_err(load)?);
        Ok(Self {
            plan,
            executor,
            spec: *spec,
            input,
        })
    }
}

impl EncoderBackend for TractEncoder {
    fn arithmetic(&self) -> Arithmetic {
        Arithmetic::Fp32
    }

    fn input_mut(&mut self) -> Result<&mut [f32], BackendError> {
        let run = |e: TractError| BackendError::Cpu(format!("{e:#}"));
        // Exclusive again once the previous run's values are gone; were it
        // not (tract kept a reference), a new tensor is made.
        if Arc::get_mut(&mut self.input).is_none() {
            let (w, h) = (self.spec.width, self.spec.height);
            self.input = Arc::new(Tensor::zero::<f32>(&[1, 3, h, w]).map_err(run)?);
        }
        let tensor = Arc::get_mut(&mut self.input).ok_or_else(|| {
            BackendError::Cpu("the encoder's input tensor is still in use".into())
        })?;
        tensor
            .to_plain_array_view_mut::<f32>()
            .map_err(run)?
            .into_slice()
            .ok_or_else(|| BackendError::Cpu("the encoder's input tensor is not contiguous".into()))
    }

    fn run_input(&mut self, outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let run = |e: TractError| BackendError::Cpu(format!("{e:#}"));
        let values = multithread_tract_scope(self.executor.clone(), || {
            self.plan.run(tvec!(TValue::from_const(self.input.clone())))
        })
        .map_err(run)?;
        for (value, out) in values.iter().zip(outputs) {
            let view = value.try_as_plain_ram().map_err(run)?;
            let src = view.as_slice::<f32>().map_err(run)?;
            if src.len() != out.len() {
                return Err(BackendError::Cpu(format!(
                    "output has {} values, expected {}",
                    src.len(),
                    out.len()
                )));
            }
            out.copy_from_slice(src);
        }
        Ok(())
    }

    fn encode(&mut self, input: &[f32], outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let dst = self.input_mut()?;
        if input.len() != dst.len() {
            return Err(BackendError::Cpu(format!(
                "input has {} values, expected {}",
                input.len(),
                dst.len()
            )));
        }
        dst.copy_from_slice(input);
        self.run_input(outputs)
    }
}

/// vosd's readout on the CPU ([`crate::readout::readout`]) with its
/// working buffers, for one grid.
#[derive(Debug)]
pub struct CpuReadout {
    grid: GridSize,
    scratch: ReadoutScratch,
}

impl CpuReadout {
    /// The readout of `grid` with `rows_in_flight` rows at once.
    pub fn new(grid: GridSize, rows_in_flight: usize) -> Self {
        Self {
            grid,
            scratch: ReadoutScratch::new(grid, rows_in_flight),
        }
    }
}

impl ReadoutBackend for CpuReadout {
    fn readout(
        &mut self,
        query: &[f32],
        memory: &MemoryStore,
        params: &ReadoutParams,
        out: &mut [f32],
        confidence: &mut [f32],
    ) -> Result<(), BackendError> {
        let cells = self.grid.width * self.grid.height;
        if memory.cells() != cells
            || query.len() != cells * memory.dim()
            || out.len() != cells * memory.channels()
            || confidence.len() != cells
        {
            return Err(BackendError::Cpu(
                "readout buffers do not fit the memory".into(),
            ));
        }
        readout(
            query,
            self.grid,
            memory,
            params,
            &mut self.scratch,
            out,
            confidence,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_readout_refuses_buffers_that_do_not_fit() {
        let grid = GridSize {
            width: 3,
            height: 2,
        };
        let memory = MemoryStore::new(6, 4, 2, 1);
        let mut r = CpuReadout::new(grid, 1);
        let p = ReadoutParams {
            top_k: 2,
            temperature: 0.1,
            window_radius: 0,
            first_frame_radius: 0,
        };
        let (mut out, mut conf) = (vec![0.0; 12], vec![0.0; 6]);
        r.readout(&[0.5; 24], &memory, &p, &mut out, &mut conf)
            .unwrap();
        let e = r
            .readout(&[0.5; 23], &memory, &p, &mut out, &mut conf)
            .unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_model() {
        let spec = EncoderSpec {
            width: 32,
            height: 32,
            outputs: [super::super::OutputSpec {
                name: "x",
                channels: 1,
                height: 1,
                width: 1,
            }; 3],
        };
        let e = TractEncoder::load(b"not onnx", &spec, 1).unwrap_err();
        assert!(matches!(e, ModelError::Load(_)), "{e}");
    }
}
