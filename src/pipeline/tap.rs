//! Taps: further consumers of the published frames beside shared memory
//! (the Zenoh publisher). The publish stage offers each frame it wrote to
//! every tap; a tap copies what it needs and returns at once (its own
//! thread does the slow work), so a slow network never holds the pipeline.

use std::sync::Arc;

use vosd_shm::ObjectState;

use super::Stats;

/// One published frame, as a tap sees it (borrowed for the call).
#[derive(Clone, Copy, Debug)]
pub struct TapFrame<'a> {
    /// The frame number (as in the shared-memory slot).
    pub frame_number: u64,
    /// CLOCK_MONOTONIC nanoseconds of the capture.
    pub capture_ns: u64,
    /// Mask width in pixels.
    pub width: usize,
    /// Mask height in pixels.
    pub height: usize,
    /// The label mask, row-major, `width * height` bytes.
    pub mask: &'a [u8],
    /// The object states of the slot.
    pub objects: &'a [ObjectState],
}

/// A consumer of published frames that must never block the pipeline.
pub trait FrameTap: Send {
    /// Called once before the first frame with the pipeline's counters (a
    /// tap counts the frames it drops in [`Stats::dropped_tap`]).
    fn attach(&mut self, stats: Arc<Stats>);
    /// Offers one published frame: copy it and return without waiting.
    fn offer(&mut self, frame: &TapFrame<'_>);
}
