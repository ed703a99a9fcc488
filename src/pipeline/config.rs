//! The `[pipeline]` table of the daemon configuration: pool sizes, the
//! statistics interval and window, the frame limit and when an object out
//! of sight counts as lost.

use serde::{Deserialize, Serialize};

/// The `[pipeline]` table of the daemon configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Frame buffers allocated at start (3..=64): one being captured, one
    /// queued, one in the engine, the rest slack.
    pub frame_pool: usize,
    /// Result masks allocated at start (3..=64).
    pub mask_pool: usize,
    /// Seconds between statistics lines in the log; 0 = never.
    pub stats_interval_s: f64,
    /// Latency samples kept for the p50/p99 figures (16..=65536).
    pub latency_window: usize,
    /// Stop after this many published frames; 0 = run until stopped.
    pub max_frames: u64,
    /// Seconds an object may stay out of sight (no pixels) as `occluded`
    /// before it is reported `lost` (0.1..=3600).
    pub lost_after_s: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            frame_pool: 4,
            mask_pool: 4,
            stats_interval_s: 10.0,
            latency_window: 1024,
            max_frames: 0,
            lost_after_s: 2.0,
        }
    }
}

/// A `[pipeline]` value out of range.
#[derive(Debug, thiserror::Error)]
#[error("pipeline.{key}: {reason}")]
pub struct PipelineConfigError {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl PipelineConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), PipelineConfigError> {
        let bad = |key, reason: String| Err(PipelineConfigError { key, reason });
        if !(3..=64).contains(&self.frame_pool) {
            return bad(
                "frame_pool",
                format!("{} is not within 3..=64", self.frame_pool),
            );
        }
        if !(3..=64).contains(&self.mask_pool) {
            return bad(
                "mask_pool",
                format!("{} is not within 3..=64", self.mask_pool),
            );
        }
        if !(self.stats_interval_s.is_finite() && (0.0..=86400.0).contains(&self.stats_interval_s))
        {
            return bad(
                "stats_interval_s",
                "must be within 0..=86400 seconds".into(),
            );
        }
        if !(16..=65536).contains(&self.latency_window) {
            return bad(
                "latency_window",
                format!("{} is not within 16..=65536", self.latency_window),
            );
        }
        if !(self.lost_after_s.is_finite() && (0.1..=3600.0).contains(&self.lost_after_s)) {
            return bad("lost_after_s", "must be within 0.1..=3600 seconds".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_errors_name_the_key() {
        PipelineConfig::default().validate().unwrap();
        let e = PipelineConfig {
            frame_pool: 2,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.to_string(), "pipeline.frame_pool: 2 is not within 3..=64");
        let e = PipelineConfig {
            lost_after_s: f64::NAN,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipeline.lost_after_s: must be within 0.1..=3600 seconds"
        );
    }
}
