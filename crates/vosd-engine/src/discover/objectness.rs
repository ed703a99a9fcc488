//! With `discover.prompt = "objectness"`, a discovered region's first mask
//! comes from a learned objectness head instead of the box prompt.
//!
//! Motion finds where a mover is but rarely all of it: the moving cells of
//! a walking animal are its legs, of a boat its wake's edge, and the box
//! prompt then fills a box around those. The head
//! (`models/objectness/objectness.onnx`, trained by
//! `training/objectness.py` on DAVIS 2016's foreground masks) gives every
//! stride-8 cell, from the encoder's feat16 and feat8 of the frame alone,
//! the probability that it belongs to a primary object. The region's mask
//! is then the cells above `objectness_threshold` (one half by default)
//! that are connected (8-neighbours) to the region's moving cells, or
//! within [`REACH_CELLS`] of them, upsampled to the frame like the
//! decoder's probabilities. Where the head sees no
//! object at the region, the region is not taken for an object: on the
//! development fold, regions of water, wakes and shadows then stopped
//! taking the place of the movers (J&F 0.501 with the box prompt as the
//! fallback, 0.554 without). With `grow_to_objectness`, each tracked
//! object's published mask is also grown, every frame, over the head's
//! object cells connected to it ([`ObjectnessPrompt::grow`]). With
//! `objectness_proposals`, the head's components that hold a free moving
//! cell are candidates too ([`ObjectnessPrompt::propose`]): a mover that
//! moves as one region with its surroundings (a duck on moving water) is
//! dropped by the region rules, but not by the head.
//!
//! The head runs once per frame at most (on frames where a region is
//! promoted, on every tracked frame with `grow_to_objectness`, and on
//! every frame with room for an object with `objectness_proposals`), on
//! the features the frame was encoded to anyway. On the DAVIS fold
//! protocol the objectness prompt with proposals was chosen for both
//! held-out folds (docs/discover.md, Figures).

use std::path::Path;

use super::near_motion::{NearMotion, REACH_CELLS};
use super::regions::{CellMotion, Region};
use crate::backend::net::{NetSpec, TensorSpec};
use crate::backend::BackendError;
use crate::encoder::{Encoder, Features, CHANNELS};
use crate::frame::LabelMask;
use crate::memnet::heads::{Head, HeadError, HeadGrids};
use crate::memnet::upsample::ProbUpsampler;

/// `objectness.onnx`: `feat16` and `feat8` → `logits` at stride 8.
pub fn objectness_spec(g: &HeadGrids) -> NetSpec {
    let tensor = |name, c, (w, h): (usize, usize)| TensorSpec {
        name,
        shape: vec![1, c, h, w],
    };
    NetSpec {
        role: "objectness",
        inputs: vec![
            tensor("feat16", CHANNELS[2], g.s16),
            tensor("feat8", CHANNELS[1], g.s8),
        ],
        output: tensor("logits", 1, g.s8),
    }
}

/// The objectness head and the buffers that turn its map into masks,
/// sized once for a processing size and a frame size.
#[derive(Debug)]
pub(crate) struct ObjectnessPrompt {
    head: Head,
    /// The stride-8 grid, `(width, height)`.
    grid: (usize, usize),
    logits: Vec<f32>,
    /// The log-odds of `discover.objectness_threshold`, taken from each
    /// logit: a cell is an object cell where its shifted probability is
    /// above one half, its head's probability above the threshold.
    threshold_logit: f32,
    /// Two planes of the grid: background and object probability (shifted
    /// by the threshold).
    probs: Vec<f32>,
    /// The frame whose map `probs` holds.
    frame: Option<u64>,
    components: Components,
    /// Frame pixels where the head's map is above one half (1), for
    /// [`ObjectnessPrompt::grow`].
    object_pixels: LabelMask,
    upsampler: ProbUpsampler,
}

impl ObjectnessPrompt {
    /// Loads the head at `path` for `encoder`'s processing size (on its
    /// device too, as the memory network's heads), for frames of `frame`
    /// size `(width, height)`; object cells are those whose probability is
    /// above `threshold` (in 0..1, validated by the configuration).
    pub(crate) fn load(
        path: &Path,
        encoder: &Encoder,
        frame: (usize, usize),
        threshold: f32,
    ) -> Result<Self, HeadError> {
        let (pw, ph) = (encoder.width(), encoder.height());
        let grids = HeadGrids::new(pw, ph);
        let head = Head::load(
            path,
            objectness_spec(&grids),
            encoder.device(),
            encoder.backend_handle(),
        )?;
        let cells = grids.s8.0 * grids.s8.1;
        Ok(Self {
            head,
            grid: grids.s8,
            logits: vec![0.0; cells],
            threshold_logit: log_odds(threshold),
            probs: vec![0.0; 2 * cells],
            frame: None,
            components: Components::new(cells),
            object_pixels: LabelMask::new(frame.0, frame.1),
            upsampler: ProbUpsampler::new(8, grids.s8, (pw, ph), frame, 2),
        })
    }

    /// Runs the head on `features` (of frame number `frame`) unless its
    /// map of that frame is already there.
    fn update(&mut self, features: &Features, frame: u64) -> Result<(), BackendError> {
        if self.frame == Some(frame) {
            return Ok(());
        }
        self.frame = None;
        self.head
            .run(&[&features.s16.data, &features.s8.data], &mut self.logits)?;
        let cells = self.logits.len();
        let (background, object) = self.probs.split_at_mut(cells);
        for ((b, o), &l) in background.iter_mut().zip(object).zip(&self.logits) {
            *o = shifted_probability(l, self.threshold_logit);
            *b = 1.0 - *o;
        }
        self.frame = Some(frame);
        Ok(())
    }

    /// Writes into `mask` (frame size, cleared first) object `id` where
    /// the head's map of frame number `frame` (encoded to `features`) is
    /// above one half, within the components connected to the moving
    /// cells of `motion` inside cell box `bbox`; returns the number of
    /// pixels written (0 where the head sees no object at the region).
    pub(crate) fn mask(
        &mut self,
        features: &Features,
        frame: u64,
        (motion, bbox): (&[CellMotion], [usize; 4]),
        cell_map: &NearMotion,
        id: u8,
        mask: &mut LabelMask,
    ) -> Result<usize, BackendError> {
        self.update(features, frame)?;
        let object = &self.probs[self.logits.len()..];
        let moving = |c: usize| motion[c] != CellMotion::Still;
        if !self.components.select(self.grid, object, bbox, moving) {
            return Ok(0);
        }
        self.upsampler.labels(&self.probs, 2, &[0, id], mask);
        cell_map.clear_outside(mask, id, &self.components.keep);
        Ok(mask.data.iter().filter(|&&v| v == id).count())
    }

    /// Adds to `regions` the components of the head's object cells in
    /// frame number `frame` (encoded to `features`) made of cells where
    /// `free` holds, between `min_cells` and `max_cells` in size, that hold
    /// a moving cell of `motion` and are not already a region (box IoU
    /// ≥ 0.5): movers whose motion region the region rules dropped (a duck
    /// on moving water, where water and duck move as one region).
    pub(crate) fn propose(
        &mut self,
        features: &Features,
        frame: u64,
        (motion, free): (&[CellMotion], impl Fn(usize) -> bool),
        sizes: (usize, usize),
        regions: &mut Vec<Region>,
    ) -> Result<(), BackendError> {
        self.update(features, frame)?;
        let object = &self.probs[self.logits.len()..];
        self.components
            .propose(self.grid, object, (motion, free), sizes, regions);
        Ok(())
    }

    /// Grows each tracked object of `out` (frame size, as at load; `cell_ids`, the id
    /// at each cell's centre) over the head's object cells connected to
    /// it, where no object is, in frame number `frame` (encoded to
    /// `features`): the tracker's mask often holds only part of a mover.
    pub(crate) fn grow(
        &mut self,
        features: &Features,
        frame: u64,
        (ids, cell_ids): (&[u8], &[u8]),
        cell_map: &NearMotion,
        out: &mut LabelMask,
    ) -> Result<(), BackendError> {
        self.update(features, frame)?;
        self.upsampler
            .labels(&self.probs, 2, &[0, 1], &mut self.object_pixels);
        let object = &self.probs[self.logits.len()..];
        let all = [0, 0, self.grid.0, self.grid.1];
        for &id in ids {
            if self
                .components
                .select(self.grid, object, all, |c| cell_ids[c] == id)
            {
                cell_map.fill_where(out, id, &self.components.keep, &self.object_pixels);
            }
        }
        Ok(())
    }
}

/// The log-odds of probability `p` (0 at one half).
fn log_odds(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// The probability of `logit` shifted by `threshold_logit`: above one
/// half exactly where the head's own probability is above the threshold.
fn shifted_probability(logit: f32, threshold_logit: f32) -> f32 {
    1.0 / (1.0 + (threshold_logit - logit).exp())
}

/// The object cells' components that a region selects, by flood fill
/// (buffers sized once).
#[derive(Debug)]
struct Components {
    /// Cells of the components kept for the current region.
    keep: Vec<bool>,
    /// Cells visited by the flood fill.
    seen: Vec<bool>,
    stack: Vec<usize>,
    /// The cells of the last component filled.
    members: Vec<usize>,
}

impl Components {
    fn new(cells: usize) -> Self {
        Self {
            keep: vec![false; cells],
            seen: vec![false; cells],
            stack: Vec::with_capacity(cells),
            members: Vec::with_capacity(cells),
        }
    }

    /// Sets `keep` to the components of object cells (`object`
    /// probability above one half, over a `(width, height)` grid) that
    /// hold a cell within [`REACH_CELLS`] of a `seed` cell inside `bbox`;
    /// false when there is none.
    fn select(
        &mut self,
        (w, h): (usize, usize),
        object: &[f32],
        bbox: [usize; 4],
        seed: impl Fn(usize) -> bool,
    ) -> bool {
        let is_object = |c: usize| object[c] > 0.5;
        self.keep.fill(false);
        self.seen.fill(false);
        let mut any = false;
        for y in bbox[1]..bbox[3].min(h) {
            for x in bbox[0]..bbox[2].min(w) {
                if !seed(y * w + x) {
                    continue;
                }
                for yy in y.saturating_sub(REACH_CELLS)..=(y + REACH_CELLS).min(h - 1) {
                    for xx in x.saturating_sub(REACH_CELLS)..=(x + REACH_CELLS).min(w - 1) {
                        let start = yy * w + xx;
                        if !self.seen[start] && is_object(start) {
                            self.members.clear();
                            self.fill(start, (w, h), &is_object);
                            any = true;
                        }
                    }
                }
            }
        }
        any
    }

    /// Adds to `regions` the components of object cells (`object`
    /// probability above one half, over a `(width, height)` grid) made of
    /// cells where `free` holds, between `min_cells` and `max_cells` in
    /// size, that hold a cell moving in `motion` and are not already one
    /// of `regions` (box IoU ≥ 0.5).
    fn propose(
        &mut self,
        (w, h): (usize, usize),
        object: &[f32],
        (motion, free): (&[CellMotion], impl Fn(usize) -> bool),
        (min_cells, max_cells): (usize, usize),
        regions: &mut Vec<Region>,
    ) {
        let is_object = |c: usize| object[c] > 0.5 && free(c);
        let known = regions.len();
        self.seen.fill(false);
        for start in 0..w * h {
            if self.seen[start] || !is_object(start) {
                continue;
            }
            self.members.clear();
            self.fill(start, (w, h), &is_object);
            let members = &self.members;
            let moving = members.iter().any(|&c| motion[c] != CellMotion::Still);
            if !moving || members.len() < min_cells || members.len() > max_cells {
                continue;
            }
            let mut bbox = [w, h, 0, 0];
            for &c in members {
                let (x, y) = (c % w, c / w);
                bbox = [
                    bbox[0].min(x),
                    bbox[1].min(y),
                    bbox[2].max(x + 1),
                    bbox[3].max(y + 1),
                ];
            }
            if regions[..known]
                .iter()
                .all(|r| Region::box_iou(r.bbox, bbox) < 0.5)
            {
                regions.push(Region {
                    cells: members.len(),
                    bbox,
                });
            }
        }
    }

    /// Keeps the component of object cells (8-neighbours) holding `start`.
    fn fill(&mut self, start: usize, (w, h): (usize, usize), is_object: &impl Fn(usize) -> bool) {
        self.seen[start] = true;
        self.stack.push(start);
        while let Some(c) = self.stack.pop() {
            self.keep[c] = true;
            self.members.push(c);
            let (cx, cy) = (c % w, c / w);
            for ny in cy.saturating_sub(1)..=(cy + 1).min(h - 1) {
                for nx in cx.saturating_sub(1)..=(cx + 1).min(w - 1) {
                    let n = ny * w + nx;
                    if !self.seen[n] && is_object(n) {
                        self.seen[n] = true;
                        self.stack.push(n);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cells kept over a `w`×`h` grid with the given object
    /// probabilities, or `None`.
    fn select(
        w: usize,
        h: usize,
        object: &[f32],
        motion: &[CellMotion],
        bbox: [usize; 4],
    ) -> Option<Vec<bool>> {
        let mut components = Components::new(w * h);
        let any = components.select((w, h), object, bbox, |c| motion[c] != CellMotion::Still);
        any.then_some(components.keep)
    }

    #[test]
    fn the_threshold_decides_which_cells_are_object_cells() {
        let unsure = log_odds(0.4); // the head gives the cell 0.4
        assert!(shifted_probability(unsure, log_odds(0.5)) < 0.5);
        assert!(shifted_probability(unsure, log_odds(0.35)) > 0.5);
        // The default threshold leaves the head's probabilities as they are.
        assert_eq!(log_odds(0.5), 0.0);
        for l in [-3.0f32, -0.1, 0.0, 0.7, 4.0] {
            let p = 1.0 / (1.0 + (-l).exp());
            assert!((shifted_probability(l, log_odds(0.5)) - p).abs() < 1e-6);
        }
    }

    #[test]
    fn the_components_touching_the_motion_are_kept() {
        // 8×4 cells: object A at columns 0..3 (rows 0..2), object B at
        // columns 5..8; motion only at (3, 1), next to A.
        let (w, h) = (8, 4);
        let mut object = vec![0.0; w * h];
        for y in 0..2 {
            for x in 0..3 {
                object[y * w + x] = 0.9;
            }
            for x in 5..8 {
                object[y * w + x] = 0.8;
            }
        }
        let mut motion = vec![CellMotion::Still; w * h];
        motion[w + 3] = CellMotion::Vector(1.0, 0.0);
        let keep = select(w, h, &object, &motion, [3, 1, 4, 2]).unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(keep[y * w + x], y < 2 && x < 3, "cell ({x}, {y})");
            }
        }
        // Motion outside the box is not a seed; with no object cell near
        // the motion there is nothing.
        motion[w + 3] = CellMotion::Still;
        motion[3 * w + 4] = CellMotion::Changed;
        assert!(select(w, h, &object, &motion, [0, 0, 8, 4]).is_none());
        assert!(select(w, h, &object, &motion, [0, 0, 3, 2]).is_none());
    }

    #[test]
    fn proposals_are_free_moving_components_of_the_right_size() {
        // 10×4 cells: A at columns 0..3 (moving), B at 4..7 (moving, but
        // column 4 is not free), C at 8..10 (still).
        let (w, h) = (10, 4);
        let mut object = vec![0.0; w * h];
        let mut motion = vec![CellMotion::Still; w * h];
        for y in 0..3 {
            for x in (0..3).chain(5..7).chain(8..10) {
                object[y * w + x] = 0.9;
            }
        }
        object[w + 4] = 0.9; // joins A and B, but is not free
        motion[w + 1] = CellMotion::Vector(1.0, 0.0);
        motion[w + 6] = CellMotion::Changed;
        let free = |c: usize| c % w != 4;
        let mut components = Components::new(w * h);
        let mut regions = Vec::new();
        components.propose((w, h), &object, (&motion, free), (1, 40), &mut regions);
        let boxes: Vec<_> = regions.iter().map(|r| (r.bbox, r.cells)).collect();
        assert_eq!(boxes, vec![([0, 0, 3, 3], 9), ([5, 0, 7, 3], 6)]);
        // Too small, or already a region: nothing new.
        let mut regions = Vec::new();
        components.propose((w, h), &object, (&motion, free), (7, 40), &mut regions);
        assert_eq!(regions.len(), 1);
        components.propose((w, h), &object, (&motion, free), (7, 40), &mut regions);
        assert_eq!(regions.len(), 1);
    }
}
