//! The tracker: the engine a stream runs, frame by frame, whichever
//! method `engine.method` picks.
//!
//! [`Tracker::start`] takes the first frame and its label mask; each
//! [`Tracker::step`] segments the next frame into a label mask of frame
//! size; [`Tracker::set_object_mask`] and [`Tracker::remove_object`]
//! change the objects between frames. The methods:
//! - [`MemoryNetwork`] (`memory-network`, the default): the trained
//!   network of [`crate::memnet`];
//! - [`LabelPropagation`] (`label-propagation`): the encoder's features
//!   as keys and the soft masks as values ([`crate::label_propagation`]).
//!
//! The checks every method makes of a mask or an object id are here, once.
//! All buffers are allocated when a tracker is made; steps reuse them.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::BackendError;
use crate::config::{EngineConfig, Method};
use crate::encoder::{Encoder, EncoderError};
use crate::frame::{LabelMask, RgbFrame};
pub use crate::label_propagation::LabelPropagation;
pub use crate::memnet::MemoryNetwork;

/// Why the tracker cannot start or step.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The encoder failed to load or run.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The memory readout failed (on the CPU, after any device fallback).
    #[error("memory readout failed: {0}")]
    Readout(BackendError),
    /// The memory network's heads cannot be loaded.
    #[error(transparent)]
    Heads(#[from] crate::memnet::heads::HeadError),
    /// A memory network head failed (on the CPU, after any device
    /// fallback).
    #[error("memory network failed: {0}")]
    Network(BackendError),
    /// A frame does not have the size the tracker was made for.
    #[error("frame is {got_w}x{got_h}, expected {want_w}x{want_h}")]
    FrameSize {
        /// Width given.
        got_w: usize,
        /// Height given.
        got_h: usize,
        /// Width expected.
        want_w: usize,
        /// Height expected.
        want_h: usize,
    },
    /// The first mask does not fit the frame.
    #[error("mask is {mask_w}x{mask_h} but frames are {frame_w}x{frame_h}")]
    MaskSize {
        /// Mask width.
        mask_w: usize,
        /// Mask height.
        mask_h: usize,
        /// Frame width.
        frame_w: usize,
        /// Frame height.
        frame_h: usize,
    },
    /// The first mask names no object, or too many.
    #[error("{0}")]
    Objects(String),
    /// `step` was called before `start`.
    #[error("the tracker has no objects yet: call start with a first-frame mask")]
    NotStarted,
}

/// Time spent per stage since the tracker was made (for benchmarks).
/// Stages a method does not have stay zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    /// Resize + encoder (+ label propagation's key building).
    pub encode: Duration,
    /// Memory network: the key projection.
    pub key: Duration,
    /// Memory readout.
    pub readout: Duration,
    /// Memory network: the decoder, all objects.
    pub decode: Duration,
    /// Soft aggregation (memory network), upsampling to frame size and
    /// arg-max.
    pub upsample: Duration,
    /// Memory network: the value encoder, all objects (for the frames
    /// stored in memory).
    pub value: Duration,
    /// Frames stepped.
    pub frames: u64,
}

/// An error unless `frame` is a whole RGB frame of `size`.
pub(crate) fn check_frame(
    frame: &RgbFrame,
    (frame_w, frame_h): (usize, usize),
) -> Result<(), EngineError> {
    if frame.width != frame_w
        || frame.height != frame_h
        || frame.data.len() != frame.width * frame.height * 3
    {
        return Err(EngineError::FrameSize {
            got_w: frame.width,
            got_h: frame.height,
            want_w: frame_w,
            want_h: frame_h,
        });
    }
    Ok(())
}

/// The ids of a first-frame `mask` for frames of `size`: an error when it
/// does not fit, labels nothing, or more than `max_objects` objects.
pub(crate) fn first_mask_ids(
    mask: &LabelMask,
    (frame_w, frame_h): (usize, usize),
    max_objects: usize,
) -> Result<Vec<u8>, EngineError> {
    if mask.width != frame_w || mask.height != frame_h || mask.data.len() != frame_w * frame_h {
        return Err(EngineError::MaskSize {
            mask_w: mask.width,
            mask_h: mask.height,
            frame_w,
            frame_h,
        });
    }
    let ids = mask.object_ids();
    if ids.is_empty() {
        return Err(EngineError::Objects(
            "the first-frame mask is empty: it labels no object".into(),
        ));
    }
    if ids.len() > max_objects {
        return Err(EngineError::Objects(format!(
            "the first-frame mask labels {} objects but max_objects is {max_objects}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Object `id`'s pixels of `mask` alone: an error for id 0, a mask of
/// another size than `size`, or no such pixel.
pub(crate) fn object_only(
    mask: &LabelMask,
    id: u8,
    (frame_w, frame_h): (usize, usize),
) -> Result<LabelMask, EngineError> {
    if id == 0 {
        return Err(EngineError::Objects("object id 0 is the background".into()));
    }
    if mask.width != frame_w || mask.height != frame_h || mask.data.len() != frame_w * frame_h {
        return Err(EngineError::MaskSize {
            mask_w: mask.width,
            mask_h: mask.height,
            frame_w,
            frame_h,
        });
    }
    let mut only = LabelMask::new(frame_w, frame_h);
    let mut any = false;
    for (o, &v) in only.data.iter_mut().zip(&mask.data) {
        if v == id {
            *o = id;
            any = true;
        }
    }
    if !any {
        return Err(EngineError::Objects(format!(
            "the mask of object {id} is empty"
        )));
    }
    Ok(only)
}

/// An error unless one more object fits beside `tracked` ones.
pub(crate) fn check_room(id: u8, tracked: usize, max_objects: usize) -> Result<(), EngineError> {
    if tracked >= max_objects {
        return Err(EngineError::Objects(format!(
            "cannot add object {id}: {tracked} objects are tracked and max_objects is {max_objects}"
        )));
    }
    Ok(())
}

/// One engine of either method, behind one interface (boxed: each holds
/// its buffers' headers and both are large).
enum Engine {
    LabelPropagation(Box<LabelPropagation>),
    MemoryNetwork(Box<MemoryNetwork>),
}

/// Calls `$call` on whichever engine `$t` runs.
macro_rules! each {
    ($t:expr, $e:ident => $call:expr) => {
        match $t {
            Engine::LabelPropagation($e) => $call,
            Engine::MemoryNetwork($e) => $call,
        }
    };
}

/// Semi-supervised VOS tracker for one video stream, running the method
/// of `engine.method`.
pub struct Tracker {
    engine: Engine,
    method: Method,
}

impl Tracker {
    /// Loads the encoder (and the method's networks) named by `cfg` and
    /// prepares a tracker for frames of `frame_w`×`frame_h`.
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
        let engine = match cfg.method {
            Method::LabelPropagation => Engine::LabelPropagation(Box::new(
                LabelPropagation::with_encoder(cfg, encoder, frame_w, frame_h)?,
            )),
            Method::MemoryNetwork => Engine::MemoryNetwork(Box::new(MemoryNetwork::new(
                cfg, encoder, frame_w, frame_h,
            )?)),
        };
        Ok(Self {
            engine,
            method: cfg.method,
        })
    }

    /// The method it runs.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The backend running the encoder and the rest, and why.
    pub fn backend_status(&self) -> crate::backend::BackendStatus {
        self.encoder().backend_status()
    }

    /// The encoder (shared with other trackers of the same size).
    pub fn encoder(&self) -> &Arc<Encoder> {
        each!(&self.engine, e => e.encoder())
    }

    /// Object ids being tracked, in channel order.
    pub fn object_ids(&self) -> &[u8] {
        each!(&self.engine, e => e.object_ids())
    }

    /// The encoder features of the frame last segmented (or started on).
    pub fn features(&self) -> &crate::encoder::Features {
        each!(&self.engine, e => e.features())
    }

    /// Each tracked object's confidence in the last frame, in the order of
    /// [`Tracker::object_ids`] (memory network: its mean probability where
    /// it wins; label propagation: none, an empty slice).
    pub fn confidences(&self) -> &[f32] {
        match &self.engine {
            Engine::LabelPropagation(_) => &[],
            Engine::MemoryNetwork(e) => e.confidences(),
        }
    }

    /// Bytes held by the memory (constant for a tracker).
    pub fn memory_bytes(&self) -> usize {
        each!(&self.engine, e => e.memory_bytes())
    }

    /// Cumulative per-stage times of `step`.
    pub fn stage_times(&self) -> StageTimes {
        each!(&self.engine, e => e.stage_times())
    }

    /// The encoder file it runs (which one `precision = "auto"` chose).
    pub fn model_path(&self) -> &std::path::Path {
        self.encoder().model_path()
    }

    /// Starts tracking: `mask` labels the objects in `frame` (ids 1..=255,
    /// at most `max_objects` of them). Memory is reset.
    pub fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), EngineError> {
        each!(&mut self.engine, e => e.start(frame, mask))
    }

    /// Segments the next frame into `out` (resized to the frame if needed).
    pub fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), EngineError> {
        each!(&mut self.engine, e => e.step(frame, out))
    }

    /// Sets object `id`'s mask (the pixels of `mask` equal to `id`) in
    /// `frame`, the frame last given to [`Tracker::step`]: a new object is
    /// added (up to `max_objects`), a tracked one is corrected. That frame
    /// becomes the permanent memory frame, holding this mask and the other
    /// objects' current masks; working memory restarts from it. Before any
    /// object is tracked this is [`Tracker::start`] on `frame` with this
    /// object alone.
    pub fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), EngineError> {
        each!(&mut self.engine, e => e.set_object_mask(frame, id, mask))
    }

    /// Derives object `id`'s mask in `frame` from a box `[x, y, width,
    /// height]` (frame pixels) with the box prompt ([`crate::prompt`]),
    /// using this tracker's encoder and the `[engine.prompt]` settings. Pass
    /// the result to [`Tracker::set_object_mask`] to track it.
    pub fn mask_from_box(
        &self,
        frame: &RgbFrame,
        id: u8,
        bbox: [u32; 4],
    ) -> Result<LabelMask, crate::prompt::PromptError> {
        each!(&self.engine, e => e.mask_from_box(frame, id, bbox))
    }

    /// Stops tracking object `id`. Removing the last object leaves the
    /// tracker without objects (then [`Tracker::step`] is an error until an
    /// object is set again).
    pub fn remove_object(&mut self, id: u8) -> Result<(), EngineError> {
        each!(&mut self.engine, e => e.remove_object(id))
    }
}
