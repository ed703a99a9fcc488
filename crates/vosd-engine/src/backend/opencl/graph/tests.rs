//! The lowering of the bundled encoders, and malformed or foreign graphs.

use prost::Message;
use tract_onnx::pb::ModelProto;

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
