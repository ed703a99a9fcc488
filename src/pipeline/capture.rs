//! The capture stage: fills free frame buffers from the source and hands
//! each over to the segment stage, newest first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::RecvTimeoutError;

use crate::source::{FrameMeta, FrameSource, SourceEvent};

use super::queue::{ConsumerGone, FrameBuf, LatestSender, Pool};
use super::{Shared, TICK};

/// The capture stage: takes a free buffer from the frame pool, has the
/// source fill it, and hands it over the latest-wins queue to the segment
/// stage (a frame the segment stage had not taken yet goes back to the
/// pool, counted as a capture drop). A bad frame or a lost camera is
/// counted, logged sparsely and skipped; the end of the stream, the stop
/// flag or a source failure ends the stage.
pub(super) struct CaptureStage {
    /// Where frames come from.
    pub(super) source: Box<dyn FrameSource>,
    /// The frame pool.
    pub(super) frames: Pool<FrameBuf>,
    /// The latest-wins queue to the segment stage.
    pub(super) to_segment: LatestSender<FrameBuf>,
    /// Raised when the source ran out of frames.
    pub(super) source_ended: Arc<AtomicBool>,
    /// Counters, stop flag and failure.
    pub(super) shared: Shared,
}

impl CaptureStage {
    /// The stage's thread.
    pub(super) fn run(mut self) {
        let mut bad_logged = 0u64;
        while !self.shared.stopping() {
            let mut slot = match self.frames.take(TICK) {
                Ok(s) => s,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let stats = &self.shared.stats;
            match self.source.next_frame(&mut slot.rgb) {
                Ok(SourceEvent::Frame(meta)) => {
                    if self.hand_over(slot, meta).is_err() {
                        break;
                    }
                }
                Ok(SourceEvent::Stopped) => break,
                Ok(SourceEvent::Ended) => {
                    log::info!(
                        "source: end of stream after {} frames",
                        stats.captured.load(Ordering::Relaxed)
                    );
                    self.source_ended.store(true, Ordering::SeqCst);
                    break;
                }
                Ok(event @ SourceEvent::Reconnecting { .. }) => {
                    let n = stats.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                    stats.source_down.store(true, Ordering::Relaxed);
                    // Every attempt at first, then sparser.
                    if n <= 5 || n.is_power_of_two() {
                        log::warn!("source: {event} (attempt {n})");
                    }
                    self.frames.give_back(slot);
                }
                Ok(event @ SourceEvent::BadFrame { .. }) => {
                    let n = stats.capture_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() && n > bad_logged {
                        bad_logged = n;
                        log::warn!("source: {event} ({n} so far; skipped)");
                    }
                    self.frames.give_back(slot);
                }
                Err(e) => {
                    self.shared.fail("capture", e.to_string());
                    break;
                }
            }
        }
        // Dropping `to_segment` tells the segment stage that no frame
        // follows.
    }

    /// Counts a delivered frame and hands it over to the segment stage.
    fn hand_over(&self, mut slot: FrameBuf, meta: FrameMeta) -> Result<(), ConsumerGone> {
        let stats = &self.shared.stats;
        if stats.source_down.swap(false, Ordering::Relaxed) {
            log::info!("source: frames flow again");
        }
        slot.meta = meta;
        stats.captured.fetch_add(1, Ordering::Relaxed);
        let dropped = self
            .to_segment
            .send(slot, |stale| self.frames.give_back(stale))?;
        if dropped {
            stats.dropped_capture.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
