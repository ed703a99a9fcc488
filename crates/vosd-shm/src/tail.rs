//! Following a segment frame by frame and printing what it carries: the
//! lines of `vosd tail` and of this crate's `tail` example. One line per
//! published frame (frame number, capture→publish latency, each object's id,
//! area, box and visibility), a `CAMERA LOST` line when the writer reports
//! that its camera went away (and one when it is back), and a summary line
//! of the writer's pipeline statistics at the end.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::{FrameBuf, PipelineCounters, ReadStatus, ShmError, ShmReader};

/// What [`tail`] reads and for how long.
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// Segment name, e.g. "/vosd-demo".
    pub shm: String,
    /// Exit after this many frames; 0 = until the writer ends.
    pub frames: u64,
    /// How long to wait for the segment to appear (the daemon starting).
    pub wait: Duration,
    /// Time without a new frame after which a writer whose process is
    /// gone is reported as dead.
    pub stall: Duration,
}

/// How a tail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailEnd {
    /// The requested number of frames was printed.
    Count,
    /// The writer published its end marker.
    Ended,
}

/// Why a tail stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The segment could not be opened (absent after the wait, or invalid).
    #[error("cannot read the shared memory")]
    Open(#[source] ShmError),
    /// A read failed after the segment was open.
    #[error(transparent)]
    Read(#[from] ShmError),
    /// The output could not be written.
    #[error("cannot write to stdout")]
    Write(#[source] std::io::Error),
    /// The writer's process died without publishing its end marker.
    #[error(
        "shm '{name}': the writer (pid {pid}) is gone without an end marker after {frames} frames"
    )]
    WriterGone {
        /// Segment name.
        name: String,
        /// The writer's process id.
        pid: u32,
        /// Frames printed before.
        frames: u64,
    },
}

/// Formats one frame as a line (no newline).
pub fn frame_line(f: &FrameBuf, skipped: u64) -> String {
    let mut s = format!(
        "frame {:>6}  latency {:>6.1} ms",
        f.frame_number(),
        f.latency_ns() as f64 / 1e6
    );
    if skipped > 0 {
        s.push_str(&format!("  (skipped {skipped})"));
    }
    if f.objects().is_empty() {
        s.push_str("  no objects");
    }
    for o in f.objects() {
        let b = o.bbox;
        s.push_str(&format!(
            "  | id {} area {} box {},{} {}x{} {}",
            o.id,
            o.area,
            b.x0,
            b.y0,
            b.width(),
            b.height(),
            o.visibility
        ));
    }
    s
}

/// Formats the writer's pipeline statistics as the summary line printed at
/// the end (no newline); `None` (a segment older than ABI version 2)
/// says that the writer publishes none.
pub fn stats_line(s: Option<&PipelineCounters>) -> String {
    match s {
        None => "stats: not published by this writer (ABI version 1)".to_owned(),
        Some(s) => format!(
            "stats: captured {}  dropped {}  capture errors {}  reconnects {}  source {}",
            s.frames_captured,
            s.frames_dropped,
            s.capture_errors,
            s.reconnects,
            if s.camera_lost { "CAMERA LOST" } else { "ok" }
        ),
    }
}

/// The line printed when the camera is reported lost (no newline).
pub fn camera_lost_line(s: &PipelineCounters) -> String {
    format!(
        "CAMERA LOST: reconnecting ({} failed attempts, {} frames captured so far)",
        s.reconnects, s.frames_captured
    )
}

/// Opens the segment, waiting up to `wait` for it to appear.
pub fn open_waiting(name: &str, wait: Duration) -> Result<ShmReader, TailError> {
    let start = Instant::now();
    loop {
        match ShmReader::open(name) {
            Ok(r) => return Ok(r),
            Err(ShmError::NotFound { .. } | ShmError::NotReady { .. })
                if start.elapsed() < wait =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(TailError::Open(e)),
        }
    }
}

/// Prints frames to `out` until `frames` were printed or the writer ends,
/// then the statistics summary line ([`stats_line`]). Between frames, a
/// [`camera_lost_line`] when the writer reports its camera lost, and
/// `camera back` when frames flow again.
pub fn tail(opts: &TailOptions, out: &mut dyn Write) -> Result<(u64, TailEnd), TailError> {
    let mut reader = open_waiting(&opts.shm, opts.wait)?;
    let mut buf = reader.new_frame_buf();
    let mut printed = 0u64;
    let mut last_frame = Instant::now();
    let mut lost_reported = false;
    let finish = |reader: &ShmReader, out: &mut dyn Write| -> Result<(), TailError> {
        writeln!(out, "{}", stats_line(reader.stats().as_ref())).map_err(TailError::Write)?;
        out.flush().ok();
        Ok(())
    };
    loop {
        let status = reader.wait_next(&mut buf, Duration::from_millis(200))?;
        if let Some(s) = reader.stats() {
            if s.camera_lost != lost_reported {
                lost_reported = s.camera_lost;
                let line = if s.camera_lost {
                    camera_lost_line(&s)
                } else {
                    "camera back: frames flow again".to_owned()
                };
                writeln!(out, "{line}").map_err(TailError::Write)?;
            }
        }
        match status {
            ReadStatus::Frame { skipped, .. } => {
                writeln!(out, "{}", frame_line(&buf, skipped)).map_err(TailError::Write)?;
                printed += 1;
                last_frame = Instant::now();
                if opts.frames > 0 && printed >= opts.frames {
                    finish(&reader, out)?;
                    return Ok((printed, TailEnd::Count));
                }
            }
            ReadStatus::Ended => {
                finish(&reader, out)?;
                return Ok((printed, TailEnd::Ended));
            }
            ReadStatus::Empty => {
                if last_frame.elapsed() > opts.stall && !reader.writer_alive() {
                    return Err(TailError::WriterGone {
                        name: opts.shm.clone(),
                        pid: reader.writer_pid(),
                        frames: printed,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_camera_lost_lines() {
        assert!(stats_line(None).contains("not published"));
        let mut s = PipelineCounters {
            frames_captured: 120,
            frames_dropped: 7,
            capture_errors: 2,
            reconnects: 3,
            camera_lost: false,
        };
        assert_eq!(
            stats_line(Some(&s)),
            "stats: captured 120  dropped 7  capture errors 2  reconnects 3  source ok"
        );
        s.camera_lost = true;
        assert!(stats_line(Some(&s)).ends_with("source CAMERA LOST"));
        assert!(camera_lost_line(&s).starts_with("CAMERA LOST"));
        assert!(camera_lost_line(&s).contains("3 failed attempts"));
    }
}
