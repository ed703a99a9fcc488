//! Frame sources: where the daemon's frames come from.
//!
//! Every source implements [`FrameSource`]: it knows its frame size up
//! front, fills a caller-owned [`RgbFrame`] (from the pipeline's pool) with
//! the next frame, stamps it with its capture time (CLOCK_MONOTONIC ns, the
//! clock of the shared-memory timestamps) and may know the objects to track
//! from the first frame on.
//!
//! - [`synthetic`]: deterministic moving, textured shapes with exact ground
//!   truth (tests, demo, benchmarks);
//! - [`frames`]: a folder of images or a DAVIS sequence, paced at an fps;
//! - `v4l2`: a V4L2 camera through the `v4l` crate (cargo feature `v4l2`,
//!   on by default; see [`camera`] for the parts that need no device).
//!
//! The source is chosen by the `[source]` table of the daemon configuration
//! ([`SourceConfig`], tagged by `kind`).

pub mod camera;
pub mod convert;
pub mod frames;
#[cfg(feature = "nokhwa")]
pub mod nokhwa_camera;
pub mod synthetic;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::ImageIoError;

/// What a source says about one frame it delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Frame number, counting every frame the source delivered (0, 1, 2...).
    pub frame_number: u64,
    /// CLOCK_MONOTONIC nanoseconds when the frame was captured.
    pub capture_ns: u64,
    /// Index of the frame in the source's own sequence (differs from
    /// `frame_number` for looping sources: a folder played again from 0).
    pub source_index: u64,
    /// The source started over (its first frame again, or a new scene):
    /// the tracker must restart from [`FrameSource::initial_objects`].
    pub restart: bool,
}

/// Why a source cannot be opened or cannot deliver a frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A configuration value is unusable; names the key.
    #[error("source.{key}: {reason}")]
    Config {
        /// The `[source]` key.
        key: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A frame or mask file could not be read.
    #[error(transparent)]
    Image(#[from] ImageIoError),
    /// A folder or file is missing or unreadable.
    #[error("{path}: {reason}")]
    Path {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A frame does not have the size of the stream.
    #[error("{what}: frame is {got_w}x{got_h} but the stream is {want_w}x{want_h}")]
    FrameSize {
        /// The frame (file name, device).
        what: String,
        /// Width found.
        got_w: usize,
        /// Height found.
        got_h: usize,
        /// Stream width.
        want_w: usize,
        /// Stream height.
        want_h: usize,
    },
    /// The camera failed (after retries, or in a way retrying cannot fix).
    #[error("camera {device}: {reason}")]
    Device {
        /// The device path.
        device: String,
        /// What happened.
        reason: String,
    },
    /// The camera sent a frame that cannot be decoded (skipped by callers).
    #[error("camera {device}: bad frame: {reason}")]
    BadFrame {
        /// The device path.
        device: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The camera went away or stalled; it was closed and the next call
    /// to [`FrameSource::next_frame`] reopens it after `retry_in` (the
    /// pipeline counts this and goes on).
    #[error("camera {device}: {reason}; reconnecting in {:.1} s", retry_in.as_secs_f64())]
    Reconnecting {
        /// The device path.
        device: String,
        /// What happened.
        reason: String,
        /// Pause before the next attempt.
        retry_in: Duration,
    },
    /// The source has no more frames (a folder played once, a frame limit).
    #[error("end of stream")]
    Ended,
    /// The stop flag was raised while waiting for the next frame.
    #[error("stopped")]
    Stopped,
}

/// A stream of RGB frames of constant size.
pub trait FrameSource: Send {
    /// Frame size `(width, height)`, constant for the stream.
    fn size(&self) -> (usize, usize);

    /// Waits for the next frame and writes it into `buf` (resized if it does
    /// not have the stream's size: pooled buffers are allocated with it).
    ///
    /// Returns [`SourceError::Ended`] when the stream is over and
    /// [`SourceError::Stopped`] when the stop flag given at open was raised.
    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<FrameMeta, SourceError>;

    /// The objects to track from the stream's first frame (its label mask),
    /// if the source knows them.
    fn initial_objects(&self) -> Option<LabelMask>;

    /// One line describing the source, for logs.
    fn describe(&self) -> String;
}

/// The `[source]` table of the daemon configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Deterministic moving shapes with exact ground truth.
    Synthetic(synthetic::SyntheticConfig),
    /// A folder of images or a DAVIS sequence.
    Frames(frames::FramesConfig),
    /// A V4L2 camera.
    V4l2(V4l2Config),
    /// A camera through the portable nokhwa crate (cargo feature `nokhwa`).
    Nokhwa(NokhwaConfig),
}

impl SourceConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        match self {
            SourceConfig::Synthetic(c) => c.validate(),
            SourceConfig::Frames(c) => c.validate(),
            SourceConfig::V4l2(c) => c.validate(),
            SourceConfig::Nokhwa(c) => c.validate(),
        }
    }
}

/// Pixel format to ask a V4L2 camera for.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// The first of MJPEG, YUYV, NV12, GREY that the camera offers at the
    /// requested size.
    #[default]
    Auto,
    /// Motion JPEG (decoded on the CPU).
    Mjpeg,
    /// Packed YUV 4:2:2.
    Yuyv,
    /// Planar Y + interleaved UV, 4:2:0.
    Nv12,
    /// 8-bit greyscale.
    Grey,
}

/// `kind = "v4l2"`: a V4L2 camera.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct V4l2Config {
    /// Device node.
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Requested width (the driver may pick the nearest it supports).
    #[serde(default = "default_cam_width")]
    pub width: usize,
    /// Requested height.
    #[serde(default = "default_cam_height")]
    pub height: usize,
    /// Requested frame rate.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Pixel format to negotiate.
    #[serde(default)]
    pub format: PixelFormat,
    /// Number of mmap buffers the driver fills in turn (2..=32).
    #[serde(default = "default_buffers")]
    pub buffers: u32,
    /// Label mask PNG of the objects to track in the first frame (palette or
    /// binary, camera size); none = publish empty masks.
    #[serde(default)]
    pub initial_mask: Option<PathBuf>,
    /// Longest pause between reconnection attempts after the camera went
    /// away (ENODEV/EIO), in seconds; attempts back off from 0.1 s to this.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: f64,
}

/// `kind = "nokhwa"`: a camera through nokhwa, by index (`/dev/videoN` is
/// index N on Linux).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NokhwaConfig {
    /// Camera index.
    #[serde(default)]
    pub index: u32,
    /// Requested width (nokhwa picks the closest mode the camera has).
    #[serde(default = "default_cam_width")]
    pub width: usize,
    /// Requested height.
    #[serde(default = "default_cam_height")]
    pub height: usize,
    /// Requested frame rate (rounded to a whole number for nokhwa).
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Pixel format to negotiate.
    #[serde(default)]
    pub format: PixelFormat,
    /// Label mask PNG of the objects to track in the first frame.
    #[serde(default)]
    pub initial_mask: Option<PathBuf>,
    /// Longest pause between reconnection attempts, seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: f64,
}

impl NokhwaConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        check_size(self.width, self.height)?;
        check_fps(self.fps)?;
        check_backoff(self.max_backoff_s)
    }
}

fn check_backoff(s: f64) -> Result<(), SourceError> {
    if !(s.is_finite() && (0.1..=3600.0).contains(&s)) {
        return Err(SourceError::Config {
            key: "max_backoff_s",
            reason: "must be within 0.1..=3600 seconds".into(),
        });
    }
    Ok(())
}

fn default_device() -> PathBuf {
    PathBuf::from("/dev/video0")
}
fn default_cam_width() -> usize {
    640
}
fn default_cam_height() -> usize {
    480
}
fn default_fps() -> f64 {
    30.0
}
fn default_buffers() -> u32 {
    4
}
fn default_max_backoff() -> f64 {
    5.0
}

impl V4l2Config {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        check_size(self.width, self.height)?;
        check_fps(self.fps)?;
        if !(2..=32).contains(&self.buffers) {
            return Err(SourceError::Config {
                key: "buffers",
                reason: format!("{} is not within 2..=32", self.buffers),
            });
        }
        check_backoff(self.max_backoff_s)?;
        if self.device.as_os_str().is_empty() {
            return Err(SourceError::Config {
                key: "device",
                reason: "is empty".into(),
            });
        }
        Ok(())
    }
}

pub(crate) fn check_size(w: usize, h: usize) -> Result<(), SourceError> {
    if !(16..=8192).contains(&w) {
        return Err(SourceError::Config {
            key: "width",
            reason: format!("{w} is not within 16..=8192"),
        });
    }
    if !(16..=8192).contains(&h) {
        return Err(SourceError::Config {
            key: "height",
            reason: format!("{h} is not within 16..=8192"),
        });
    }
    Ok(())
}

pub(crate) fn check_fps(fps: f64) -> Result<(), SourceError> {
    if !(fps.is_finite() && (1.0..=1000.0).contains(&fps)) {
        return Err(SourceError::Config {
            key: "fps",
            reason: format!("{fps} is not within 1..=1000 frames per second"),
        });
    }
    Ok(())
}

/// Opens the source a configuration names. `stop` interrupts waits for the
/// next frame (then [`SourceError::Stopped`]).
pub fn open(
    cfg: &SourceConfig,
    stop: Arc<AtomicBool>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    cfg.validate()?;
    Ok(match cfg {
        SourceConfig::Synthetic(c) => Box::new(synthetic::Synthetic::new(c, stop)?),
        SourceConfig::Frames(c) => Box::new(frames::Frames::open(c, stop)?),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2(c) => Box::new(v4l2::V4l2Camera::open(c, stop)?),
        #[cfg(not(feature = "v4l2"))]
        SourceConfig::V4l2(c) => {
            return Err(SourceError::Device {
                device: c.device.display().to_string(),
                reason: "this vosd was built without the `v4l2` feature (rebuild with default features)".into(),
            })
        }
        #[cfg(feature = "nokhwa")]
        SourceConfig::Nokhwa(c) => Box::new(nokhwa_camera::NokhwaCamera::open(c, stop)?),
        #[cfg(not(feature = "nokhwa"))]
        SourceConfig::Nokhwa(c) => {
            return Err(SourceError::Device {
                device: format!("nokhwa:{}", c.index),
                reason: "this vosd was built without the `nokhwa` feature (rebuild with `--features nokhwa`)".into(),
            })
        }
    })
}

/// Paces a stream at a fixed rate: frame `k` is due at `start + k / fps`.
/// Waits are cut into short naps so that the stop flag is seen within
/// about 20 ms.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    start: Option<Instant>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    /// A pacer at `fps` frames per second.
    pub fn new(fps: f64, stop: Arc<AtomicBool>) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            start: None,
            stop,
        }
    }

    /// Waits until frame `k` is due (returns at once when late).
    pub fn wait(&mut self, k: u64) -> Result<(), SourceError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + self.period.mul_f64(k as f64);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(SourceError::Stopped);
            }
            let now = Instant::now();
            if now >= due {
                return Ok(());
            }
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
    }
}
