//! The ONNX Runtime backend on its CPU provider: encoder parity with tract
//! (fp32) and with onnxruntime's own Python outputs (int8), J&F parity on
//! DAVIS sequences, and the daemon's fallback to tract when the library is
//! missing, is the wrong file, or fails mid-run.
//!
//! The library is found as vosd finds it (`ORT_DYLIB_PATH`, the system,
//! an installed `onnxruntime` Python package). Without one the tests print
//! SKIP; with `VOSD_REQUIRE_ONNXRUNTIME=1` (CI sets it after installing the
//! wheel) a missing library fails them instead.

use std::path::Path;
use std::time::Duration;

use crate::common;
use vosd_engine::backend::{
    open_device, ActiveBackend, BackendChoice, Device, DeviceOptions, FAIL_HOOK_ENV_ONNXRUNTIME,
};
use vosd_engine::config::{EngineConfig, Precision};
use vosd_engine::encoder::{self_test_image, Encoder, Features, OutputError};
use vosd_engine::frame::RgbFrame;

fn model(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// The ONNX Runtime device (CPU provider here), or `None` (test skipped).
pub fn runtime() -> Option<Device> {
    let options = DeviceOptions {
        threads: 2,
        ..Default::default()
    };
    match open_device(
        ActiveBackend::Onnxruntime,
        BackendChoice::Onnxruntime,
        &options,
    ) {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("VOSD_REQUIRE_ONNXRUNTIME").is_some() => {
            panic!("VOSD_REQUIRE_ONNXRUNTIME is set but: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: {e}");
            None
        }
    }
}

fn flat(f: &Features) -> Vec<f32> {
    [&f.s4.data[..], &f.s8.data[..], &f.s16.data[..]].concat()
}

/// `image` through tract and through ONNX Runtime: (tract, onnxruntime).
fn both(file: &str, image: &RgbFrame) -> Option<(Features, Features)> {
    let device = runtime()?;
    let enc = Encoder::load(&model(file), image.width, image.height, 2).unwrap();
    let mut tract = enc.new_features();
    enc.encode_tract(image, &mut tract).unwrap();
    enc.attach_device(device, false)
        .expect("ONNX Runtime passes the self-test");
    let status = enc.backend_status();
    assert_eq!(status.active, ActiveBackend::Onnxruntime, "{status:?}");
    assert!(
        status
            .device
            .as_deref()
            .unwrap_or("")
            .contains("CPU provider"),
        "{status:?}"
    );
    let mut ort = enc.new_features();
    enc.encode(image, &mut ort).unwrap();
    Some((tract, ort))
}

#[test]
fn fp32_encoder_matches_tract_at_the_default_size() {
    let image = self_test_image(512, 288);
    let Some((tract, ort)) = both("encoder_lite0_fp32.onnx", &image) else {
        return;
    };
    for (name, (t, o)) in ["feat4", "feat8", "feat16"].iter().zip([
        (&tract.s4, &ort.s4),
        (&tract.s8, &ort.s8),
        (&tract.s16, &ort.s16),
    ]) {
        let e = OutputError::between(&o.data, &t.data);
        eprintln!(
            "fp32 {name}: max |onnxruntime - tract| {:.2e} (scale {:.2}), mean {:.2e}",
            e.max_abs, e.ref_max, e.mean_abs
        );
        assert!(e.max_abs <= 1e-4 * e.ref_max, "{name}: {e:?}");
    }
}

#[test]
fn int8_encoder_matches_onnxruntime_python_outputs() {
    // The exporter ran the int8 file in onnxruntime's Python package on its
    // 64x64 test pattern (models/testdata): the same integer kernels, so
    // the same values up to one quantization step of an output.
    let Some((_, ort)) = both("encoder_lite0_int8.onnx", &common::pattern64()) else {
        return;
    };
    let bytes = std::fs::read(model("testdata/encoder_lite0_int8_pattern64.f32")).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let got = flat(&ort);
    assert_eq!(got.len(), want.len());
    let mut offset = 0;
    for (name, map) in [("feat4", &ort.s4), ("feat8", &ort.s8), ("feat16", &ort.s16)] {
        let want = &want[offset..offset + map.data.len()];
        offset += map.data.len();
        let step = quantization_step(want);
        let e = OutputError::between(&map.data, want);
        eprintln!(
            "int8 {name}: max |rust - python| {:.3e}, quantization step {step:.3e}",
            e.max_abs
        );
        assert!(e.max_abs <= step * 1.01, "{name}: {e:?}, step {step}");
    }
}

/// The smallest gap between distinct values of a dequantized output: its
/// quantization step.
fn quantization_step(values: &[f32]) -> f32 {
    let mut v: Vec<f32> = values.to_vec();
    v.sort_by(f32::total_cmp);
    v.dedup();
    v.windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 1e-7)
        .fold(f32::INFINITY, f32::min)
}

#[test]
fn j_and_f_match_tract_on_two_train_sequences() {
    use vosd_eval::davis::{evaluate, Davis, Init, Predictions};
    let Some(root) = common::davis_root() else {
        return;
    };
    if runtime().is_none() {
        return;
    }
    let davis = Davis::open(&root).unwrap();
    let seqs = vec!["bear".to_string(), "dog-agility".to_string()];
    let score = |backend| {
        let cfg = EngineConfig {
            size: [256, 144],
            threads: 2,
            backend,
            precision: Precision::Fp32,
            ..Default::default()
        };
        let report = evaluate(
            &davis,
            &seqs,
            Predictions::Segment {
                config: &cfg,
                out: None,
                init: &Init::Mask,
                temporal: false,
            },
        )
        .unwrap();
        let status = report.backend.unwrap();
        assert_eq!(status.active, expected_active(backend), "{status:?}");
        report.overall.scores.jf_mean
    };
    let tract = score(BackendChoice::Cpu);
    let ort = score(BackendChoice::Onnxruntime);
    eprintln!("J&F tract {tract:.4}, onnxruntime {ort:.4}");
    assert!(
        (tract - ort).abs() <= 0.005,
        "tract {tract} onnxruntime {ort}"
    );
}

fn expected_active(backend: BackendChoice) -> ActiveBackend {
    match backend {
        BackendChoice::Cpu => ActiveBackend::Cpu,
        _ => ActiveBackend::Onnxruntime,
    }
}

/// Runs the daemon for 30 synthetic frames with `engine` lines added to
/// its `[engine]` table and `env` set; (exit success, frames published,
/// last frame number, log).
fn run_daemon(engine: &str, env: &[(&str, &str)]) -> (bool, u64, u64, String) {
    use crate::daemon_support::*;
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("ort");
    let frames = 30;
    let text =
        config_text(&shm, 10.0, frames, "").replace("[engine]\n", &format!("[engine]\n{engine}\n"));
    let cfg = write_config(dir.path(), &text);
    let mut child = spawn_daemon(&cfg, env);
    let Some(mut reader) = try_open_reader(&shm, &mut child, Duration::from_secs(60)) else {
        let status = wait_exit(&mut child, Duration::from_secs(10));
        return (status.success(), 0, 0, child_stderr(&mut child));
    };
    let mut last = 0;
    let (n, ended, _) = read_all(&mut reader, Duration::from_secs(120), |f| {
        last = f.frame_number();
    });
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let log = child_stderr(&mut child);
    assert!(ended, "no end marker after {n} frames\n{log}");
    (status.success(), n, last, log)
}

#[test]
fn daemon_keeps_publishing_when_onnxruntime_fails_mid_run() {
    let _cpu = crate::common::cpu_heavy();
    if runtime().is_none() {
        return;
    }
    let (ok, n, last, log) = run_daemon(
        "backend = \"onnxruntime\"",
        &[(FAIL_HOOK_ENV_ONNXRUNTIME, "6")],
    );
    assert!(ok, "vosd failed\n{log}");
    assert!(log.contains("encoder backend: onnxruntime"), "{log}");
    assert!(log.contains("ONNX Runtime backend failed"), "{log}");
    assert!(log.contains("switching to tract"), "{log}");
    assert!(
        log.contains("backend cpu (fell back to tract)"),
        "stats line names the fallback\n{log}"
    );
    assert_eq!(last, 29, "frames kept flowing to the end\n{log}");
    // How many of the 30 frames the engine takes depends on the machine's
    // speed (it drops what it cannot keep up with): tract must have
    // segmented some after the switch, at the start.
    assert!(n >= 3, "only {n} frames published\n{log}");
}

#[test]
fn a_missing_library_leaves_auto_on_tract_and_is_an_error_when_asked_for() {
    let missing = "onnxruntime_library = \"/nonexistent/libonnxruntime.so.1\"";
    let (ok, n, _, log) = run_daemon(&format!("backend = \"auto\"\n{missing}"), &[]);
    assert!(ok, "auto must not fail\n{log}");
    assert!(n > 0, "{log}");
    assert!(
        log.contains("/nonexistent/libonnxruntime.so.1") && log.contains("no such file"),
        "the log names the library and why\n{log}"
    );
    assert!(!log.contains("encoder backend: onnxruntime"), "{log}");

    let (ok, n, _, log) = run_daemon(&format!("backend = \"onnxruntime\"\n{missing}"), &[]);
    assert!(
        !ok,
        "backend = onnxruntime without a library must fail\n{log}"
    );
    assert_eq!(n, 0);
    assert!(
        log.contains("ONNX Runtime backend unavailable")
            && log.contains("/nonexistent/libonnxruntime.so.1"),
        "{log}"
    );
}

#[test]
fn a_library_that_is_not_onnxruntime_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Not a shared object at all, and a real shared object that is not
    // ONNX Runtime.
    let junk = dir.path().join("libonnxruntime.so.1");
    std::fs::write(&junk, b"this is not an ELF file").unwrap();
    for (path, why) in [
        (junk.to_string_lossy().into_owned(), "cannot be loaded"),
        (libc_path(), "not an ONNX Runtime library"),
    ] {
        let engine = format!("backend = \"auto\"\nonnxruntime_library = \"{path}\"");
        let (ok, n, _, log) = run_daemon(&engine, &[]);
        assert!(ok, "auto must not fail on {path}\n{log}");
        assert!(n > 0, "{log}");
        assert!(log.contains(&path) && log.contains(why), "{why}\n{log}");
    }
}

/// A shared library that every Linux process has loaded: libc.
fn libc_path() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libc.so") || p.contains("libc-"))
        .expect("libc in /proc/self/maps")
        .to_string()
}
