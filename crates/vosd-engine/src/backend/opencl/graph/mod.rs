//! The encoder's ONNX graph lowered to the few ops the OpenCL kernels run.
//!
//! The fp32 file is Conv (+Clip), Add and Identity nodes. The int8 file is
//! in QDQ form: QuantizeLinear/DequantizeLinear pairs around float Conv and
//! Add nodes, with int8 weights and int32 biases behind DequantizeLinear.
//! Each `DQ → Conv → Q` (and `DQ, DQ → Add → Q`) is fused into one integer
//! op: uint8 in, int32 accumulation, requantization, uint8 out. A graph
//! with anything else is refused with the node named, and the caller keeps
//! tract.
//!
//! The lowering is in parts: `onnx` reads the file's initializers and
//! attributes, `lowering` walks the graph and lowers the float ops, `qdq`
//! fuses the quantized patterns into integer ops, and `half` converts a
//! float graph to fp16 storage.

mod half;
mod lowering;
mod onnx;
mod qdq;
#[cfg(test)]
mod tests;

use prost::Message;
use tract_onnx::pb::ModelProto;

pub use half::to_half_storage;

/// Index of a tensor in [`Graph::tensors`].
pub type TensorId = usize;

/// Element type of an activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE half, computed in float (`precision = "fp16"`).
    F16,
    /// uint8 with a scale and zero point.
    U8,
}

/// Shape and type of an activation tensor (one image, channels-first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Element type.
    pub elem: Elem,
}

impl TensorInfo {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Geometry of a convolution with "SAME_UPPER" padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub in_c: usize,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Groups (1 = standard, `in_c` = depthwise).
    pub groups: usize,
}

impl ConvGeom {
    /// Output rows: `ceil(in_h / stride)`.
    pub fn out_h(&self) -> usize {
        self.in_h.div_ceil(self.stride)
    }

    /// Output columns: `ceil(in_w / stride)`.
    pub fn out_w(&self) -> usize {
        self.in_w.div_ceil(self.stride)
    }

    /// Padding before the first row and column (the extra one, if the total
    /// is odd, goes after the last: SAME_UPPER).
    pub fn pad_top_left(&self) -> (usize, usize) {
        let pad = |inp: usize, out: usize| {
            ((out - 1) * self.stride + self.kernel).saturating_sub(inp) / 2
        };
        (pad(self.in_h, self.out_h()), pad(self.in_w, self.out_w()))
    }

    /// Input channels per group.
    pub fn in_per_group(&self) -> usize {
        self.in_c / self.groups
    }

    /// The output tensor, with elements of `elem`.
    pub fn output(&self, elem: Elem) -> TensorInfo {
        TensorInfo {
            channels: self.out_c,
            height: self.out_h(),
            width: self.out_w(),
            elem,
        }
    }
}

/// A quantization: `real = (q - zero_point) * scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quant {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

/// One lowered op.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Float convolution with bias and an optional fused clamp.
    ConvF32 {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Geometry.
        geom: ConvGeom,
        /// `[out_c][in_c / groups][k][k]` weights.
        weights: Vec<f32>,
        /// One bias per output channel.
        bias: Vec<f32>,
        /// Fused clamp `(lo, hi)`, e.g. ReLU6 = `(0, 6)`.
        clip: Option<(f32, f32)>,
    },
    /// Quantized convolution: uint8 in and out, int8 weights, int32 bias.
    ConvQ8 {
        /// Input tensor.
        input: TensorId,
        /// Output tensor.
        output: TensorId,
        /// Geometry.
        geom: ConvGeom,
        /// `[out_c][in_c / groups][k][k]` int8 weights.
        weights: Vec<i8>,
        /// Per-output-channel weight zero points.
        weight_zero: Vec<i32>,
        /// Per-output-channel weight scales.
        weight_scale: Vec<f32>,
        /// int32 bias in units of `input.scale * weight_scale[c]`.
        bias: Vec<i32>,
        /// Input quantization.
        x: Quant,
        /// Output quantization.
        y: Quant,
    },
    /// Float elementwise add.
    AddF32 {
        /// First addend.
        a: TensorId,
        /// Second addend.
        b: TensorId,
        /// Sum.
        output: TensorId,
    },
    /// Quantized elementwise add with requantization.
    AddQ8 {
        /// First addend.
        a: TensorId,
        /// Second addend.
        b: TensorId,
        /// Sum.
        output: TensorId,
        /// Quantization of `a`.
        qa: Quant,
        /// Quantization of `b`.
        qb: Quant,
        /// Quantization of the sum.
        qy: Quant,
    },
    /// Float to uint8.
    Quantize {
        /// Float input.
        input: TensorId,
        /// uint8 output.
        output: TensorId,
        /// Quantization.
        q: Quant,
    },
    /// uint8 to float.
    Dequantize {
        /// uint8 input.
        input: TensorId,
        /// Float output.
        output: TensorId,
        /// Quantization.
        q: Quant,
    },
    /// Float to half (fp16 storage).
    ToHalf {
        /// Float input.
        input: TensorId,
        /// Half output.
        output: TensorId,
    },
    /// Half to float (fp16 storage).
    ToFloat {
        /// Half input.
        input: TensorId,
        /// Float output.
        output: TensorId,
    },
}

/// The lowered encoder for one input size.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Every activation tensor; tensor 0 is the float input image.
    pub tensors: Vec<TensorInfo>,
    /// Ops in execution order.
    pub ops: Vec<Op>,
    /// The graph's outputs, in the file's order (float tensors).
    pub outputs: Vec<TensorId>,
}

/// Reads `bytes` (an ONNX model) and lowers it for a `width`×`height` input.
pub fn lower(bytes: &[u8], width: usize, height: usize) -> Result<Graph, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX file: {e}"))?;
    let graph = model.graph.as_ref().ok_or("the file has no graph")?;
    lowering::Lowering::new(graph, width, height)?.run(graph)
}
