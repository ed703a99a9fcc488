//! `kind = "v4l2"`: a V4L2 camera through the `v4l` crate (cargo feature
//! `v4l2`, on by default).
//!
//! Opening checks that the node can capture and stream, negotiates the
//! format (see [`choose_format`]), the size (the driver may pick the nearest
//! it has: the stream then has the driver's size) and the frame rate (best
//! effort), and maps `buffers` kernel buffers (mmap streaming). Each frame
//! is converted straight from the mapped buffer into the pipeline's pooled
//! frame and stamped with the kernel's monotonic timestamp.
//!
//! Failures at start-up (no node, no permission, busy, not a camera, no
//! usable format) are errors that name the cause. Once the stream ran, a
//! failure (ENODEV/EIO on unplug, any other streaming error, or no frame
//! for [`stall_timeout`]) closes the device and reopens it with
//! exponential back-off; each failed attempt is reported as
//! [`SourceEvent::Reconnecting`] so that the pipeline counts it and the
//! service reports it, and the daemon does not need a restart.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

use super::camera::{capture_time_ns, choose_format, convert_buffer, explain_io, fourcc_text};
use super::camera::{load_initial_mask, stall_timeout, Backoff};
use super::{FrameMeta, FrameSource, PixelFormat, SourceError, SourceEvent, V4l2Config};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::monotonic_ns;

/// What the driver agreed to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Negotiated {
    /// Frame width, pixels.
    pub width: usize,
    /// Frame height, pixels.
    pub height: usize,
    /// Bytes per line of the raw buffers.
    pub stride: usize,
    /// The pixel format.
    pub format: PixelFormat,
    /// Its FourCC code as the driver names it.
    pub fourcc: [u8; 4],
    /// Frame rate the driver reports (0 if it does not say).
    pub fps: f64,
}

/// An open, streaming device. Field order matters: the stream (and its
/// mappings) goes before the device.
struct Open {
    stream: MmapStream<'static>,
    _device: Device,
}

/// A V4L2 camera as a [`FrameSource`].
pub struct V4l2Camera {
    cfg: V4l2Config,
    name: String,
    negotiated: Negotiated,
    open: Option<Open>,
    backoff: Backoff,
    retry_at: Instant,
    last_frame: Instant,
    stall: Duration,
    frame_number: u64,
    initial: Option<LabelMask>,
    stop: Arc<AtomicBool>,
}

fn device_err(cfg: &V4l2Config, reason: String) -> SourceError {
    SourceError::Device {
        device: cfg.device.display().to_string(),
        reason,
    }
}

/// Opens the device and starts nothing yet (streaming starts at the first
/// dequeue). `size` forces the stream size (on reconnection).
fn open_device(
    cfg: &V4l2Config,
    size: Option<(usize, usize)>,
) -> Result<(Open, Negotiated, String), SourceError> {
    let io = |what: &str, e: std::io::Error| device_err(cfg, format!("{what}: {}", explain_io(&e)));
    let device = Device::with_path(&cfg.device).map_err(|e| io("open", e))?;
    let caps = device
        .query_caps()
        .map_err(|e| io("query capabilities", e))?;
    let name = format!("{} ({})", caps.card, caps.driver);
    if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
        return Err(device_err(
            cfg,
            format!("{name} is not a video capture device (metadata or output node? try another /dev/videoN)"),
        ));
    }
    if !caps.capabilities.contains(CapFlags::STREAMING) {
        return Err(device_err(
            cfg,
            format!("{name} does not support streaming I/O"),
        ));
    }
    let offered: Vec<[u8; 4]> = device
        .enum_formats()
        .map_err(|e| io("list formats", e))?
        .iter()
        .map(|d| d.fourcc.repr)
        .collect();
    let (format, code) =
        choose_format(cfg.format, &offered).map_err(|reason| SourceError::Config {
            key: "format",
            reason: format!("{}: {reason}", cfg.device.display()),
        })?;
    let (w, h) = size.unwrap_or((cfg.width, cfg.height));
    let got = device
        .set_format(&Format::new(w as u32, h as u32, FourCC::new(&code)))
        .map_err(|e| io("set format", e))?;
    if got.fourcc.repr != code {
        return Err(SourceError::Config {
            key: "format",
            reason: format!(
                "{}: asked for {}, the driver gave {}",
                cfg.device.display(),
                fourcc_text(&code),
                fourcc_text(&got.fourcc.repr)
            ),
        });
    }
    let (gw, gh) = (got.width as usize, got.height as usize);
    if let Some((want_w, want_h)) = size {
        if (gw, gh) != (want_w, want_h) {
            return Err(SourceError::FrameSize {
                what: format!("{} after reconnecting", cfg.device.display()),
                got_w: gw,
                got_h: gh,
                want_w,
                want_h,
            });
        }
    } else if (gw, gh) != (cfg.width, cfg.height) {
        log::warn!(
            "{}: asked for {}x{}, the driver gave {gw}x{gh}; streaming at {gw}x{gh}",
            cfg.device.display(),
            cfg.width,
            cfg.height
        );
    }
    super::check_size(gw, gh)?;
    // Frame interval = 1/fps, in thousandths to keep fractional rates.
    let milli = (cfg.fps * 1000.0).round().max(1.0) as u32;
    let fps = match device.set_params(&Parameters::new(Fraction::new(1000, milli))) {
        Ok(p) if p.interval.numerator > 0 => {
            f64::from(p.interval.denominator) / f64::from(p.interval.numerator)
        }
        Ok(_) => 0.0,
        Err(e) => {
            log::warn!(
                "{}: cannot set {} fps ({}); using the driver's rate",
                cfg.device.display(),
                cfg.fps,
                explain_io(&e)
            );
            0.0
        }
    };
    let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, cfg.buffers)
        .map_err(|e| io("map buffers", e))?;
    // Short waits so that the stop flag and stalls are seen.
    stream.set_timeout(Duration::from_millis(200));
    let negotiated = Negotiated {
        width: gw,
        height: gh,
        stride: got.stride as usize,
        format,
        fourcc: code,
        fps,
    };
    Ok((
        Open {
            stream,
            _device: device,
        },
        negotiated,
        name,
    ))
}

/// Stops streaming and unmaps. The `v4l` stream's destructor panics when
/// STREAMOFF fails with anything but ENODEV (EIO from a dying USB device):
/// that panic is contained here, since the device is being dropped anyway.
fn close(open: Open, device: &str) {
    let mut open = open;
    if let Err(e) = open.stream.stop() {
        log::debug!("{device}: stream off: {e}");
    }
    let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(open)));
    if dropped.is_err() {
        log::warn!("{device}: closing the lost device failed; its buffers were released anyway");
    }
}

impl V4l2Camera {
    /// Opens the camera of `cfg` (and its first-frame mask, if any).
    pub fn open(cfg: &V4l2Config, stop: Arc<AtomicBool>) -> Result<Self, SourceError> {
        let (open, negotiated, name) = open_device(cfg, None)?;
        let initial = load_initial_mask(
            cfg.initial_mask.as_deref(),
            negotiated.width,
            negotiated.height,
        )?;
        let stall = stall_timeout(if negotiated.fps > 0.0 {
            negotiated.fps
        } else {
            cfg.fps
        });
        Ok(Self {
            cfg: cfg.clone(),
            name,
            negotiated,
            open: Some(open),
            backoff: Backoff::new(Duration::from_secs_f64(cfg.max_backoff_s)),
            retry_at: Instant::now(),
            last_frame: Instant::now(),
            stall,
            frame_number: 0,
            initial,
            stop,
        })
    }

    /// What the driver agreed to.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    fn device(&self) -> String {
        self.cfg.device.display().to_string()
    }

    /// Closes the device after a failure and schedules the reconnection.
    fn lose(&mut self, reason: String) -> SourceEvent {
        if let Some(open) = self.open.take() {
            close(open, &self.device());
        }
        let wait = self.backoff.next_delay();
        self.retry_at = Instant::now() + wait;
        SourceEvent::Reconnecting {
            device: self.device(),
            reason,
            retry_in: wait,
        }
    }

    /// Waits for the scheduled attempt, then reopens at the stream's size.
    /// `Ok(None)`: reopened; `Ok(Some(event))`: stopped while waiting, or
    /// this attempt failed too (the next one is scheduled).
    fn reconnect(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        while Instant::now() < self.retry_at {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Some(SourceEvent::Stopped));
            }
            std::thread::sleep((self.retry_at - Instant::now()).min(Duration::from_millis(20)));
        }
        let size = (self.negotiated.width, self.negotiated.height);
        match open_device(&self.cfg, Some(size)) {
            Ok((open, negotiated, _)) => {
                log::info!(
                    "{}: reopened ({} {}x{})",
                    self.device(),
                    fourcc_text(&negotiated.fourcc),
                    negotiated.width,
                    negotiated.height
                );
                self.negotiated = negotiated;
                self.open = Some(open);
                self.last_frame = Instant::now();
                Ok(None)
            }
            // A camera that comes back with another size cannot continue
            // this stream: fatal.
            Err(e @ SourceError::FrameSize { .. }) => Err(e),
            Err(e) => Ok(Some(self.lose(e.to_string()))),
        }
    }
}

impl FrameSource for V4l2Camera {
    fn size(&self) -> (usize, usize) {
        (self.negotiated.width, self.negotiated.height)
    }

    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError> {
        let (w, h) = self.size();
        buf.ensure_size(w, h);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(SourceEvent::Stopped);
            }
            if self.open.is_none() {
                if let Some(event) = self.reconnect()? {
                    return Ok(event);
                }
            }
            let Some(open) = self.open.as_mut() else {
                continue;
            };
            let neg = self.negotiated;
            let result = match CaptureStream::next(&mut open.stream) {
                Ok((data, meta)) => {
                    let used = (meta.bytesused as usize).min(data.len());
                    let converted = if meta.flags.contains(BufFlags::ERROR) {
                        Err("the driver flagged the buffer as corrupted".to_string())
                    } else {
                        convert_buffer(neg.format, &data[..used], neg.stride, buf)
                            .map_err(|e| e.to_string())
                    };
                    let monotonic =
                        (meta.flags & BufFlags::TIMESTAMP_MASK) == BufFlags::TIMESTAMP_MONOTONIC;
                    // time_t is 32 bits on armv7: widen where it is narrower.
                    #[allow(clippy::useless_conversion)]
                    let ts = capture_time_ns(
                        i64::from(meta.timestamp.sec),
                        i64::from(meta.timestamp.usec),
                        monotonic,
                        monotonic_ns(),
                    );
                    Ok((converted, ts))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok((converted, capture_ns)) => {
                    self.last_frame = Instant::now();
                    self.backoff.reset();
                    if let Err(reason) = converted {
                        return Ok(SourceEvent::BadFrame {
                            device: self.device(),
                            reason,
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
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.last_frame.elapsed() >= self.stall {
                        let reason = format!(
                            "no frame for {:.1} s",
                            self.last_frame.elapsed().as_secs_f64()
                        );
                        return Ok(self.lose(reason));
                    }
                }
                Err(e) => return Ok(self.lose(explain_io(&e))),
            }
        }
    }

    fn initial_objects(&self) -> Option<LabelMask> {
        self.initial.clone()
    }

    fn describe(&self) -> String {
        let n = &self.negotiated;
        format!(
            "V4L2 {} {}: {} {}x{} at {}, {} mmap buffers",
            self.device(),
            self.name,
            fourcc_text(&n.fourcc),
            n.width,
            n.height,
            if n.fps > 0.0 {
                format!("{:.1} fps", n.fps)
            } else {
                "the driver's rate".into()
            },
            self.cfg.buffers
        )
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            close(open, &self.cfg.device.display().to_string());
        }
    }
}

/// One line per format the camera at `path` offers, with its frame sizes,
/// for `vosd probe`.
pub fn describe_formats(path: &std::path::Path) -> Result<Vec<String>, String> {
    let device = Device::with_path(path).map_err(|e| explain_io(&e))?;
    let caps = device.query_caps().map_err(|e| explain_io(&e))?;
    if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
        return Ok(vec![format!(
            "{} ({}): not a capture node",
            caps.card, caps.driver
        )]);
    }
    let mut lines = vec![format!("{} ({}, {})", caps.card, caps.driver, caps.bus)];
    for desc in device.enum_formats().map_err(|e| explain_io(&e))? {
        let code = desc.fourcc.repr;
        let usable = if PixelFormat::from_fourcc(&code).is_some() {
            ""
        } else {
            " [vosd cannot convert]"
        };
        let sizes: Vec<String> = device
            .enum_framesizes(desc.fourcc)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|fs| fs.size.to_discrete())
            .map(|d| format!("{}x{}", d.width, d.height))
            .collect();
        lines.push(format!(
            "{} {}{usable}: {}",
            fourcc_text(&code),
            desc.description,
            if sizes.is_empty() {
                "sizes not listed".into()
            } else {
                sizes.join(" ")
            }
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(device: &str) -> V4l2Config {
        toml::from_str(&format!("device = \"{device}\"")).unwrap()
    }

    fn open_err(device: &str) -> String {
        match V4l2Camera::open(&cfg(device), Arc::new(AtomicBool::new(false))) {
            Ok(_) => panic!("{device} opened as a camera"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_node_is_named_with_the_cause() {
        let e = open_err("/dev/video-vosd-test-missing");
        assert!(
            e.contains("/dev/video-vosd-test-missing") && e.contains("no such device node"),
            "{e}"
        );
    }

    #[test]
    fn a_node_that_is_not_a_camera_is_refused() {
        // /dev/null answers VIDIOC_QUERYCAP with ENOTTY.
        let e = open_err("/dev/null");
        assert!(e.contains("/dev/null") && e.contains("not a V4L2"), "{e}");
        let e = describe_formats(std::path::Path::new("/dev/null")).unwrap_err();
        assert!(e.contains("not a V4L2"), "{e}");
    }

    #[test]
    fn a_regular_file_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = open_err(f.path().to_str().unwrap());
        assert!(e.contains("not a V4L2"), "{e}");
    }
}
