//! Label propagation: the encoder's own features as keys, the soft masks
//! as values, no trained part (`engine.method = "label-propagation"`).
//!
//! `LabelPropagation::start` takes the first frame and its label mask;
//! each `LabelPropagation::step` segments the next frame into a label
//! mask of frame size: stride-8 keys ([`crate::keys`]), the readout over
//! the [`MemoryStore`], edge-aware upsampling, arg-max. All buffers are
//! allocated in `LabelPropagation::new`; steps reuse them.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::self_test::readout_fallback;
use crate::backend::{Fallback, ReadoutBackend};
use crate::config::{EngineConfig, MemoryValues, Upsampling};
use crate::encoder::{Encoder, Features};
use crate::engine::{
    check_frame, check_room, first_mask_ids, object_only, EngineError, StageTimes,
};
use crate::frame::{LabelMask, Resizer, RgbFrame};
use crate::geometry::{Grid, GridAxis};
use crate::keys::{KeyBuilder, KEY_DIM};
use crate::memory::MemoryStore;
use crate::readout::GridSize;
use crate::upsample::Upsampler;

/// The label-propagation engine for one video stream.
pub struct LabelPropagation {
    cfg: EngineConfig,
    encoder: Arc<Encoder>,
    frame_w: usize,
    frame_h: usize,
    grid: Grid,
    proc_image: RgbFrame,
    /// Frame size to processing size, prepared once.
    resizer: Resizer,
    features: Features,
    keys: KeyBuilder,
    query: Vec<f32>,
    probs: Vec<f32>,
    confidence: Vec<f32>,
    /// The readout: on the encoder's device while it passes, else the CPU.
    readout: Fallback<dyn ReadoutBackend>,
    memory: MemoryStore,
    upsampler: Upsampler,
    /// `labels[k]` = object id of value channel `k` (`labels[0]` = 0).
    labels: Vec<u8>,
    frame_index: u64,
    times: StageTimes,
}

impl LabelPropagation {
    /// Loads the encoder named by `cfg` and prepares a tracker for frames of
    /// `frame_w`×`frame_h`.
    pub fn new(cfg: &EngineConfig, frame_w: usize, frame_h: usize) -> Result<Self, EngineError> {
        cfg.validate()?;
        let encoder = Encoder::from_config(cfg)?;
        Self::with_encoder(cfg, Arc::new(encoder), frame_w, frame_h)
    }

    /// Prepares a tracker around an already loaded encoder (shared between
    /// trackers of the same processing size).
    pub fn with_encoder(
        cfg: &EngineConfig,
        encoder: Arc<Encoder>,
        frame_w: usize,
        frame_h: usize,
    ) -> Result<Self, EngineError> {
        cfg.validate()?;
        if frame_w == 0 || frame_h == 0 {
            return Err(EngineError::FrameSize {
                got_w: frame_w,
                got_h: frame_h,
                want_w: 1,
                want_h: 1,
            });
        }
        let grid = encoder.grids()[1];
        let (pw, ph) = (encoder.width(), encoder.height());
        let cells = grid.len();
        let channels = cfg.max_objects + 1;
        let memory = MemoryStore::new(cells, KEY_DIM, channels, cfg.working_memory);
        let readout_grid = GridSize {
            width: grid.x.cells,
            height: grid.y.cells,
        };
        let readout = readout_fallback(
            readout_grid,
            &memory,
            &cfg.readout_params(),
            cfg.thread_count(),
            encoder.device(),
            encoder.backend_handle(),
        );
        let edge = match cfg.upsampling {
            Upsampling::EdgeAware => Some((cfg.edge_sigma_color, cfg.edge_sigma_space)),
            Upsampling::Bilinear => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            frame_w,
            frame_h,
            grid,
            proc_image: RgbFrame::new(pw, ph),
            resizer: Resizer::new(frame_w, frame_h, pw, ph),
            features: encoder.new_features(),
            keys: KeyBuilder::new(&encoder),
            query: vec![0.0; cells * KEY_DIM],
            probs: vec![0.0; cells * channels],
            confidence: vec![0.0; cells],
            readout,
            memory,
            upsampler: Upsampler::new(grid, pw, ph, frame_w, frame_h, edge),
            labels: Vec::with_capacity(channels),
            encoder,
            frame_index: 0,
            times: StageTimes::default(),
        })
    }

    /// The backend running the encoder and readout now, and why.
    pub fn backend_status(&self) -> crate::backend::BackendStatus {
        self.encoder.backend_status()
    }

    /// The encoder features of the frame last segmented (or started on).
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The encoder (shared with other trackers of the same size).
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// Runs the readout for the current query, on the device while the
    /// encoder uses one, else (or after a device failure) on the CPU.
    fn run_readout(&mut self) -> Result<(), EngineError> {
        let params = self.cfg.readout_params();
        let Self {
            readout,
            query,
            memory,
            probs,
            confidence,
            ..
        } = self;
        readout
            .run(|r| r.readout(query, memory, &params, probs, confidence))
            .map_err(EngineError::Readout)
    }

    /// Object ids being tracked, in channel order.
    pub fn object_ids(&self) -> &[u8] {
        self.labels.get(1..).unwrap_or(&[])
    }

    /// Bytes held by the memory store (constant for a tracker).
    pub fn memory_bytes(&self) -> usize {
        self.memory.bytes()
    }

    /// Cumulative per-stage times of `step`.
    pub fn stage_times(&self) -> StageTimes {
        self.times
    }

    /// The encoder file it runs (which one `precision = "auto"` chose).
    pub fn model_path(&self) -> &std::path::Path {
        self.encoder.model_path()
    }

    /// The stride-8 feature grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    fn check_frame(&self, frame: &RgbFrame) -> Result<(), EngineError> {
        check_frame(frame, (self.frame_w, self.frame_h))
    }

    /// Encodes `frame` into `self.query` (L2-normalised stride-8 keys).
    fn encode(&mut self, frame: &RgbFrame) -> Result<(), EngineError> {
        self.resizer.resize(frame, &mut self.proc_image);
        self.encoder.encode(&self.proc_image, &mut self.features)?;
        self.keys.build(&self.features, &mut self.query);
        Ok(())
    }

    /// Fraction of each channel's pixels in each stride-8 cell's footprint,
    /// into `self.probs`.
    fn mask_to_cells(&mut self, mask: &LabelMask) {
        let mut probs = std::mem::take(&mut self.probs);
        self.mask_to_cells_into(mask, &mut probs);
        self.probs = probs;
    }

    /// Fraction of each channel's pixels in each stride-8 cell's footprint,
    /// into `out` (`cells × channels`); ids without a channel count as
    /// background.
    fn mask_to_cells_into(&self, mask: &LabelMask, out: &mut [f32]) {
        let channels = self.memory.channels();
        let (gw, gh) = (self.grid.x.cells, self.grid.y.cells);
        let (sx, sy) = (
            self.frame_w as f32 / self.proc_image.width as f32,
            self.frame_h as f32 / self.proc_image.height as f32,
        );
        let span = |axis: &GridAxis, i: usize, scale: f32, n: usize| {
            let half = axis.stride as f32 / 2.0;
            let a = ((axis.centre(i) - half + 0.5) * scale).floor().max(0.0) as usize;
            let b = (((axis.centre(i) + half + 0.5) * scale).ceil() as usize).min(n);
            (a.min(n.saturating_sub(1)), b.max(a + 1).min(n))
        };
        let mut id_to_channel = [usize::MAX; 256];
        for (k, &id) in self.labels.iter().enumerate() {
            id_to_channel[id as usize] = k;
        }
        for gy in 0..gh {
            let (y0, y1) = span(&self.grid.y, gy, sy, self.frame_h);
            for gx in 0..gw {
                let (x0, x1) = span(&self.grid.x, gx, sx, self.frame_w);
                let cell = &mut out[(gy * gw + gx) * channels..(gy * gw + gx + 1) * channels];
                cell.fill(0.0);
                let mut n = 0.0;
                for y in y0..y1 {
                    for &id in &mask.data[y * self.frame_w + x0..y * self.frame_w + x1] {
                        let ch = id_to_channel[id as usize];
                        cell[if ch == usize::MAX { 0 } else { ch }] += 1.0;
                        n += 1.0;
                    }
                }
                if n > 0.0 {
                    cell.iter_mut().for_each(|v| *v /= n);
                } else {
                    cell[0] = 1.0;
                }
            }
        }
    }

    /// Starts tracking: `mask` labels the objects in `frame` (ids 1..=255,
    /// at most `max_objects` of them). Memory is reset.
    pub fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), EngineError> {
        self.check_frame(frame)?;
        let ids = first_mask_ids(mask, (self.frame_w, self.frame_h), self.cfg.max_objects)?;
        self.labels.clear();
        self.labels.push(0);
        self.labels.extend_from_slice(&ids);
        self.encode(frame)?;
        self.mask_to_cells(mask);
        self.frame_index = 0;
        self.memory.set_first(0, &self.query, &self.probs);
        Ok(())
    }

    fn channel_of(&self, id: u8) -> Option<usize> {
        if id == 0 {
            return None;
        }
        self.labels.iter().position(|&l| l == id)
    }

    /// Sets object `id`'s mask (the pixels of `mask` equal to `id`) in the
    /// frame last given to [`LabelPropagation::step`]: a new object is added (up to
    /// `max_objects`), a tracked one is corrected. That frame becomes the
    /// permanent memory frame, holding this mask and the other objects'
    /// current (soft) masks; working memory restarts from it. Before any
    /// object is tracked this is [`LabelPropagation::start`] on `frame` with this
    /// object alone.
    pub fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), EngineError> {
        let only = object_only(mask, id, (self.frame_w, self.frame_h))?;
        if self.labels.len() < 2 {
            return self.start(frame, &only);
        }
        let k = match self.channel_of(id) {
            Some(k) => k,
            None => {
                check_room(id, self.labels.len() - 1, self.cfg.max_objects)?;
                self.labels.push(id);
                self.labels.len() - 1
            }
        };
        let channels = self.memory.channels();
        let mut fraction = vec![0.0; self.probs.len()];
        self.mask_to_cells_into(&only, &mut fraction);
        for (cell, f) in self
            .probs
            .chunks_exact_mut(channels)
            .zip(fraction.chunks_exact(channels))
        {
            // The object's old mass goes to the background, then the new
            // mask takes its share of the cell from every channel.
            cell[0] += cell[k];
            cell[k] = 0.0;
            let f = f[k];
            cell.iter_mut().for_each(|v| *v *= 1.0 - f);
            cell[k] += f;
        }
        self.memory
            .set_first(self.frame_index, &self.query, &self.probs);
        Ok(())
    }

    /// Derives object `id`'s mask in `frame` from a box `[x, y, width,
    /// height]` (frame pixels) with the box prompt ([`crate::prompt`]),
    /// using this tracker's encoder and the `[engine.prompt]` settings. Pass the result to
    /// [`LabelPropagation::set_object_mask`] to track it.
    pub fn mask_from_box(
        &self,
        frame: &RgbFrame,
        id: u8,
        bbox: [u32; 4],
    ) -> Result<LabelMask, crate::prompt::PromptError> {
        let [x, y, w, h] = bbox.map(|v| v as usize);
        let prompt = crate::prompt::BoxPrompt::new(x, y, x + w, y + h);
        crate::prompt::mask_from_box(&self.encoder, frame, prompt, id, &self.cfg.prompt)
    }

    /// Stops tracking object `id`: in every stored frame its probability
    /// goes to the background, and the last object's channel takes its
    /// place. Removing the last object leaves the tracker without objects
    /// (then [`LabelPropagation::step`] is an error until an object is set again).
    pub fn remove_object(&mut self, id: u8) -> Result<(), EngineError> {
        let Some(k) = self.channel_of(id) else {
            return Err(EngineError::Objects(format!("object {id} is not tracked")));
        };
        let last = self.labels.len() - 1;
        let channels = self.memory.channels();
        let move_channel = |cell: &mut [f32]| {
            let (vk, vlast) = (cell[k], cell[last]);
            cell[0] += vk;
            cell[last] = 0.0;
            cell[k] = if k == last { 0.0 } else { vlast };
        };
        self.memory
            .values_mut()
            .chunks_exact_mut(channels)
            .for_each(move_channel);
        self.probs.chunks_exact_mut(channels).for_each(move_channel);
        self.labels.swap_remove(k);
        if self.labels.len() < 2 {
            self.labels.clear();
        }
        Ok(())
    }

    /// Segments the next frame into `out` (resized to the frame if needed).
    pub fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), EngineError> {
        if self.labels.len() < 2 {
            return Err(EngineError::NotStarted);
        }
        self.check_frame(frame)?;
        self.frame_index += 1;
        let t0 = Instant::now();
        self.encode(frame)?;
        let t1 = Instant::now();
        self.run_readout()?;
        let t2 = Instant::now();
        if out.width != self.frame_w || out.height != self.frame_h {
            *out = LabelMask::new(self.frame_w, self.frame_h);
        }
        let channels = self.memory.channels();
        let active = self.labels.len();
        // Unused channels stay zero, so the arg-max over the active ones is enough.
        self.upsampler
            .upsample_active(&self.probs, channels, active, &self.labels, frame, out);
        if self.frame_index.is_multiple_of(self.cfg.mem_every as u64) {
            if self.cfg.memory_values == MemoryValues::Mask {
                self.mask_to_cells(out);
            }
            self.memory
                .push_working(self.frame_index, &self.query, &self.probs);
        }
        let t3 = Instant::now();
        self.times.encode += t1 - t0;
        self.times.readout += t2 - t1;
        self.times.upsample += t3 - t2;
        self.times.frames += 1;
        Ok(())
    }
}
