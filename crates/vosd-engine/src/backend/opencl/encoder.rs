//! Runs a lowered encoder graph ([`super::graph`]) with the OpenCL kernels.
//!
//! Every buffer (activations, weights, per-channel parameters) and every
//! kernel with its arguments is created once at load; a frame is one input
//! upload, one enqueue per op, a wait, and three output downloads.

use std::sync::Arc;

use ocl::builders::KernelBuilder;
use ocl::{Buffer, Kernel, MemFlags, OclPrm, SpatialDims};

use super::graph::{lower, ConvGeom, Elem, Graph, Op, Quant};
use super::{device_err, Gpu, OpenclError, OC_BLOCK};
use crate::backend::{Arithmetic, BackendError, EncoderBackend};

/// An activation buffer on the device.
enum DeviceTensor {
    F32(Buffer<f32>),
    /// IEEE half bit patterns (the kernels use vload_half/vstore_half).
    F16(Buffer<u16>),
    U8(Buffer<u8>),
}

/// Weight and parameter buffers, kept as long as the kernels that read
/// them (OpenCL does not keep kernel arguments alive).
#[derive(Default)]
struct Params {
    f32s: Vec<Buffer<f32>>,
    i8s: Vec<Buffer<i8>>,
    i32s: Vec<Buffer<i32>>,
}

/// The encoder on an OpenCL device, for one input size.
pub struct OpenclEncoder {
    gpu: Arc<Gpu>,
    graph: Graph,
    tensors: Vec<DeviceTensor>,
    kernels: Vec<Kernel>,
    _params: Params,
    /// The host side of the input (`3 × H × W`), which
    /// [`EncoderBackend::input_mut`] hands out and a run writes to the
    /// device.
    staging: Vec<f32>,
    /// Whether the kernels have run once (see `Gpu::wait`).
    warmed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for OpenclEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenclEncoder({} ops on {})",
            self.kernels.len(),
            self.gpu.summary.name
        )
    }
}

fn buffer<T: OclPrm>(gpu: &Gpu, data: &[T]) -> Result<Buffer<T>, OpenclError> {
    let one = [T::default()];
    Buffer::<T>::builder()
        .queue(gpu.queue().clone())
        .flags(MemFlags::new().read_only())
        .len(data.len().max(1))
        .copy_host_slice(if data.is_empty() { &one[..] } else { data })
        .build()
        .map_err(|e| OpenclError::Setup(e.to_string()))
}

fn scratch<T: OclPrm>(gpu: &Gpu, len: usize) -> Result<Buffer<T>, OpenclError> {
    Buffer::<T>::builder()
        .queue(gpu.queue().clone())
        .flags(MemFlags::new().read_write())
        .len(len.max(1))
        .build()
        .map_err(|e| OpenclError::Setup(e.to_string()))
}

fn i(v: usize) -> i32 {
    v as i32
}

/// 1×1, stride 1, one group: run as a blocked matrix product.
fn is_pointwise(g: &ConvGeom) -> bool {
    g.kernel == 1 && g.stride == 1 && g.groups == 1
}

/// Names the convolution kernel for `g` (`conv1x1_SUFFIX` for a 1×1
/// stride-1 convolution, else `conv_SUFFIX`) and sets its work size: one
/// item per output value, or per 4 pixels × [`OC_BLOCK`] channels.
fn conv_kernel(b: &mut KernelBuilder<'_>, g: &ConvGeom, suffix: &str) {
    if is_pointwise(g) {
        b.name(format!("conv1x1_{suffix}"))
            .global_work_size(SpatialDims::Two(
                (g.in_h * g.in_w).div_ceil(4),
                g.out_c.div_ceil(OC_BLOCK),
            ));
    } else {
        b.name(format!("conv_{suffix}"))
            .global_work_size(SpatialDims::Three(g.out_w(), g.out_h(), g.out_c));
    }
}

/// The geometry arguments the convolution kernels take after their
/// buffers (1×1: channels and pixels; others: the whole geometry).
fn geometry_args(b: &mut KernelBuilder<'_>, g: &ConvGeom) {
    if is_pointwise(g) {
        b.arg(i(g.in_c)).arg(i(g.in_h * g.in_w)).arg(i(g.out_c));
    } else {
        let (pt, pl) = g.pad_top_left();
        b.arg(i(g.in_c))
            .arg(i(g.in_h))
            .arg(i(g.in_w))
            .arg(i(g.out_c))
            .arg(i(g.out_h()))
            .arg(i(g.out_w()))
            .arg(i(g.kernel))
            .arg(i(g.stride))
            .arg(i(pt))
            .arg(i(pl))
            .arg(i(g.groups));
    }
}

impl OpenclEncoder {
    /// Lowers the ONNX `model` bytes for a `width`×`height` input and
    /// prepares it on `gpu`.
    pub fn new(
        gpu: Arc<Gpu>,
        model: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Self, OpenclError> {
        let graph = lower(model, width, height).map_err(OpenclError::Unsupported)?;
        Self::from_graph(gpu, graph)
    }

    /// Prepares an already lowered graph on `gpu`.
    pub fn from_graph(gpu: Arc<Gpu>, graph: Graph) -> Result<Self, OpenclError> {
        let mut tensors = Vec::with_capacity(graph.tensors.len());
        for t in &graph.tensors {
            tensors.push(match t.elem {
                Elem::F32 => DeviceTensor::F32(scratch(&gpu, t.len())?),
                Elem::U8 => DeviceTensor::U8(scratch(&gpu, t.len())?),
                Elem::F16 => DeviceTensor::F16(scratch(&gpu, t.len())?),
            });
        }
        let mut kernels = Vec::with_capacity(graph.ops.len());
        let mut params = Params::default();
        for op in &graph.ops {
            kernels.push(Self::kernel(&gpu, &graph, &tensors, op, &mut params)?);
        }
        let staging = vec![0.0; graph.tensors.first().map_or(0, |t| t.len())];
        Ok(Self {
            gpu,
            graph,
            tensors,
            kernels,
            _params: params,
            staging,
            warmed: Default::default(),
        })
    }

    fn kernel(
        gpu: &Gpu,
        graph: &Graph,
        tensors: &[DeviceTensor],
        op: &Op,
        keep: &mut Params,
    ) -> Result<Kernel, OpenclError> {
        let setup = |e: ocl::Error| OpenclError::Setup(e.to_string());
        let wrong =
            |t: usize, what: &str| OpenclError::Unsupported(format!("tensor {t} is not {what}"));
        let f32_of = |t: usize| match &tensors[t] {
            DeviceTensor::F32(b) => Ok(b),
            _ => Err(wrong(t, "float")),
        };
        let f16_of = |t: usize| match &tensors[t] {
            DeviceTensor::F16(b) => Ok(b),
            _ => Err(wrong(t, "half")),
        };
        let u8_of = |t: usize| match &tensors[t] {
            DeviceTensor::U8(b) => Ok(b),
            _ => Err(wrong(t, "uint8")),
        };
        let n = |t: usize| graph.tensors[t].len();
        let mut b = Kernel::builder();
        b.program(&gpu.encoder_program).queue(gpu.queue().clone());
        match op {
            Op::ConvF32 {
                input,
                output,
                geom,
                weights,
                bias,
                clip,
            } => {
                let (w, bi) = (buffer(gpu, weights)?, buffer(gpu, bias)?);
                let (lo, hi) = clip.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                // Half activations (fp16 storage) or float ones.
                let half = graph.tensors[*input].elem == Elem::F16;
                conv_kernel(&mut b, geom, if half { "f16s" } else { "f32" });
                if half {
                    b.arg(f16_of(*input)?)
                        .arg(&w)
                        .arg(&bi)
                        .arg(f16_of(*output)?);
                } else {
                    b.arg(f32_of(*input)?)
                        .arg(&w)
                        .arg(&bi)
                        .arg(f32_of(*output)?);
                }
                geometry_args(&mut b, geom);
                let k = b.arg(lo).arg(hi).build().map_err(setup)?;
                keep.f32s.extend([w, bi]);
                Ok(k)
            }
            Op::ConvQ8 {
                input,
                output,
                geom,
                weights,
                weight_zero,
                weight_scale,
                bias,
                x,
                y,
            } => {
                let mult: Vec<f32> = weight_scale
                    .iter()
                    .map(|ws| x.scale * ws / y.scale)
                    .collect();
                let (w, wz, bi, m) = (
                    buffer(gpu, weights)?,
                    buffer(gpu, weight_zero)?,
                    buffer(gpu, bias)?,
                    buffer(gpu, &mult)?,
                );
                conv_kernel(&mut b, geom, "q8");
                b.arg(u8_of(*input)?)
                    .arg(&w)
                    .arg(&wz)
                    .arg(&bi)
                    .arg(&m)
                    .arg(u8_of(*output)?);
                geometry_args(&mut b, geom);
                let k = b
                    .arg(x.zero_point)
                    .arg(y.zero_point)
                    .build()
                    .map_err(setup)?;
                keep.i8s.push(w);
                keep.i32s.extend([wz, bi]);
                keep.f32s.push(m);
                Ok(k)
            }
            Op::AddF32 { a, b: bb, output } => {
                b.global_work_size(n(*output));
                if graph.tensors[*a].elem == Elem::F16 {
                    b.name("add_f16s")
                        .arg(f16_of(*a)?)
                        .arg(f16_of(*bb)?)
                        .arg(f16_of(*output)?);
                } else {
                    b.name("add_f32")
                        .arg(f32_of(*a)?)
                        .arg(f32_of(*bb)?)
                        .arg(f32_of(*output)?);
                }
                Ok(b.arg(i(n(*output))).build().map_err(setup)?)
            }
            Op::ToHalf { input, output } => Ok(b
                .name("to_half")
                .global_work_size(n(*output))
                .arg(f32_of(*input)?)
                .arg(f16_of(*output)?)
                .arg(i(n(*output)))
                .build()
                .map_err(setup)?),
            Op::ToFloat { input, output } => Ok(b
                .name("to_float")
                .global_work_size(n(*output))
                .arg(f16_of(*input)?)
                .arg(f32_of(*output)?)
                .arg(i(n(*output)))
                .build()
                .map_err(setup)?),
            Op::AddQ8 {
                a,
                b: bb,
                output,
                qa,
                qb,
                qy,
            } => {
                let k = b
                    .name("add_q8")
                    .global_work_size(n(*output))
                    .arg(u8_of(*a)?)
                    .arg(u8_of(*bb)?)
                    .arg(u8_of(*output)?)
                    .arg(qa.scale)
                    .arg(qa.zero_point)
                    .arg(qb.scale)
                    .arg(qb.zero_point)
                    .arg(qy.scale)
                    .arg(qy.zero_point)
                    .arg(i(n(*output)))
                    .build()
                    .map_err(setup)?;
                Ok(k)
            }
            Op::Quantize { input, output, q } | Op::Dequantize { input, output, q } => {
                let Quant { scale, zero_point } = *q;
                let quantize = matches!(op, Op::Quantize { .. });
                b.name(if quantize {
                    "quantize_u8"
                } else {
                    "dequantize_u8"
                })
                .global_work_size(n(*output));
                if quantize {
                    b.arg(f32_of(*input)?).arg(u8_of(*output)?);
                } else {
                    b.arg(u8_of(*input)?).arg(f32_of(*output)?);
                }
                let k = b
                    .arg(scale)
                    .arg(zero_point)
                    .arg(i(n(*output)))
                    .build()
                    .map_err(setup)?;
                Ok(k)
            }
        }
    }

    /// The lowered graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Runs the encoder on `input` (the normalised image, `3 × H × W`) and
    /// copies each output into the matching slice of `outputs`.
    pub fn run(&self, input: &[f32], outputs: &mut [&mut [f32]]) -> Result<(), OpenclError> {
        let DeviceTensor::F32(inp) = &self.tensors[0] else {
            return Err(OpenclError::Unsupported("input is not float".into()));
        };
        if input.len() != self.graph.tensors[0].len() || outputs.len() != self.graph.outputs.len() {
            return Err(OpenclError::Device(
                "input or output count does not fit the graph".into(),
            ));
        }
        inp.write(input).enq().map_err(device_err)?;
        for k in &self.kernels {
            // SAFETY: every buffer argument was sized from the graph's shapes,
            // which are the ranges the kernel indexes (global size = output).
            unsafe { k.enq().map_err(device_err)? };
        }
        self.gpu.wait(&self.warmed)?;
        for (out, &t) in outputs.iter_mut().zip(&self.graph.outputs) {
            let DeviceTensor::F32(buf) = &self.tensors[t] else {
                return Err(OpenclError::Unsupported("output is not float".into()));
            };
            if out.len() != buf.len() {
                return Err(OpenclError::Device(format!(
                    "output has {} values, the caller expects {}",
                    buf.len(),
                    out.len()
                )));
            }
            buf.read(&mut **out).enq().map_err(device_err)?;
        }
        Ok(())
    }

    /// The arithmetic of its kernels: integer for a fused QDQ graph, fp16
    /// storage when the activations are half, else float.
    pub fn arithmetic(&self) -> Arithmetic {
        if self
            .graph
            .ops
            .iter()
            .any(|o| matches!(o, Op::ConvQ8 { .. }))
        {
            Arithmetic::Int8
        } else if self.graph.tensors.iter().any(|t| t.elem == Elem::F16) {
            Arithmetic::Fp16Storage
        } else {
            Arithmetic::Fp32
        }
    }

    /// Reads tensor `t` back (tests: compare intermediate results).
    #[cfg(test)]
    pub(crate) fn read_tensor_f32(&self, t: usize) -> Vec<f32> {
        match &self.tensors[t] {
            DeviceTensor::F32(b) => {
                let mut v = vec![0.0; b.len()];
                b.read(&mut v).enq().unwrap();
                v
            }
            DeviceTensor::U8(b) => {
                let mut v = vec![0u8; b.len()];
                b.read(&mut v).enq().unwrap();
                v.into_iter().map(f32::from).collect()
            }
            DeviceTensor::F16(b) => {
                let mut v = vec![0u16; b.len()];
                b.read(&mut v).enq().unwrap();
                v.into_iter()
                    .map(|h| half::f16::from_bits(h).to_f32())
                    .collect()
            }
        }
    }

    /// Writes tensor `t` (tests: run one op on chosen input).
    #[cfg(test)]
    pub(crate) fn write_tensor(&self, t: usize, f: &[f32]) {
        match &self.tensors[t] {
            DeviceTensor::F32(b) => b.write(f).enq().unwrap(),
            DeviceTensor::U8(b) => {
                let v: Vec<u8> = f.iter().map(|&x| x as u8).collect();
                b.write(&v).enq().unwrap()
            }
            DeviceTensor::F16(b) => {
                let v: Vec<u16> = f
                    .iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect();
                b.write(&v).enq().unwrap()
            }
        }
    }

    /// Runs the ops only (inputs already written; tests).
    #[cfg(test)]
    pub(crate) fn run_ops(&self) {
        for k in &self.kernels {
            // SAFETY: as in `run`.
            unsafe { k.enq().unwrap() };
        }
        self.gpu.queue().finish().unwrap();
    }
}

impl EncoderBackend for OpenclEncoder {
    fn arithmetic(&self) -> Arithmetic {
        OpenclEncoder::arithmetic(self)
    }

    fn input_mut(&mut self) -> Result<&mut [f32], BackendError> {
        Ok(&mut self.staging)
    }

    fn run_input(&mut self, outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let mut outputs = outputs;
        Ok(self.run(&self.staging, &mut outputs)?)
    }

    fn encode(&mut self, input: &[f32], outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        let mut outputs = outputs;
        Ok(self.run(input, &mut outputs)?)
    }
}
