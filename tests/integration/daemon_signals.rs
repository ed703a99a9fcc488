//! SIGTERM and SIGINT stop `vosd run` within a second, with status 0; the
//! reader sees every frame up to the end marker and the segment is removed.

use std::time::{Duration, Instant};

use crate::daemon_support::*;
use vosd_shm::{ReadStatus, ShmError, ShmReader};

fn stop_with(signal: i32, tag: &str) {
    // The stop is timed: no CPU-heavy test may run beside it.
    let _cpu = crate::common::cpu_heavy();
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm(tag);
    let cfg = write_config(dir.path(), &config_text(&shm, 15.0, 0, ""));
    let mut child = spawn_daemon(&cfg, &[]);
    let mut reader = open_reader(&shm, &mut child, Duration::from_secs(30));
    let mut buf = reader.new_frame_buf();
    // Let frames flow first.
    let mut seen = 0;
    let t0 = Instant::now();
    while seen < 5 {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{seen} frames published in 60 s:\n{}",
                child_stderr(&mut child)
            );
        }
        if let ReadStatus::Frame { .. } = reader
            .wait_next(&mut buf, Duration::from_millis(100))
            .unwrap()
        {
            seen += 1;
        }
    }
    let pid = child.id() as i32;
    let sent = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    // Stopping waits for the engine step in flight: seconds under emulation.
    let limit = if crate::common::emulated() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    let status = wait_exit(&mut child, limit + Duration::from_secs(4));
    let took = sent.elapsed();
    let log = child_stderr(&mut child);
    eprintln!("signal {signal}: exited in {took:?} with {status}");
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(took < limit, "took {took:?} to stop\n{log}");
    // The mapped reader gets the remaining frames, then the end marker.
    let mut ended = false;
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(2) {
        match reader
            .wait_next(&mut buf, Duration::from_millis(100))
            .unwrap()
        {
            ReadStatus::Ended => {
                ended = true;
                break;
            }
            ReadStatus::Frame { .. } | ReadStatus::Empty => {}
        }
    }
    assert!(ended, "no end marker after the signal\n{log}");
    assert!(log.contains("end marker published"), "{log}");
    // The name is gone: a new reader is told the pipeline is not running.
    assert!(matches!(
        ShmReader::open(&shm),
        Err(ShmError::NotFound { .. })
    ));
}

#[test]
fn sigterm_stops_within_a_second_with_end_marker() {
    stop_with(libc::SIGTERM, "term");
}

#[test]
fn sigint_stops_within_a_second_with_end_marker() {
    stop_with(libc::SIGINT, "int");
}
