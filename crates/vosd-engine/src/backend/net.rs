//! Small networks with fixed shapes, behind the backend seam: the memory
//! network's key projection, value encoder and decoder
//! ([`crate::memnet`]).
//!
//! A [`NetSpec`] names a network's inputs and its one output with their
//! shapes, fixed when it is loaded (one processing size, one object per
//! run). [`NetBackend`] runs it; [`TractNet`] is the CPU implementation
//! (always built, the fallback), and a device gives its own through
//! [`super::Accelerator::net`] (ONNX Runtime does; OpenCL has none, so
//! the CPU runs the heads beside its encoder).

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::BackendError;

/// One input or output of a network: its name in the ONNX file and its
/// shape (NCHW).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name in the model.
    pub name: &'static str,
    /// Shape, fixed.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A network's inputs (in the model's order) and its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// What it is, in messages ("decoder").
    pub role: &'static str,
    /// The inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// The one output.
    pub output: TensorSpec,
}

/// Runs one small network of a fixed [`NetSpec`].
pub trait NetBackend: Send {
    /// Runs the network on `inputs` (one slice per input of the spec, of
    /// its length, in order) and writes the output into `output`.
    fn run(&mut self, inputs: &[&[f32]], output: &mut [f32]) -> Result<(), BackendError>;
}

/// Checks the lengths of a run's buffers against `spec`.
pub fn check_buffers(spec: &NetSpec, inputs: &[&[f32]], output: &[f32]) -> Result<(), String> {
    if inputs.len() != spec.inputs.len() {
        return Err(format!(
            "{}: {} inputs given, the network has {}",
            spec.role,
            inputs.len(),
            spec.inputs.len()
        ));
    }
    for (given, want) in inputs.iter().zip(&spec.inputs) {
        if given.len() != want.len() {
            return Err(format!(
                "{}: input {} has {} values, expected {}",
                spec.role,
                want.name,
                given.len(),
                want.len()
            ));
        }
    }
    if output.len() != spec.output.len() {
        return Err(format!(
            "{}: output buffer has {} values, expected {}",
            spec.role,
            output.len(),
            spec.output.len()
        ));
    }
    Ok(())
}

/// A network run by tract, optimised for its spec's shapes.
pub struct TractNet {
    plan: Arc<TypedRunnableModel>,
    spec: NetSpec,
    /// The input tensors, allocated once and written in place (tract
    /// drops its references when a run ends).
    inputs: Vec<Arc<Tensor>>,
}

impl std::fmt::Debug for TractNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TractNet({})", self.spec.role)
    }
}

impl TractNet {
    /// Loads the ONNX `model` bytes with the spec's input shapes,
    /// optimises it, and checks that its inputs and output are the spec's.
    pub fn load(model: &[u8], spec: &NetSpec) -> Result<Self, String> {
        let load = |e: TractError| format!("{e:#}");
        let mut graph = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .map_err(load)?;
        let names: Vec<String> = graph
            .input_outlets()
            .map_err(load)?
            .iter()
            .map(|o| graph.node(o.node).name.clone())
            .collect();
        let want: Vec<&str> = spec.inputs.iter().map(|i| i.name).collect();
        if names != want {
            return Err(format!(
                "inputs are [{}], expected [{}]",
                names.join(", "),
                want.join(", ")
            ));
        }
        if graph.output_outlets().map_err(load)?.len() != 1 {
            return Err("expected exactly one output".into());
        }
        for (i, input) in spec.inputs.iter().enumerate() {
            graph
                .set_input_fact(i, f32::fact(&input.shape).into())
                .map_err(load)?;
        }
        let typed = graph.into_optimized().map_err(load)?;
        let outlet = typed.output_outlets().map_err(load)?[0];
        let fact = typed.outlet_fact(outlet).map_err(load)?;
        let got: Vec<String> = fact.shape.iter().map(|d| d.to_string()).collect();
        let want: Vec<String> = spec.output.shape.iter().map(|d| d.to_string()).collect();
        if got != want || fact.datum_type != f32::datum_type() {
            return Err(format!(
                "output is {:?} [{}], expected f32 [{}]",
                fact.datum_type,
                got.join(","),
                want.join(",")
            ));
        }
        let plan = typed.into_runnable().map_err(load)?;
        let inputs = spec
            .inputs
            .iter()
            .map(|i| Tensor::zero::<f32>(&i.shape).map(Arc::new))
            .collect::<TractResult<Vec<_>>>()
            .map_err(load)?;
        Ok(Self {
            plan,
            spec: spec.clone(),
            inputs,
        })
    }
}

impl NetBackend for TractNet {
    fn run(&mut self, inputs: &[&[f32]], output: &mut [f32]) -> Result<(), BackendError> {
        let role = self.spec.role;
        let run = |e: TractError| BackendError::Cpu(format!("{role}: {e:#}"));
        check_buffers(&self.spec, inputs, output).map_err(BackendError::Cpu)?;
        let specs = &self.spec.inputs;
        for ((tensor, src), spec) in self.inputs.iter_mut().zip(inputs).zip(specs) {
            // Exclusive again once the previous run's values are gone.
            if Arc::get_mut(tensor).is_none() {
                *tensor = Arc::new(Tensor::zero::<f32>(&spec.shape).map_err(run)?);
            }
            let t = Arc::get_mut(tensor)
                .ok_or_else(|| BackendError::Cpu("an input tensor is still in use".into()))?;
            t.try_as_plain_ram_mut()
                .map_err(run)?
                .as_slice_mut::<f32>()
                .map_err(run)?
                .copy_from_slice(src);
        }
        let values: TVec<TValue> = self
            .inputs
            .iter()
            .map(|t| TValue::from_const(t.clone()))
            .collect();
        let result = self.plan.run(values).map_err(run)?;
        let view = result[0].try_as_plain_ram().map_err(run)?;
        let src = view.as_slice::<f32>().map_err(run)?;
        if src.len() != output.len() {
            return Err(BackendError::Cpu(format!(
                "{role}: output has {} values, expected {}",
                src.len(),
                output.len()
            )));
        }
        output.copy_from_slice(src);
        Ok(())
    }
}
