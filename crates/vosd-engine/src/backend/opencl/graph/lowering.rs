//! The walk over the ONNX graph: each node bound to what it stands for
//! ([`Value`]), the float ops lowered as they come, the quantized patterns
//! handed to [`super::qdq`].

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::prelude::*;

use super::onnx::{attr_int, attr_ints, attr_str, load, values_of};
use super::qdq::PendingQ;
use super::{ConvGeom, Elem, Graph, Op, Quant, TensorId, TensorInfo};

/// What a name in the ONNX graph stands for while lowering.
#[derive(Clone, Debug)]
pub(super) enum Value {
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

/// The state of one lowering: the values of the names seen so far and
/// the tensors and ops made.
pub(super) struct Lowering {
    pub(super) values: HashMap<String, Value>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) ops: Vec<Op>,
    /// How many nodes read each name (a Clip is fused only into a Conv whose
    /// output nothing else reads).
    readers: HashMap<String, usize>,
    /// The output name of the Conv that made each float tensor.
    produced_by: HashMap<TensorId, String>,
}

impl Lowering {
    /// Binds the initializers and the one input (tensor 0, the image).
    pub(super) fn new(graph: &GraphProto, width: usize, height: usize) -> Result<Self, String> {
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

    /// The value of `node`'s input `i`.
    pub(super) fn value(&self, node: &NodeProto, i: usize) -> Result<&Value, String> {
        let name =
            node.input.get(i).filter(|n| !n.is_empty()).ok_or_else(|| {
                format!("node '{}' ({}) lacks input {i}", node.name, node.op_type)
            })?;
        self.values
            .get(name)
            .ok_or_else(|| format!("node '{}': unknown input '{name}'", node.name))
    }

    /// Adds an activation tensor.
    pub(super) fn new_tensor(&mut self, info: TensorInfo) -> TensorId {
        self.tensors.push(info);
        self.tensors.len() - 1
    }

    /// Binds `node`'s output name to `value`.
    pub(super) fn bind(&mut self, node: &NodeProto, value: Value) -> Result<(), String> {
        let out = node
            .output
            .first()
            .ok_or_else(|| format!("node '{}' has no output", node.name))?;
        self.values.insert(out.clone(), value);
        Ok(())
    }

    /// Lowers every node in order, then finds the outputs.
    pub(super) fn run(mut self, graph: &GraphProto) -> Result<Graph, String> {
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

    /// Lowers one node.
    fn node(&mut self, node: &NodeProto) -> Result<(), String> {
        let unsupported = |why: &str| format!("node '{}' ({}): {why}", node.name, node.op_type);
        match node.op_type.as_str() {
            "Identity" => {
                let v = self.value(node, 0)?.clone();
                self.bind(node, v)
            }
            "DequantizeLinear" => self.dequantize_linear(node),
            "QuantizeLinear" => self.quantize_linear(node),
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

    /// Input `i` of `node` as a scalar constant, `None` when absent.
    fn scalar_input(&self, node: &NodeProto, i: usize) -> Result<Option<f32>, String> {
        if node.input.get(i).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        match self.value(node, i)? {
            Value::Const(t) if t.len() == 1 => Ok(Some(values_of::<f32>(t, "clip bound")?[0])),
            _ => Err(format!("node '{}': bound {i} is not a constant", node.name)),
        }
    }

    /// The geometry of a Conv `node` on `input` with weights of `w_shape`.
    pub(super) fn conv_geom(
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
            || !geom.in_c.is_multiple_of(groups)
            || !geom.out_c.is_multiple_of(groups)
            || w_shape[1] != geom.in_per_group()
        {
            return Err(bad(format!(
                "weights {w_shape:?} do not fit {} input channels",
                geom.in_c
            )));
        }
        Ok(geom)
    }

    /// A float Conv, or the start of a quantized one.
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
                self.conv_q8(node, input, x, data, scale, zero, b)
            }
            _ => Err(format!(
                "{what}: only float convolutions or the QDQ int8 pattern are supported"
            )),
        }
    }
}
