//! `kind = "nokhwa"`: a camera through the portable `nokhwa` crate (its
//! `input-v4l` backend on Linux; cargo feature `nokhwa`, off by default).
//!
//! nokhwa's camera is not `Send` and its frame call blocks without a
//! timeout, so the camera lives on a thread of its own: it copies each raw
//! buffer into a recycled byte vector and hands it over a bounded channel;
//! [`FrameSource::next_frame`] converts it into the pipeline's frame with
//! vosd's own converters (no nokhwa decoding, no per-frame allocation once
//! the vectors are recycled) and waits in short steps so that the stop flag
//! is seen. Lost cameras are reopened with the same back-off as the `v4l2`
//! source. nokhwa gives no kernel timestamp: a frame is stamped when the
//! camera thread receives it. A camera that stalls without an error keeps
//! that thread blocked; it is reported as lost and then detached at stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;

use super::camera::{
    choose_format, convert_buffer, fourcc_text, load_initial_mask, stall_timeout, Backoff,
};
use super::{FrameMeta, FrameSource, NokhwaConfig, PixelFormat, SourceError, SourceEvent};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::monotonic_ns;

/// What the camera thread sends.
enum Msg {
    /// One raw buffer and when it arrived (CLOCK_MONOTONIC ns).
    Frame(Vec<u8>, u64),
    /// The camera failed; the thread reopens it after `retry_in`.
    Lost(String, Duration),
    /// The camera came back in a shape this stream cannot take.
    Fatal(String),
}

/// The stream's geometry, agreed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    width: usize,
    height: usize,
    format: PixelFormat,
    fps: u32,
}

fn frame_format(f: PixelFormat) -> Option<FrameFormat> {
    match f {
        PixelFormat::Mjpeg => Some(FrameFormat::MJPEG),
        PixelFormat::Yuyv => Some(FrameFormat::YUYV),
        PixelFormat::Nv12 => Some(FrameFormat::NV12),
        PixelFormat::Grey => Some(FrameFormat::GRAY),
        PixelFormat::Auto => None,
    }
}

fn pixel_format(f: FrameFormat) -> Option<PixelFormat> {
    match f {
        FrameFormat::MJPEG => Some(PixelFormat::Mjpeg),
        FrameFormat::YUYV => Some(PixelFormat::Yuyv),
        FrameFormat::NV12 => Some(PixelFormat::Nv12),
        FrameFormat::GRAY => Some(PixelFormat::Grey),
        _ => None,
    }
}

/// Opens camera `cfg.index`, negotiates format, size and rate, and starts
/// its stream.
fn open_camera(cfg: &NokhwaConfig, want: Option<Shape>) -> Result<(Camera, Shape, String), String> {
    let index = CameraIndex::Index(cfg.index);
    let any = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
    let mut cam = Camera::new(index, any).map_err(|e| e.to_string())?;
    let offered: Vec<[u8; 4]> = cam
        .compatible_fourcc()
        .map_err(|e| format!("list formats: {e}"))?
        .into_iter()
        .filter_map(pixel_format)
        .filter_map(PixelFormat::fourcc)
        .collect();
    let requested = want.map_or(cfg.format, |s| s.format);
    let (format, _) = choose_format(requested, &offered)?;
    let ff = frame_format(format).ok_or("internal: no concrete format")?;
    let (w, h) = want.map_or((cfg.width, cfg.height), |s| (s.width, s.height));
    let fps = cfg.fps.round().max(1.0) as u32;
    let request = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(
        CameraFormat::new(Resolution::new(w as u32, h as u32), ff, fps),
    ));
    let got = cam
        .set_camera_requset(request)
        .map_err(|e| format!("set format: {e}"))?;
    let shape = Shape {
        width: got.resolution().width() as usize,
        height: got.resolution().height() as usize,
        format: pixel_format(got.format())
            .ok_or_else(|| format!("driver chose {}", got.format()))?,
        fps: got.frame_rate(),
    };
    if let Some(want) = want {
        if (shape.width, shape.height, shape.format) != (want.width, want.height, want.format) {
            return Err(format!(
                "came back as {}x{} {:?}, the stream is {}x{} {:?}",
                shape.width, shape.height, shape.format, want.width, want.height, want.format
            ));
        }
    }
    cam.open_stream()
        .map_err(|e| format!("start stream: {e}"))?;
    let name = cam.info().human_name();
    Ok((cam, shape, name))
}

/// Naps until `until`, returning early (false) when `quit` is raised.
fn nap_until(until: Instant, quit: &AtomicBool) -> bool {
    while Instant::now() < until {
        if quit.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}

/// The camera thread: streams `cam`, reopening it after failures.
fn camera_thread(
    cfg: NokhwaConfig,
    mut cam: Camera,
    shape: Shape,
    tx: Sender<Msg>,
    pool: Receiver<Vec<u8>>,
    quit: Arc<AtomicBool>,
) {
    let mut backoff = Backoff::new(Duration::from_secs_f64(cfg.max_backoff_s));
    loop {
        // Stream until the camera fails.
        let reason = loop {
            if quit.load(Ordering::Relaxed) {
                return;
            }
            match cam.frame_raw() {
                Ok(data) => {
                    let mut bytes = pool.try_recv().unwrap_or_default();
                    bytes.clear();
                    bytes.extend_from_slice(&data);
                    drop(data);
                    backoff.reset();
                    if tx.send(Msg::Frame(bytes, monotonic_ns())).is_err() {
                        return;
                    }
                }
                Err(e) => break e.to_string(),
            }
        };
        let _ = cam.stop_stream();
        drop(cam);
        // Reopen with back-off.
        let mut reason = reason;
        cam = loop {
            let wait = backoff.next_delay();
            if tx.send(Msg::Lost(reason, wait)).is_err() || !nap_until(Instant::now() + wait, &quit)
            {
                return;
            }
            match open_camera(&cfg, Some(shape)) {
                Ok((cam, _, _)) => break cam,
                Err(e) if e.starts_with("came back as") => {
                    let _ = tx.send(Msg::Fatal(e));
                    return;
                }
                Err(e) => reason = e,
            }
        };
        log::info!("nokhwa camera {}: reopened", cfg.index);
    }
}

/// A camera through nokhwa as a [`FrameSource`].
pub struct NokhwaCamera {
    index: u32,
    shape: Shape,
    name: String,
    rx: Receiver<Msg>,
    pool: Sender<Vec<u8>>,
    quit: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stall: Duration,
    last_frame: Instant,
    frame_number: u64,
    initial: Option<LabelMask>,
}

impl NokhwaCamera {
    /// Opens camera `cfg.index` and starts its thread.
    pub fn open(cfg: &NokhwaConfig, stop: Arc<AtomicBool>) -> Result<Self, SourceError> {
        let device = format!("nokhwa:{}", cfg.index);
        let err = |reason: String| SourceError::Device {
            device: device.clone(),
            reason,
        };
        let (cam, shape, name) = open_camera(cfg, None).map_err(err)?;
        super::check_size(shape.width, shape.height)?;
        let initial = load_initial_mask(cfg.initial_mask.as_deref(), shape.width, shape.height)?;
        let (tx, rx) = bounded(2);
        let (pool_tx, pool_rx) = bounded(4);
        let quit = Arc::new(AtomicBool::new(false));
        {
            let (cfg, quit) = (cfg.clone(), quit.clone());
            // The camera is not Send: it moves into the thread wrapped (a
            // method call, so that the closure captures the wrapper whole).
            let cam = SendCamera(cam);
            std::thread::Builder::new()
                .name("vosd-nokhwa".into())
                .spawn(move || camera_thread(cfg, cam.into_inner(), shape, tx, pool_rx, quit))
                .map_err(|e| err(format!("cannot start the camera thread: {e}")))?;
        }
        Ok(Self {
            index: cfg.index,
            shape,
            name,
            rx,
            pool: pool_tx,
            quit,
            stop,
            stall: stall_timeout(f64::from(shape.fps)),
            last_frame: Instant::now(),
            frame_number: 0,
            initial,
        })
    }

    fn device(&self) -> String {
        format!("nokhwa:{}", self.index)
    }
}

/// Carries the camera to its thread once.
struct SendCamera(Camera);

impl SendCamera {
    fn into_inner(self) -> Camera {
        self.0
    }
}
// SAFETY: the camera is created on the opening thread and then used only by
// the camera thread (moved once, never shared). nokhwa's V4L2 backend keeps
// its device behind `Arc<Mutex<_>>` and holds no thread-affine state;
// `Camera` is not `Send` only because its backend is a `Box<dyn Trait>`
// without a `Send` bound.
unsafe impl Send for SendCamera {}

impl FrameSource for NokhwaCamera {
    fn size(&self) -> (usize, usize) {
        (self.shape.width, self.shape.height)
    }

    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError> {
        let (w, h) = self.size();
        buf.ensure_size(w, h);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(SourceEvent::Stopped);
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::Frame(bytes, capture_ns)) => {
                    self.last_frame = Instant::now();
                    let stride = match self.shape.format {
                        PixelFormat::Yuyv => 2 * w,
                        _ => w,
                    };
                    let converted = convert_buffer(self.shape.format, &bytes, stride, buf);
                    // Back to the camera thread (dropped if its pool is full).
                    let _ = self.pool.try_send(bytes);
                    if let Err(e) = converted {
                        return Ok(SourceEvent::BadFrame {
                            device: self.device(),
                            reason: e.to_string(),
                        });
                    }
                    let n = self.frame_number;
                    self.frame_number += 1;
                    return Ok(SourceEvent::Frame(FrameMeta {
                        frame_number: n,
                        capture_ns,
                        source_index: n,
                        restart: false,
                    }));
                }
                Ok(Msg::Lost(reason, retry_in)) => {
                    return Ok(SourceEvent::Reconnecting {
                        device: self.device(),
                        reason,
                        retry_in,
                    })
                }
                Ok(Msg::Fatal(reason)) => {
                    return Err(SourceError::Device {
                        device: self.device(),
                        reason,
                    })
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.last_frame.elapsed() >= self.stall {
                        let waited = self.last_frame.elapsed();
                        self.last_frame = Instant::now();
                        return Ok(SourceEvent::Reconnecting {
                            device: self.device(),
                            reason: format!(
                                "no frame for {:.1} s (the camera stalled)",
                                waited.as_secs_f64()
                            ),
                            retry_in: self.stall,
                        });
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::Device {
                        device: self.device(),
                        reason: "the camera thread ended".into(),
                    })
                }
            }
        }
    }

    fn initial_objects(&self) -> Option<LabelMask> {
        self.initial.clone()
    }

    fn describe(&self) -> String {
        let s = &self.shape;
        format!(
            "nokhwa camera {} {}: {} {}x{} at {} fps",
            self.index,
            self.name,
            fourcc_text(&s.format.fourcc().unwrap_or(*b"????")),
            s.width,
            s.height,
            s.fps
        )
    }
}

impl Drop for NokhwaCamera {
    fn drop(&mut self) {
        // The thread sees this at its next frame (or send) and ends; it is
        // not joined, since a stalled camera may block it indefinitely.
        self.quit.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_map_both_ways() {
        for f in super::super::camera::AUTO_PREFERENCE {
            assert_eq!(pixel_format(frame_format(f).unwrap()), Some(f));
        }
        assert_eq!(pixel_format(FrameFormat::RAWRGB), None);
    }

    #[test]
    fn a_missing_camera_is_a_clear_error() {
        let cfg: NokhwaConfig = toml::from_str("index = 97").unwrap();
        match NokhwaCamera::open(&cfg, Arc::new(AtomicBool::new(false))) {
            Ok(_) => panic!("camera 97 opened"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("nokhwa:97") && e.contains("No such file"), "{e}")
            }
        }
    }
}
