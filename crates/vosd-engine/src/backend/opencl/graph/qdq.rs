//! The QDQ fusion: each `DQ → Conv → Q` (and `DQ, DQ → Add → Q`) of the
//! int8 file becomes one integer op (uint8 in, int32 accumulation,
//! requantization, uint8 out).

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;

use super::lowering::{Lowering, Value};
use super::onnx::{attr_int, values_of};
use super::{ConvGeom, Elem, Op, Quant, TensorId, TensorInfo};

/// A float Conv or Add over dequantized inputs, in integer terms.
#[derive(Clone, Debug)]
pub(super) enum PendingQ {
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

impl Lowering {
    /// A DequantizeLinear node: a uint8 activation or a constant seen as
    /// float, fused into the op that reads it.
    pub(super) fn dequantize_linear(&mut self, node: &NodeProto) -> Result<(), String> {
        let unsupported = |why: &str| format!("node '{}' ({}): {why}", node.name, node.op_type);
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

    /// A QuantizeLinear node: quantizes a float activation, or completes
    /// a pending fused op.
    pub(super) fn quantize_linear(&mut self, node: &NodeProto) -> Result<(), String> {
        let unsupported = |why: &str| format!("node '{}' ({}): {why}", node.name, node.op_type);
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

    /// The element type of a Q/DQ node's zero point, when it is a constant.
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

    /// The QDQ int8 convolution `DQ(x) * DQ(w) + DQ(b)`, pending its
    /// QuantizeLinear.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_q8(
        &self,
        node: &NodeProto,
        input: TensorId,
        x: Quant,
        data: Tensor,
        scale: Vec<f32>,
        zero: Vec<i32>,
        b: Option<Value>,
    ) -> Result<Value, String> {
        let what = format!("node '{}' (Conv)", node.name);
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

    /// The fused integer op of `pending`, with output quantization `y`.
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
