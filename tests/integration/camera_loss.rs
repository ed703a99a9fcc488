//! A camera that goes away mid-stream: the capture stage counts the
//! reconnection attempts and goes on, frames flow again when the camera is
//! back, and while it is away the service keeps the systemd watchdog fed
//! and says so in STATUS (a restart would not bring the camera back).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vosd::frame::{LabelMask, RgbFrame};
use vosd::pipeline::{Pipeline, PipelineConfig, SegmentError, Segmenter};
use vosd::publish::{PublishConfig, ShmWriter};
use vosd::service::{supervise, Notifier};
use vosd::source::synthetic::{Synthetic, SyntheticConfig};
use vosd::source::{FrameMeta, FrameSource, SourceError};

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
    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<FrameMeta, SourceError> {
        if self.delivered == self.lose_after {
            let n = self.attempts.fetch_add(1, Ordering::SeqCst);
            if n < self.lost_for {
                std::thread::sleep(Duration::from_millis(10));
                return Err(SourceError::Reconnecting {
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

fn start(tag: &str, lose_after: u64, lost_for: u32) -> (Pipeline, Arc<AtomicBool>, Arc<AtomicU32>) {
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
    let writer =
        ShmWriter::create(&PublishConfig::new(unique_shm(tag), w as u32, h as u32)).unwrap();
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
    (p, stop, attempts)
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
    let (pipeline, stop, attempts) = start("flaky", 20, 4);
    let stats = pipeline.stats().clone();
    wait_until("frames after the reconnection", || {
        stats.published.load(Ordering::Relaxed) >= 60
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
    let (pipeline, stop, _) = start("gone", 10, u32::MAX);
    let stats = pipeline.stats().clone();
    let notifier = Notifier::to_path(&sock_path, Some(Duration::from_millis(400))).unwrap();
    let supervisor = {
        let stop = stop.clone();
        std::thread::spawn(move || supervise(pipeline, 0.0, &stop, &notifier))
    };
    wait_until("the camera is reported down", || {
        stats.source_down.load(Ordering::Relaxed)
    });
    let down_at = Instant::now();
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
}
