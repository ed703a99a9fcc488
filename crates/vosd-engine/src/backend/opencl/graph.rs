//! The encoder's ONNX graph lowered to the few ops the OpenCL kernels run.
//!
//! The fp32 file is Conv (+Clip), Add and Identity nodes. The int8 file is
//! in QDQ form: QuantizeLinear/DequantizeLinear pairs around float Conv and
//! Add nodes, with int8 weights and int32 biases behind DequantizeLinear.
//! Each `DQ → Conv → Q` (and `DQ, DQ → Add → Q`) is fused into one integer
//! op: uint8 in, int32 accumulation, requantization, uint8 out. A graph
//! with anything else is refused with the node named, and the caller keeps
//! tract.

use std::collections::HashMap;

use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

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

/// What a name in the ONNX graph stands for while lowering.
#[derive(Clone, Debug)]
enum Value {
    /// An activation tensor.
    Tensor(TensorId),
    /// A uint8 activation seen through DequantizeLinear.
    Dequantized(TensorId, Quant),
    /// A constant initializer.
    Const(Tensor),
    /// A constant seen through DequantizeLinear (per-channel or not).
    DequantizedConst {
        data: Tensor,
        scale: Vec<f32>,
        zero: Vec<i32>,
    },
    /// A float Conv or Add over dequantized inputs, waiting for its
    /// QuantizeLinear.
    PendingQ(PendingQ),
}

#[derive(Clone, Debug)]
enum PendingQ {
    Conv {
        input: TensorId,
        x: Quant,
        geom: ConvGeom,
        weights: Vec<i8>,
        weight_zero: Vec<i32>,
        weight_scale: Vec<f32>,
        bias: Vec<i32>,
    },
    Add {
        a: TensorId,
        qa: Quant,
        b: TensorId,
        qb: Quant,
    },
}

/// Reads `bytes` (an ONNX model) and lowers it for a `width`×`height` input.
pub fn lower(bytes: &[u8], width: usize, height: usize) -> Result<Graph, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX file: {e}"))?;
    let graph = model.graph.as_ref().ok_or("the file has no graph")?;
    Lowering::new(graph, width, height)?.run(graph)
}

/// Stores a float graph's activations as half (fp16 storage, float
/// arithmetic): the input is converted once, the outputs are converted
/// back, everything between is half. A graph with integer ops is refused.
pub fn to_half_storage(mut graph: Graph) -> Result<Graph, String> {
    if graph.tensors.iter().any(|t| t.elem != Elem::F32) {
        return Err("fp16 storage applies to float graphs only (not the int8 file)".into());
    }
    let half_input = graph.tensors.len();
    graph.tensors.push(TensorInfo {
        elem: Elem::F16,
        ..graph.tensors[0]
    });
    for t in graph.tensors.iter_mut().skip(1) {
        t.elem = Elem::F16;
    }
    let uses_input = |t: &mut TensorId| {
        if *t == 0 {
            *t = half_input;
        }
    };
    for op in &mut graph.ops {
        match op {
            Op::ConvF32 { input, .. } => uses_input(input),
            Op::AddF32 { a, b, .. } => {
                uses_input(a);
                uses_input(b);
            }
            other => return Err(format!("fp16 storage: unexpected op {other:?}")),
        }
    }
    graph.ops.insert(
        0,
        Op::ToHalf {
            input: 0,
            output: half_input,
        },
    );
    let mut outputs = Vec::with_capacity(graph.outputs.len());
    for &t in &graph.outputs {
        let output = graph.tensors.len();
        graph.tensors.push(TensorInfo {
            elem: Elem::F32,
            ..graph.tensors[t]
        });
        graph.ops.push(Op::ToFloat { input: t, output });
        outputs.push(output);
    }
    graph.outputs = outputs;
    Ok(graph)
}

struct Lowering {
    values: HashMap<String, Value>,
    tensors: Vec<TensorInfo>,
    ops: Vec<Op>,
    /// How many nodes read each name (a Clip is fused only into a Conv whose
    /// output nothing else reads).
    readers: HashMap<String, usize>,
    /// The output name of the Conv that made each float tensor.
    produced_by: HashMap<TensorId, String>,
}

fn load(t: &TensorProto) -> Result<Tensor, String> {
    let resolver = tract_onnx::data_resolver::default();
    tract_onnx::tensor::load_tensor(&*resolver, t, None)
        .map_err(|e| format!("initializer '{}': {e}", t.name))
}

fn values_of<T: Datum + Copy>(t: &Tensor, what: &str) -> Result<Vec<T>, String> {
    let t = t
        .cast_to::<T>()
        .map_err(|e| format!("{what}: {e}"))?
        .into_owned();
    let view = t
        .to_plain_array_view::<T>()
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(view.iter().copied().collect())
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

impl Lowering {
    fn new(graph: &GraphProto, width: usize, height: usize) -> Result<Self, String> {
        let mut values = HashMap::new();
        for init in &graph.initializer {
            values.insert(init.name.clone(), Value::Const(load(init)?));
        }
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !values.contains_key(&i.name))
            .collect();
        if inputs.len() != 1 {
            return Err(format!("expected one input, found {}", inputs.len()));
        }
        values.insert(inputs[0].name.clone(), Value::Tensor(0));
        let mut readers = HashMap::new();
        for node in &graph.node {
            for i in &node.input {
                *readers.entry(i.clone()).or_insert(0) += 1;
            }
        }
        for o in &graph.output {
            *readers.entry(o.name.clone()).or_insert(0) += 1;
        }
        Ok(Self {
            values,
            tensors: vec![TensorInfo {
                channels: 3,
                height,
                width,
                elem: Elem::F32,
            }],
            ops: Vec::new(),
            readers,
            produced_by: HashMap::new(),
        })
    }

    fn value(&self, node: &NodeProto, i: usize) -> Result<&Value, String> {
        let name =
            node.input.get(i).filter(|n| !n.is_empty()).ok_or_else(|| {
                format!("node '{}' ({}) lacks input {i}", node.name, node.op_type)
            })?;
        self.values
            .get(name)
            .ok_or_else(|| format!("node '{}': unknown input '{name}'", node.name))
    }

    fn new_tensor(&mut self, info: TensorInfo) -> TensorId {
        self.tensors.push(info);
        self.tensors.len() - 1
    }

    fn bind(&mut self, node: &NodeProto, value: Value) -> Result<(), String> {
        let out = node
            .output
            .first()
            .ok_or_else(|| format!("node '{}' has no output", node.name))?;
        self.values.insert(out.clone(), value);
        Ok(())
    }

    fn run(mut self, graph: &GraphProto) -> Result<Graph, String> {
        for node in &graph.node {
            self.node(node)?;
        }
        let mut outputs = Vec::new();
        for o in &graph.output {
            let id = match self.values.get(&o.name) {
                Some(Value::Tensor(t)) if self.tensors[*t].elem == Elem::F32 => *t,
                Some(Value::Dequantized(t, q)) => {
                    let (t, q) = (*t, *q);
                    let info = TensorInfo {
                        elem: Elem::F32,
                        ..self.tensors[t]
                    };
                    let output = self.new_tensor(info);
                    self.ops.push(Op::Dequantize {
                        input: t,
                        output,
                        q,
                    });
                    output
                }
                _ => return Err(format!("output '{}' is not a float activation", o.name)),
            };
            outputs.push(id);
        }
        Ok(Graph {
            tensors: self.tensors,
            ops: self.ops,
            outputs,
        })
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), String> {
        let unsupported = |why: &str| format!("node '{}' ({}): {why}", node.name, node.op_type);
        match node.op_type.as_str() {
            "Identity" => {
                let v = self.value(node, 0)?.clone();
                self.bind(node, v)
            }
            "DequantizeLinear" => {
                let (scale, zero) = self.quant_params(node)?;
                if scale.len() > 1 && attr_int(node, "axis").unwrap_or(1) != 0 {
                    return Err(unsupported(
                        "per-channel quantization on an axis other than 0",
                    ));
                }
                let v = match self.value(node, 0)? {
                    Value::Const(t) => Value::DequantizedConst {
                        data: t.clone(),
                        scale,
                        zero,
                    },
                    Value::Tensor(t) if self.tensors[*t].elem == Elem::U8 && scale.len() == 1 => {
                        Value::Dequantized(
                            *t,
                            Quant {
                                scale: scale[0],
                                zero_point: zero[0],
                            },
                        )
                    }
                    _ => return Err(unsupported("only uint8 activations or constants")),
                };
                self.bind(node, v)
            }
            "QuantizeLinear" => {
                let (scale, zero) = self.quant_params(node)?;
                if scale.len() != 1 {
                    return Err(unsupported("per-channel activation quantization"));
                }
                let q = Quant {
                    scale: scale[0],
                    zero_point: zero[0],
                };
                if let Some(zp) = self.zero_point_type(node) {
                    if zp != DatumType::U8 {
                        return Err(unsupported("activations must be uint8"));
                    }
                }
                let v = self.value(node, 0)?.clone();
                let id = match v {
                    Value::Tensor(input) if self.tensors[input].elem == Elem::F32 => {
                        let info = TensorInfo {
                            elem: Elem::U8,
                            ..self.tensors[input]
                        };
                        let output = self.new_tensor(info);
                        self.ops.push(Op::Quantize { input, output, q });
                        output
                    }
                    Value::PendingQ(p) => self.finish_quantized(p, q),
                    _ => return Err(unsupported("input is not a float activation")),
                };
                self.bind(node, Value::Tensor(id))
            }
            "Conv" => {
                let v = self.conv(node)?;
                if let (Value::Tensor(t), Some(name)) = (&v, node.output.first()) {
                    self.produced_by.insert(*t, name.clone());
                }
                self.bind(node, v)
            }
            "Clip" => {
                if node
                    .attribute
                    .iter()
                    .any(|a| a.name == "min" || a.name == "max")
                {
                    return Err(unsupported("Clip bounds as attributes (opset < 11)"));
                }
                let lo = self.scalar_input(node, 1)?.unwrap_or(f32::NEG_INFINITY);
                let hi = self.scalar_input(node, 2)?.unwrap_or(f32::INFINITY);
                let Value::Tensor(t) = self.value(node, 0)?.clone() else {
                    return Err(unsupported("input is not a float activation"));
                };
                // Fused only when the Clip reads the Conv's own output name
                // (not an Identity alias of it) and nothing else reads it.
                let direct = self.produced_by.get(&t) == Some(&node.input[0]);
                let only_reader = direct && self.readers.get(&node.input[0]).copied() == Some(1);
                match self.ops.last_mut() {
                    Some(Op::ConvF32 { output, clip, .. })
                        if *output == t && clip.is_none() && only_reader =>
                    {
                        *clip = Some((lo, hi));
                    }
                    _ => return Err(unsupported("only a Clip right after its Conv is supported")),
                }
                self.bind(node, Value::Tensor(t))
            }
            "Add" => {
                let (a, b) = (self.value(node, 0)?.clone(), self.value(node, 1)?.clone());
                let v = match (a, b) {
                    (Value::Tensor(a), Value::Tensor(b))
                        if self.tensors[a] == self.tensors[b]
                            && self.tensors[a].elem == Elem::F32 =>
                    {
                        let output = self.new_tensor(self.tensors[a]);
                        self.ops.push(Op::AddF32 { a, b, output });
                        Value::Tensor(output)
                    }
                    (Value::Dequantized(a, qa), Value::Dequantized(b, qb))
                        if self.tensors[a] == self.tensors[b] =>
                    {
                        Value::PendingQ(PendingQ::Add { a, qa, b, qb })
                    }
                    _ => return Err(unsupported("operands of different shapes or kinds")),
                };
                self.bind(node, v)
            }
            other => Err(format!(
                "node '{}': op {other} has no OpenCL kernel",
                node.name
            )),
        }
    }

    fn zero_point_type(&self, node: &NodeProto) -> Option<DatumType> {
        match self.values.get(node.input.get(2)?)? {
            Value::Const(t) => Some(t.datum_type()),
            _ => None,
        }
    }

    /// Scale(s) and zero point(s) of a Q/DQ node (constants).
    fn quant_params(&self, node: &NodeProto) -> Result<(Vec<f32>, Vec<i32>), String> {
        let what = format!("node '{}'", node.name);
        let Value::Const(scale) = self.value(node, 1)? else {
            return Err(format!("{what}: scale is not a constant"));
        };
        let scale: Vec<f32> = values_of(scale, &what)?;
        let zero = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => vec![0; scale.len()],
            Some(_) => {
                let Value::Const(z) = self.value(node, 2)? else {
                    return Err(format!("{what}: zero point is not a constant"));
                };
                values_of::<i32>(z, &what)?
            }
        };
        if zero.len() != scale.len() || scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("{what}: bad scale or zero point"));
        }
        Ok((scale, zero))
    }

    fn scalar_input(&self, node: &NodeProto, i: usize) -> Result<Option<f32>, String> {
        if node.input.get(i).map_or(true, |n| n.is_empty()) {
            return Ok(None);
        }
        match self.value(node, i)? {
            Value::Const(t) if t.len() == 1 => Ok(Some(values_of::<f32>(t, "clip bound")?[0])),
            _ => Err(format!("node '{}': bound {i} is not a constant", node.name)),
        }
    }

    fn conv_geom(
        &self,
        node: &NodeProto,
        input: &TensorInfo,
        w_shape: &[usize],
    ) -> Result<ConvGeom, String> {
        let bad = |why: String| format!("node '{}' (Conv): {why}", node.name);
        if w_shape.len() != 4 {
            return Err(bad(format!(
                "weights of shape {w_shape:?}, expected 4 dimensions"
            )));
        }
        let pads = attr_ints(node, "pads").unwrap_or_default();
        if pads.iter().any(|&p| p != 0) {
            return Err(bad("explicit pads (only auto_pad SAME_UPPER)".into()));
        }
        let pad = attr_str(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let kernel = attr_ints(node, "kernel_shape")
            .unwrap_or_else(|| w_shape[2..].iter().map(|&d| d as i64).collect());
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let dilations = attr_ints(node, "dilations").unwrap_or_else(|| vec![1, 1]);
        let groups = attr_int(node, "group").unwrap_or(1).max(1) as usize;
        let square = |v: &[i64]| v.len() == 2 && v[0] == v[1] && v[0] > 0;
        // 1×1 stride-1 convolutions need no padding, so any auto_pad does.
        let trivial = kernel == [1, 1] && strides == [1, 1];
        if pad != "SAME_UPPER" && !trivial {
            return Err(bad(format!("auto_pad {pad} (only SAME_UPPER)")));
        }
        if !square(&kernel) || !square(&strides) || dilations != [1, 1] {
            return Err(bad("only square kernels and strides, no dilation".into()));
        }
        let geom = ConvGeom {
            in_c: input.channels,
            in_h: input.height,
            in_w: input.width,
            out_c: w_shape[0],
            kernel: kernel[0] as usize,
            stride: strides[0] as usize,
            groups,
        };
        if w_shape.len() != 4
            || w_shape[2..] != [geom.kernel, geom.kernel]
            || geom.in_c % groups != 0
            || geom.out_c % groups != 0
            || w_shape[1] != geom.in_per_group()
        {
            return Err(bad(format!(
                "weights {w_shape:?} do not fit {} input channels",
                geom.in_c
            )));
        }
        Ok(geom)
    }

    fn conv(&mut self, node: &NodeProto) -> Result<Value, String> {
        let what = format!("node '{}' (Conv)", node.name);
        let x = self.value(node, 0)?.clone();
        let w = self.value(node, 1)?.clone();
        let b = if node.input.get(2).is_some_and(|n| !n.is_empty()) {
            Some(self.value(node, 2)?.clone())
        } else {
            None
        };
        match (x, w) {
            (Value::Tensor(input), Value::Const(w)) if self.tensors[input].elem == Elem::F32 => {
                let geom = self.conv_geom(node, &self.tensors[input], w.shape())?;
                let weights = values_of::<f32>(&w, &what)?;
                let bias = match b {
                    None => vec![0.0; geom.out_c],
                    Some(Value::Const(b)) if b.len() == geom.out_c => values_of::<f32>(&b, &what)?,
                    _ => return Err(format!("{what}: bias is not a constant of out_c values")),
                };
                let output = self.new_tensor(geom.output(Elem::F32));
                self.ops.push(Op::ConvF32 {
                    input,
                    output,
                    geom,
                    weights,
                    bias,
                    clip: None,
                });
                Ok(Value::Tensor(output))
            }
            (Value::Dequantized(input, x), Value::DequantizedConst { data, scale, zero }) => {
                if data.datum_type() != DatumType::I8 {
                    return Err(format!("{what}: weights must be int8"));
                }
                let geom = self.conv_geom(node, &self.tensors[input], data.shape())?;
                let per_channel = |v: Vec<f32>| {
                    if v.len() == 1 {
                        vec![v[0]; geom.out_c]
                    } else {
                        v
                    }
                };
                let weight_scale = per_channel(scale);
                let weight_zero: Vec<i32> = if zero.len() == 1 {
                    vec![zero[0]; geom.out_c]
                } else {
                    zero
                };
                if weight_scale.len() != geom.out_c || weight_zero.len() != geom.out_c {
                    return Err(format!("{what}: weight scales are not per output channel"));
                }
                let bias = match b {
                    None => vec![0; geom.out_c],
                    Some(Value::DequantizedConst { data, scale, zero })
                        if data.datum_type() == DatumType::I32
                            && data.len() == geom.out_c
                            && zero.iter().all(|&z| z == 0) =>
                    {
                        // The bias must be in units of x_scale * w_scale[c].
                        let scale = per_channel(scale);
                        let ok = scale.len() == geom.out_c
                            && scale.iter().zip(&weight_scale).all(|(s, ws)| {
                                let want = x.scale * ws;
                                (s - want).abs() <= 1e-5 * want.abs()
                            });
                        if !ok {
                            return Err(format!("{what}: bias scale is not x_scale * w_scale"));
                        }
                        values_of::<i32>(&data, &what)?
                    }
                    _ => return Err(format!("{what}: bias is not a dequantized int32 constant")),
                };
                let weights = values_of::<i8>(&data, &what)?;
                Ok(Value::PendingQ(PendingQ::Conv {
                    input,
                    x,
                    geom,
                    weights,
                    weight_zero,
                    weight_scale,
                    bias,
                }))
            }
            _ => Err(format!(
                "{what}: only float convolutions or the QDQ int8 pattern are supported"
            )),
        }
    }

    fn finish_quantized(&mut self, pending: PendingQ, y: Quant) -> TensorId {
        match pending {
            PendingQ::Conv {
                input,
                x,
                geom,
                weights,
                weight_zero,
                weight_scale,
                bias,
            } => {
                let output = self.new_tensor(geom.output(Elem::U8));
                self.ops.push(Op::ConvQ8 {
                    input,
                    output,
                    geom,
                    weights,
                    weight_zero,
                    weight_scale,
                    bias,
                    x,
                    y,
                });
                output
            }
            PendingQ::Add { a, qa, b, qb } => {
                let output = self.new_tensor(self.tensors[a]);
                self.ops.push(Op::AddQ8 {
                    a,
                    b,
                    output,
                    qa,
                    qb,
                    qy: y,
                });
                output
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models")
                .join(name),
        )
        .expect("bundled model")
    }

    #[test]
    fn fp32_encoder_lowers_to_convs_and_adds() {
        let g = lower(&bundled("encoder_lite0_fp32.onnx"), 70, 45).unwrap();
        let convs = g
            .ops
            .iter()
            .filter(|o| matches!(o, Op::ConvF32 { .. }))
            .count();
        let adds = g
            .ops
            .iter()
            .filter(|o| matches!(o, Op::AddF32 { .. }))
            .count();
        let clips = g
            .ops
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Op::ConvF32 {
                        clip: Some((0.0, 6.0)),
                        ..
                    }
                )
            })
            .count();
        assert_eq!((convs, adds, clips, g.ops.len()), (33, 6, 22, 39));
        let shapes: Vec<_> = g.outputs.iter().map(|&o| g.tensors[o]).collect();
        let s = |c, h, w| TensorInfo {
            channels: c,
            height: h,
            width: w,
            elem: Elem::F32,
        };
        // ceil(45/4) = 12, ceil(70/4) = 18, and so on.
        assert_eq!(shapes, vec![s(24, 12, 18), s(40, 6, 9), s(112, 3, 5)]);
    }

    #[test]
    fn int8_encoder_lowers_to_integer_ops() {
        let g = lower(&bundled("encoder_lite0_int8.onnx"), 64, 48).unwrap();
        let count = |f: fn(&Op) -> bool| g.ops.iter().filter(|o| f(o)).count();
        assert_eq!(count(|o| matches!(o, Op::ConvQ8 { .. })), 33);
        assert_eq!(count(|o| matches!(o, Op::AddQ8 { .. })), 6);
        assert_eq!(count(|o| matches!(o, Op::Quantize { .. })), 1);
        assert_eq!(count(|o| matches!(o, Op::Dequantize { .. })), 3);
        assert!(g.outputs.iter().all(|&o| g.tensors[o].elem == Elem::F32));
    }

    #[test]
    fn half_storage_converts_at_the_edges_only() {
        let g = lower(&bundled("encoder_lite0_fp32.onnx"), 64, 48).unwrap();
        let (ops, outs) = (g.ops.len(), g.outputs.len());
        let h = to_half_storage(g).unwrap();
        assert_eq!(h.ops.len(), ops + 1 + outs);
        assert!(matches!(h.ops[0], Op::ToHalf { input: 0, .. }));
        assert!(h.ops[ops + 1..]
            .iter()
            .all(|o| matches!(o, Op::ToFloat { .. })));
        assert!(h.outputs.iter().all(|&o| h.tensors[o].elem == Elem::F32));
        // No op but the first reads the float input.
        let reads_input = |o: &Op| match o {
            Op::ConvF32 { input, .. } => *input == 0,
            Op::AddF32 { a, b, .. } => *a == 0 || *b == 0,
            _ => false,
        };
        assert!(!h.ops.iter().any(reads_input));
        let int8 = lower(&bundled("encoder_lite0_int8.onnx"), 64, 48).unwrap();
        assert!(to_half_storage(int8).unwrap_err().contains("float graphs"));
    }

    #[test]
    fn same_upper_padding_matches_tensorflow() {
        // TF SAME: out = ceil(in / s); total = (out - 1) * s + k - in; the
        // smaller half goes before.
        let g = |in_h, k, stride| ConvGeom {
            in_c: 1,
            in_h,
            in_w: in_h,
            out_c: 1,
            kernel: k,
            stride,
            groups: 1,
        };
        assert_eq!(g(224, 3, 2).pad_top_left(), (0, 0)); // total 1
        assert_eq!(g(225, 3, 2).pad_top_left(), (1, 1)); // total 2
        assert_eq!(g(10, 5, 2).pad_top_left(), (1, 1)); // total 3
        assert_eq!(g(7, 3, 1).pad_top_left(), (1, 1));
        assert_eq!(g(7, 1, 1).pad_top_left(), (0, 0));
    }

    #[test]
    fn malformed_convolutions_are_errors_not_panics() {
        let model = ModelProto::decode(bundled("encoder_lite0_fp32.onnx").as_slice()).unwrap();
        let first_weight = model.graph.as_ref().unwrap().node[0].input[1].clone();
        let with = |edit: &dyn Fn(&mut ModelProto)| {
            let mut m = model.clone();
            edit(&mut m);
            lower(&m.encode_to_vec(), 32, 32).unwrap_err()
        };
        // Weights of rank 1 instead of 4.
        let e = with(&|m| {
            let g = m.graph.as_mut().unwrap();
            let w = g
                .initializer
                .iter_mut()
                .find(|t| t.name == first_weight)
                .unwrap();
            w.dims = vec![w.dims.iter().product()];
            g.node[0].attribute.retain(|a| a.name != "kernel_shape");
        });
        assert!(e.contains("4 dimensions"), "{e}");
        // Explicit pads, and Clip bounds given as attributes (old opsets).
        let e = with(&|m| {
            let n = &mut m.graph.as_mut().unwrap().node[0];
            let mut pads = n.attribute[0].clone();
            pads.name = "pads".into();
            pads.ints = vec![1, 1, 1, 1];
            n.attribute.push(pads);
        });
        assert!(e.contains("pads"), "{e}");
        let e = with(&|m| {
            let n = &mut m.graph.as_mut().unwrap().node[1];
            let mut min = n.attribute.first().cloned().unwrap_or_default();
            min.name = "min".into();
            n.attribute.push(min);
        });
        assert!(e.contains("attributes"), "{e}");
    }

    #[test]
    fn garbage_and_foreign_graphs_are_refused() {
        assert!(lower(b"not a model", 16, 16)
            .unwrap_err()
            .contains("not an ONNX"));
        // A graph with an op the kernels lack.
        let mut model = ModelProto::decode(bundled("encoder_lite0_fp32.onnx").as_slice()).unwrap();
        let graph = model.graph.as_mut().unwrap();
        graph.node[1].op_type = "Sigmoid".into();
        let e = lower(&model.encode_to_vec(), 16, 16).unwrap_err();
        assert!(
            e.contains("Sigmoid") && e.contains("no OpenCL kernel"),
            "{e}"
        );
    }
}
