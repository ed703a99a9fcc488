//! Helpers shared by the daemon tests (a module of the integration test binary).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::KillOnDrop;
use vosd_engine::frame::LabelMask;
use vosd_shm::{FrameBuf, ReadStatus, ShmError, ShmReader};

/// The daemon binary cargo built for these tests.
pub fn vosd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vosd")
}

/// A shared-memory name no other test (or test run) uses.
pub fn unique_shm(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("/vosd-test-{tag}-{}-{n}", std::process::id())
}

/// A daemon configuration: synthetic 320×240 source, the default engine
/// (the memory network) at 512×384 (trained on DAVIS at 512×288, it loses
/// the scene's small shapes at 256×192: docs/engine.md). Under emulation,
/// where a step takes seconds, label propagation at 256×192 instead, as
/// before the memory network (the engine tests cover it there).
pub fn config_text(shm: &str, fps: f64, frames: u64, extra_pipeline: &str) -> String {
    let engine = if crate::common::emulated() {
        "size = [256, 192]\nmethod = \"label-propagation\""
    } else {
        "size = [512, 384]"
    };
    format!(
        r#"
[engine]
{engine}
max_objects = 4
threads = 2

[source]
kind = "synthetic"
width = 320
height = 240
fps = {fps}
seed = 1
objects = 3
frames = {frames}

[publish]
name = "{shm}"
slots = 64
max_objects = 8
mode = 0o600

[pipeline]
stats_interval_s = 1
{extra_pipeline}
"#
    )
}

/// Writes `text` as a config file in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vosd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `vosd run --config PATH` with stderr captured; stopped when the
/// returned guard drops (a failed test leaves no daemon running).
pub fn spawn_daemon(config: &Path, envs: &[(&str, &str)]) -> KillOnDrop {
    let mut cmd = crate::common::target_command(vosd_bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    KillOnDrop(cmd.spawn().expect("spawn vosd run"))
}

/// Opens the segment, waiting for the daemon to create it.
pub fn open_reader(name: &str, child: &mut Child, wait: Duration) -> ShmReader {
    let t0 = Instant::now();
    loop {
        match ShmReader::open(name) {
            Ok(r) => return r,
            Err(ShmError::NotFound { .. } | ShmError::NotReady { .. }) if t0.elapsed() < wait => {
                if let Some(status) = child.try_wait().unwrap() {
                    let err = child_stderr(child);
                    panic!("vosd exited ({status}) before creating {name}:\n{err}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open {name}: {e}"),
        }
    }
}

/// Opens the segment, waiting for the daemon to create it; `None` if the
/// daemon exits first (a start-up error the test expects).
pub fn try_open_reader(name: &str, child: &mut Child, wait: Duration) -> Option<ShmReader> {
    let t0 = Instant::now();
    loop {
        match ShmReader::open(name) {
            Ok(r) => return Some(r),
            Err(ShmError::NotFound { .. } | ShmError::NotReady { .. }) if t0.elapsed() < wait => {
                if child.try_wait().unwrap().is_some() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open {name}: {e}"),
        }
    }
}

/// The child's stderr (after it exited).
pub fn child_stderr(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Waits for the child with a deadline; kills it (and fails) past it.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vosd did not exit within {limit:?}:\n{}",
                child_stderr(child)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads every frame in publish order until the end marker (or `limit`).
/// Returns the frames as (frame number, mask, objects) and whether the end
/// marker was seen.
pub fn read_all(
    reader: &mut ShmReader,
    limit: Duration,
    mut each: impl FnMut(&FrameBuf),
) -> (u64, bool, u64) {
    let mut buf = reader.new_frame_buf();
    let t0 = Instant::now();
    let (mut n, mut skipped) = (0u64, 0u64);
    while t0.elapsed() < limit {
        match reader
            .wait_next(&mut buf, Duration::from_millis(100))
            .expect("read")
        {
            ReadStatus::Frame { skipped: s, .. } => {
                n += 1;
                skipped += s;
                each(&buf);
            }
            ReadStatus::Ended => return (n, true, skipped),
            ReadStatus::Empty => {}
        }
    }
    (n, false, skipped)
}

/// DAVIS J of one object: |M ∩ G| / |M ∪ G|, 1 when both are empty.
pub fn iou(pred: &[u8], gt: &LabelMask, id: u8) -> f64 {
    let (mut inter, mut uni) = (0u64, 0u64);
    for (&p, &g) in pred.iter().zip(&gt.data) {
        let (a, b) = (p == id, g == id);
        inter += u64::from(a && b);
        uni += u64::from(a || b);
    }
    if uni == 0 {
        1.0
    } else {
        inter as f64 / uni as f64
    }
}
