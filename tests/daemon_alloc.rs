//! The pipeline's steady state allocates nothing in vosd's own code:
//! capture (synthetic source), the hand-over queues, object states and the
//! shared-memory publish, counted by a global allocator in a test binary of
//! its own. The engine stage runs a segmenter without the encoder (the
//! inference library allocates inside; see docs/daemon.md).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, counting, take_count};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vosd::pipeline::{Pipeline, PipelineConfig, SegmentError, Segmenter};
use vosd::source::synthetic::{Synthetic, SyntheticConfig};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::{PublishConfig, ShmWriter};

/// Shifts the first mask one pixel right per frame: real per-frame work
/// on the mask, without an encoder.
struct Shift {
    first: LabelMask,
    ids: Vec<u8>,
    k: usize,
}

impl Segmenter for Shift {
    fn start(&mut self, _frame: &RgbFrame, mask: &LabelMask) -> Result<(), SegmentError> {
        self.first.data.copy_from_slice(&mask.data);
        self.ids.clear();
        self.ids.extend(mask.object_ids());
        self.k = 0;
        Ok(())
    }
    fn step(&mut self, _frame: &RgbFrame, out: &mut LabelMask) -> Result<(), SegmentError> {
        self.k = (self.k + 1) % out.width;
        for (o, f) in out
            .data
            .chunks_mut(out.width)
            .zip(self.first.data.chunks(out.width))
        {
            o[self.k..].copy_from_slice(&f[..out.width - self.k]);
            o[..self.k].fill(0);
        }
        Ok(())
    }
    fn object_ids(&self) -> &[u8] {
        &self.ids
    }
}

#[test]
fn steady_state_does_not_allocate() {
    assert_counter_works();

    let (w, h) = (320, 240);
    let stop = Arc::new(AtomicBool::new(false));
    let source = Synthetic::new(
        &SyntheticConfig {
            width: w,
            height: h,
            fps: 400.0,
            ..Default::default()
        },
        stop.clone(),
    )
    .unwrap();
    let name = format!("/vosd-test-alloc-{}", std::process::id());
    let writer = ShmWriter::create(&PublishConfig::new(name.clone(), w as u32, h as u32)).unwrap();
    let seg = Shift {
        first: LabelMask::new(w, h),
        ids: Vec::with_capacity(256),
        k: 0,
    };
    let cfg = PipelineConfig {
        stats_interval_s: 0.0,
        ..Default::default()
    };
    let pipeline =
        Pipeline::start(Box::new(source), Box::new(seg), writer, &cfg, stop.clone()).unwrap();
    let stats = pipeline.stats().clone();

    let t0 = Instant::now();
    while stats.published.load(Ordering::Relaxed) < 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "pipeline does not publish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (p0, c0) = (
        stats.published.load(Ordering::Relaxed),
        stats.captured.load(Ordering::Relaxed),
    );
    // Count over a number of frames, not a span of time: an emulated or
    // loaded machine is slower, never wrong.
    const COUNTED_FRAMES: u64 = 200;
    counting(true);
    let t1 = Instant::now();
    while stats.published.load(Ordering::Relaxed) < p0 + COUNTED_FRAMES
        && t1.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    counting(false);
    let allocs = take_count();
    let (p1, c1) = (
        stats.published.load(Ordering::Relaxed),
        stats.captured.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::SeqCst);
    let summary = pipeline.join().unwrap();
    eprintln!(
        "{} frames captured, {} published while counting: {allocs} allocations; {:?}",
        c1 - c0,
        p1 - p0,
        summary.stats
    );
    assert!(
        p1 - p0 >= COUNTED_FRAMES,
        "only {} frames published in 60 s while counting",
        p1 - p0
    );
    assert_eq!(allocs, 0, "{allocs} allocations during {} frames", p1 - p0);
}
