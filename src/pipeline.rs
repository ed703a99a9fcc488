//! The real-time pipeline: capture → engine → publish, one thread each.
//!
//! ```text
//!  frame pool ──▶ capture ──[latest frame, 1]──▶ engine ──[latest result, 1]──▶ publish ──▶ shm
//!      ▲                                           │  ▲                           │
//!      └──────────────── frame returned ───────────┘  └──── mask returned ────────┘
//! ```
//!
//! - Frames and result masks live in pools allocated at start from the
//!   source's size; buffers travel through bounded crossbeam channels and
//!   come back, so steady state allocates nothing in vosd's own code (the
//!   encoder's inference library allocates internally; a frames source
//!   decodes with an allocating JPEG decoder).
//! - Real time wins: each hand-over queue holds one item, and a stage that
//!   finds it full takes the stale item back (counted as a drop of that
//!   stage) and puts the newer one in. The engine always works on the
//!   newest captured frame.
//! - Stopping (the shared stop flag, end of stream, a fatal error, or
//!   `max_frames` published) drains the stages in order; the publisher then
//!   writes the end marker ([`ShmWriter::finish`]) and unlinks the segment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use vosd_engine::engine::{EngineError, Tracker};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::{
    monotonic_ns, ObjectState, PipelineCounters, ShmWriter, SlotData, Visibility,
};
use crate::source::{FrameMeta, FrameSource, SourceError};

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

/// A change to the tracked objects or to the engine's state, sent by the
/// control socket and applied by the engine stage between two frames.
#[derive(Debug)]
pub enum ObjectCommand {
    /// Sets object `object`'s mask in the current frame: adds it
    /// (`correct = false`, must not be tracked) or corrects it
    /// (`correct = true`, must be tracked).
    SetMask {
        /// Object id.
        object: u8,
        /// Its mask or a box to derive it from.
        mask: ObjectMask,
        /// A correction of a tracked object rather than a new one.
        correct: bool,
    },
    /// Stops tracking one object.
    Remove {
        /// Object id.
        object: u8,
    },
    /// Stops tracking every object (empty masks are published).
    RemoveAll,
    /// Stops segmenting and publishing; frames are dropped.
    Pause,
    /// Segments and publishes again.
    Resume,
}

/// An object's mask as the control socket received it.
#[derive(Debug)]
pub enum ObjectMask {
    /// A label mask of the frame's size; the pixels equal to the object id
    /// are the object.
    Mask(LabelMask),
    /// A bounding box `[x, y, width, height]` (frame pixels): the segmenter
    /// derives the mask from the image.
    Box([u32; 4]),
}

/// A command with the channel its outcome goes back on.
#[derive(Debug)]
pub struct EngineRequest {
    /// What to do.
    pub command: ObjectCommand,
    /// Where the outcome goes (`Err` carries the reason).
    pub reply: Sender<Result<(), String>>,
}

/// Pending commands the engine stage holds at most (more are refused).
const COMMAND_QUEUE: usize = 16;

/// Sends [`ObjectCommand`]s to a running pipeline's engine stage.
#[derive(Clone, Debug)]
pub struct PipelineControl {
    tx: Sender<EngineRequest>,
}

impl PipelineControl {
    /// Queues `command` and waits up to `timeout` for the engine's answer
    /// (commands are applied between frames, so this takes up to one
    /// engine step). Never blocks the pipeline.
    pub fn request(&self, command: ObjectCommand, timeout: Duration) -> Result<(), String> {
        let (reply, answer) = bounded(1);
        self.tx
            .try_send(EngineRequest { command, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => {
                    "the engine has too many pending commands; retry".to_string()
                }
                TrySendError::Disconnected(_) => "the pipeline has stopped".to_string(),
            })?;
        answer.recv_timeout(timeout).map_err(|_| {
            format!(
                "no answer from the engine within {:.1} s",
                timeout.as_secs_f64()
            )
        })?
    }
}

/// Applies one command to `segmenter` with `frame` as the current frame
/// (`None`: no frame at hand, only frame-less commands can be applied).
fn apply_command(
    segmenter: &mut dyn Segmenter,
    frame: Option<&RgbFrame>,
    paused: &mut bool,
    command: ObjectCommand,
) -> Result<(), String> {
    let err = |e: SegmentError| e.to_string();
    match command {
        ObjectCommand::Pause => *paused = true,
        ObjectCommand::Resume => *paused = false,
        ObjectCommand::Remove { object } => segmenter.remove_object(object).map_err(err)?,
        ObjectCommand::RemoveAll => {
            for id in segmenter.object_ids().to_vec() {
                segmenter.remove_object(id).map_err(err)?;
            }
        }
        ObjectCommand::SetMask {
            object,
            mask,
            correct,
        } => {
            if *paused {
                return Err("paused: resume before adding or correcting objects".into());
            }
            let Some(frame) = frame else {
                return Err(
                    "no frame arrived to apply the mask to (is the source running?)".into(),
                );
            };
            let tracked = segmenter.object_ids().contains(&object);
            if correct && !tracked {
                return Err(format!("object {object} is not tracked (use add)"));
            }
            if !correct && tracked {
                return Err(format!("object {object} is already tracked (use correct)"));
            }
            let mask = match mask {
                ObjectMask::Mask(m) => m,
                ObjectMask::Box(b) => segmenter.mask_from_box(frame, object, b).map_err(err)?,
            };
            segmenter
                .set_object_mask(frame, object, &mask)
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Applies every queued command (see [`apply_command`]), answers each, and
/// publishes the paused flag in the stats.
fn apply_commands(
    commands: &Receiver<EngineRequest>,
    segmenter: &mut dyn Segmenter,
    frame: Option<&RgbFrame>,
    paused: &mut bool,
    stats: &Stats,
) {
    while let Ok(req) = commands.try_recv() {
        let outcome = apply_command(segmenter, frame, paused, req.command);
        let _ = req.reply.try_send(outcome);
    }
    stats.paused.store(*paused, Ordering::Relaxed);
}

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

/// The last `n` capture→publish latencies (ns), in a ring allocated once.
#[derive(Debug)]
struct LatencyWindow {
    samples: Vec<u64>,
    next: usize,
    filled: bool,
}

impl LatencyWindow {
    fn new(n: usize) -> Self {
        Self {
            samples: vec![0; n.max(1)],
            next: 0,
            filled: false,
        }
    }
    fn push(&mut self, ns: u64) {
        self.samples[self.next] = ns;
        self.next += 1;
        if self.next == self.samples.len() {
            self.next = 0;
            self.filled = true;
        }
    }
    fn sorted(&self) -> Vec<u64> {
        let n = if self.filled {
            self.samples.len()
        } else {
            self.next
        };
        let mut v = self.samples[..n].to_vec();
        v.sort_unstable();
        v
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Live counters of a running pipeline (shared with the service loop).
#[derive(Debug)]
pub struct Stats {
    /// Frames the source delivered.
    pub captured: AtomicU64,
    /// Frames the source could not deliver (bad camera frames, skipped).
    pub capture_errors: AtomicU64,
    /// Captured frames replaced by a newer one before the engine took them.
    pub dropped_capture: AtomicU64,
    /// Frames the engine segmented (including first frames).
    pub processed: AtomicU64,
    /// Results replaced by a newer one before the publisher took them.
    pub dropped_engine: AtomicU64,
    /// Frames published to shared memory.
    pub published: AtomicU64,
    /// CLOCK_MONOTONIC ns of the latest publish (0: none yet).
    pub last_publish_ns: AtomicU64,
    /// Failed attempts to get the camera back (see [`SourceError::Reconnecting`]).
    pub reconnects: AtomicU64,
    /// The camera is lost and being reopened (no frames until it is back).
    pub source_down: AtomicBool,
    /// Segmenting and publishing are paused (control socket).
    pub paused: AtomicBool,
    latency: Mutex<LatencyWindow>,
}

impl Stats {
    fn new(window: usize) -> Self {
        Self {
            captured: AtomicU64::new(0),
            capture_errors: AtomicU64::new(0),
            dropped_capture: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            dropped_engine: AtomicU64::new(0),
            published: AtomicU64::new(0),
            last_publish_ns: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            source_down: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            latency: Mutex::new(LatencyWindow::new(window)),
        }
    }

    /// A consistent-enough copy of the counters with latency percentiles
    /// over the window (allocates: for the stats loop, not the hot path).
    pub fn snapshot(&self) -> StatsSnapshot {
        let sorted = self.latency.lock().map(|w| w.sorted()).unwrap_or_default();
        let ms = |ns: u64| ns as f64 / 1e6;
        StatsSnapshot {
            at_ns: monotonic_ns(),
            captured: self.captured.load(Ordering::Relaxed),
            capture_errors: self.capture_errors.load(Ordering::Relaxed),
            dropped_capture: self.dropped_capture.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            dropped_engine: self.dropped_engine.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            source_down: self.source_down.load(Ordering::Relaxed),
            latency_p50_ms: ms(percentile(&sorted, 50.0)),
            latency_p99_ms: ms(percentile(&sorted, 99.0)),
            latency_max_ms: ms(sorted.last().copied().unwrap_or(0)),
            latency_samples: sorted.len(),
        }
    }
}

/// Counters at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    /// When it was taken (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
    /// Frames captured.
    pub captured: u64,
    /// Frames the source failed to deliver.
    pub capture_errors: u64,
    /// Frames dropped at the engine's input (a newer one replaced them).
    pub dropped_capture: u64,
    /// Frames segmented.
    pub processed: u64,
    /// Results dropped at the publisher's input.
    pub dropped_engine: u64,
    /// Frames published.
    pub published: u64,
    /// Failed camera reconnection attempts.
    pub reconnects: u64,
    /// The camera was lost and not back yet.
    pub source_down: bool,
    /// Median capture→publish latency over the window, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile capture→publish latency over the window, ms.
    pub latency_p99_ms: f64,
    /// Largest latency in the window, ms.
    pub latency_max_ms: f64,
    /// Samples in the window.
    pub latency_samples: usize,
}

impl StatsSnapshot {
    /// Frames per second `(captured, published)` between `earlier` and self.
    pub fn rates_since(&self, earlier: &StatsSnapshot) -> (f64, f64) {
        let dt = self.at_ns.saturating_sub(earlier.at_ns) as f64 / 1e9;
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        (
            self.captured.saturating_sub(earlier.captured) as f64 / dt,
            self.published.saturating_sub(earlier.published) as f64 / dt,
        )
    }

    /// Frames dropped by any stage.
    pub fn dropped(&self) -> u64 {
        self.dropped_capture + self.dropped_engine
    }
}

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A configuration value is unusable.
    #[error(transparent)]
    Config(#[from] PipelineConfigError),
    /// The publisher's segment does not match the source.
    #[error("{0}")]
    Setup(String),
    /// A stage failed while running.
    #[error("{stage}: {message}")]
    Stage {
        /// capture, engine or publish.
        stage: &'static str,
        /// What happened.
        message: String,
    },
}

struct Captured {
    meta: FrameMeta,
    rgb: RgbFrame,
}

struct Output {
    meta: FrameMeta,
    mask: LabelMask,
    ids: Vec<u8>,
}

/// Puts `item` into a one-item queue, taking back (and recycling) a stale
/// item first if needed. Returns `Ok(dropped)` or `Err(())` when the
/// consumer is gone.
fn send_latest<T>(
    tx: &Sender<T>,
    rx: &Receiver<T>,
    mut item: T,
    mut recycle: impl FnMut(T),
) -> Result<bool, ()> {
    let mut dropped = false;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(dropped),
            Err(TrySendError::Disconnected(_)) => return Err(()),
            Err(TrySendError::Full(back)) => {
                item = back;
                if let Ok(stale) = rx.try_recv() {
                    recycle(stale);
                    dropped = true;
                }
            }
        }
    }
}

/// A constant-velocity Kalman filter on one axis: state (position,
/// velocity), position measured. Units: pixels and seconds.
#[derive(Clone, Copy, Debug, Default)]
struct AxisFilter {
    p: f32,
    v: f32,
    /// Covariance [[pp, pv], [pv, vv]].
    pp: f32,
    pv: f32,
    vv: f32,
}

/// Process noise: acceleration spectral density, (px/s²)²·s.
const KF_ACCEL: f32 = 10000.0;
/// Measurement noise of a mask centroid, px².
const KF_MEAS: f32 = 4.0;

impl AxisFilter {
    fn start(z: f32) -> Self {
        Self {
            p: z,
            v: 0.0,
            pp: KF_MEAS,
            pv: 0.0,
            vv: 1.0e4,
        }
    }

    fn predict(&mut self, dt: f32) {
        self.p += self.v * dt;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        let q = KF_ACCEL;
        self.pp = pp + 2.0 * dt * pv + dt * dt * vv + q * dt.powi(3) / 3.0;
        self.pv = pv + dt * vv + q * dt * dt / 2.0;
        self.vv = vv + q * dt;
    }

    fn update(&mut self, z: f32) {
        let s = self.pp + KF_MEAS;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let y = z - self.p;
        self.p += kp * y;
        self.v += kv * y;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        self.pp = (1.0 - kp) * pp;
        self.pv = (1.0 - kp) * pv;
        self.vv = vv - kv * pv;
    }
}

/// Per-object state over time: position/velocity filter, visibility,
/// confidence.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// Typical visible area (exponential average over visible frames).
    area_avg: f32,
    axes: [AxisFilter; 2],
    /// Time of the filter's state (CLOCK_MONOTONIC ns); 0 = no track.
    at_ns: u64,
    /// Last time the object had pixels.
    seen_ns: u64,
}

/// Fills object states from a label mask: area, box and centroid from the
/// mask; velocity (px/s) from a constant-velocity Kalman filter on the
/// centroid; visibility `occluded` when the area falls below 30 % of the
/// object's typical area or the object has no pixels, `lost` when it has had
/// none for `lost_after`; confidence = area / typical area (capped at 1).
/// While out of sight, the centroid is the filter's prediction (where the
/// object is expected back) and the velocity is kept.
struct StateTracker {
    tracks: Box<[Track; 256]>,
    lost_after_ns: u64,
}

impl StateTracker {
    fn new(lost_after_s: f64) -> Self {
        Self {
            tracks: Box::new([Track::default(); 256]),
            lost_after_ns: (lost_after_s * 1e9) as u64,
        }
    }

    fn reset(&mut self) {
        self.tracks.iter_mut().for_each(|t| *t = Track::default());
    }

    fn update(&mut self, out: &Output, states: &mut Vec<ObjectState>, max: usize) {
        states.clear();
        let (w, h) = (out.mask.width, out.mask.height);
        let now = out.meta.capture_ns;
        for &id in out.ids.iter().take(max) {
            let mut s = ObjectState::from_mask(&out.mask.data, w, h, id);
            let t = &mut self.tracks[id as usize];
            let dt = if t.at_ns > 0 && now > t.at_ns {
                (now - t.at_ns) as f32 / 1e9
            } else {
                0.0
            };
            if s.area == 0 {
                if t.at_ns == 0 {
                    s.visibility = Visibility::Lost;
                } else {
                    t.axes.iter_mut().for_each(|a| a.predict(dt));
                    t.at_ns = now;
                    let gone = now.saturating_sub(t.seen_ns);
                    s.visibility = if gone >= self.lost_after_ns {
                        Visibility::Lost
                    } else {
                        Visibility::Occluded
                    };
                    s.centroid = [t.axes[0].p, t.axes[1].p];
                    s.velocity = [t.axes[0].v, t.axes[1].v];
                }
                s.confidence = 0.0;
            } else {
                if t.at_ns == 0 {
                    t.axes = [
                        AxisFilter::start(s.centroid[0]),
                        AxisFilter::start(s.centroid[1]),
                    ];
                } else {
                    for (a, &z) in t.axes.iter_mut().zip(&s.centroid) {
                        a.predict(dt);
                        a.update(z);
                    }
                }
                let area = s.area as f32;
                if t.area_avg <= 0.0 {
                    t.area_avg = area;
                }
                let ratio = area / t.area_avg;
                if ratio < 0.3 {
                    s.visibility = Visibility::Occluded;
                } else {
                    t.area_avg = 0.8 * t.area_avg + 0.2 * area;
                }
                s.confidence = ratio.min(1.0);
                s.velocity = [t.axes[0].v, t.axes[1].v];
                t.at_ns = now.max(1);
                t.seen_ns = now;
            }
            states.push(s);
        }
    }
}

/// What a finished pipeline did.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Final counters.
    pub stats: StatsSnapshot,
    /// The source ran out of frames (rather than being stopped).
    pub source_ended: bool,
}

/// A running pipeline.
pub struct Pipeline {
    threads: Vec<(&'static str, JoinHandle<()>)>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<PipelineError>>>,
    publish_done: Arc<AtomicBool>,
    source_ended: Arc<AtomicBool>,
    control: PipelineControl,
}

impl Pipeline {
    /// A handle that sends object commands to the engine stage (for the
    /// control socket).
    pub fn control(&self) -> PipelineControl {
        self.control.clone()
    }
}

fn fail(
    error: &Mutex<Option<PipelineError>>,
    stop: &AtomicBool,
    stage: &'static str,
    message: String,
) {
    log::error!("{stage}: {message}");
    if let Ok(mut e) = error.lock() {
        e.get_or_insert(PipelineError::Stage { stage, message });
    }
    stop.store(true, Ordering::SeqCst);
}

impl Pipeline {
    /// Allocates the pools and starts the three stage threads. `writer`
    /// must have the source's frame size; `stop` ends the pipeline when
    /// raised (a signal handler's flag).
    pub fn start(
        mut source: Box<dyn FrameSource>,
        mut segmenter: Box<dyn Segmenter>,
        mut writer: ShmWriter,
        cfg: &PipelineConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<Pipeline, PipelineError> {
        cfg.validate()?;
        let (w, h) = source.size();
        if (writer.width() as usize, writer.height() as usize) != (w, h) {
            return Err(PipelineError::Setup(format!(
                "shm '{}' is {}x{} but the source delivers {w}x{h}",
                writer.name(),
                writer.width(),
                writer.height()
            )));
        }
        let initial = source.initial_objects();
        if let Some(m) = &initial {
            if (m.width, m.height) != (w, h) {
                return Err(PipelineError::Setup(format!(
                    "the source's first-frame mask is {}x{} but its frames are {w}x{h}",
                    m.width, m.height
                )));
            }
            let n = m.object_ids().len();
            if n > writer.max_objects() as usize {
                return Err(PipelineError::Setup(format!(
                    "publish.max_objects: the first frame has {n} objects but the segment holds {}",
                    writer.max_objects()
                )));
            }
        } else {
            log::warn!("the source gives no first-frame objects: publishing empty masks");
        }

        let stats = Arc::new(Stats::new(cfg.latency_window));
        let error: Arc<Mutex<Option<PipelineError>>> = Arc::new(Mutex::new(None));
        let publish_done = Arc::new(AtomicBool::new(false));
        let source_ended = Arc::new(AtomicBool::new(false));

        let (free_tx, free_rx) = bounded::<Captured>(cfg.frame_pool);
        for _ in 0..cfg.frame_pool {
            let _ = free_tx.send(Captured {
                meta: FrameMeta::default(),
                rgb: RgbFrame::new(w, h),
            });
        }
        let (mask_free_tx, mask_free_rx) = bounded::<Output>(cfg.mask_pool);
        for _ in 0..cfg.mask_pool {
            let _ = mask_free_tx.send(Output {
                meta: FrameMeta::default(),
                mask: LabelMask::new(w, h),
                ids: Vec::with_capacity(256),
            });
        }
        let (frame_tx, frame_rx) = bounded::<Captured>(1);
        let (ctl_tx, ctl_rx) = bounded::<EngineRequest>(COMMAND_QUEUE);
        let (out_tx, out_rx) = bounded::<Output>(1);
        let tick = Duration::from_millis(50);
        let mut threads = Vec::new();

        // Capture.
        {
            let (stats, stop, error, ended) = (
                stats.clone(),
                stop.clone(),
                error.clone(),
                source_ended.clone(),
            );
            let (free_tx, free_rx, frame_rx) = (free_tx.clone(), free_rx, frame_rx.clone());
            let spawn = std::thread::Builder::new()
                .name("vosd-capture".into())
                .spawn(move || {
                    let mut bad_logged = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut slot = match free_rx.recv_timeout(tick) {
                            Ok(s) => s,
                            Err(RecvTimeoutError::Timeout) => continue,
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
                        match source.next_frame(&mut slot.rgb) {
                            Ok(meta) => {
                                if stats.source_down.swap(false, Ordering::Relaxed) {
                                    log::info!("source: frames flow again");
                                }
                                slot.meta = meta;
                                stats.captured.fetch_add(1, Ordering::Relaxed);
                                match send_latest(&frame_tx, &frame_rx, slot, |stale| {
                                    let _ = free_tx.try_send(stale);
                                }) {
                                    Ok(true) => {
                                        stats.dropped_capture.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(false) => {}
                                    Err(()) => break,
                                }
                            }
                            Err(SourceError::Stopped) => break,
                            Err(SourceError::Ended) => {
                                log::info!(
                                    "source: end of stream after {} frames",
                                    stats.captured.load(Ordering::Relaxed)
                                );
                                ended.store(true, Ordering::SeqCst);
                                break;
                            }
                            Err(e @ SourceError::Reconnecting { .. }) => {
                                let n = stats.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                                stats.source_down.store(true, Ordering::Relaxed);
                                // Every attempt at first, then sparser.
                                if n <= 5 || n.is_power_of_two() {
                                    log::warn!("source: {e} (attempt {n})");
                                }
                                let _ = free_tx.try_send(slot);
                            }
                            Err(e @ SourceError::BadFrame { .. }) => {
                                let n = stats.capture_errors.fetch_add(1, Ordering::Relaxed) + 1;
                                if n.is_power_of_two() && n > bad_logged {
                                    bad_logged = n;
                                    log::warn!("source: {e} ({n} so far; skipped)");
                                }
                                let _ = free_tx.try_send(slot);
                            }
                            Err(e) => {
                                fail(&error, &stop, "capture", e.to_string());
                                break;
                            }
                        }
                    }
                    // Dropping frame_tx tells the engine that no frame follows.
                });
            threads.push((
                "capture",
                spawn.map_err(|e| {
                    PipelineError::Setup(format!("cannot start the capture thread: {e}"))
                })?,
            ));
        }

        // Engine.
        {
            let (stats, stop, error) = (stats.clone(), stop.clone(), error.clone());
            let (mask_free_tx, mask_free_rx, out_rx) =
                (mask_free_tx.clone(), mask_free_rx, out_rx.clone());
            let spawn = std::thread::Builder::new()
                .name("vosd-engine".into())
                .spawn(move || {
                    let mut started = false;
                    let mut paused = false;
                    let mut last_frame = std::time::Instant::now();
                    loop {
                        let f = match frame_rx.recv_timeout(tick) {
                            Ok(f) => {
                                last_frame = std::time::Instant::now();
                                f
                            }
                            Err(RecvTimeoutError::Timeout) => {
                                // Commands wait for the next frame, unless
                                // frames stopped coming: then apply what
                                // needs no frame, and refuse the rest.
                                if last_frame.elapsed() < Duration::from_secs(1) {
                                    continue;
                                }
                                apply_commands(&ctl_rx, &mut *segmenter, None, &mut paused, &stats);
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
                        if stop.load(Ordering::Relaxed) {
                            // Stopping: let the capture side finish, skip the work.
                            let _ = free_tx.try_send(f);
                            continue;
                        }
                        let mut out = loop {
                            match mask_free_rx.recv_timeout(tick) {
                                Ok(o) => break Some(o),
                                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {
                                    continue
                                }
                                Err(_) => break None,
                            }
                        };
                        let Some(o) = out.as_mut() else {
                            let _ = free_tx.try_send(f);
                            break;
                        };
                        o.meta = f.meta;
                        o.ids.clear();
                        let result = match &initial {
                            _ if paused => Ok(()),
                            Some(init) if !started || f.meta.restart => {
                                started = true;
                                segmenter.start(&f.rgb, init).map(|()| {
                                    o.mask.data.copy_from_slice(&init.data);
                                    o.ids.extend_from_slice(segmenter.object_ids());
                                })
                            }
                            // No objects (none given, or all removed).
                            _ if segmenter.object_ids().is_empty() => {
                                o.mask.data.fill(0);
                                Ok(())
                            }
                            _ => segmenter
                                .step(&f.rgb, &mut o.mask)
                                .map(|()| o.ids.extend_from_slice(segmenter.object_ids())),
                        };
                        // Control commands apply to this frame, after it was
                        // segmented (the segmenter's state is this frame's).
                        let was_paused = paused;
                        apply_commands(&ctl_rx, &mut *segmenter, Some(&f.rgb), &mut paused, &stats);
                        let _ = free_tx.try_send(f);
                        let o = out.take().expect("checked above");
                        if was_paused {
                            // Paused: nothing was segmented; nothing to publish.
                            let _ = mask_free_tx.try_send(o);
                            continue;
                        }
                        if let Err(e) = result {
                            fail(&error, &stop, "engine", e.to_string());
                            let _ = mask_free_tx.try_send(o);
                            continue;
                        }
                        stats.processed.fetch_add(1, Ordering::Relaxed);
                        match send_latest(&out_tx, &out_rx, o, |stale| {
                            let _ = mask_free_tx.try_send(stale);
                        }) {
                            Ok(true) => {
                                stats.dropped_engine.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(false) => {}
                            Err(()) => break,
                        }
                    }
                    // Dropping out_tx tells the publisher that no result follows.
                });
            threads.push((
                "engine",
                spawn.map_err(|e| {
                    PipelineError::Setup(format!("cannot start the engine thread: {e}"))
                })?,
            ));
        }

        // Publish.
        {
            let (stats, stop, error, done) = (
                stats.clone(),
                stop.clone(),
                error.clone(),
                publish_done.clone(),
            );
            let max_frames = cfg.max_frames;
            let lost_after_s = cfg.lost_after_s;
            let spawn = std::thread::Builder::new()
                .name("vosd-publish".into())
                .spawn(move || {
                    let max_objects = writer.max_objects() as usize;
                    let mut states: Vec<ObjectState> = Vec::with_capacity(max_objects);
                    let mut tracker = StateTracker::new(lost_after_s);
                    // The statistics block of the segment header: refreshed
                    // after every publish and on every idle tick, so that
                    // readers see a lost camera while nothing is published.
                    // Relaxed loads and stores only; no allocation.
                    let publish_stats = |writer: &ShmWriter| {
                        let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
                        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
                        writer.set_stats(&PipelineCounters {
                            frames_captured: ld(&stats.captured),
                            frames_dropped: ld(&stats.dropped_capture)
                                .saturating_add(ld(&stats.dropped_engine)),
                            capture_errors: sat(ld(&stats.capture_errors)),
                            reconnects: sat(ld(&stats.reconnects)),
                            camera_lost: stats.source_down.load(Ordering::Relaxed),
                        });
                    };
                    publish_stats(&writer);
                    loop {
                        let o = match out_rx.recv_timeout(tick) {
                            Ok(o) => o,
                            Err(RecvTimeoutError::Timeout) => {
                                publish_stats(&writer);
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
                        if o.meta.restart {
                            tracker.reset();
                        }
                        tracker.update(&o, &mut states, max_objects);
                        let data = SlotData {
                            frame_number: o.meta.frame_number,
                            capture_ns: o.meta.capture_ns,
                            objects: &states,
                            mask: &o.mask.data,
                        };
                        match writer.publish(&data) {
                            Ok(_) => {
                                let now = monotonic_ns();
                                if let Ok(mut l) = stats.latency.lock() {
                                    l.push(now.saturating_sub(o.meta.capture_ns));
                                }
                                stats.last_publish_ns.store(now, Ordering::Relaxed);
                                let n = stats.published.fetch_add(1, Ordering::Release) + 1;
                                if max_frames > 0 && n >= max_frames {
                                    log::info!(
                                        "published {n} frames (pipeline.max_frames): stopping"
                                    );
                                    stop.store(true, Ordering::SeqCst);
                                }
                            }
                            Err(e) => fail(&error, &stop, "publish", e.to_string()),
                        }
                        publish_stats(&writer);
                        let _ = mask_free_tx.try_send(o);
                    }
                    // Final counts, then the end marker.
                    publish_stats(&writer);
                    writer.finish();
                    log::info!(
                        "shm '{}': end marker published after {} frames",
                        writer.name(),
                        writer.published()
                    );
                    drop(writer);
                    done.store(true, Ordering::SeqCst);
                });
            threads.push((
                "publish",
                spawn.map_err(|e| {
                    PipelineError::Setup(format!("cannot start the publish thread: {e}"))
                })?,
            ));
        }

        Ok(Pipeline {
            threads,
            stats,
            stop,
            error,
            publish_done,
            source_ended,
            control: PipelineControl { tx: ctl_tx },
        })
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Whether the publisher has finished (end marker written): the
    /// pipeline stopped by itself (end of stream, error, frame limit) or
    /// after the stop flag.
    pub fn finished(&self) -> bool {
        self.publish_done.load(Ordering::SeqCst)
    }

    /// Raises the stop flag, waits for the stages, and reports.
    pub fn join(self) -> Result<Summary, PipelineError> {
        self.stop.store(true, Ordering::SeqCst);
        let mut panicked = None;
        for (name, t) in self.threads {
            if t.join().is_err() {
                panicked.get_or_insert(name);
            }
        }
        if let Some(e) = self.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        if let Some(stage) = panicked {
            return Err(PipelineError::Stage {
                stage,
                message: "the thread panicked".into(),
            });
        }
        Ok(Summary {
            stats: self.stats.snapshot(),
            source_ended: self.source_ended.load(Ordering::SeqCst),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_wins_recycles_the_stale_item() {
        let (tx, rx) = bounded::<u32>(1);
        let mut recycled = Vec::new();
        assert_eq!(send_latest(&tx, &rx, 1, |s| recycled.push(s)), Ok(false));
        assert_eq!(send_latest(&tx, &rx, 2, |s| recycled.push(s)), Ok(true));
        assert_eq!(recycled, vec![1]);
        assert_eq!(rx.try_recv(), Ok(2));
        drop(rx);
        let (tx2, rx2) = bounded::<u32>(1);
        drop(rx2);
        let dead_rx = bounded::<u32>(1).1;
        assert_eq!(send_latest(&tx2, &dead_rx, 3, |_| {}), Err(()));
    }

    #[test]
    fn percentiles_of_the_window() {
        let mut w = LatencyWindow::new(100);
        for i in 1..=100 {
            w.push(i);
        }
        let s = w.sorted();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        w.push(1000); // overwrites the oldest (1)
        let s = w.sorted();
        assert_eq!(s.len(), 100);
        assert_eq!(*s.last().unwrap(), 1000);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn state_tracker_velocity_and_visibility() {
        let (w, h) = (60usize, 20usize);
        let mut t = StateTracker::new(0.35);
        let mut states = Vec::new();
        let mut out = Output {
            meta: FrameMeta::default(),
            mask: LabelMask::new(w, h),
            ids: vec![1],
        };
        let square = |mask: &mut LabelMask, x0: usize, size: usize| {
            mask.data.fill(0);
            for y in 5..5 + size {
                for x in x0..x0 + size {
                    mask.data[y * w + x] = 1;
                }
            }
        };
        // 2 px per 0.1 s to the right: 20 px/s.
        for k in 0..8u64 {
            square(&mut out.mask, 2 + 2 * k as usize, 6);
            out.meta.capture_ns = k * 100_000_000;
            t.update(&out, &mut states, 8);
            assert_eq!(states[0].visibility, Visibility::Visible);
        }
        let v = states[0].velocity;
        assert!((v[0] - 20.0).abs() < 3.0, "{v:?}");
        assert!(v[1].abs() < 1.0, "{v:?}");
        // Mostly hidden: occluded, low confidence.
        square(&mut out.mask, 18, 2);
        out.meta.capture_ns = 800_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Occluded);
        assert!(states[0].confidence < 0.3);
        // Gone: occluded while younger than lost_after, with the predicted
        // position moving on; then lost.
        out.mask.data.fill(0);
        out.meta.capture_ns = 1_000_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Occluded);
        assert_eq!(states[0].area, 0);
        let expected_x = states[0].centroid[0];
        assert!(expected_x > 20.0, "predicted centroid {expected_x}");
        out.meta.capture_ns = 1_200_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Lost, "0.4 s out of sight");
        // Back in sight: visible again.
        square(&mut out.mask, 26, 6);
        out.meta.capture_ns = 1_300_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Visible);
        // Moving left now: the filter turns the velocity round.
        for k in 0..10u64 {
            square(&mut out.mask, 26 - 2 * k as usize, 6);
            out.meta.capture_ns = 1_400_000_000 + k * 100_000_000;
            t.update(&out, &mut states, 8);
        }
        let v = states[0].velocity;
        assert!((v[0] + 20.0).abs() < 4.0, "{v:?}");
    }

    #[test]
    fn states_follow_the_synthetic_scene() {
        use crate::source::synthetic::{Scene, SyntheticConfig};
        let cfg = SyntheticConfig {
            width: 320,
            height: 240,
            fps: 30.0,
            ..Default::default()
        };
        let scene = Scene::new(&cfg).unwrap();
        let ids = scene.object_ids();
        let mut t = StateTracker::new(2.0);
        let mut states = Vec::new();
        let mut out = Output {
            meta: FrameMeta::default(),
            mask: LabelMask::new(320, 240),
            ids: ids.clone(),
        };
        let period_ns = 1_000_000_000 / 30;
        let mut prev: Vec<Option<[f32; 2]>> = vec![None; ids.len()];
        let (mut checked, mut sign_ok, mut rel_err) = (0, 0, 0.0f64);
        let (mut occluded, mut recovered) = (0, 0);
        let mut was_occluded = vec![false; ids.len()];
        for k in 0..300u64 {
            scene.ground_truth(k, &mut out.mask);
            out.meta.capture_ns = k * period_ns;
            t.update(&out, &mut states, 8);
            for (i, s) in states.iter().enumerate() {
                let truth = ObjectState::from_mask(&out.mask.data, 320, 240, ids[i]);
                if s.visibility == Visibility::Occluded {
                    occluded += 1;
                    was_occluded[i] = true;
                } else if s.visibility == Visibility::Visible && was_occluded[i] {
                    recovered += 1;
                    was_occluded[i] = false;
                }
                // True velocity from the exact centroids (visible objects,
                // after the filter's first second).
                if let (Some(p), true) = (prev[i], truth.area > 0) {
                    let v = (truth.centroid[0] - p[0]) * 30.0;
                    if k > 30 && s.visibility == Visibility::Visible && v.abs() > 15.0 {
                        checked += 1;
                        sign_ok += usize::from(v.signum() == s.velocity[0].signum());
                        rel_err += f64::from(((s.velocity[0] - v) / v).abs());
                    }
                }
                prev[i] = (truth.area > 0).then_some(truth.centroid);
            }
        }
        assert!(checked > 100, "only {checked} moving frames checked");
        let sign_rate = sign_ok as f64 / checked as f64;
        let mean_rel = rel_err / checked as f64;
        eprintln!(
            "{checked} moving frames: velocity sign right in {sign_rate:.3}, mean relative error {mean_rel:.3}; {occluded} occluded states, {recovered} recoveries"
        );
        assert!(
            sign_rate > 0.95,
            "velocity sign right in {sign_rate:.2} of frames"
        );
        assert!(
            mean_rel < 0.25,
            "mean relative velocity error {mean_rel:.2}"
        );
        assert!(occluded > 0, "the scene's occlusions were not detected");
        assert!(recovered > 0, "no object came back to visible");
    }
}
