//! A small network of fixed shapes ([`NetSpec`]) as an ONNX Runtime
//! session: the memory network's heads beside the encoder, on the same
//! provider order, with every tensor allocated at start.

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use super::providers::Provider;
use super::{OrtError, Runtime};
use crate::backend::net::{check_buffers, NetBackend, NetSpec};
use crate::backend::BackendError;

/// A network run by ONNX Runtime.
pub struct OrtNet {
    session: Session,
    /// The input tensors, written in place every run.
    inputs: Vec<Tensor<f32>>,
    /// Run options holding the preallocated output tensor.
    run_options: RunOptions<ort::session::HasSelectedOutputs>,
    spec: NetSpec,
}

impl std::fmt::Debug for OrtNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrtNet({})", self.spec.role)
    }
}

fn session_err(e: impl std::fmt::Display) -> OrtError {
    OrtError::Session(e.to_string())
}

fn shape_tensor(shape: &[usize]) -> Result<Tensor<f32>, OrtError> {
    let len = shape.iter().product();
    Tensor::from_array((shape.to_vec(), vec![0f32; len])).map_err(session_err)
}

impl OrtNet {
    /// Builds the session for `model` (ONNX bytes) on `provider` with
    /// `threads` intra-op threads, checks its input and output names
    /// against `spec`, and allocates the tensors.
    pub fn new(
        runtime: &Runtime,
        model: &[u8],
        spec: &NetSpec,
        provider: Provider,
        threads: usize,
    ) -> Result<Self, OrtError> {
        let mut builder = Session::builder(&runtime.environment)
            .map_err(session_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(session_err)?
            .with_intra_threads(threads.max(1))
            .map_err(session_err)?
            .with_intra_op_spinning(false)
            .map_err(session_err)?;
        builder = match provider {
            Provider::Cpu => builder,
            Provider::Cuda => builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(session_err)?,
            Provider::TensorRt => builder
                .with_execution_providers([ort::ep::TensorRT::default().build().error_on_failure()])
                .map_err(session_err)?,
        };
        if !(1..=MAX_INPUTS).contains(&spec.inputs.len()) {
            // `run` passes the inputs as a fixed-size array (no allocation
            // per run); say so at load rather than fail at the first run.
            return Err(OrtError::WrongModel(format!(
                "{}: {} inputs; the ONNX Runtime backend runs networks of 1 to {MAX_INPUTS} inputs",
                spec.role,
                spec.inputs.len()
            )));
        }
        let session = builder.commit_from_memory(model).map_err(session_err)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let want: Vec<&str> = spec.inputs.iter().map(|i| i.name).collect();
        if names != want {
            return Err(OrtError::WrongModel(format!(
                "{}: inputs are [{}], expected [{}]",
                spec.role,
                names.join(", "),
                want.join(", ")
            )));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if outputs != [spec.output.name] {
            return Err(OrtError::WrongModel(format!(
                "{}: outputs are [{}], expected [{}]",
                spec.role,
                outputs.join(", "),
                spec.output.name
            )));
        }
        let inputs = spec
            .inputs
            .iter()
            .map(|i| shape_tensor(&i.shape))
            .collect::<Result<Vec<_>, _>>()?;
        let selector = OutputSelector::default()
            .preallocate(spec.output.name, shape_tensor(&spec.output.shape)?);
        let run_options = RunOptions::new()
            .map_err(session_err)?
            .with_outputs(selector);
        Ok(Self {
            session,
            inputs,
            run_options,
            spec: spec.clone(),
        })
    }
}

/// The most inputs a network may have here (the arms of `run`'s match).
const MAX_INPUTS: usize = 4;

impl NetBackend for OrtNet {
    fn run(&mut self, inputs: &[&[f32]], output: &mut [f32]) -> Result<(), BackendError> {
        let run = |e: ort::Error| BackendError::from(OrtError::Run(e.to_string()));
        check_buffers(&self.spec, inputs, output).map_err(OrtError::Run)?;
        for (tensor, src) in self.inputs.iter_mut().zip(inputs) {
            let (_, dst) = tensor.extract_tensor_mut();
            dst.copy_from_slice(src);
        }
        let values = match self.inputs.as_slice() {
            [a] => self
                .session
                .run_with_options(ort::inputs![a], &self.run_options),
            [a, b] => self
                .session
                .run_with_options(ort::inputs![a, b], &self.run_options),
            [a, b, c] => self
                .session
                .run_with_options(ort::inputs![a, b, c], &self.run_options),
            [a, b, c, d] => self
                .session
                .run_with_options(ort::inputs![a, b, c, d], &self.run_options),
            other => {
                return Err(OrtError::Run(format!(
                    "{}: {} inputs are not supported",
                    self.spec.role,
                    other.len()
                ))
                .into())
            }
        }
        .map_err(run)?;
        let value = values.get(self.spec.output.name).ok_or_else(|| {
            BackendError::from(OrtError::Run(format!(
                "no output {}",
                self.spec.output.name
            )))
        })?;
        let (_, src) = value.try_extract_tensor::<f32>().map_err(run)?;
        if src.len() != output.len() {
            return Err(OrtError::Run(format!(
                "{}: output has {} values, expected {}",
                self.spec.role,
                src.len(),
                output.len()
            ))
            .into());
        }
        output.copy_from_slice(src);
        Ok(())
    }
}

/// The first provider of `providers` on which `model` starts.
pub fn open(
    runtime: &Runtime,
    providers: &[Provider],
    model: &[u8],
    spec: &NetSpec,
    threads: usize,
) -> Result<OrtNet, OrtError> {
    let mut failures = Vec::new();
    for &provider in providers {
        match OrtNet::new(runtime, model, spec, provider, threads) {
            Ok(net) => return Ok(net),
            Err(e @ OrtError::WrongModel(_)) => return Err(e),
            Err(e) => failures.push(format!("{}: {e}", provider.label())),
        }
    }
    Err(OrtError::Session(failures.join("; ")))
}
