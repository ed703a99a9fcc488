//! The ONNX Runtime encoder allocates nothing in Rust per frame: its input
//! and output tensors are made at start and written in place, counted by
//! a global allocator in a test binary of its own. (ONNX Runtime's own C++
//! arena is outside Rust's allocator and not counted; it reuses its
//! buffers between runs of one session.) Skipped, with SKIP printed,
//! without the library (`VOSD_REQUIRE_ONNXRUNTIME=1` fails instead).
#![cfg(feature = "onnxruntime")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vosd_engine::backend::{open_device, ActiveBackend, BackendChoice, DeviceOptions};
use vosd_engine::encoder::{self_test_image, Encoder};

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn encoding_a_frame_does_not_allocate() {
    // The counter works.
    COUNTING.store(true, Ordering::SeqCst);
    drop(std::hint::black_box(vec![0u8; 64]));
    COUNTING.store(false, Ordering::SeqCst);
    assert!(ALLOCS.swap(0, Ordering::SeqCst) >= 1);

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
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..frames {
            enc.encode(&image, &mut feats).unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
        let allocs = ALLOCS.swap(0, Ordering::SeqCst);
        eprintln!("{file}: {allocs} allocations in {frames} frames");
        assert_eq!(allocs, 0, "{file}: {allocs} allocations in {frames} frames");
    }
}
