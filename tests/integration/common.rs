//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The DAVIS 2016 train data beside the repository (../shared), if present.
pub fn davis_root() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/davis2016");
    if root.join("JPEGImages/480p").is_dir() {
        Some(root)
    } else {
        eprintln!("SKIP: {} not found", root.display());
        None
    }
}

/// The first `n` (frame, annotation) paths of DAVIS sequence `seq` under
/// `root` (480p).
pub fn davis_files(root: &std::path::Path, seq: &str, n: usize) -> Vec<(PathBuf, PathBuf)> {
    (0..n)
        .map(|i| {
            (
                root.join(format!("JPEGImages/480p/{seq}/{i:05}.jpg")),
                root.join(format!("Annotations/480p/{seq}/{i:05}.png")),
            )
        })
        .collect()
}

/// A command for a program built for the test target (the `vosd` binary,
/// this test binary). When cross-testing under emulation,
/// `$VOSD_TEST_RUNNER` names the emulator (`scripts/cross-build.sh --test`
/// sets it, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`) and the program
/// runs through it; otherwise it runs directly.
pub fn target_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let runner = std::env::var("VOSD_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(emulator) => {
            let mut cmd = std::process::Command::new(emulator);
            cmd.args(parts).arg(program);
            die_with_the_test(&mut cmd);
            cmd
        }
        None => {
            let mut cmd = std::process::Command::new(program);
            die_with_the_test(&mut cmd);
            cmd
        }
    }
}

/// Makes the child get SIGKILL when the test thread that started it ends,
/// however it ends (a failed assertion, a timeout of the whole binary): a
/// daemon left running would take the CPU from every later test.
pub fn die_with_the_test(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) is async-signal-safe and touches only the child.
    // Best effort: where it fails (an emulator without it), the
    // `KillOnDrop` guards still stop the daemons.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A child process stopped when dropped (a failing or finished test
/// leaves nothing running): SIGTERM, so that a daemon unlinks its
/// segment, then SIGKILL after 10 s. Derefs to the `Child`.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        use std::time::Duration;
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let t0 = std::time::Instant::now();
            while matches!(self.0.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the tests run under an emulator (`$VOSD_TEST_RUNNER` is set).
/// Real-time expectations (frame rates, stop latency, watchdog cadence) are
/// then relaxed: an engine step takes seconds under qemu-user, not tens of
/// milliseconds. Correctness checks stay as they are.
pub fn emulated() -> bool {
    std::env::var("VOSD_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// The exporter's 64×64 test pattern (models/export_encoder.py), rebuilt
/// here: models/testdata holds onnxruntime's outputs for it.
pub fn pattern64() -> vosd_engine::frame::RgbFrame {
    let n = 64usize;
    let mut f = vosd_engine::frame::RgbFrame::new(n, n);
    for y in 0..n {
        for x in 0..n {
            for c in 0..3 {
                f.data[(y * n + x) * 3 + c] =
                    ((x * 7 + y * 13 + c * 29 + (x * y) % 17) % 256) as u8;
            }
        }
    }
    f
}

/// Held by the tests that load the CPU for many seconds (discovery on the
/// synthetic scene) and by the real-time daemon tests that count
/// published frames, so that on a 2-core machine the one never starves the
/// other. A test that panicked while holding it does not block the rest.
pub fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`cpu_heavy`] for a test that runs the engine on many frames, or `None`
/// (printing `SKIP <what> under emulation`) under an emulator, where a
/// frame takes seconds: `let Some(_cpu) = common::native_cpu_heavy("...") else { return };`.
pub fn native_cpu_heavy(what: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = cpu_heavy();
    if emulated() {
        eprintln!("SKIP {what} under emulation (seconds per frame)");
        return None;
    }
    Some(guard)
}
