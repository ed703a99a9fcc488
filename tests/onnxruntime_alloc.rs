//! The ONNX Runtime encoder allocates nothing in Rust per frame: its input
//! and output tensors are made at start and written in place, counted by
//! a global allocator in a test binary of its own. (ONNX Runtime's own C++
//! arena is outside Rust's allocator and not counted; it reuses its
//! buffers between runs of one session.) Skipped, with SKIP printed,
//! without the library (`VOSD_REQUIRE_ONNXRUNTIME=1` fails instead).
#![cfg(feature = "onnxruntime")]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, counting, take_count};
use vosd_engine::backend::{open_device, ActiveBackend, BackendChoice, DeviceOptions};
use vosd_engine::encoder::{self_test_image, Encoder};

#[test]
fn encoding_a_frame_does_not_allocate() {
    assert_counter_works();

    let options = DeviceOptions {
        threads: 2,
        ..Default::default()
    };
    let device = match open_device(
        ActiveBackend::Onnxruntime,
        BackendChoice::Onnxruntime,
        &options,
    ) {
        Ok(d) => d,
        Err(e) if std::env::var_os("VOSD_REQUIRE_ONNXRUNTIME").is_some() => {
            panic!("VOSD_REQUIRE_ONNXRUNTIME is set but: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: {e}");
            return;
        }
    };
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for file in ["encoder_lite0_fp32.onnx", "encoder_lite0_int8.onnx"] {
        let (w, h) = (256, 144);
        let enc = Encoder::load(&model.join(file), w, h, 2).unwrap();
        enc.attach_device(device.clone(), false).unwrap();
        assert_eq!(enc.backend_status().active, ActiveBackend::Onnxruntime);
        let image = self_test_image(w, h);
        let mut feats = enc.new_features();
        for _ in 0..3 {
            enc.encode(&image, &mut feats).unwrap();
        }
        let frames = 20;
        counting(true);
        for _ in 0..frames {
            enc.encode(&image, &mut feats).unwrap();
        }
        counting(false);
        let allocs = take_count();
        eprintln!("{file}: {allocs} allocations in {frames} frames");
        assert_eq!(allocs, 0, "{file}: {allocs} allocations in {frames} frames");
    }
}
