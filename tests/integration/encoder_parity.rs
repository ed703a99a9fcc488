//! tract runs the committed encoders exactly as onnxruntime did at export
//! time (reference outputs in models/testdata, written by export_encoder.py).

use std::path::Path;

use vosd_engine::encoder::Encoder;

/// Returns (max abs error / output scale, mean abs error / mean abs output).
fn errors(model: &str, reference: &str) -> (f32, f32) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let bytes = std::fs::read(dir.join("testdata").join(reference)).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let enc = Encoder::load(&dir.join(model), 64, 64, 1).unwrap();
    let mut feats = enc.new_features();
    enc.encode(&crate::common::pattern64(), &mut feats).unwrap();
    let got: Vec<f32> = [&feats.s4, &feats.s8, &feats.s16]
        .iter()
        .flat_map(|m| m.data.iter().copied())
        .collect();
    assert_eq!(got.len(), want.len());
    let n = want.len() as f32;
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let diffs = got.iter().zip(&want).map(|(a, b)| (a - b).abs());
    let max_err = diffs.clone().fold(0.0f32, f32::max);
    let mean_err = diffs.sum::<f32>() / n;
    let mean_abs = want.iter().map(|v| v.abs()).sum::<f32>() / n;
    eprintln!("{model}: max |tract - onnxruntime| = {max_err:.2e} (scale {scale:.2}), mean {mean_err:.2e} (mean |out| {mean_abs:.2e})");
    (max_err / scale, mean_err / mean_abs)
}

#[test]
fn fp32_encoder_matches_onnxruntime() {
    let (max_rel, _) = errors(
        "encoder_lite0_fp32.onnx",
        "encoder_lite0_fp32_pattern64.f32",
    );
    assert!(
        max_rel <= 1e-4,
        "fp32: max error {max_rel} of the output scale"
    );
}

#[test]
fn int8_encoder_matches_onnxruntime() {
    // tract dequantises and runs in float; onnxruntime runs int8 kernels, so
    // rounding differs. The bound is on the mean error: int8 against fp32
    // itself measured 0.09-0.14 at export (models/README.md).
    let (_, mean_rel) = errors(
        "encoder_lite0_int8.onnx",
        "encoder_lite0_int8_pattern64.f32",
    );
    assert!(
        mean_rel <= 0.2,
        "int8: mean error {mean_rel} of the mean output"
    );
}

#[test]
fn wrong_model_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.onnx");
    let full =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/encoder_lite0_fp32.onnx"))
            .unwrap();
    std::fs::write(&path, &full[..full.len() / 3]).unwrap();
    let e = Encoder::load(&path, 64, 64, 1).unwrap_err().to_string();
    assert!(e.contains("truncated.onnx"), "{e}");
}
