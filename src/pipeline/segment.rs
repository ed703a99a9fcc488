//! The segment stage (the "engine" of logs and errors): the [`Segmenter`]
//! it runs, that trait's implementations for the engine's [`Tracker`] and
//! for [`Discovery`] (unsupervised mode), and
//! [`SegmentStage`], the thread that turns the newest captured frame into a
//! label mask and applies the control socket's commands between frames.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use vosd_engine::discover::Discovery;
use vosd_engine::engine::{EngineError, Tracker};
use vosd_engine::frame::{LabelMask, RgbFrame};

use super::commands::{apply_commands, EngineRequest};
use super::queue::{FrameBuf, LatestSender, MaskBuf, Pool, Recycler};
use super::{Shared, TICK};

/// Error type of a [`Segmenter`].
pub type SegmentError = Box<dyn std::error::Error + Send + Sync>;

/// What the engine stage runs: a semi-supervised video object segmenter.
/// [`Tracker`] is the real one.
pub trait Segmenter: Send {
    /// Starts (or restarts) tracking the objects of `mask` in `frame`.
    fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), SegmentError>;
    /// Segments the next frame into `out` (frame size).
    fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), SegmentError>;
    /// Ids of the objects being tracked.
    fn object_ids(&self) -> &[u8];
    /// Each object's confidence in the last frame (the order of
    /// [`Segmenter::object_ids`]); empty when the segmenter has none (then
    /// the published confidence comes from the object's area).
    fn confidences(&self) -> &[f32] {
        &[]
    }
    /// Sets object `id`'s mask (pixels of `mask` equal to `id`) in `frame`,
    /// the frame last segmented: adds the object or corrects it.
    fn set_object_mask(
        &mut self,
        _frame: &RgbFrame,
        _id: u8,
        _mask: &LabelMask,
    ) -> Result<(), SegmentError> {
        Err("this segmenter cannot change its objects".into())
    }
    /// Stops tracking object `id`.
    fn remove_object(&mut self, _id: u8) -> Result<(), SegmentError> {
        Err("this segmenter cannot change its objects".into())
    }
    /// Derives object `id`'s mask in `frame` from a box `[x, y, w, h]`.
    fn mask_from_box(
        &mut self,
        _frame: &RgbFrame,
        _id: u8,
        _bbox: [u32; 4],
    ) -> Result<LabelMask, SegmentError> {
        Err("this segmenter has no box prompt".into())
    }
    /// Whether it finds objects by itself (unsupervised mode): then it
    /// steps on every frame, objects or not, and the source's first-frame
    /// objects are not used.
    fn discovers(&self) -> bool {
        false
    }
}

fn boxed(e: EngineError) -> SegmentError {
    Box::new(e)
}

impl Segmenter for Discovery {
    fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), SegmentError> {
        Discovery::start(self, frame, mask).map_err(boxed)
    }
    fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), SegmentError> {
        // Discoveries and losses are logged by the discovery itself.
        Discovery::step(self, frame, out).map(|_| ()).map_err(boxed)
    }
    fn object_ids(&self) -> &[u8] {
        Discovery::object_ids(self)
    }
    fn confidences(&self) -> &[f32] {
        self.tracker().confidences()
    }
    fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), SegmentError> {
        Discovery::set_object_mask(self, frame, id, mask).map_err(boxed)
    }
    fn remove_object(&mut self, id: u8) -> Result<(), SegmentError> {
        Discovery::remove_object(self, id).map_err(boxed)
    }
    fn mask_from_box(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        bbox: [u32; 4],
    ) -> Result<LabelMask, SegmentError> {
        Discovery::mask_from_box(self, frame, id, bbox).map_err(|e| Box::new(e) as SegmentError)
    }
    fn discovers(&self) -> bool {
        true
    }
}

impl Segmenter for Tracker {
    fn start(&mut self, frame: &RgbFrame, mask: &LabelMask) -> Result<(), SegmentError> {
        Tracker::start(self, frame, mask).map_err(|e: EngineError| Box::new(e) as SegmentError)
    }
    fn step(&mut self, frame: &RgbFrame, out: &mut LabelMask) -> Result<(), SegmentError> {
        Tracker::step(self, frame, out).map_err(|e: EngineError| Box::new(e) as SegmentError)
    }
    fn object_ids(&self) -> &[u8] {
        Tracker::object_ids(self)
    }
    fn confidences(&self) -> &[f32] {
        Tracker::confidences(self)
    }
    fn set_object_mask(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        mask: &LabelMask,
    ) -> Result<(), SegmentError> {
        Tracker::set_object_mask(self, frame, id, mask)
            .map_err(|e: EngineError| Box::new(e) as SegmentError)
    }
    fn remove_object(&mut self, id: u8) -> Result<(), SegmentError> {
        Tracker::remove_object(self, id).map_err(|e: EngineError| Box::new(e) as SegmentError)
    }
    fn mask_from_box(
        &mut self,
        frame: &RgbFrame,
        id: u8,
        bbox: [u32; 4],
    ) -> Result<LabelMask, SegmentError> {
        Tracker::mask_from_box(self, frame, id, bbox).map_err(|e| Box::new(e) as SegmentError)
    }
}

/// The segment stage: takes the newest captured frame, segments it into a
/// mask buffer from the mask pool, applies the queued control commands to
/// it, gives the frame back to the frame pool and hands the mask over to
/// the publish stage. Runs until the capture stage has gone and its last
/// frame was taken.
pub(super) struct SegmentStage {
    /// What turns a frame into a label mask.
    pub(super) segmenter: Box<dyn Segmenter>,
    /// The source's first-frame objects, the segmenter's start (and
    /// restart) mask; none: masks stay empty until objects are added.
    pub(super) initial: Option<LabelMask>,
    /// The capture stage's latest-wins queue.
    pub(super) frames: Receiver<FrameBuf>,
    /// Gives frames back to the frame pool.
    pub(super) frames_back: Recycler<FrameBuf>,
    /// The mask pool.
    pub(super) masks: Pool<MaskBuf>,
    /// The latest-wins queue to the publish stage.
    pub(super) results: LatestSender<MaskBuf>,
    /// The control socket's commands.
    pub(super) commands: Receiver<EngineRequest>,
    /// Counters, stop flag and failure.
    pub(super) shared: Shared,
}

/// The stage's progress between frames.
#[derive(Debug, Default)]
struct Progress {
    /// The segmenter was started on a first frame.
    started: bool,
    /// Commands paused segmenting and publishing.
    paused: bool,
}

impl SegmentStage {
    /// The stage's thread.
    pub(super) fn run(mut self) {
        let mut progress = Progress::default();
        let mut last_frame = Instant::now();
        loop {
            let f = match self.frames.recv_timeout(TICK) {
                Ok(f) => {
                    last_frame = Instant::now();
                    f
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Commands wait for the next frame, unless frames
                    // stopped coming: then apply what needs no frame, and
                    // refuse the rest.
                    if last_frame.elapsed() >= Duration::from_secs(1) {
                        self.apply_commands(None, &mut progress.paused);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.shared.stopping() {
                // Stopping: let the capture side finish, skip the work.
                self.frames_back.give_back(f);
                continue;
            }
            let Some(mut o) = self.take_mask() else {
                self.frames_back.give_back(f);
                break;
            };
            o.meta = f.meta;
            o.ids.clear();
            o.confidences.clear();
            let result = self.segment(&mut progress, &f, &mut o);
            // Control commands apply to this frame, after it was segmented
            // (the segmenter's state is this frame's).
            let was_paused = progress.paused;
            self.apply_commands(Some(&f.rgb), &mut progress.paused);
            self.frames_back.give_back(f);
            if was_paused {
                // Paused: nothing was segmented; nothing to publish.
                self.masks.give_back(o);
                continue;
            }
            if let Err(e) = result {
                self.shared.fail("engine", e.to_string());
                self.masks.give_back(o);
                continue;
            }
            let stats = &self.shared.stats;
            stats.processed.fetch_add(1, Ordering::Relaxed);
            match self.results.send(o, |stale| self.masks.give_back(stale)) {
                Ok(true) => {
                    stats.dropped_engine.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(_) => break,
            }
        }
        // Dropping `results` tells the publisher that no result follows.
    }

    /// A free mask buffer; waits for one unless the pipeline is stopping
    /// (then `None`).
    fn take_mask(&self) -> Option<MaskBuf> {
        loop {
            match self.masks.take(TICK) {
                Ok(o) => return Some(o),
                Err(RecvTimeoutError::Timeout) if !self.shared.stopping() => continue,
                Err(_) => return None,
            }
        }
    }

    /// Segments frame `f` into `o` (mask and object ids): starts the
    /// segmenter on the first frame and whenever the source restarts,
    /// steps it otherwise; empty masks while no object is tracked; nothing
    /// while paused.
    fn segment(
        &mut self,
        progress: &mut Progress,
        f: &FrameBuf,
        o: &mut MaskBuf,
    ) -> Result<(), SegmentError> {
        let segmenter = &mut self.segmenter;
        let discovers = segmenter.discovers();
        match &self.initial {
            _ if progress.paused => Ok(()),
            Some(init) if !discovers && (!progress.started || f.meta.restart) => {
                progress.started = true;
                segmenter.start(&f.rgb, init).map(|()| {
                    o.mask.data.copy_from_slice(&init.data);
                    o.ids.extend_from_slice(segmenter.object_ids());
                })
            }
            // No objects (none given, or all removed), and none to find.
            _ if segmenter.object_ids().is_empty() && !discovers => {
                o.mask.data.fill(0);
                Ok(())
            }
            _ => segmenter.step(&f.rgb, &mut o.mask).map(|()| {
                o.ids.extend_from_slice(segmenter.object_ids());
                o.confidences.extend_from_slice(segmenter.confidences());
            }),
        }
    }

    /// Applies the queued commands with `frame` as the current frame.
    fn apply_commands(&mut self, frame: Option<&RgbFrame>, paused: &mut bool) {
        apply_commands(
            &self.commands,
            &mut *self.segmenter,
            frame,
            paused,
            &self.shared.stats,
        );
    }
}
