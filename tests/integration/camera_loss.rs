//! A camera that goes away mid-stream: the capture stage counts the
//! reconnection attempts and goes on, frames flow again when the camera is
//! back, and while it is away the service keeps the systemd watchdog fed
//! and says so in STATUS (a restart would not bring the camera back), and
//! shared-memory readers see it in the segment's statistics block although
//! no frame is published.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vosd::pipeline::{Pipeline, PipelineConfig, SegmentError, Segmenter};
use vosd::service::{supervise, Notifier};
use vosd::source::synthetic::{Synthetic, SyntheticConfig};
use vosd::source::{FrameSource, SourceError, SourceEvent};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::{PipelineCounters, PublishConfig, ShmReader, ShmWriter, WriterState};

use crate::daemon_support::unique_shm;

/// Synthetic frames, with the camera "unplugged" for `lost_for` attempts
/// after `lose_after` frames (`u32::MAX`: never back).
struct Flaky {
    inner: Synthetic,
    delivered: u64,
    lose_after: u64,
    lost_for: u32,
    attempts: Arc<AtomicU32>,
}

impl FrameSource for Flaky {
    fn size(&self) -> (usize, usize) {
        self.inner.size()
    }
    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError> {
        if self.delivered == self.lose_after {
            let n = self.attempts.fetch_add(1, Ordering::SeqCst);
            if n < self.lost_for {
                std::thread::sleep(Duration::from_millis(10));
                return Ok(SourceEvent::Reconnecting {
                    device: "/dev/video9".into(),
                    reason: "device went away (unplugged?)".into(),
                    retry_in: Duration::from_millis(10),
                });
            }
        }
        self.delivered += 1;
        self.inner.next_frame(buf)
    }
    fn initial_objects(&self) -> Option<LabelMask> {
        self.inner.initial_objects()
    }
    fn describe(&self) -> String {
        "flaky synthetic camera".into()
    }
}

/// Publishes the first frame's objects unchanged.
struct Hold(Vec<u8>);

impl Segmenter for Hold {
    fn start(&mut self, _f: &RgbFrame, mask: &LabelMask) -> Result<(), SegmentError> {
        self.0 = mask.object_ids().into_iter().collect();
        Ok(())
    }
    fn step(&mut self, _f: &RgbFrame, _out: &mut LabelMask) -> Result<(), SegmentError> {
        Ok(())
    }
    fn object_ids(&self) -> &[u8] {
        &self.0
    }
}

/// A running pipeline, its stop flag, the source's attempt counter and the
/// name of its shared-memory segment.
fn start(
    tag: &str,
    lose_after: u64,
    lost_for: u32,
) -> (Pipeline, Arc<AtomicBool>, Arc<AtomicU32>, String) {
    let (w, h) = (160, 120);
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = SyntheticConfig {
        width: w,
        height: h,
        fps: 200.0,
        ..Default::default()
    };
    let attempts = Arc::new(AtomicU32::new(0));
    let source = Flaky {
        inner: Synthetic::new(&cfg, stop.clone()).unwrap(),
        delivered: 0,
        lose_after,
        lost_for,
        attempts: attempts.clone(),
    };
    let name = unique_shm(tag);
    let writer = ShmWriter::create(&PublishConfig::new(name.clone(), w as u32, h as u32)).unwrap();
    let pcfg = PipelineConfig {
        stats_interval_s: 0.0,
        ..Default::default()
    };
    let p = Pipeline::start(
        Box::new(source),
        Box::new(Hold(Vec::new())),
        writer,
        &pcfg,
        stop.clone(),
    )
    .unwrap();
    (p, stop, attempts, name)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn frames_resume_after_the_camera_comes_back() {
    let (pipeline, stop, attempts, shm) = start("flaky", 20, 4);
    let reader = ShmReader::open(&shm).unwrap();
    let stats = pipeline.stats().clone();
    wait_until("frames after the reconnection", || {
        stats.published.load(Ordering::Relaxed) >= 60
    });
    // The segment's statistics follow: the reconnection attempts counted,
    // the camera back.
    wait_until("the segment's stats after the reconnection", || {
        reader
            .stats()
            .is_some_and(|s| s.frames_captured >= 60 && s.reconnects == 4 && !s.camera_lost)
    });
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        5,
        "4 failures, then success"
    );
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 4);
    assert!(!stats.source_down.load(Ordering::Relaxed));
    assert!(
        !pipeline.finished(),
        "a lost camera must not end the pipeline"
    );
    stop.store(true, Ordering::SeqCst);
    let summary = pipeline.join().unwrap();
    assert_eq!(summary.stats.reconnects, 4);
}

#[test]
fn watchdog_is_fed_and_status_says_so_while_the_camera_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // Never comes back.
    let (pipeline, stop, _, shm) = start("gone", 10, u32::MAX);
    let reader = ShmReader::open(&shm).unwrap();
    let stats = pipeline.stats().clone();
    let notifier = Notifier::to_path(&sock_path, Some(Duration::from_millis(400))).unwrap();
    let supervisor = {
        let stop = stop.clone();
        std::thread::spawn(move || supervise(pipeline, 0.0, &stop, &notifier, None))
    };
    wait_until("the camera is reported down", || {
        stats.source_down.load(Ordering::Relaxed)
    });
    let down_at = Instant::now();
    // A shared-memory reader sees it too, while no frame is published.
    wait_until("the segment says the camera is lost", || {
        reader.stats().is_some_and(|s| s.camera_lost)
    });
    let lost = reader.stats().unwrap();
    assert_eq!(lost.frames_captured, 10, "{lost:?}");
    assert!(lost.reconnects >= 1, "{lost:?}");
    assert!(reader.latest_seq() <= 10);
    // The counters keep moving although nothing is published.
    wait_until("the segment's stats refresh while no frame arrives", || {
        reader
            .stats()
            .is_some_and(|s| s.camera_lost && s.reconnects >= lost.reconnects + 3)
    });
    assert!(reader.latest_seq() <= 10);
    let (mut pings, mut lost_status) = (0, false);
    let mut buf = [0u8; 512];
    while down_at.elapsed() < Duration::from_millis(8000) && !(pings >= 5 && lost_status) {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]);
            pings += usize::from(m.contains("WATCHDOG=1"));
            lost_status |= m.contains("STATUS=camera lost, reconnecting");
        }
    }
    stop.store(true, Ordering::SeqCst);
    let summary = supervisor.join().unwrap().unwrap();
    assert!(
        pings >= 5,
        "{pings} watchdog pings while the camera was away"
    );
    assert!(lost_status, "no STATUS about the lost camera");
    assert!(summary.stats.reconnects > 10);
    let published = summary.stats.published;
    assert!((1..=10).contains(&published), "{published} published");
    // The final counts went out with the end marker.
    assert_eq!(reader.writer_state(), WriterState::Ended);
    assert_eq!(
        reader.stats(),
        Some(PipelineCounters {
            frames_captured: summary.stats.captured,
            frames_dropped: summary.stats.dropped(),
            capture_errors: 0,
            reconnects: u32::try_from(summary.stats.reconnects).unwrap(),
            camera_lost: true,
        })
    );
}
