//! Capture times (CLOCK_MONOTONIC) on the ROS clock (CLOCK_REALTIME).
//!
//! The offset `realtime - monotonic` is measured at start and again every
//! `refresh` (the publisher thread checks on each frame). One measurement
//! reads the monotonic clock, the real-time clock, the monotonic clock
//! again, five times, and keeps the tightest bracket: the offset is the
//! real-time reading minus the bracket's midpoint, wrong by at most half
//! the bracket (a microsecond or less; [`WallClock::bracket_ns`]).
//!
//! Between refreshes the real-time clock may be slewed by NTP (at most
//! 500 ppm under Linux's adjtimex limit: 0.5 ms per second of `refresh`)
//! or stepped (a step shows up at the next refresh). The error of a stamp
//! is therefore at most `bracket / 2 + 500e-6 × refresh` plus any step in
//! the last `refresh` seconds: about 0.5 ms with the default 1 s.

use rustix::time::{clock_gettime, ClockId};

/// Nanoseconds of a clock.
fn now_ns(id: ClockId) -> i64 {
    let ts = clock_gettime(id);
    (ts.tv_sec as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as i64)
}

/// One offset measurement: `(realtime - monotonic, bracket)` in ns.
pub fn measure_offset() -> (i64, i64) {
    let mut best = (0i64, i64::MAX);
    for _ in 0..5 {
        let m0 = now_ns(ClockId::Monotonic);
        let r = now_ns(ClockId::Realtime);
        let m1 = now_ns(ClockId::Monotonic);
        let bracket = m1 - m0;
        if bracket < best.1 {
            best = (r - (m0 + bracket / 2), bracket);
        }
    }
    best
}

/// Converts CLOCK_MONOTONIC times to CLOCK_REALTIME with an offset that is
/// refreshed every `refresh_ns`.
#[derive(Debug)]
pub struct WallClock {
    offset_ns: i64,
    bracket_ns: i64,
    measured_at: i64,
    refresh_ns: i64,
}

impl WallClock {
    /// Measures the offset now; it is measured again every `refresh_s`.
    pub fn new(refresh_s: f64) -> Self {
        let mut c = Self {
            offset_ns: 0,
            bracket_ns: 0,
            measured_at: 0,
            refresh_ns: (refresh_s * 1e9) as i64,
        };
        c.refresh();
        c
    }

    /// Measures the offset again.
    pub fn refresh(&mut self) {
        let (offset, bracket) = measure_offset();
        self.offset_ns = offset;
        self.bracket_ns = bracket;
        self.measured_at = now_ns(ClockId::Monotonic);
    }

    /// The current offset (realtime − monotonic), ns.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// The bracket of the last measurement, ns: the offset is within half
    /// of it.
    pub fn bracket_ns(&self) -> i64 {
        self.bracket_ns
    }

    /// `monotonic_ns` on CLOCK_REALTIME, refreshing the offset first when
    /// it is older than the refresh period.
    pub fn to_realtime(&mut self, monotonic_ns: u64) -> i64 {
        if now_ns(ClockId::Monotonic) - self.measured_at >= self.refresh_ns {
            self.refresh();
        }
        i64::try_from(monotonic_ns)
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converted monotonic "now" lies between two real-time readings
    /// taken around it (up to the measurement's bracket).
    #[test]
    fn converted_now_is_between_realtime_readings() {
        let mut c = WallClock::new(1.0);
        assert!(c.bracket_ns() >= 0);
        let r0 = now_ns(ClockId::Realtime);
        let m = now_ns(ClockId::Monotonic) as u64;
        let r1 = now_ns(ClockId::Realtime);
        let t = c.to_realtime(m);
        let slack = c.bracket_ns() + 1_000_000;
        assert!(t >= r0 - slack && t <= r1 + slack, "{r0} {t} {r1}");
    }

    #[test]
    fn a_zero_period_refreshes_every_time() {
        let mut c = WallClock::new(0.0);
        let before = c.measured_at;
        c.to_realtime(0);
        assert!(c.measured_at >= before);
        assert_eq!(
            c.to_realtime(u64::MAX),
            i64::MAX.saturating_add(c.offset_ns())
        );
    }
}
