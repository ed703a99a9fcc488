//! [`LatencyHistogram`]: the capture→publish latencies of every published
//! frame in fixed buckets, lock-free and without allocation, for the
//! Prometheus histogram `vosd_capture_to_publish_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets in seconds (`+Inf` is implicit): from 5 ms
/// (a small engine on a fast machine) to 2.5 s (an engine under emulation).
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// Counts of latencies per bucket, their sum and number. Each field is an
/// atomic updated with relaxed ordering: a reader may see a sample in the
/// count but not yet in its bucket, a difference of a few samples at most.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Samples per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    /// Sum of the samples in nanoseconds.
    sum_ns: AtomicU64,
    /// Number of samples.
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one latency in nanoseconds (no allocation, no lock).
    pub fn observe_ns(&self, ns: u64) {
        let s = ns as f64 / 1e9;
        let i = LATENCY_BUCKETS_S
            .iter()
            .position(|&upper| s <= upper)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the samples in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// `(upper bound in seconds, samples in that bucket)` per bucket, not
    /// cumulative, the last with an infinite bound.
    pub fn buckets(&self) -> [(f64, u64); LATENCY_BUCKETS_S.len() + 1] {
        std::array::from_fn(|i| {
            let upper = LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY);
            (upper, self.buckets[i].load(Ordering::Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_bucket() {
        let h = LatencyHistogram::default();
        h.observe_ns(4_000_000); // 4 ms: first bucket
        h.observe_ns(5_000_000); // on the bound: still the first
        h.observe_ns(40_000_000); // 40 ms: <= 0.05
        h.observe_ns(10_000_000_000); // 10 s: +Inf
        let b = h.buckets();
        assert_eq!(b[0], (0.005, 2));
        assert_eq!(b[4], (0.05, 1));
        assert_eq!(b[LATENCY_BUCKETS_S.len()], (f64::INFINITY, 1));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 10.049).abs() < 1e-9);
    }
}
