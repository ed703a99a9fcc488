//! Reading the ONNX file: initializers as tensors, node attributes.

use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// An initializer as a tract tensor.
pub(super) fn load(t: &TensorProto) -> Result<Tensor, String> {
    let resolver = tract_onnx::data_resolver::default();
    tract_onnx::tensor::load_tensor(&*resolver, t, None)
        .map_err(|e| format!("initializer '{}': {e}", t.name))
}

/// The values of `t` as `T` (`what` names it in errors).
pub(super) fn values_of<T: Datum + Copy>(t: &Tensor, what: &str) -> Result<Vec<T>, String> {
    let t = t
        .cast_to::<T>()
        .map_err(|e| format!("{what}: {e}"))?
        .into_owned();
    let view = t
        .to_plain_array_view::<T>()
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(view.iter().copied().collect())
}

/// The integer-list attribute `name` of `node`.
pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

/// The integer attribute `name` of `node`.
pub(super) fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// The string attribute `name` of `node`.
pub(super) fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}
