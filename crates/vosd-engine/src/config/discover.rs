//! `[discover]`: unsupervised mode, the discovery of moving objects with no
//! first mask ([`crate::discover`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::KeyError;

/// The `[discover]` table. The defaults suit any mover under a still
/// camera (the synthetic scene); the DAVIS fold protocol chose another
/// setting for natural video (docs/discover.md, Figures). The limits are
/// the operator's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverConfig {
    /// Most objects discovery keeps at once (objects added by hand count
    /// too); 1..=255 and at most `engine.max_objects`.
    pub max_objects: usize,
    /// Smallest moving region that can become an object, as a fraction of
    /// the frame (0 < min_area < 1).
    pub min_area: f32,
    /// Consecutive frames a moving region must be seen in before it gets
    /// an id, 1..=60.
    pub min_persistence: u32,
    /// Motion, in pixels of the processing size per compared frame pair,
    /// that the camera's global motion must fail to explain for a cell to
    /// count as moving (> 0).
    pub motion_threshold_px: f32,
    /// Appearance change (1 − cosine similarity of a cell's features and
    /// those at the place the global motion predicts) above which a cell
    /// counts as moving too, 0 < x ≤ 2.
    pub change_threshold: f32,
    /// Frames between the two frames compared for motion, 1..=8 (larger
    /// sees slower motion, smaller follows faster motion).
    pub frame_gap: usize,
    /// Whether discovery starts from the second frame: each of the first
    /// `frame_gap` frames is compared with the first frame (a shorter gap,
    /// the motion threshold scaled down to it), instead of waiting for
    /// `frame_gap` frames. Objects are found frames earlier, and objects
    /// that start out together are more often found as one. It applies to
    /// the first frames a discovery sees, not again after a restart
    /// ([`crate::discover::Discovery::start`]).
    pub from_second_frame: bool,
    /// Seconds an object may stay out of sight before it is removed (> 0).
    pub lost_after_s: f64,
    /// Seconds during which a region whose object was removed by hand is
    /// not discovered again (≥ 0).
    pub suppress_s: f64,
    /// Whether a moving region found next to a tracked object, moving with
    /// it, extends that object (a part its first box missed) instead of
    /// becoming a new one.
    pub extend_objects: bool,
    /// Whether the box prompt's mask of a discovered region is kept within
    /// a cell of the region's moving cells (for regions whose box is much
    /// larger than the mover, as along a diagonal).
    pub trim_to_motion: bool,
    /// How a discovered region becomes an object's first mask.
    pub prompt: DiscoverPrompt,
    /// Whether each tracked object's published mask is grown over the
    /// objectness head's object cells connected to it (needs `prompt =
    /// "objectness"`; the tracker's memory is not changed).
    pub grow_to_objectness: bool,
    /// Whether the objectness head's components that hold a moving cell
    /// are candidates too, beside the motion regions (needs `prompt =
    /// "objectness"`; finds movers that move as one region with their
    /// surroundings, as on water).
    pub objectness_proposals: bool,
    /// The head's probability above which a cell is an object cell (for
    /// `prompt = "objectness"`), within 0 < x < 1: lower finds more of a
    /// mover the head is unsure of, and more of what is not one.
    pub objectness_threshold: f32,
    /// The objectness head's ONNX file (for `prompt = "objectness"`);
    /// empty: the bundled `objectness/objectness.onnx` beside the encoder
    /// files.
    pub objectness_model: PathBuf,
}

/// How a discovered region becomes an object's first mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoverPrompt {
    /// The box prompt on the region's box (`[engine.prompt]`), as for
    /// `vosd ctl add --box`: any mover, whatever it looks like.
    #[default]
    Box,
    /// The objectness head's cells connected to the region's moving cells
    /// ([`crate::discover`], `objectness.rs`); a region where the head
    /// sees no object is not taken for one. The head learned DAVIS 2016's
    /// primary objects (people, animals, vehicles): it suits natural video,
    /// not the synthetic scene's shapes.
    Objectness,
}

impl Default for DiscoverConfig {
    fn default() -> Self {
        Self {
            max_objects: 4,
            min_area: 0.004,
            min_persistence: 3,
            motion_threshold_px: 6.0,
            change_threshold: 0.35,
            frame_gap: 3,
            from_second_frame: false,
            lost_after_s: 2.0,
            suppress_s: 10.0,
            extend_objects: false,
            trim_to_motion: false,
            prompt: DiscoverPrompt::default(),
            grow_to_objectness: false,
            objectness_proposals: false,
            objectness_threshold: 0.5,
            objectness_model: PathBuf::new(),
        }
    }
}

impl DiscoverConfig {
    /// The objectness head's file: `objectness_model`, else the bundled
    /// one.
    pub fn objectness_file(&self) -> PathBuf {
        if self.objectness_model.as_os_str().is_empty() {
            super::bundled_model_dir()
                .join("objectness")
                .join("objectness.onnx")
        } else {
            self.objectness_model.clone()
        }
    }

    /// Checks ranges against each other and against the engine's
    /// `max_objects`; the error names the key.
    pub fn validate(&self, engine_max_objects: usize) -> Result<(), KeyError> {
        let bad = |key: &str, reason: String| Err(KeyError::new("discover", key, reason));
        if !(1..=255).contains(&self.max_objects) {
            return bad("max_objects", "must be within 1..=255".into());
        }
        if self.max_objects > engine_max_objects {
            return bad("max_objects",
                format!(
                    "{} is more than engine.max_objects ({engine_max_objects}); raise engine.max_objects or lower this",
                    self.max_objects
                ),
            );
        }
        if !(self.min_area > 0.0 && self.min_area < 1.0) {
            return bad(
                "min_area",
                "must be a fraction of the frame, 0 < min_area < 1".into(),
            );
        }
        if !(1..=60).contains(&self.min_persistence) {
            return bad("min_persistence", "must be within 1..=60 frames".into());
        }
        if !(self.motion_threshold_px > 0.0 && self.motion_threshold_px.is_finite()) {
            return bad(
                "motion_threshold_px",
                "must be a positive number of pixels".into(),
            );
        }
        if !(self.change_threshold > 0.0 && self.change_threshold <= 2.0) {
            return bad("change_threshold", "must be within 0 < x <= 2".into());
        }
        if !(1..=8).contains(&self.frame_gap) {
            return bad("frame_gap", "must be within 1..=8 frames".into());
        }
        if !(self.lost_after_s > 0.0 && self.lost_after_s.is_finite()) {
            return bad(
                "lost_after_s",
                "must be a positive number of seconds".into(),
            );
        }
        if !(self.suppress_s >= 0.0 && self.suppress_s.is_finite()) {
            return bad("suppress_s", "must be 0 or more seconds".into());
        }
        if !(self.objectness_threshold > 0.0 && self.objectness_threshold < 1.0) {
            return bad(
                "objectness_threshold",
                "must be a probability, 0 < objectness_threshold < 1".into(),
            );
        }
        for (key, on) in [
            ("grow_to_objectness", self.grow_to_objectness),
            ("objectness_proposals", self.objectness_proposals),
            (
                "objectness_threshold",
                self.objectness_threshold != Self::default().objectness_threshold,
            ),
        ] {
            if on && self.prompt != DiscoverPrompt::Objectness {
                return bad(
                    key,
                    format!(
                        "needs the objectness head: set prompt = \"objectness\", or leave {key} out"
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DiscoverConfig::default().validate(8).unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(DiscoverConfig, &str)> = vec![
            (
                DiscoverConfig {
                    max_objects: 0,
                    ..Default::default()
                },
                "discover.max_objects",
            ),
            (
                DiscoverConfig {
                    min_area: 1.5,
                    ..Default::default()
                },
                "discover.min_area",
            ),
            (
                DiscoverConfig {
                    min_area: f32::NAN,
                    ..Default::default()
                },
                "discover.min_area",
            ),
            (
                DiscoverConfig {
                    min_persistence: 0,
                    ..Default::default()
                },
                "discover.min_persistence",
            ),
            (
                DiscoverConfig {
                    motion_threshold_px: -1.0,
                    ..Default::default()
                },
                "discover.motion_threshold_px",
            ),
            (
                DiscoverConfig {
                    change_threshold: 0.0,
                    ..Default::default()
                },
                "discover.change_threshold",
            ),
            (
                DiscoverConfig {
                    frame_gap: 9,
                    ..Default::default()
                },
                "discover.frame_gap",
            ),
            (
                DiscoverConfig {
                    lost_after_s: f64::INFINITY,
                    ..Default::default()
                },
                "discover.lost_after_s",
            ),
            (
                DiscoverConfig {
                    suppress_s: -1.0,
                    ..Default::default()
                },
                "discover.suppress_s",
            ),
            (
                DiscoverConfig {
                    grow_to_objectness: true,
                    prompt: DiscoverPrompt::Box,
                    ..Default::default()
                },
                "discover.grow_to_objectness",
            ),
            (
                DiscoverConfig {
                    objectness_proposals: true,
                    prompt: DiscoverPrompt::Box,
                    ..Default::default()
                },
                "discover.objectness_proposals",
            ),
            (
                DiscoverConfig {
                    objectness_threshold: 0.3,
                    prompt: DiscoverPrompt::Box,
                    ..Default::default()
                },
                "discover.objectness_threshold",
            ),
            (
                DiscoverConfig {
                    objectness_threshold: 1.0,
                    prompt: DiscoverPrompt::Objectness,
                    ..Default::default()
                },
                "discover.objectness_threshold",
            ),
        ];
        for (cfg, key) in cases {
            let e = cfg.validate(8).unwrap_err();
            assert_eq!(e.key, key, "{e:?}");
        }
        let e = DiscoverConfig {
            max_objects: 9,
            ..Default::default()
        }
        .validate(8)
        .unwrap_err();
        assert_eq!(e.key, "discover.max_objects");
        assert!(e.reason.contains("engine.max_objects"), "{}", e.reason);
    }
}
