//! The real-time pipeline: capture → segment → publish, one thread each,
//! joined by one-item latest-wins queues and fed by buffer pools.
//!
//! ```text
//!  frame pool ──▶ CaptureStage ──[frames, 1]──▶ SegmentStage ──[results, 1]──▶ PublishStage ──▶ shm
//!      ▲                                          │  ▲                           │
//!      └───────────── FrameBuf returned ──────────┘  └──── MaskBuf returned ─────┘
//! ```
//!
//! # The path of a frame
//!
//! The capture stage (`CaptureStage`, capture.rs) takes a free `FrameBuf`
//! from the frame pool and has the [`FrameSource`] fill it; a bad frame or
//! a lost camera ([`SourceEvent`]) is counted and the buffer goes back to
//! the pool. It hands the frame over the `frames` queue, whose
//! `LatestSender` replaces a frame the segment stage has not taken yet (the
//! stale one goes back to the pool, counted in `dropped_capture`). The
//! segment stage (`SegmentStage`, segment.rs; "engine" in logs and
//! errors) takes the newest frame and a free `MaskBuf` from the mask pool,
//! and runs the [`Segmenter`] on it: `start` from the source's first-frame
//! objects on the first frame and whenever the source restarts, `step`
//! after. It then applies the control socket's queued [`ObjectCommand`]s to
//! this frame (commands.rs), gives the `FrameBuf` back to the frame pool,
//! and hands the mask over the `results` queue (latest-wins again,
//! `dropped_engine`). The publish stage (`PublishStage`, publish.rs) turns
//! the mask into object states (`StateTracker`, tracks.rs: area, box,
//! centroid, Kalman velocity, visibility, confidence), writes the slot to
//! shared memory with [`ShmWriter::publish`], records the capture→publish
//! latency (stats.rs) and gives the `MaskBuf` back to the mask pool.
//!
//! - Frames and masks are allocated at start from the source's size
//!   (queue.rs) and come back, so steady state allocates nothing in vosd's
//!   own code (the encoder's inference library allocates internally; a
//!   frames source decodes with an allocating JPEG decoder).
//! - Real time wins: the segment stage always works on the newest captured
//!   frame, the publisher on the newest result.
//! - Stopping (the shared stop flag, end of stream, a fatal error, or
//!   `max_frames` published) drains the stages in order; the publisher then
//!   writes the end marker ([`ShmWriter::finish`]) and unlinks the segment.
//!
//! [`FrameSource`]: crate::source::FrameSource
//! [`SourceEvent`]: crate::source::SourceEvent

mod capture;
mod commands;
mod config;
mod histogram;
mod publish;
mod queue;
mod segment;
mod stats;
mod tap;
mod tracks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vosd_engine::frame::LabelMask;
use vosd_shm::ShmWriter;

use crate::source::FrameSource;

pub use commands::{EngineRequest, ObjectCommand, ObjectMask, PipelineControl};
pub use config::{PipelineConfig, PipelineConfigError};
pub use histogram::{LatencyHistogram, LATENCY_BUCKETS_S};
pub use segment::{SegmentError, Segmenter};
pub use stats::{Stats, StatsSnapshot, Summary};
pub use tap::{FrameTap, TapFrame};

use capture::CaptureStage;
use publish::PublishStage;
pub(crate) use queue::{latest, Pool};
use queue::{FrameBuf, MaskBuf};
#[cfg(feature = "zenoh")]
pub(crate) use queue::{LatestSender, Recycler};
use segment::SegmentStage;

/// How long a stage waits on a queue before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(50);

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

/// What every stage shares: the counters, the stop flag, and the first
/// failure.
#[derive(Clone)]
struct Shared {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<PipelineError>>>,
}

impl Shared {
    /// Whether the stop flag is up.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Raises the stop flag.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Logs a stage's failure, keeps it if it is the first, and stops.
    fn fail(&self, stage: &'static str, message: String) {
        log::error!("{stage}: {message}");
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(PipelineError::Stage { stage, message });
        }
        self.stop();
    }
}

/// A running pipeline.
pub struct Pipeline {
    threads: Vec<(&'static str, JoinHandle<()>)>,
    shared: Shared,
    publish_done: Arc<AtomicBool>,
    source_ended: Arc<AtomicBool>,
    control: PipelineControl,
}

impl Pipeline {
    /// Allocates the pools and starts the three stage threads. `writer`
    /// must have the source's frame size; `stop` ends the pipeline when
    /// raised (a signal handler's flag).
    pub fn start(
        source: Box<dyn FrameSource>,
        segmenter: Box<dyn Segmenter>,
        writer: ShmWriter,
        cfg: &PipelineConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<Pipeline, PipelineError> {
        Self::start_with_taps(source, segmenter, writer, cfg, stop, Vec::new())
    }

    /// [`start`](Self::start), with `taps` that the publish stage offers
    /// every published frame to (the Zenoh publisher).
    pub fn start_with_taps(
        source: Box<dyn FrameSource>,
        segmenter: Box<dyn Segmenter>,
        writer: ShmWriter,
        cfg: &PipelineConfig,
        stop: Arc<AtomicBool>,
        mut taps: Vec<Box<dyn FrameTap>>,
    ) -> Result<Pipeline, PipelineError> {
        cfg.validate()?;
        let initial = first_frame_objects(&*source, &writer)?;
        let (w, h) = source.size();
        let shared = Shared {
            stats: Arc::new(Stats::new(cfg.latency_window)),
            stop,
            error: Arc::new(Mutex::new(None)),
        };
        for tap in &mut taps {
            tap.attach(shared.stats.clone());
        }
        let publish_done = Arc::new(AtomicBool::new(false));
        let source_ended = Arc::new(AtomicBool::new(false));

        let frame_pool = Pool::new(cfg.frame_pool, || FrameBuf::new(w, h));
        let mask_pool = Pool::new(cfg.mask_pool, || MaskBuf::new(w, h));
        let (frames_in, frames_out) = latest::<FrameBuf>();
        let (results_in, results_out) = latest::<MaskBuf>();
        let (control, commands) = PipelineControl::channel();

        let publish = PublishStage {
            writer,
            results: results_out,
            masks_back: mask_pool.recycler(),
            max_frames: cfg.max_frames,
            lost_after_s: cfg.lost_after_s,
            taps,
            done: publish_done.clone(),
            shared: shared.clone(),
        };
        let segment = SegmentStage {
            segmenter,
            initial,
            frames: frames_out,
            frames_back: frame_pool.recycler(),
            masks: mask_pool,
            results: results_in,
            commands,
            shared: shared.clone(),
        };
        let capture = CaptureStage {
            source,
            frames: frame_pool,
            to_segment: frames_in,
            source_ended: source_ended.clone(),
            shared: shared.clone(),
        };
        let threads = vec![
            spawn("capture", move || capture.run())?,
            spawn("engine", move || segment.run())?,
            spawn("publish", move || publish.run())?,
        ];
        Ok(Pipeline {
            threads,
            shared,
            publish_done,
            source_ended,
            control,
        })
    }

    /// A handle that sends object commands to the engine stage (for the
    /// control socket).
    pub fn control(&self) -> PipelineControl {
        self.control.clone()
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Whether the publisher has finished (end marker written): the
    /// pipeline stopped by itself (end of stream, error, frame limit) or
    /// after the stop flag.
    pub fn finished(&self) -> bool {
        self.publish_done.load(Ordering::SeqCst)
    }

    /// Raises the stop flag, waits for the stages, and reports.
    pub fn join(self) -> Result<Summary, PipelineError> {
        self.shared.stop();
        let mut panicked = None;
        for (name, t) in self.threads {
            if t.join().is_err() {
                panicked.get_or_insert(name);
            }
        }
        if let Some(e) = self.shared.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        if let Some(stage) = panicked {
            return Err(PipelineError::Stage {
                stage,
                message: "the thread panicked".into(),
            });
        }
        Ok(Summary {
            stats: self.shared.stats.snapshot(),
            source_ended: self.source_ended.load(Ordering::SeqCst),
        })
    }
}

/// Checks that `writer`'s segment fits the source's frames and first-frame
/// objects, and returns those objects (none: empty masks are published).
fn first_frame_objects(
    source: &dyn FrameSource,
    writer: &ShmWriter,
) -> Result<Option<LabelMask>, PipelineError> {
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
    Ok(initial)
}

/// Starts stage `stage`'s thread (named `vosd-<stage>`).
fn spawn(
    stage: &'static str,
    run: impl FnOnce() + Send + 'static,
) -> Result<(&'static str, JoinHandle<()>), PipelineError> {
    let thread = std::thread::Builder::new()
        .name(format!("vosd-{stage}"))
        .spawn(run)
        .map_err(|e| PipelineError::Setup(format!("cannot start the {stage} thread: {e}")))?;
    Ok((stage, thread))
}
