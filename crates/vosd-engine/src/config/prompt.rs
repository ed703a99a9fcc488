//! `[engine.prompt]`: the box prompt's settings ([`crate::prompt`]).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Settings of the box prompt ([`crate::prompt::mask_from_box`]), the
/// `[engine.prompt]` table. The defaults were tuned on DAVIS 2016 train
/// (see docs/engine.md, "Box prompt").
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoxPromptConfig {
    /// Side of the encoded window around the box, as a multiple of the
    /// box's side (at least 1); `0` encodes the whole frame.
    pub context: f32,
    /// Smallest window side, as a fraction of the frame's side (0..=1): it
    /// caps the zoom on small boxes; 0 = no cap.
    pub min_window: f32,
    /// Background seeds: cells outside the box at most `ring` cells from it;
    /// `0` = every cell of the window outside the box.
    pub ring: usize,
    /// Background seeds: cells outside the box at least `gap` cells from it
    /// (cells right at the edge often hold part of the object).
    pub gap: f32,
    /// Foreground seeds are taken from the cells within the ellipse inscribed
    /// in the box, scaled by `core` (0 < core <= 1).
    pub core: f32,
    /// Foreground seeds: this fraction of those cells, the ones least like
    /// the background (0 < seed_fraction <= 1).
    pub seed_fraction: f32,
    /// Cells inside the box that look like background join the background
    /// seeds in later rounds.
    pub refine_bg: bool,
    /// Affinities averaged per side (best matches), at least 1.
    pub top_k: usize,
    /// Temperature of the fg/bg decision on mean cosine affinities (it sets
    /// how soft the probabilities given to the upsampling are).
    pub temperature: f32,
    /// Weight of the colour evidence (mean log-likelihood ratio of the
    /// cell's pixel colours under object and background colour histograms
    /// taken from the first estimate) added to each cell's affinity margin;
    /// `0` = features alone.
    pub colour_weight: f32,
    /// Rounds in which the current estimate replaces the seeds (0..=20).
    pub iterations: usize,
    /// Edge-aware upsampling: colour scale (RGB distance, 0–255).
    pub edge_sigma_color: f32,
    /// Edge-aware upsampling: spatial scale, in cells.
    pub edge_sigma_space: f32,
}

impl Default for BoxPromptConfig {
    fn default() -> Self {
        Self {
            context: 1.5,
            min_window: 0.0,
            ring: 2,
            gap: 0.5,
            core: 1.0,
            seed_fraction: 0.3,
            refine_bg: true,
            top_k: 10,
            temperature: 0.05,
            colour_weight: 0.3,
            iterations: 3,
            edge_sigma_color: 20.0,
            edge_sigma_space: 1.0,
        }
    }
}

impl BoxPromptConfig {
    /// Checks every value's range; the error names the key
    /// (`engine.prompt.<key>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_string(),
            })
        };
        if !(self.context == 0.0 || (self.context >= 1.0 && self.context.is_finite())) {
            return bad("prompt.context", "must be 0 (whole frame) or at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_window) {
            return bad("prompt.min_window", "must be in 0..=1");
        }
        if !(self.core > 0.0 && self.core <= 1.0) {
            return bad("prompt.core", "must be in (0, 1]");
        }
        if self.top_k == 0 {
            return bad("prompt.top_k", "must be at least 1");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("prompt.temperature", "must be a positive number");
        }
        if !(self.seed_fraction > 0.0 && self.seed_fraction <= 1.0) {
            return bad("prompt.seed_fraction", "must be in (0, 1]");
        }
        if !(self.gap >= 0.0 && self.gap.is_finite()) {
            return bad("prompt.gap", "must be 0 or more");
        }
        if !(self.colour_weight >= 0.0 && self.colour_weight.is_finite()) {
            return bad("prompt.colour_weight", "must be 0 or more");
        }
        if self.iterations > 20 {
            return bad("prompt.iterations", "must be at most 20");
        }
        if !(self.edge_sigma_color > 0.0 && self.edge_sigma_color.is_finite()) {
            return bad("prompt.edge_sigma_color", "must be a positive number");
        }
        if !(self.edge_sigma_space > 0.0 && self.edge_sigma_space.is_finite()) {
            return bad("prompt.edge_sigma_space", "must be a positive number");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;

    /// A file with an `[engine]` table only, as the daemon's config reads it.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileConfig {
        engine: EngineConfig,
    }

    /// Parses and validates a configuration file's text.
    fn load(text: &str) -> Result<FileConfig, String> {
        let c: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.engine.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn the_table_sets_the_prompt_and_an_old_file_keeps_the_defaults() {
        let c = load("[engine]\ntop_k = 4\n").unwrap();
        assert_eq!(c.engine.prompt, BoxPromptConfig::default());
        let c = load(
            "[engine]\ntop_k = 4\n\n[engine.prompt]\ncontext = 2.0\nring = 3\nrefine_bg = false\n",
        )
        .unwrap();
        assert_eq!(c.engine.top_k, 4);
        assert_eq!(
            c.engine.prompt,
            BoxPromptConfig {
                context: 2.0,
                ring: 3,
                refine_bg: false,
                ..BoxPromptConfig::default()
            }
        );
    }

    #[test]
    fn a_bad_value_or_an_unknown_key_names_it() {
        let e = load("[engine.prompt]\ncontext = 0.5\n").unwrap_err();
        assert!(e.contains("engine.prompt.context: must be 0"), "{e}");
        let e = load("[engine.prompt]\nseed_fraction = 1.5\n").unwrap_err();
        assert!(e.contains("engine.prompt.seed_fraction"), "{e}");
        let e = load("[engine.prompt]\ncontxt = 2.0\n").unwrap_err();
        assert!(e.contains("contxt"), "{e}");
        let e = load("[engine.prompt]\nring = -1\n").unwrap_err();
        assert!(e.contains("ring"), "{e}");
    }

    #[test]
    fn every_range_is_checked() {
        let d = BoxPromptConfig::default();
        for (bad, key) in [
            (
                BoxPromptConfig {
                    min_window: 1.5,
                    ..d.clone()
                },
                "prompt.min_window",
            ),
            (
                BoxPromptConfig {
                    core: 0.0,
                    ..d.clone()
                },
                "prompt.core",
            ),
            (
                BoxPromptConfig {
                    top_k: 0,
                    ..d.clone()
                },
                "prompt.top_k",
            ),
            (
                BoxPromptConfig {
                    temperature: f32::NAN,
                    ..d.clone()
                },
                "prompt.temperature",
            ),
            (
                BoxPromptConfig {
                    gap: -1.0,
                    ..d.clone()
                },
                "prompt.gap",
            ),
            (
                BoxPromptConfig {
                    colour_weight: f32::INFINITY,
                    ..d.clone()
                },
                "prompt.colour_weight",
            ),
            (
                BoxPromptConfig {
                    iterations: 21,
                    ..d.clone()
                },
                "prompt.iterations",
            ),
            (
                BoxPromptConfig {
                    edge_sigma_space: 0.0,
                    ..d.clone()
                },
                "prompt.edge_sigma_space",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().key, key);
        }
        d.validate().unwrap();
    }
}
