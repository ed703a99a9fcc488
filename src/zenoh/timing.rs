//! Per-frame costs of the Zenoh publisher, kept in a ring allocated at
//! start and summarised when it stops (the figures of README "Zenoh").

/// The last durations (ns) of one kind of work.
#[derive(Debug)]
pub struct Timings {
    samples: Vec<u64>,
    next: usize,
    count: u64,
}

impl Timings {
    /// A ring of `n` samples.
    pub fn new(n: usize) -> Self {
        Self {
            samples: vec![0; n.max(1)],
            next: 0,
            count: 0,
        }
    }

    /// Records one duration.
    pub fn push(&mut self, ns: u64) {
        self.samples[self.next] = ns;
        self.next = (self.next + 1) % self.samples.len();
        self.count += 1;
    }

    /// `(samples, p50 µs, p99 µs)` over the ring; `None` when empty.
    pub fn summary(&self) -> Option<(u64, f64, f64)> {
        let n = (self.count as usize).min(self.samples.len());
        if n == 0 {
            return None;
        }
        let mut v = self.samples[..n].to_vec();
        v.sort_unstable();
        let at = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1e3;
        Some((self.count, at(0.50), at(0.99)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_ring() {
        let mut t = Timings::new(100);
        assert_eq!(t.summary(), None);
        for i in 1..=200u64 {
            t.push(i * 1000);
        }
        // The ring holds 101..=200 µs.
        assert_eq!(t.summary(), Some((200, 150.0, 199.0)));
    }
}
