//! The encoder as an ONNX Runtime session: built once for one input size
//! and provider, with its input and output tensors allocated at start.

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use super::providers::Provider;
use super::{OrtError, Runtime};
use crate::backend::{Arithmetic, BackendError, EncoderBackend, EncoderSpec};

/// The name of the encoder's input in vosd's model files.
const INPUT_NAME: &str = "image";

/// How a session is built.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// The execution provider (registered with `error_on_failure`, so a
    /// provider that cannot start is an error, not a quiet CPU run).
    pub provider: Provider,
    /// Intra-op threads (`engine.threads`).
    pub threads: usize,
    /// TensorRT's fp16 mode (`precision = "fp16"`).
    pub fp16: bool,
}

/// The encoder run by ONNX Runtime.
pub struct OrtEncoder {
    session: Session,
    /// The input tensor (`1 × 3 × H × W`), written in place every frame.
    input: Tensor<f32>,
    /// Run options holding the three preallocated output tensors.
    run_options: RunOptions<ort::session::HasSelectedOutputs>,
    spec: EncoderSpec,
    arithmetic: Arithmetic,
}

impl std::fmt::Debug for OrtEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrtEncoder({}x{})", self.spec.width, self.spec.height)
    }
}

fn session_err(e: impl std::fmt::Display) -> OrtError {
    OrtError::Session(e.to_string())
}

impl OrtEncoder {
    /// Builds the session for `model` (ONNX bytes) at the spec's size on
    /// `options.provider`, checks the model's input and output names, and
    /// allocates the tensors. `quantized` marks a QDQ model (its self-test
    /// tolerance).
    pub fn new(
        runtime: &Runtime,
        model: &[u8],
        spec: &EncoderSpec,
        options: SessionOptions,
        quantized: bool,
    ) -> Result<Self, OrtError> {
        let mut builder = Session::builder(&runtime.environment)
            .map_err(session_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(session_err)?
            .with_intra_threads(options.threads.max(1))
            .map_err(session_err)?
            // The readout runs on the same cores right after: idle
            // threads must sleep, not spin.
            .with_intra_op_spinning(false)
            .map_err(session_err)?
            // int8: on x86-64 CPUs without VNNI (AVX2, AVX-512F) ONNX
            // Runtime's default U8S8 kernels saturate their 16-bit
            // intermediates and the outputs are wrong (feat4 off by 24 for
            // a quantization step of 0.58 on an AVX2 EPYC); this takes the
            // exact U8U8 kernels there. Elsewhere it changes nothing.
            .with_precise_qmm()
            .map_err(session_err)?;
        builder = match options.provider {
            // The CPU provider is ONNX Runtime's default: registering it
            // explicitly would turn off its memory arena.
            Provider::Cpu => builder,
            Provider::Cuda => builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(session_err)?,
            Provider::TensorRt => builder
                .with_execution_providers([ort::ep::TensorRT::default()
                    .with_fp16(options.fp16)
                    .build()
                    .error_on_failure()])
                .map_err(session_err)?,
        };
        let session = builder.commit_from_memory(model).map_err(session_err)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if inputs != [INPUT_NAME] {
            return Err(OrtError::WrongModel(format!(
                "inputs are [{}], expected [{INPUT_NAME}]",
                inputs.join(", ")
            )));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let want: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
        if outputs != want {
            return Err(OrtError::WrongModel(format!(
                "outputs are [{}], expected [{}]",
                outputs.join(", "),
                want.join(", ")
            )));
        }
        let input = Tensor::from_array((
            [1usize, 3, spec.height, spec.width],
            vec![0f32; spec.input_len()],
        ))
        .map_err(session_err)?;
        let mut selector = OutputSelector::default();
        for o in &spec.outputs {
            let tensor =
                Tensor::from_array(([1usize, o.channels, o.height, o.width], vec![0f32; o.len()]))
                    .map_err(session_err)?;
            selector = selector.preallocate(o.name, tensor);
        }
        let run_options = RunOptions::new()
            .map_err(session_err)?
            .with_outputs(selector);
        let arithmetic = if quantized {
            Arithmetic::Int8
        } else if options.fp16 && options.provider == Provider::TensorRt {
            Arithmetic::Fp16Storage
        } else {
            Arithmetic::Fp32
        };
        Ok(Self {
            session,
            input,
            run_options,
            spec: *spec,
            arithmetic,
        })
    }
}

impl EncoderBackend for OrtEncoder {
    fn arithmetic(&self) -> Arithmetic {
        self.arithmetic
    }

    fn input_mut(&mut self) -> Result<&mut [f32], BackendError> {
        Ok(self.input.extract_tensor_mut().1)
    }

    fn run_input(&mut self, outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let run = |e: ort::Error| BackendError::from(OrtError::Run(e.to_string()));
        let values = self
            .session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map_err(run)?;
        for (spec, out) in self.spec.outputs.iter().zip(outputs) {
            let value = values.get(spec.name).ok_or_else(|| {
                BackendError::from(OrtError::Run(format!("no output {}", spec.name)))
            })?;
            let (_, src) = value.try_extract_tensor::<f32>().map_err(run)?;
            if src.len() != out.len() {
                return Err(OrtError::Run(format!(
                    "{} has {} values, expected {}",
                    spec.name,
                    src.len(),
                    out.len()
                ))
                .into());
            }
            out.copy_from_slice(src);
        }
        Ok(())
    }

    fn encode(&mut self, input: &[f32], outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let dst = self.input_mut()?;
        if dst.len() != input.len() {
            return Err(OrtError::Run(format!(
                "input has {} values, expected {}",
                input.len(),
                dst.len()
            ))
            .into());
        }
        dst.copy_from_slice(input);
        self.run_input(outputs)
    }
}
