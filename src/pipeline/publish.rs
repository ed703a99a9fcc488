//! The publish stage: turns each segmented frame into object states and
//! writes it to the shared-memory segment, with the segment's statistics
//! block kept current; writes the end marker when the pipeline stops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use vosd_shm::{monotonic_ns, ObjectState, PipelineCounters, ShmWriter, SlotData};

use super::queue::{MaskBuf, Recycler};
use super::tap::{FrameTap, TapFrame};
use super::tracks::StateTracker;
use super::{Shared, TICK};

/// The publish stage: takes the newest segmented frame, fills its object
/// states ([`StateTracker`]), publishes the slot, records the
/// capture→publish latency and gives the mask back to the mask pool. Runs
/// until the segment stage has gone, then publishes the final counts and
/// the end marker and drops the writer (which unlinks the segment).
pub(super) struct PublishStage {
    /// The shared-memory segment.
    pub(super) writer: ShmWriter,
    /// The segment stage's latest-wins queue.
    pub(super) results: Receiver<MaskBuf>,
    /// Gives masks back to the mask pool.
    pub(super) masks_back: Recycler<MaskBuf>,
    /// Stop after this many published frames; 0 = no limit.
    pub(super) max_frames: u64,
    /// Seconds out of sight before an object is lost.
    pub(super) lost_after_s: f64,
    /// Further consumers offered every published frame (Zenoh).
    pub(super) taps: Vec<Box<dyn FrameTap>>,
    /// Raised once the end marker is written and the writer dropped.
    pub(super) done: Arc<AtomicBool>,
    /// Counters, stop flag and failure.
    pub(super) shared: Shared,
}

impl PublishStage {
    /// The stage's thread.
    pub(super) fn run(mut self) {
        let max_objects = self.writer.max_objects() as usize;
        let mut states: Vec<ObjectState> = Vec::with_capacity(max_objects);
        let mut tracker = StateTracker::new(self.lost_after_s);
        self.publish_stats();
        loop {
            let o = match self.results.recv_timeout(TICK) {
                Ok(o) => o,
                Err(RecvTimeoutError::Timeout) => {
                    self.publish_stats();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if o.meta.restart {
                tracker.reset();
            }
            tracker.update(&o, &mut states, max_objects);
            self.publish(&o, &states);
            self.publish_stats();
            self.masks_back.give_back(o);
        }
        // Final counts, then the end marker.
        self.publish_stats();
        let Self {
            mut writer, done, ..
        } = self;
        writer.finish();
        log::info!(
            "shm '{}': end marker published after {} frames",
            writer.name(),
            writer.published()
        );
        drop(writer);
        done.store(true, Ordering::SeqCst);
    }

    /// Writes one slot; counts it, and stops the pipeline at `max_frames`.
    fn publish(&mut self, o: &MaskBuf, states: &[ObjectState]) {
        let data = SlotData {
            frame_number: o.meta.frame_number,
            capture_ns: o.meta.capture_ns,
            objects: states,
            mask: &o.mask.data,
        };
        let stats = &self.shared.stats;
        match self.writer.publish(&data) {
            Ok(_) => {
                for tap in &mut self.taps {
                    tap.offer(&TapFrame {
                        frame_number: o.meta.frame_number,
                        capture_ns: o.meta.capture_ns,
                        width: o.mask.width,
                        height: o.mask.height,
                        mask: &o.mask.data,
                        objects: states,
                    });
                }
                let now = monotonic_ns();
                stats.record_latency(now.saturating_sub(o.meta.capture_ns));
                stats.last_publish_ns.store(now, Ordering::Relaxed);
                let n = stats.published.fetch_add(1, Ordering::Release) + 1;
                if self.max_frames > 0 && n >= self.max_frames {
                    log::info!("published {n} frames (pipeline.max_frames): stopping");
                    self.shared.stop();
                }
            }
            Err(e) => self.shared.fail("publish", e.to_string()),
        }
    }

    /// Refreshes the statistics block of the segment header: after every
    /// publish and on every idle tick, so that readers see a lost camera
    /// while nothing is published. Relaxed loads and stores only; no
    /// allocation.
    fn publish_stats(&self) {
        let stats = &self.shared.stats;
        let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.writer.set_stats(&PipelineCounters {
            frames_captured: ld(&stats.captured),
            frames_dropped: ld(&stats.dropped_capture).saturating_add(ld(&stats.dropped_engine)),
            capture_errors: sat(ld(&stats.capture_errors)),
            reconnects: sat(ld(&stats.reconnects)),
            camera_lost: stats.source_down.load(Ordering::Relaxed),
        });
    }
}
