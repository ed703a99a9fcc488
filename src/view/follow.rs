//! The ring client of `vosd view`: follows a shared-memory segment as an
//! ordinary reader, renders its newest frame at most 10 times a second
//! into [`Latest`], and survives the daemon: a segment that is missing,
//! ended (the daemon stopped or restarts) or orphaned (the writer died) is
//! opened again until a live one appears, with the reason in
//! [`Latest::status`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use vosd_shm::{FrameBuf, ReadStatus, ShmError, ShmReader};

use super::render;

/// Shortest time between two rendered pictures.
const RENDER_EVERY: Duration = Duration::from_millis(100);
/// How long to wait before opening a missing or dead segment again.
const RETRY: Duration = Duration::from_millis(500);

/// The newest picture and state, shared with the HTTP handlers.
#[derive(Debug)]
pub struct Latest {
    /// The JPEG of the newest frame (a plain background before the first).
    pub jpeg: Arc<Vec<u8>>,
    /// Counts the pictures rendered (the MJPEG stream waits for a change).
    pub version: u64,
    /// What the reader is doing, in words.
    pub status: String,
    /// The state document of `/state.json`.
    pub state: serde_json::Value,
}

/// [`Latest`] with its change signal.
#[derive(Debug)]
pub struct Shared {
    /// The newest picture and state.
    pub latest: Mutex<Latest>,
    /// Notified at every new picture and status.
    pub changed: Condvar,
}

impl Shared {
    /// The state before any frame: a grey picture and `status`.
    pub fn new(shm: &str, status: String) -> Self {
        let blank = render::render(&[], 320, 240, &[]);
        let jpeg = render::jpeg(&blank).unwrap_or_default();
        Shared {
            latest: Mutex::new(Latest {
                jpeg: Arc::new(jpeg),
                version: 0,
                state: state_json(shm, &status, None, 0.0),
                status,
            }),
            changed: Condvar::new(),
        }
    }

    /// Sets the status line (logged when it changes).
    fn set_status(&self, shm: &str, status: String) {
        if let Ok(mut l) = self.latest.lock() {
            if l.status != status {
                log::info!("{status}");
                l.state = state_json(shm, &status, None, 0.0);
                l.status = status;
                self.changed.notify_all();
            }
        }
    }
}

/// The `/state.json` document: status, the frame's numbers and objects,
/// the writer's counters.
fn state_json(
    shm: &str,
    status: &str,
    frame: Option<(&ShmReader, &FrameBuf)>,
    fps: f64,
) -> serde_json::Value {
    let Some((r, b)) = frame else {
        return json!({
            "shm": shm, "status": status, "seq": 0, "frame_number": 0, "fps": 0.0,
            "latency_ms": 0.0, "captured": 0, "dropped": 0, "capture_errors": 0,
            "reconnects": 0, "camera_lost": false, "objects": [],
        });
    };
    let c = r.stats().unwrap_or_default();
    let objects: Vec<_> = b
        .objects()
        .iter()
        .map(|o| {
            json!({
                "id": o.id, "visibility": o.visibility.name(), "area": o.area,
                "bbox": {"x0": o.bbox.x0, "y0": o.bbox.y0, "x1": o.bbox.x1, "y1": o.bbox.y1},
                "centroid": o.centroid, "velocity": o.velocity, "confidence": o.confidence,
                "color": render::color_hex(o.id),
            })
        })
        .collect();
    json!({
        "shm": shm, "status": status, "seq": b.seq(), "frame_number": b.frame_number(),
        "fps": fps, "latency_ms": b.latency_ns() as f64 / 1e6,
        "captured": c.frames_captured, "dropped": c.frames_dropped,
        "capture_errors": c.capture_errors, "reconnects": c.reconnects,
        "camera_lost": c.camera_lost, "objects": objects,
    })
}

/// Follows segment `shm` until `stop` is raised.
pub fn follow(shm: &str, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let reader = match ShmReader::open(shm) {
            Ok(r) => r,
            Err(e @ (ShmError::NotFound { .. } | ShmError::NotReady { .. })) => {
                shared.set_status(
                    shm,
                    format!(
                        "waiting for {shm} ({e}): is `vosd run` started with this [publish] name?"
                    ),
                );
                std::thread::sleep(RETRY);
                continue;
            }
            Err(e) => {
                shared.set_status(shm, format!("cannot read {shm}: {e}; trying again"));
                std::thread::sleep(RETRY * 4);
                continue;
            }
        };
        let why = read_frames(shm, reader, shared, stop);
        shared.set_status(shm, why);
        if !stop.load(Ordering::Relaxed) {
            std::thread::sleep(RETRY);
        }
    }
}

/// Renders frames of one open segment until it ends, its writer dies, a
/// read fails or `stop`; returns why it stopped.
fn read_frames(shm: &str, mut reader: ShmReader, shared: &Shared, stop: &AtomicBool) -> String {
    let pid = reader.writer_pid();
    if !reader.writer_alive() {
        return format!(
            "the writer of {shm} (pid {pid}) is gone without ending; waiting for a new daemon"
        );
    }
    shared.set_status(shm, format!("reading {shm} (writer pid {pid})"));
    let mut buf = reader.new_frame_buf();
    let mut last_render: Option<Instant> = None;
    let (mut fps_at, mut fps_seq, mut fps) = (Instant::now(), reader.latest_seq(), 0.0);
    while !stop.load(Ordering::Relaxed) {
        match reader.wait_latest(&mut buf, Duration::from_millis(200)) {
            Ok(ReadStatus::Frame { seq, .. }) => {
                let dt = fps_at.elapsed().as_secs_f64();
                if dt >= 1.0 {
                    fps = seq.saturating_sub(fps_seq) as f64 / dt;
                    (fps_at, fps_seq) = (Instant::now(), seq);
                }
                if last_render.is_some_and(|t| t.elapsed() < RENDER_EVERY) {
                    continue;
                }
                last_render = Some(Instant::now());
                let img = render::render(buf.mask(), buf.width(), buf.height(), buf.objects());
                let jpeg = match render::jpeg(&img) {
                    Ok(j) => j,
                    Err(e) => return format!("cannot encode the picture of {shm}: {e}"),
                };
                let status = format!("reading {shm} (writer pid {pid})");
                let state = state_json(shm, &status, Some((&reader, &buf)), fps);
                if let Ok(mut l) = shared.latest.lock() {
                    l.jpeg = Arc::new(jpeg);
                    l.version += 1;
                    l.state = state;
                    l.status = status;
                    shared.changed.notify_all();
                }
            }
            Ok(ReadStatus::Ended) => {
                return format!(
                    "the daemon (pid {pid}) ended {shm}; waiting for it to start again"
                );
            }
            Ok(ReadStatus::Empty) => {
                if !reader.writer_alive() {
                    return format!(
                        "the writer of {shm} (pid {pid}) is gone without ending; waiting for a new daemon"
                    );
                }
            }
            Err(e) => return format!("reading {shm} failed: {e}; opening it again"),
        }
    }
    format!("stopped reading {shm}")
}
