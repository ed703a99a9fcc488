//! What a running pipeline counts: the live [`Stats`] every stage updates,
//! the [`StatsSnapshot`] the service logs and reports, the latency window
//! behind its percentiles, and the [`Summary`] of a finished run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use vosd_shm::monotonic_ns;

use super::LatencyHistogram;

/// The last `n` capture→publish latencies (ns), in a ring allocated once.
#[derive(Debug)]
struct LatencyWindow {
    samples: Vec<u64>,
    next: usize,
    filled: bool,
}

impl LatencyWindow {
    fn new(n: usize) -> Self {
        Self {
            samples: vec![0; n.max(1)],
            next: 0,
            filled: false,
        }
    }
    fn push(&mut self, ns: u64) {
        self.samples[self.next] = ns;
        self.next += 1;
        if self.next == self.samples.len() {
            self.next = 0;
            self.filled = true;
        }
    }
    fn sorted(&self) -> Vec<u64> {
        let n = if self.filled {
            self.samples.len()
        } else {
            self.next
        };
        let mut v = self.samples[..n].to_vec();
        v.sort_unstable();
        v
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Live counters of a running pipeline (shared with the service loop).
#[derive(Debug)]
pub struct Stats {
    /// Frames the source delivered.
    pub captured: AtomicU64,
    /// Frames the source could not deliver (bad camera frames, skipped).
    pub capture_errors: AtomicU64,
    /// Captured frames replaced by a newer one before the engine took them.
    pub dropped_capture: AtomicU64,
    /// Frames the engine segmented (including first frames).
    pub processed: AtomicU64,
    /// Results replaced by a newer one before the publisher took them.
    pub dropped_engine: AtomicU64,
    /// Frames published to shared memory.
    pub published: AtomicU64,
    /// Published frames a tap (the Zenoh publisher) did not send: replaced
    /// in its queue before its thread took them, or while it had no session.
    pub dropped_tap: AtomicU64,
    /// CLOCK_MONOTONIC ns of the latest publish (0: none yet).
    pub last_publish_ns: AtomicU64,
    /// Failed attempts to get the camera back (see
    /// [`SourceEvent::Reconnecting`](crate::source::SourceEvent::Reconnecting)).
    pub reconnects: AtomicU64,
    /// The camera is lost and being reopened (no frames until it is back).
    pub source_down: AtomicBool,
    /// Segmenting and publishing are paused (control socket).
    pub paused: AtomicBool,
    /// Every capture→publish latency since start, in buckets (metrics).
    pub latency_histogram: LatencyHistogram,
    latency: Mutex<LatencyWindow>,
}

impl Stats {
    /// Zeroed counters with a latency window of `window` samples.
    pub fn new(window: usize) -> Self {
        Self {
            captured: AtomicU64::new(0),
            capture_errors: AtomicU64::new(0),
            dropped_capture: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            dropped_engine: AtomicU64::new(0),
            published: AtomicU64::new(0),
            dropped_tap: AtomicU64::new(0),
            last_publish_ns: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            source_down: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            latency_histogram: LatencyHistogram::default(),
            latency: Mutex::new(LatencyWindow::new(window)),
        }
    }

    /// Records one capture→publish latency (no allocation: the window's
    /// ring was allocated at start, the histogram is fixed atomics).
    pub(super) fn record_latency(&self, ns: u64) {
        self.latency_histogram.observe_ns(ns);
        if let Ok(mut l) = self.latency.lock() {
            l.push(ns);
        }
    }

    /// A consistent-enough copy of the counters with latency percentiles
    /// over the window (allocates: for the stats loop, not the hot path).
    pub fn snapshot(&self) -> StatsSnapshot {
        let sorted = self.latency.lock().map(|w| w.sorted()).unwrap_or_default();
        let ms = |ns: u64| ns as f64 / 1e6;
        StatsSnapshot {
            at_ns: monotonic_ns(),
            captured: self.captured.load(Ordering::Relaxed),
            capture_errors: self.capture_errors.load(Ordering::Relaxed),
            dropped_capture: self.dropped_capture.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            dropped_engine: self.dropped_engine.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            dropped_tap: self.dropped_tap.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            source_down: self.source_down.load(Ordering::Relaxed),
            latency_p50_ms: ms(percentile(&sorted, 50.0)),
            latency_p99_ms: ms(percentile(&sorted, 99.0)),
            latency_max_ms: ms(sorted.last().copied().unwrap_or(0)),
            latency_samples: sorted.len(),
        }
    }
}

/// Counters at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    /// When it was taken (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
    /// Frames captured.
    pub captured: u64,
    /// Frames the source failed to deliver.
    pub capture_errors: u64,
    /// Frames dropped at the engine's input (a newer one replaced them).
    pub dropped_capture: u64,
    /// Frames segmented.
    pub processed: u64,
    /// Results dropped at the publisher's input.
    pub dropped_engine: u64,
    /// Frames published.
    pub published: u64,
    /// Published frames a tap (Zenoh) did not send.
    pub dropped_tap: u64,
    /// Failed camera reconnection attempts.
    pub reconnects: u64,
    /// The camera was lost and not back yet.
    pub source_down: bool,
    /// Median capture→publish latency over the window, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile capture→publish latency over the window, ms.
    pub latency_p99_ms: f64,
    /// Largest latency in the window, ms.
    pub latency_max_ms: f64,
    /// Samples in the window.
    pub latency_samples: usize,
}

impl StatsSnapshot {
    /// Frames per second `(captured, published)` between `earlier` and self.
    pub fn rates_since(&self, earlier: &StatsSnapshot) -> (f64, f64) {
        let dt = self.at_ns.saturating_sub(earlier.at_ns) as f64 / 1e9;
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        (
            self.captured.saturating_sub(earlier.captured) as f64 / dt,
            self.published.saturating_sub(earlier.published) as f64 / dt,
        )
    }

    /// Frames dropped by any stage.
    pub fn dropped(&self) -> u64 {
        self.dropped_capture + self.dropped_engine
    }
}

/// What a finished pipeline did.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Final counters.
    pub stats: StatsSnapshot,
    /// The source ran out of frames (rather than being stopped).
    pub source_ended: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_window() {
        let mut w = LatencyWindow::new(100);
        for i in 1..=100 {
            w.push(i);
        }
        let s = w.sorted();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        w.push(1000); // overwrites the oldest (1)
        let s = w.sorted();
        assert_eq!(s.len(), 100);
        assert_eq!(*s.last().unwrap(), 1000);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
