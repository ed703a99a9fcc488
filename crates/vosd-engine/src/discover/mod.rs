//! Unsupervised mode: objects that move against the scene are found with
//! no first mask, given ids, tracked, and dropped once lost.
//!
//! [`Discovery`] wraps a [`Tracker`] of either method. Each frame:
//!
//! 1. **Segment.** The tracker segments the frame (when it tracks
//!    objects; otherwise the frame is only encoded). Its encoder features
//!    give each stride-8 cell a key ([`crate::keys`]).
//! 2. **Match** ([`motion`]). Each cell is matched to the most similar cell
//!    of the frame `frame_gap` frames earlier within ±4 cells, with a
//!    sub-cell refinement; a match's weight is how much it stands out from
//!    its window (flat regions weigh nothing). With `from_second_frame`,
//!    the first `frame_gap` frames are matched to the first frame.
//! 3. **Camera motion** ([`global_motion`]). An affine map of the cells is
//!    fitted to the matches with RANSAC (the frame's border weighted up),
//!    then refitted on its inliers: the camera may be still, as over a
//!    robot cell, or moving, as in DAVIS.
//! 4. **Moving cells.** A cell moves on its own when the camera's motion
//!    misses its match by more than `motion_threshold_px`, or when its key
//!    differs from the earlier frame's key at the place the camera's motion
//!    predicts by more than `change_threshold` (1 − cosine). Cells under
//!    tracked objects (and one cell around them) and regions suppressed
//!    after a removal by hand are left out.
//! 5. **Regions** ([`regions`]). Moving cells up to two cells apart that
//!    move alike (so that touching objects moving apart stay two) are one
//!    region; regions between `min_area` and half of the frame, touching
//!    at most one side of it, are the candidates.
//! 6. **Persistence** ([`candidates`]). A candidate seen in
//!    `min_persistence` consecutive frames, at about the same place,
//!    becomes an object. Its first mask is, with `prompt = "objectness"`,
//!    the learned objectness head's object cells connected
//!    to the region's moving cells ([`objectness`]), and where the head
//!    sees no object there the region is not one; with `prompt = "box"`
//!    (the default), the box prompt's
//!    ([`crate::prompt`], features and colour inside the region's box;
//!    with `trim_to_motion`, kept within a cell of the region's moving
//!    cells: [`near_motion`]). The tracker
//!    follows it from then on like an object added by hand, under the next
//!    free id, while fewer than `max_objects` are tracked.
//!    With `extend_objects`, a candidate next to a tracked object that
//!    moves with it is joined to that object instead ([`extend`]).
//!    When most of the frame changes at once (a cut, the lights, a shaken
//!    camera), nothing is looked for in that frame and the candidates are
//!    forgotten.
//! 7. **Loss.** An object that stays out of sight (no pixel) for longer
//!    than `lost_after_s` is removed.
//!
//! A person keeps control: objects added, corrected or removed by hand go
//! through the same [`Discovery`], and a removed object's region (widened by
//! a quarter of its size on each side) is not discovered again for
//! `suppress_s`. Every buffer is allocated at start;
//! a frame allocates nothing but what the tracker and, on a discovery, the
//! box prompt do.

pub(crate) mod candidates;
pub(crate) mod extend;
pub(crate) mod global_motion;
pub(crate) mod motion;
pub(crate) mod near_motion;
pub(crate) mod objectness;
pub(crate) mod regions;

use std::sync::Arc;
use std::time::Instant;

use crate::config::{DiscoverConfig, DiscoverPrompt};
use crate::encoder::{Encoder, Features};
use crate::engine::{EngineError, Tracker};
use crate::frame::{LabelMask, Resizer, RgbFrame};
use crate::geometry::Grid;
use crate::keys::{KeyBuilder, KEY_DIM};

use candidates::Candidates;
use extend::CellView;
use motion::CellMatches;
use near_motion::NearMotion;
use objectness::ObjectnessPrompt;
use regions::{CellMotion, Region, RegionFinder};

/// A moving region larger than this fraction of the frame is taken for a
/// failure of the camera-motion fit, not an object.
const MAX_REGION_AREA: f32 = 0.5;
/// A cell moves on its own only if its motion residual (or appearance
/// change) is also this many times the frame's median.
const NOISE_FACTOR: f32 = 3.0;

/// Where a [`Discovery`]'s time comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clock {
    /// The machine's monotonic clock (a live camera).
    Wall,
    /// Frames are this many per second apart (files and datasets, which
    /// are processed faster or slower than they were filmed).
    FrameRate(f64),
}

/// What a [`Discovery::step`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A moving object was found and is tracked from this frame on.
    Added {
        /// Its id.
        id: u8,
        /// Its box `[x, y, width, height]` in frame pixels.
        bbox: [u32; 4],
    },
    /// A moving region next to a tracked object, moving with it, was
    /// joined to it (`discover.extend_objects`).
    Extended {
        /// The object's id.
        id: u8,
        /// The region's box `[x, y, width, height]` in frame pixels.
        bbox: [u32; 4],
    },
    /// An object was out of sight for longer than `lost_after_s` and is no
    /// longer tracked.
    Lost {
        /// Its id.
        id: u8,
    },
}

/// A [`Tracker`] that finds its own objects (see the module
/// documentation).
pub struct Discovery {
    tracker: Tracker,
    cfg: DiscoverConfig,
    clock: Clock,
    started: Instant,
    frames: u64,
    encoder: Arc<Encoder>,
    frame_w: usize,
    frame_h: usize,
    grid: Grid,
    /// Scale from processing pixels to frame pixels, x and y.
    scale: (f32, f32),
    resizer: Resizer,
    proc_image: RgbFrame,
    /// Features of frames encoded here (while no object is tracked).
    own_features: Features,
    /// Whether this frame's features are `own_features` (else the
    /// tracker's).
    own_encoded: bool,
    /// The objectness head, with `prompt = "objectness"`.
    objectness: Option<ObjectnessPrompt>,
    key_builder: KeyBuilder,
    /// The keys of the last `frame_gap + 1` frames, a ring by frame number.
    keys: Vec<Vec<f32>>,
    matches: CellMatches,
    usable: Vec<u32>,
    change: Vec<f32>,
    /// Distance between each cell's match and the camera's prediction.
    residual: Vec<f32>,
    /// Each cell's residual motion (its match minus the camera's
    /// prediction) where it moves on its own, cells under objects included.
    own_motion: Vec<Option<(f32, f32)>>,
    sorted: Vec<f32>,
    scratch: Vec<f32>,
    moving: Vec<CellMotion>,
    /// Whether discovery may find a new object at each cell in this frame
    /// (not under a tracked object or next to one, not suppressed).
    free: Vec<bool>,
    /// Object id at each cell in the last frame's output (0: none).
    cell_ids: Vec<u8>,
    /// Frame-pixel index of each cell's centre.
    cell_pixels: Vec<u32>,
    finder: RegionFinder,
    near_motion: NearMotion,
    regions: Vec<Region>,
    candidates: Candidates,
    ready: Vec<[usize; 4]>,
    /// `(id, time last seen)` of each tracked object.
    last_seen: Vec<(u8, f64)>,
    /// `(id, cell box)` of each discovered object where it was found: a
    /// removal suppresses it too (the mask may cover less of the mover).
    found_in: Vec<(u8, [usize; 4])>,
    areas: Box<[u32; 256]>,
    next_id: u8,
    events: Vec<DiscoveryEvent>,
    /// Time spent discovering (steps 2 to 7, excluding the tracker's step
    /// and the encoding), and frames.
    busy: (std::time::Duration, u64),
}

impl Discovery {
    /// Wraps `tracker` (for frames of `frame_w`×`frame_h`, with or without
    /// objects) with discovery under `cfg`; time runs by `clock`.
    pub fn new(
        tracker: Tracker,
        cfg: &DiscoverConfig,
        clock: Clock,
        frame_w: usize,
        frame_h: usize,
    ) -> Result<Self, EngineError> {
        if let Err(e) = cfg.validate(255) {
            return Err(EngineError::Objects(e.to_string()));
        }
        let encoder = tracker.encoder().clone();
        let grid = encoder.grids()[1];
        let (pw, ph) = (encoder.width(), encoder.height());
        let (gw, gh) = (grid.x.cells, grid.y.cells);
        let cells = gw * gh;
        let scale = (frame_w as f32 / pw as f32, frame_h as f32 / ph as f32);
        let objectness = match cfg.prompt {
            DiscoverPrompt::Objectness => Some(ObjectnessPrompt::load(
                &cfg.objectness_file(),
                &encoder,
                (frame_w, frame_h),
                cfg.objectness_threshold,
            )?),
            DiscoverPrompt::Box => None,
        };
        let cell_pixels = (0..cells)
            .map(|c| {
                let px = (grid.x.centre(c % gw) * scale.0).round();
                let py = (grid.y.centre(c / gw) * scale.1).round();
                let px = (px.max(0.0) as usize).min(frame_w.saturating_sub(1));
                let py = (py.max(0.0) as usize).min(frame_h.saturating_sub(1));
                (py * frame_w + px) as u32
            })
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            clock,
            started: Instant::now(),
            frames: 0,
            frame_w,
            frame_h,
            grid,
            scale,
            resizer: Resizer::new(frame_w, frame_h, pw, ph),
            proc_image: RgbFrame::new(pw, ph),
            own_features: encoder.new_features(),
            own_encoded: true,
            objectness,
            key_builder: KeyBuilder::new(&encoder),
            keys: (0..=cfg.frame_gap)
                .map(|_| vec![0.0; cells * KEY_DIM])
                .collect(),
            matches: CellMatches::new(gw, gh),
            usable: Vec::with_capacity(cells),
            change: vec![0.0; cells],
            residual: vec![0.0; cells],
            own_motion: vec![None; cells],
            sorted: Vec::with_capacity(cells),
            scratch: vec![0.0; KEY_DIM],
            moving: vec![CellMotion::Still; cells],
            free: vec![false; cells],
            cell_ids: vec![0; cells],
            cell_pixels,
            finder: RegionFinder::new(gw, gh),
            near_motion: NearMotion::new((frame_w, frame_h), &grid, scale),
            regions: Vec::with_capacity(cells),
            candidates: Candidates::new(),
            ready: Vec::with_capacity(candidates::MAX_CANDIDATES),
            last_seen: Vec::with_capacity(256),
            found_in: Vec::with_capacity(256),
            areas: Box::new([0; 256]),
            next_id: 1,
            events: Vec::with_capacity(256),
            busy: (std::time::Duration::ZERO, 0),
            encoder,
            tracker,
        })
    }

    /// The tracker it drives.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Mean time per frame of discovery itself (matching, camera motion,
    /// regions, persistence, loss and, when an object is found, its box
    /// prompt), excluding the tracker's step and the encoder.
    pub fn mean_time(&self) -> std::time::Duration {
        self.busy.0 / self.busy.1.max(1) as u32
    }

    /// Ids of the objects tracked, in the tracker's order.
    pub fn object_ids(&self) -> &[u8] {
        self.tracker.object_ids()
    }

    /// Seconds since the first frame, by this discovery's clock.
    fn now(&self) -> f64 {
        match self.clock {
            Clock::Wall => self.started.elapsed().as_secs_f64(),
            Clock::FrameRate(fps) => self.frames as f64 / fps.max(1e-3),
        }
    }

    /// Segments `frame` into `out` (frame size) and discovers new objects
    /// and drops lost ones; returns what changed. Before any object is
    /// found the mask is empty.
    pub fn step(
        &mut self,
        frame: &RgbFrame,
        out: &mut LabelMask,
    ) -> Result<&[DiscoveryEvent], EngineError> {
        crate::engine::check_frame(frame, (self.frame_w, self.frame_h))?;
        if out.width != self.frame_w || out.height != self.frame_h {
            *out = LabelMask::new(self.frame_w, self.frame_h);
        }
        self.events.clear();
        let now = self.now();
        let slot = (self.frames % self.keys.len() as u64) as usize;
        self.own_encoded = self.tracker.object_ids().is_empty();
        if self.own_encoded {
            out.data.fill(0);
            self.resizer.resize(frame, &mut self.proc_image);
            self.encoder
                .encode(&self.proc_image, &mut self.own_features)?;
            self.key_builder
                .build(&self.own_features, &mut self.keys[slot]);
        } else {
            self.tracker.step(frame, out)?;
            self.key_builder
                .build(self.tracker.features(), &mut self.keys[slot]);
        }
        let t0 = Instant::now();
        self.drop_lost(now, out)?;
        self.record_cells(out);
        if self.cfg.grow_to_objectness && !self.own_encoded {
            self.grow_to_objectness(out);
        }
        let first_compared = if self.cfg.from_second_frame {
            1
        } else {
            self.cfg.frame_gap as u64
        };
        if self.frames >= first_compared {
            self.find_moving_regions(slot, now);
            self.promote(frame, out)?;
        }
        self.frames += 1;
        self.busy.0 += t0.elapsed();
        self.busy.1 += 1;
        Ok(&self.events)
    }

    /// Updates when each object was last seen and removes those out of
    /// sight for longer than `lost_after_s`.
    fn drop_lost(&mut self, now: f64, out: &LabelMask) -> Result<(), EngineError> {
        self.areas.fill(0);
        for &v in &out.data {
            self.areas[v as usize] += 1;
        }
        let ids = self.tracker.object_ids();
        self.last_seen.retain(|(id, _)| ids.contains(id));
        for &id in ids {
            let seen = self.areas[id as usize] > 0;
            match self.last_seen.iter_mut().find(|(i, _)| *i == id) {
                Some(entry) if seen => entry.1 = now,
                Some(_) => {}
                None => self.last_seen.push((id, now)),
            }
        }
        let lost_after = self.cfg.lost_after_s;
        while let Some(k) = self
            .last_seen
            .iter()
            .position(|&(_, t)| now - t > lost_after)
        {
            let (id, _) = self.last_seen.swap_remove(k);
            self.found_in.retain(|&(i, _)| i != id);
            self.tracker.remove_object(id)?;
            self.events.push(DiscoveryEvent::Lost { id });
            log::info!("discover: object {id} out of sight for {lost_after} s: removed");
        }
        Ok(())
    }

    /// Steps 2 to 6 of the module documentation, on the keys in `slot`;
    /// fills `self.ready` with the boxes (cells) of regions to promote.
    /// With `from_second_frame`, each of the first `frame_gap` frames is
    /// compared with the first one (a shorter gap, the motion threshold
    /// scaled down to it).
    fn find_moving_regions(&mut self, slot: usize, now: f64) {
        let (gw, gh) = (self.grid.x.cells, self.grid.y.cells);
        let gap = self.frames.min(self.cfg.frame_gap as u64);
        let back = (self.frames - gap) % self.keys.len() as u64;
        let (cur, prev) = (&self.keys[slot], &self.keys[back as usize]);
        motion::match_cells(cur, prev, KEY_DIM, &mut self.matches);
        let camera = global_motion::fit(&self.matches, &mut self.usable);
        motion::compensated_change(
            cur,
            prev,
            KEY_DIM,
            (gw, gh),
            &camera,
            &mut self.scratch,
            &mut self.change,
        );
        self.candidates.expire(now);
        let stride = self.grid.x.stride as f32;
        let m = &self.matches;
        for c in 0..gw * gh {
            let (x, y) = (c % gw, c / gw);
            let (px, py) = camera.apply(x as f32, y as f32);
            let (qx, qy) = (x as f32 + m.dx[c], y as f32 + m.dy[c]);
            self.residual[c] = ((px - qx).powi(2) + (py - qy).powi(2)).sqrt();
        }
        // The thresholds rise with the frame's own noise (water, foliage,
        // blur): a cell must stand out from the typical cell.
        let typical = |v: &[f32], buf: &mut Vec<f32>| {
            buf.clear();
            buf.extend_from_slice(v);
            let mid = buf.len() / 2;
            *buf.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
        };
        let gap_share = gap as f32 / self.cfg.frame_gap as f32;
        let thr_res = (self.cfg.motion_threshold_px * gap_share / stride)
            .max(NOISE_FACTOR * typical(&self.residual, &mut self.sorted));
        let thr_change = self
            .cfg
            .change_threshold
            .max(NOISE_FACTOR * typical(&self.change, &mut self.sorted));
        let mut raw_moving = 0;
        for c in 0..gw * gh {
            let (x, y) = (c % gw, c / gw);
            let missed = m.weight[c] >= 0.02 && self.residual[c] > thr_res;
            let changed = self.change[c] > thr_change;
            self.own_motion[c] = missed.then(|| {
                let (px, py) = camera.apply(x as f32, y as f32);
                (x as f32 + m.dx[c] - px, y as f32 + m.dy[c] - py)
            });
            raw_moving += usize::from(missed || changed);
            let covered = (y.saturating_sub(1)..=(y + 1).min(gh - 1)).any(|yy| {
                (x.saturating_sub(1)..=(x + 1).min(gw - 1))
                    .any(|xx| self.cell_ids[yy * gw + xx] != 0)
            });
            let free = !covered && !self.candidates.is_suppressed(x, y, now);
            self.free[c] = free;
            self.moving[c] = match (self.own_motion[c], changed) {
                _ if !free => CellMotion::Still,
                (Some((dx, dy)), _) => CellMotion::Vector(dx, dy),
                (None, true) => CellMotion::Changed,
                (None, false) => CellMotion::Still,
            };
        }
        let cells = gw * gh;
        self.ready.clear();
        if raw_moving as f32 > MAX_REGION_AREA * cells as f32 {
            // Most of the frame changed at once: a cut, the lights, a
            // shaken camera; no object to find in it, and the candidates
            // so far are forgotten.
            log::debug!(
                "discover frame {}: most of the frame changed, skipped",
                self.frames
            );
            self.candidates.clear();
            return;
        }
        let min_cells = ((self.cfg.min_area * cells as f32).ceil() as usize).max(1);
        let max_cells = (MAX_REGION_AREA * cells as f32) as usize;
        self.finder
            .find(&self.moving, min_cells, max_cells, &mut self.regions);
        if self.cfg.objectness_proposals && self.tracker.object_ids().len() < self.cfg.max_objects {
            self.propose_from_objectness((min_cells, max_cells));
        }
        log::trace!(
            "discover frame {}: {} usable matches, camera {:?}, thresholds {thr_res:.2} cells {thr_change:.2}, {} moving cells, regions {:?}",
            self.frames,
            self.usable.len(),
            camera.m,
            self.moving.iter().filter(|&&m| m != CellMotion::Still).count(),
            self.regions
        );
        let ready = &mut self.ready;
        self.candidates
            .update(&self.regions, self.cfg.min_persistence, |b| ready.push(b));
    }

    /// The frame-pixel box `[x, y, w, h]` of cell box `b`.
    fn frame_box(&self, b: [usize; 4]) -> [u32; 4] {
        let half = self.grid.x.stride as f32 / 2.0;
        let x0 = ((self.grid.x.centre(b[0]) - half) * self.scale.0).max(0.0);
        let y0 = ((self.grid.y.centre(b[1]) - half) * self.scale.1).max(0.0);
        let x1 = ((self.grid.x.centre(b[2] - 1) + half) * self.scale.0).min(self.frame_w as f32);
        let y1 = ((self.grid.y.centre(b[3] - 1) + half) * self.scale.1).min(self.frame_h as f32);
        let (x0, y0) = (x0 as u32, y0 as u32);
        [
            x0,
            y0,
            (x1 as u32).saturating_sub(x0).max(1),
            (y1 as u32).saturating_sub(y0).max(1),
        ]
    }

    /// The next id no tracked object has.
    fn free_id(&mut self) -> u8 {
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id == 255 {
                1
            } else {
                self.next_id + 1
            };
            if !self.tracker.object_ids().contains(&id) {
                return id;
            }
        }
    }

    /// Turns the ready regions into tracked objects while there is room,
    /// or joins them to the object they extend.
    fn promote(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), EngineError> {
        for k in 0..self.ready.len() {
            if let Some(id) = self.extends(self.ready[k]) {
                self.extend(frame, out, id, self.ready[k])?;
                continue;
            }
            if self.tracker.object_ids().len() >= self.cfg.max_objects {
                break;
            }
            let bbox = self.frame_box(self.ready[k]);
            let id = self.free_id();
            let Some(mask) = self.region_mask(frame, id, self.ready[k]) else {
                continue;
            };
            if !mask.data.contains(&id) {
                continue;
            }
            match self.tracker.set_object_mask(frame, id, &mask) {
                Ok(()) => {}
                // Full (objects added by hand count too): wait for room.
                Err(EngineError::Objects(e)) => {
                    log::debug!("discover: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
            self.mark(out, id, &mask);
            self.last_seen.push((id, self.now()));
            self.found_in.retain(|&(i, _)| i != id);
            self.found_in.push((id, self.ready[k]));
            self.events.push(DiscoveryEvent::Added { id, bbox });
            log::info!("discover: object {id} found in box {bbox:?}");
        }
        self.ready.clear();
        Ok(())
    }

    /// Object `id`'s first mask for the region in cell box `b`: the
    /// objectness head's ([`objectness`]) with `prompt = "objectness"`
    /// (`None` where the head sees no object there: the region is not an
    /// object), else (or should the head fail) the box prompt's, kept
    /// near the region's motion with `trim_to_motion`; `None` (logged)
    /// when the box prompt finds no mask there.
    fn region_mask(&mut self, frame: &RgbFrame, id: u8, b: [usize; 4]) -> Option<LabelMask> {
        let bbox = self.frame_box(b);
        if let Some(prompt) = self.objectness.as_mut() {
            let features = frame_features(self.own_encoded, &self.own_features, &self.tracker);
            let mut mask = LabelMask::new(self.frame_w, self.frame_h);
            let region = (&self.moving[..], b);
            match prompt.mask(
                features,
                self.frames,
                region,
                &self.near_motion,
                id,
                &mut mask,
            ) {
                Ok(0) => {
                    log::debug!("discover: the objectness head sees no object at {bbox:?}");
                    return None;
                }
                Ok(_) => return Some(mask),
                Err(e) => log::warn!("discover: objectness head failed ({e}); box prompt"),
            }
        }
        let mut mask = match self.tracker.mask_from_box(frame, id, bbox) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("discover: no mask in box {bbox:?}: {e}");
                return None;
            }
        };
        if self.cfg.trim_to_motion {
            self.near_motion.keep(&mut mask, id, &self.moving, b);
        }
        Some(mask)
    }

    /// Adds the objectness head's proposals to this frame's regions
    /// (`objectness_proposals`; [`ObjectnessPrompt::propose`]).
    fn propose_from_objectness(&mut self, sizes: (usize, usize)) {
        let Some(prompt) = self.objectness.as_mut() else {
            return;
        };
        let features = frame_features(self.own_encoded, &self.own_features, &self.tracker);
        let free = &self.free;
        let cells = (&self.moving[..], |c: usize| free[c]);
        if let Err(e) = prompt.propose(features, self.frames, cells, sizes, &mut self.regions) {
            log::warn!("discover: objectness head failed ({e}); no proposals");
        }
    }

    /// Grows the tracked objects in `out` over the objectness head's
    /// object cells connected to them (`grow_to_objectness`), and records
    /// the grown cells.
    fn grow_to_objectness(&mut self, out: &mut LabelMask) {
        let Some(prompt) = self.objectness.as_mut() else {
            return;
        };
        let ids = (self.tracker.object_ids(), &self.cell_ids[..]);
        let features = self.tracker.features();
        if let Err(e) = prompt.grow(features, self.frames, ids, &self.near_motion, out) {
            log::warn!("discover: objectness head failed ({e}); masks not grown");
            return;
        }
        self.record_cells(out);
    }

    /// Records the object id at each cell's centre in `out`.
    fn record_cells(&mut self, out: &LabelMask) {
        for (c, &p) in self.cell_pixels.iter().enumerate() {
            self.cell_ids[c] = out.data[p as usize];
        }
    }

    /// Labels `id` in `out` where `mask` has it and no object is, and
    /// records its cells as if it had been tracked in this frame (a removal
    /// right away then suppresses its region).
    fn mark(&mut self, out: &mut LabelMask, id: u8, mask: &LabelMask) {
        for (o, &m) in out.data.iter_mut().zip(&mask.data) {
            if *o == 0 && m == id {
                *o = id;
            }
        }
        for (c, &p) in self.cell_pixels.iter().enumerate() {
            if out.data[p as usize] == id {
                self.cell_ids[c] = id;
            }
        }
    }

    /// The tracked object that the region in cell box `b` extends
    /// ([`extend`]), when `extend_objects` is on.
    fn extends(&self, b: [usize; 4]) -> Option<u8> {
        if !self.cfg.extend_objects {
            return None;
        }
        let view = CellView {
            width: self.grid.x.cells,
            height: self.grid.y.cells,
            moving: &self.moving,
            ids: &self.cell_ids,
            residual: &self.own_motion,
        };
        extend::object_to_extend(&view, b)
    }

    /// Joins the box prompt of the region in cell box `b` to object `id`'s
    /// mask in `out`, and has the tracker follow the joined mask.
    fn extend(
        &mut self,
        frame: &RgbFrame,
        out: &mut LabelMask,
        id: u8,
        b: [usize; 4],
    ) -> Result<(), EngineError> {
        let bbox = self.frame_box(b);
        let Some(mut mask) = self.region_mask(frame, id, b) else {
            return Ok(());
        };
        // The object as it is, plus the new part where no other object is;
        // a region that adds no pixel leaves the object (and its memory)
        // as it is.
        if extend::join(&mut mask.data, &out.data, id) == 0 {
            log::debug!("discover: box {bbox:?} adds nothing to object {id}");
            return Ok(());
        }
        self.tracker.set_object_mask(frame, id, &mask)?;
        self.mark(out, id, &mask);
        self.events.push(DiscoveryEvent::Extended { id, bbox });
        log::info!("discover: object {id} extended by box {bbox:?}");
        Ok(())
    }

    /// Starts over with the objects of `mask` in `frame` (see
    /// [`Tracker::start`]); candidates are forgotten.
    pub fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), EngineError> {
        self.candidates.clear();
        self.last_seen.clear();
        self.found_in.clear();
        self.tracker.start(frame, mask)
    }

    /// Adds or corrects object `id` by hand (see
    /// [`Tracker::set_object_mask`]).
    pub fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), EngineError> {
        self.tracker.set_object_mask(frame, id, mask)
    }

    /// Removes object `id` by hand: its region (its box in the last frame,
    /// joined with the box it was discovered in, widened by a quarter of
    /// its size on each side, since what a person removes often moves in
    /// place: a flag, a branch, a screen) is not discovered again for
    /// `suppress_s`.
    pub fn remove_object(&mut self, id: u8) -> Result<(), EngineError> {
        self.tracker.remove_object(id)?;
        let (gw, gh) = (self.grid.x.cells, self.grid.y.cells);
        let mut b: Option<[usize; 4]> = None;
        if let Some(k) = self.found_in.iter().position(|&(i, _)| i == id) {
            b = Some(self.found_in.swap_remove(k).1);
        }
        for (c, _) in self.cell_ids.iter().enumerate().filter(|(_, &v)| v == id) {
            let (x, y) = (c % gw, c / gw);
            let r = b.get_or_insert([x, y, x + 1, y + 1]);
            *r = [r[0].min(x), r[1].min(y), r[2].max(x + 1), r[3].max(y + 1)];
        }
        if let Some([x0, y0, x1, y1]) = b {
            let (mx, my) = ((x1 - x0) / 4, (y1 - y0) / 4);
            let widened = [
                x0.saturating_sub(mx),
                y0.saturating_sub(my),
                (x1 + mx).min(gw),
                (y1 + my).min(gh),
            ];
            self.candidates
                .suppress(widened, self.now() + self.cfg.suppress_s);
        }
        self.last_seen.retain(|&(i, _)| i != id);
        Ok(())
    }

    /// Object `id`'s mask from a box (see [`Tracker::mask_from_box`]).
    pub fn mask_from_box(
        &self,
        frame: &RgbFrame,
        id: u8,
        bbox: [u32; 4],
    ) -> Result<LabelMask, crate::prompt::PromptError> {
        self.tracker.mask_from_box(frame, id, bbox)
    }
}

/// The features this frame was encoded to: discovery's own while no object
/// was tracked at its start (`own_encoded`), else the tracker's.
fn frame_features<'a>(own_encoded: bool, own: &'a Features, tracker: &'a Tracker) -> &'a Features {
    if own_encoded {
        own
    } else {
        tracker.features()
    }
}
