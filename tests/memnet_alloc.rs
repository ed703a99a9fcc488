//! The memory network's step allocates nothing in vosd's own code, counted
//! by a global allocator in a test binary of its own (a second test in
//! the same binary would add its allocations to the shared counter).
//! Skipped, with SKIP printed, without the ONNX Runtime library
//! (`VOSD_REQUIRE_ONNXRUNTIME=1` fails instead).
#![cfg(feature = "onnxruntime")]

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, counting, take_count};
use vosd_engine::backend::{ActiveBackend, BackendChoice};
use vosd_engine::encoder::self_test_image;

/// The memory network's whole step (encoder and heads on ONNX Runtime,
/// vosd's readout, aggregation, upsampling and memory), with two objects,
/// allocates nothing in vosd's own code. The only allocations are the
/// packing buffers that matrixmultiply makes inside each matrix product of
/// the readout (at most one per block of query cells and memory frame: 7
/// memory frames × up to 5 blocks here), so the bound is that, not zero.
#[test]
fn a_memory_network_step_does_not_allocate() {
    use vosd_engine::config::{EngineConfig, Method};
    use vosd_engine::engine::Tracker;
    use vosd_engine::frame::LabelMask;
    assert_counter_works();
    let cfg = EngineConfig {
        method: Method::MemoryNetwork,
        backend: BackendChoice::Onnxruntime,
        size: [256, 144],
        threads: 2,
        ..Default::default()
    };
    let (w, h) = (320, 180);
    let mut tracker = match Tracker::new(&cfg, w, h) {
        Ok(t) => t,
        Err(e) if std::env::var_os("VOSD_REQUIRE_ONNXRUNTIME").is_some() => {
            panic!("VOSD_REQUIRE_ONNXRUNTIME is set but: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: {e}");
            return;
        }
    };
    assert_eq!(tracker.backend_status().active, ActiveBackend::Onnxruntime);
    let image = self_test_image(w, h);
    let mut mask = LabelMask::new(w, h);
    for y in 40..100 {
        mask.data[y * w + 40..y * w + 100].fill(1);
        mask.data[y * w + 200..y * w + 260].fill(2);
    }
    tracker.start(&image, &mask).unwrap();
    let mut out = LabelMask::new(w, h);
    // Past the first memory writes (working memory fills by frame 25).
    for _ in 0..30 {
        tracker.step(&image, &mut out).unwrap();
    }
    let frames = 20;
    counting(true);
    for _ in 0..frames {
        tracker.step(&image, &mut out).unwrap();
    }
    counting(false);
    let allocs = take_count();
    eprintln!("memory network: {allocs} allocations in {frames} frames");
    assert!(
        allocs <= 40 * frames,
        "{allocs} allocations in {frames} frames"
    );
}
