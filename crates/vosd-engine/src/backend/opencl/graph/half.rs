//! fp16 storage: a float graph's activations stored as IEEE half, with
//! the arithmetic still in float.

use super::{Elem, Graph, Op, TensorId, TensorInfo};

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
