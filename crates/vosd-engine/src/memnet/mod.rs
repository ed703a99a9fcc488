//! The trained memory network (`engine.method = "memory-network"`), an
//! STM/XMem-style engine on the frozen EfficientNet-Lite0 encoder.
//!
//! For each frame (training/README.md, "Inference", has the exact
//! formulas, and `training/` the network and its training):
//!
//! 1. **Encode**: resize to the processing size, the [`Encoder`] gives
//!    features at strides 4, 8 and 16.
//! 2. **Key** ([`heads`]): a learned projection of the stride-16 features
//!    (64 channels).
//! 3. **Readout** ([`attention`]): each query cell reads the `top_k` most
//!    similar memory cells (negative squared L2 affinity, softmax) and
//!    sums their values, per object.
//! 4. **Decode** ([`heads`]): per object, the readout fused with the
//!    stride-16 features and upsampled through skip connections from the
//!    stride-8 and stride-4 features to logits at stride 4.
//! 5. **Aggregate** ([`masks`]): soft aggregation of the objects' logits
//!    into one distribution (background + objects); each object's
//!    confidence is its mean probability where it wins.
//! 6. **Upsample** ([`upsample`]): bilinear to the frame, arg-max.
//! 7. **Memorise** ([`bank`]): when the frame is kept (every `mem_every`
//!    frames into the working memory, else as the previous frame), the
//!    value encoder turns each object's probabilities into its values.
//!
//! The first frame stays in memory for good; the working memory holds a
//! fixed number of frames, so a long stream runs in constant memory. The
//! heads run where the encoder runs (ONNX Runtime, checked against tract
//! at start) or on tract, with the encoder's fallback.

pub mod attention;
pub mod bank;
pub mod heads;
pub mod masks;
pub mod upsample;

use std::sync::Arc;
use std::time::Instant;

use crate::config::EngineConfig;
use crate::encoder::{Encoder, Features};
use crate::engine::{
    check_frame, check_room, first_mask_ids, object_only, EngineError, StageTimes,
};
use crate::frame::{LabelMask, Resizer, RgbFrame};
use attention::Attention;
use bank::MemoryBank;
use heads::{HeadGrids, Heads, KEY_CHANNELS, VALUE_CHANNELS};
use masks::MaskDownsampler;
use upsample::ProbUpsampler;

/// The memory network's engine for one video stream.
pub struct MemoryNetwork {
    cfg: EngineConfig,
    encoder: Arc<Encoder>,
    heads: Heads,
    grids: HeadGrids,
    frame_w: usize,
    frame_h: usize,
    proc_image: RgbFrame,
    resizer: Resizer,
    features: Features,
    bank: MemoryBank,
    attention: Attention,
    /// `max_objects × VALUE_CHANNELS × cells16`.
    readout: Vec<f32>,
    /// `max_objects × cells4`.
    logits: Vec<f32>,
    /// `(max_objects + 1) × cells4`, channel 0 the background.
    probs: Vec<f32>,
    /// The other objects' probabilities summed, `cells4`.
    others: Vec<f32>,
    confidence: Vec<f32>,
    downsampler: MaskDownsampler,
    upsampler: ProbUpsampler,
    /// `labels[c]` = object id of probability channel `c` (`labels[0]` = 0).
    labels: Vec<u8>,
    frame_index: u64,
    times: StageTimes,
}

impl MemoryNetwork {
    /// Loads the heads of `cfg.memory_network` for `encoder`'s processing
    /// size and prepares a tracker for frames of `frame_w`×`frame_h`.
    pub fn new(
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
        let (pw, ph) = (encoder.width(), encoder.height());
        let grids = HeadGrids::new(pw, ph);
        let heads = Heads::load(
            &cfg.memory_network,
            &grids,
            encoder.device(),
            encoder.backend_handle(),
        )?;
        let net = &cfg.memory_network;
        let (cells4, cells16) = (grids.cells4(), grids.cells16());
        let objects = cfg.max_objects;
        let bank = MemoryBank::new(
            cells16,
            KEY_CHANNELS,
            VALUE_CHANNELS,
            objects,
            net.working_memory,
            net.mem_every,
            net.keep_previous,
        );
        let attention = Attention::new(cells16, bank.max_len(), net.top_k, cfg.thread_count());
        Ok(Self {
            heads,
            frame_w,
            frame_h,
            proc_image: RgbFrame::new(pw, ph),
            resizer: Resizer::new(frame_w, frame_h, pw, ph),
            features: encoder.new_features(),
            bank,
            attention,
            readout: vec![0.0; objects * VALUE_CHANNELS * cells16],
            logits: vec![0.0; objects * cells4],
            probs: vec![0.0; (objects + 1) * cells4],
            others: vec![0.0; cells4],
            confidence: vec![0.0; objects],
            downsampler: MaskDownsampler::new((frame_w, frame_h), (pw, ph), grids.s4),
            upsampler: ProbUpsampler::new(4, grids.s4, (pw, ph), (frame_w, frame_h), objects + 1),
            labels: Vec::with_capacity(objects + 1),
            grids,
            encoder,
            cfg: cfg.clone(),
            frame_index: 0,
            times: StageTimes::default(),
        })
    }

    /// The encoder features of the frame last segmented (or started on).
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The encoder (shared with other trackers of the same size).
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// Object ids being tracked, in channel order.
    pub fn object_ids(&self) -> &[u8] {
        self.labels.get(1..).unwrap_or(&[])
    }

    /// Each object's confidence in the last frame (object order).
    pub fn confidences(&self) -> &[f32] {
        &self.confidence[..self.objects()]
    }

    /// Bytes held by the memory (constant for a tracker).
    pub fn memory_bytes(&self) -> usize {
        self.bank.bytes()
    }

    /// Cumulative per-stage times of `step`.
    pub fn stage_times(&self) -> StageTimes {
        self.times
    }

    fn objects(&self) -> usize {
        self.labels.len().saturating_sub(1)
    }

    fn check_frame(&self, frame: &RgbFrame) -> Result<(), EngineError> {
        check_frame(frame, (self.frame_w, self.frame_h))
    }

    /// Resizes and encodes `frame` into `self.features`.
    fn encode(&mut self, frame: &RgbFrame) -> Result<(), EngineError> {
        self.resizer.resize(frame, &mut self.proc_image);
        self.encoder.encode(&self.proc_image, &mut self.features)?;
        Ok(())
    }

    /// The key of the encoded frame into a spare memory entry (frame
    /// `self.frame_index`); returns the entry.
    fn key_into_spare(&mut self) -> Result<usize, EngineError> {
        let (slot, entry) = self.bank.spare();
        entry.frame = self.frame_index;
        self.heads
            .key
            .run(&[&self.features.s16.data], &mut entry.keys)
            .map_err(EngineError::Network)?;
        let (dim, cells) = (self.bank.key_dim(), self.bank.cells());
        MemoryBank::finish_keys(self.bank.entry_mut(slot), dim, cells);
        Ok(slot)
    }

    /// Every object's values from `self.probs` into entry `slot`.
    fn values_into(&mut self, slot: usize) -> Result<(), EngineError> {
        let cells4 = self.grids.cells4();
        let plane = VALUE_CHANNELS * self.grids.cells16();
        let objects = self.objects();
        for n in 0..objects {
            self.others.fill(0.0);
            for m in (0..objects).filter(|&m| m != n) {
                let p = &self.probs[(m + 1) * cells4..(m + 2) * cells4];
                self.others.iter_mut().zip(p).for_each(|(o, v)| *o += v);
            }
            let mask = &self.probs[(n + 1) * cells4..(n + 2) * cells4];
            let out = &mut self.bank.entry_mut(slot).values[n * plane..(n + 1) * plane];
            self.heads
                .value
                .run(&[&self.features.s16.data, mask, &self.others], out)
                .map_err(EngineError::Network)?;
        }
        Ok(())
    }

    /// `self.probs` from a label mask of frame size: each object's
    /// stride-4 fractions, the background the rest.
    fn probs_from_mask(&mut self, mask: &LabelMask) {
        let cells4 = self.grids.cells4();
        let objects = self.objects();
        let ids = &self.labels[1..];
        self.downsampler
            .fractions(mask, ids, &mut self.probs[cells4..(objects + 1) * cells4]);
        let (bg, rest) = self.probs.split_at_mut(cells4);
        for (j, b) in bg.iter_mut().enumerate() {
            let fg: f32 = (0..objects).map(|n| rest[n * cells4 + j]).sum();
            *b = (1.0 - fg).clamp(0.0, 1.0);
        }
    }

    /// Makes the encoded frame, with `self.probs`, the permanent memory
    /// frame (the rest of the memory is emptied).
    fn anchor(&mut self) -> Result<(), EngineError> {
        let slot = self.key_into_spare()?;
        self.values_into(slot)?;
        self.bank.set_first(slot);
        let (objects, cells4) = (self.objects(), self.grids.cells4());
        masks::confidences(&self.probs, objects, cells4, &mut self.confidence);
        Ok(())
    }

    /// Starts tracking: `mask` labels the objects in `frame` (ids 1..=255,
    /// at most `max_objects` of them). Memory is reset.
    pub fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), EngineError> {
        self.check_frame(frame)?;
        let ids = first_mask_ids(mask, (self.frame_w, self.frame_h), self.cfg.max_objects)?;
        self.labels.clear();
        self.labels.push(0);
        self.labels.extend_from_slice(&ids);
        self.frame_index = 0;
        self.encode(frame)?;
        self.probs_from_mask(mask);
        self.anchor()
    }

    /// Sets object `id`'s mask in `frame` (see
    /// [`crate::engine::Tracker::set_object_mask`]): the frame is encoded
    /// again, the object's probabilities become its mask's fractions (the
    /// others keep theirs where it is not), and the frame becomes the
    /// permanent memory frame.
    pub fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), EngineError> {
        let only = object_only(mask, id, (self.frame_w, self.frame_h))?;
        self.check_frame(frame)?;
        if self.labels.len() < 2 {
            return self.start(frame, &only);
        }
        let k = match self.labels.iter().position(|&l| l == id) {
            Some(k) => k,
            None => {
                check_room(id, self.objects(), self.cfg.max_objects)?;
                self.labels.push(id);
                let cells4 = self.grids.cells4();
                let k = self.labels.len() - 1;
                self.probs[k * cells4..(k + 1) * cells4].fill(0.0);
                k
            }
        };
        let cells4 = self.grids.cells4();
        let channels = self.labels.len();
        let mut fraction = std::mem::take(&mut self.logits);
        self.downsampler
            .fractions(&only, &[id], &mut fraction[..cells4]);
        for (j, &f) in fraction[..cells4].iter().enumerate() {
            // The object's old share goes to the background, then the new
            // mask takes its share of the cell from every channel.
            self.probs[j] += self.probs[k * cells4 + j];
            self.probs[k * cells4 + j] = 0.0;
            for c in 0..channels {
                self.probs[c * cells4 + j] *= 1.0 - f;
            }
            self.probs[k * cells4 + j] += f;
        }
        self.logits = fraction;
        self.encode(frame)?;
        self.anchor()
    }

    /// Derives object `id`'s mask in `frame` from a box with the box
    /// prompt (see [`crate::engine::Tracker::mask_from_box`]).
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

    /// Stops tracking object `id`: its values leave every memory frame and
    /// its probability goes to the background; the last object's channel
    /// takes its place.
    pub fn remove_object(&mut self, id: u8) -> Result<(), EngineError> {
        let Some(k) = self
            .labels
            .iter()
            .skip(1)
            .position(|&l| l == id)
            .map(|p| p + 1)
        else {
            return Err(EngineError::Objects(format!("object {id} is not tracked")));
        };
        let cells4 = self.grids.cells4();
        let last = self.labels.len() - 1;
        self.bank.remove_object(k - 1, last);
        for j in 0..cells4 {
            self.probs[j] += self.probs[k * cells4 + j];
            self.probs[k * cells4 + j] = self.probs[last * cells4 + j];
            self.probs[last * cells4 + j] = 0.0;
        }
        self.confidence.swap(k - 1, last - 1);
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
        let objects = self.objects();
        let (cells4, cells16) = (self.grids.cells4(), self.grids.cells16());
        let t0 = Instant::now();
        self.encode(frame)?;
        let t1 = Instant::now();
        let slot = self.key_into_spare()?;
        let t2 = Instant::now();
        let plane = VALUE_CHANNELS * cells16;
        self.attention.read(
            &self.bank.entry(slot).keys,
            &self.bank,
            objects,
            &mut self.readout[..objects * plane],
        );
        let t3 = Instant::now();
        let f = &self.features;
        for n in 0..objects {
            self.heads
                .decoder
                .run(
                    &[
                        &self.readout[n * plane..(n + 1) * plane],
                        &f.s16.data,
                        &f.s8.data,
                        &f.s4.data,
                    ],
                    &mut self.logits[n * cells4..(n + 1) * cells4],
                )
                .map_err(EngineError::Network)?;
        }
        let t4 = Instant::now();
        masks::aggregate(&self.logits, objects, cells4, &mut self.probs);
        masks::confidences(&self.probs, objects, cells4, &mut self.confidence);
        if out.width != self.frame_w || out.height != self.frame_h {
            *out = LabelMask::new(self.frame_w, self.frame_h);
        }
        self.upsampler
            .labels(&self.probs, objects + 1, &self.labels, out);
        let t5 = Instant::now();
        let net = &self.cfg.memory_network;
        let kept = self.frame_index.is_multiple_of(net.mem_every.max(1) as u64)
            && net.working_memory > 0
            || net.keep_previous;
        if kept {
            self.values_into(slot)?;
            self.bank.store(slot);
        }
        let t6 = Instant::now();
        self.times.encode += t1 - t0;
        self.times.key += t2 - t1;
        self.times.readout += t3 - t2;
        self.times.decode += t4 - t3;
        self.times.upsample += t5 - t4;
        self.times.value += t6 - t5;
        self.times.frames += 1;
        Ok(())
    }
}
