//! tract runs the committed encoders exactly as onnxruntime did at export
//! time (reference outputs in models/testdata, written by export_encoder.py).

use std::path::Path;

use vosd::encoder::Encoder;
use vosd::frame::RgbFrame;

/// The exporter's 64×64 test pattern, rebuilt here.
fn pattern() -> RgbFrame {
    let n = 64usize;
    let mut f = RgbFrame::new(n, n);
    for y in 0..n {
        for x in 0..n {
            for c in 0..3 {
                f.data[(y * n + x) * 3 + c] =
                    ((x * 7 + y * 13 + c * 29 + (x * y) % 17) % 256) as u8;
            }
        }
    }
    f
}

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
    enc.encode(&pattern(), &mut feats).unwrap();
    let got: Vec<f32> = [&feats.s4, &feats.s8, &feats.s16]
        .iter()
        .flat_map(|m| m.data.iter().copied())
        .collect();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{model}: max |tract - onnxruntime| = {max_err:.2e} (output scale {scale:.2})");
    assert!(
        max_err <= tolerance * scale,
        "{model}: max error {max_err} exceeds {tolerance} x {scale}"
    );
}

#[test]
fn fp32_encoder_matches_onnxruntime() {
    check(
        "encoder_lite0_fp32.onnx",
        "encoder_lite0_fp32_pattern64.f32",
        1e-4,
    );
}

#[test]
fn int8_encoder_matches_onnxruntime() {
    // tract dequantises and runs in float; onnxruntime runs int8 kernels.
    // Rounding differences of one quantisation step can propagate.
    check(
        "encoder_lite0_int8.onnx",
        "encoder_lite0_int8_pattern64.f32",
        0.05,
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
