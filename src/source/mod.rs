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

/// Why a source cannot be opened or cannot deliver a frame: failures, which
/// end the stream (the outcomes a stream goes on from are [`SourceEvent`]s).
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
}

/// What one call to [`FrameSource::next_frame`] came to, short of a
/// failure: a frame, or an outcome the pipeline expects and goes on from
/// (a bad frame, a lost camera) or stops at without an error (the end of
/// the stream, the stop flag).
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// The next frame is in the buffer.
    Frame(FrameMeta),
    /// The camera sent a frame that cannot be decoded; the buffer holds no
    /// frame and the next call delivers the next one (callers skip it).
    BadFrame {
        /// The device path.
        device: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The camera went away or stalled; it was closed and the next call
    /// to [`FrameSource::next_frame`] reopens it after `retry_in` (the
    /// pipeline counts this and goes on).
    Reconnecting {
        /// The device path.
        device: String,
        /// What happened.
        reason: String,
        /// Pause before the next attempt.
        retry_in: Duration,
    },
    /// The source has no more frames (a folder played once, a frame limit).
    Ended,
    /// The stop flag was raised while waiting for the next frame.
    Stopped,
}

impl SourceEvent {
    /// The frame's description, if this event delivered one.
    pub fn frame(&self) -> Option<FrameMeta> {
        match self {
            SourceEvent::Frame(meta) => Some(*meta),
            _ => None,
        }
    }
}

impl std::fmt::Display for SourceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceEvent::Frame(meta) => write!(f, "frame {}", meta.frame_number),
            SourceEvent::BadFrame { device, reason } => {
                write!(f, "camera {device}: bad frame: {reason}")
            }
            SourceEvent::Reconnecting {
                device,
                reason,
                retry_in,
            } => write!(
                f,
                "camera {device}: {reason}; reconnecting in {:.1} s",
                retry_in.as_secs_f64()
            ),
            SourceEvent::Ended => f.write_str("end of stream"),
            SourceEvent::Stopped => f.write_str("stopped"),
        }
    }
}

/// A stream of RGB frames of constant size.
pub trait FrameSource: Send {
    /// Frame size `(width, height)`, constant for the stream.
    fn size(&self) -> (usize, usize);

    /// Waits for the next frame and writes it into `buf` (resized if it does
    /// not have the stream's size: pooled buffers are allocated with it).
    ///
    /// Returns [`SourceEvent::Frame`] with the frame's description, or the
    /// outcome that is not a frame: [`SourceEvent::Ended`] when the stream
    /// is over, [`SourceEvent::Stopped`] when the stop flag given at open
    /// was raised, [`SourceEvent::BadFrame`] or
    /// [`SourceEvent::Reconnecting`] for a camera's passing trouble. An
    /// error is a failure the stream cannot go on from.
    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError>;

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
/// next frame (then [`SourceEvent::Stopped`]).
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

    /// Waits until frame `k` is due (returns at once when late). Returns
    /// `false`, without waiting further, when the stop flag was raised
    /// (the source then reports [`SourceEvent::Stopped`]).
    #[must_use]
    pub fn wait(&mut self, k: u64) -> bool {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + self.period.mul_f64(k as f64);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
    }
}

/// Whether this build has the V4L2 camera source (cargo feature `v4l2`).
pub const V4L2_BUILT: bool = cfg!(feature = "v4l2");

/// One line per format the camera at `path` offers, with its frame sizes,
/// for `vosd probe`; or one line saying why they cannot be listed.
pub fn camera_formats(path: &std::path::Path) -> Vec<String> {
    #[cfg(feature = "v4l2")]
    {
        v4l2::describe_formats(path).unwrap_or_else(|e| vec![format!("cannot query: {e}")])
    }
    #[cfg(not(feature = "v4l2"))]
    {
        let _ = path;
        vec!["(formats not queried: built without the `v4l2` feature)".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_the_log_says_them() {
        let lost = SourceEvent::Reconnecting {
            device: "/dev/video9".into(),
            reason: "device went away (unplugged?)".into(),
            retry_in: Duration::from_millis(250),
        };
        assert_eq!(
            lost.to_string(),
            "camera /dev/video9: device went away (unplugged?); reconnecting in 0.2 s"
        );
        let bad = SourceEvent::BadFrame {
            device: "/dev/video0".into(),
            reason: "truncated JPEG".into(),
        };
        assert_eq!(
            bad.to_string(),
            "camera /dev/video0: bad frame: truncated JPEG"
        );
        assert_eq!(SourceEvent::Ended.to_string(), "end of stream");
        assert_eq!(SourceEvent::Stopped.to_string(), "stopped");
        assert_eq!(lost.frame(), None);
        let meta = FrameMeta {
            frame_number: 7,
            ..Default::default()
        };
        assert_eq!(SourceEvent::Frame(meta).frame(), Some(meta));
    }

    #[test]
    fn the_pacer_gives_up_when_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pacer = Pacer::new(1.0, stop.clone());
        assert!(pacer.wait(0), "frame 0 is due at once");
        stop.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        assert!(!pacer.wait(5), "frame 5 is 5 s away but the flag is up");
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
}
