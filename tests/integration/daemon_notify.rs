//! systemd notifications: READY=1 only once a frame is in shared memory,
//! STATUS with fps and drops, WATCHDOG=1 only while frames flow, STOPPING=1
//! on SIGTERM. A test socket stands in for systemd.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::daemon_support::*;
use vosd_shm::ShmReader;

fn collect(fps: f64, watch_for: Duration, tag: &str) -> (Vec<(Duration, String)>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let shm = unique_shm(tag);
    let cfg = write_config(dir.path(), &config_text(&shm, fps, 0, ""));
    let sock_env = sock_path.to_str().unwrap().to_string();
    let mut child = spawn_daemon(
        &cfg,
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "400000")],
    );
    let t0 = Instant::now();
    let mut msgs = Vec::new();
    let mut buf = [0u8; 512];
    let mut published_at_ready = 0;
    let mut ready_at = None;
    while ready_at.is_none_or(|r: Instant| r.elapsed() < watch_for) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no READY=1: {msgs:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.contains("READY=1") && ready_at.is_none() {
                ready_at = Some(Instant::now());
                let r = ShmReader::open(&shm).expect("segment exists at READY");
                published_at_ready = r.latest_seq();
            }
            msgs.push((t0.elapsed(), m));
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success());
    while let Ok(n) = sock.recv(&mut buf) {
        msgs.push((
            t0.elapsed(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
    (msgs, published_at_ready)
}

#[test]
fn ready_status_watchdog_and_stopping() {
    let (msgs, published_at_ready) = collect(15.0, Duration::from_secs(6), "notify");
    assert!(published_at_ready >= 1, "READY before the first publish");
    let ready = msgs.iter().position(|m| m.1.contains("READY=1")).unwrap();
    let pings_before = msgs[..ready]
        .iter()
        .filter(|m| m.1.contains("WATCHDOG=1"))
        .count();
    assert_eq!(
        pings_before, 0,
        "watchdog pinged before frames flowed: {msgs:?}"
    );
    let pings = msgs.iter().filter(|m| m.1 == "WATCHDOG=1").count();
    // Interval 0.4 s: pings every 0.1–0.2 s while frames flow for 6 s
    // (under emulation frames come seconds apart: a ping or so per frame).
    let min_pings = if crate::common::emulated() { 1 } else { 10 };
    assert!(pings >= min_pings, "only {pings} watchdog pings: {msgs:?}");
    let status = msgs
        .iter()
        .filter(|m| m.1.starts_with("STATUS=") && m.1.contains("fps") && m.1.contains("dropped"))
        .count();
    assert!(status >= 1, "no STATUS with fps and drops: {msgs:?}");
    assert!(
        msgs.last().unwrap().1.contains("STOPPING=1")
            || msgs.iter().any(|m| m.1.contains("STOPPING=1")),
        "{msgs:?}"
    );
}

#[test]
fn watchdog_pings_follow_the_frames() {
    // At 2 fps a frame is fresh (< 0.2 s old) only briefly after each
    // publish: at most one ping per frame, far fewer than at 15 fps.
    let (msgs, _) = collect(2.0, Duration::from_secs(4), "notify-slow");
    let pings = msgs.iter().filter(|m| m.1 == "WATCHDOG=1").count();
    assert!(
        (1..=10).contains(&pings),
        "{pings} pings in 4 s at 2 fps: {msgs:?}"
    );
}
