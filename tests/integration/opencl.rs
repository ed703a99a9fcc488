//! The OpenCL backend against tract (and onnxruntime's int8 kernels) on
//! real frames, J&F parity on DAVIS sequences, and the fallback to tract
//! when the device fails mid-run. Runs on any OpenCL device, PoCL's CPU
//! device in CI (Debian pocl-opencl-icd); skipped where there is none.

use std::path::Path;
use std::time::Duration;

use crate::common;
use vosd_engine::backend::opencl::Gpu;
use vosd_engine::backend::{ActiveBackend, BackendChoice};
use vosd_engine::config::{EngineConfig, Precision};
use vosd_engine::encoder::{Encoder, Features, OutputError};
use vosd_engine::engine::Tracker;
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{load_mask, load_rgb};
use vosd_eval::davis::{evaluate, Davis, Init, Predictions};
use vosd_eval::metrics::jaccard;

fn model(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// An OpenCL device of any kind, or `None` (test skipped) without one.
fn gpu() -> Option<std::sync::Arc<Gpu>> {
    match Gpu::open_first(true, Duration::from_secs(60)) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("SKIP: {e}");
            None
        }
    }
}

fn flat(f: &Features) -> [&[f32]; 3] {
    [&f.s4.data, &f.s8.data, &f.s16.data]
}

/// Encodes `image` with tract and on the device; per-output errors.
fn compare(file: &str, half: bool, image: &RgbFrame) -> Option<Vec<OutputError>> {
    let gpu = gpu()?;
    let enc = Encoder::load(&model(file), image.width, image.height, 2).unwrap();
    let mut want = enc.new_features();
    enc.encode_tract(image, &mut want).unwrap();
    enc.attach_device(gpu, half)
        .expect("device passes the self-test");
    assert_eq!(enc.backend_status().active, ActiveBackend::Opencl);
    let mut got = enc.new_features();
    enc.encode(image, &mut got).unwrap();
    Some(
        flat(&got)
            .iter()
            .zip(flat(&want))
            .map(|(g, w)| OutputError::between(g, w))
            .collect(),
    )
}

/// A real DAVIS frame at a processing size with odd grids (ceil divisions).
fn davis_frame() -> Option<RgbFrame> {
    let root = common::davis_root()?;
    let full = load_rgb(&root.join("JPEGImages/480p/bear/00010.jpg")).unwrap();
    let mut small = RgbFrame::new(424, 232);
    vosd_engine::frame::resize_bilinear(&full, &mut small);
    Some(small)
}

/// Runs `file` (with fp16 storage when `half`) on a DAVIS frame on the
/// device and with tract; each output's errors must stay within
/// `(max, mean)`, relative to the output's largest and mean magnitude.
fn check_davis_frame(label: &str, file: &str, half: bool, (max_tol, mean_tol): (f32, f32)) {
    let Some(image) = davis_frame() else { return };
    let Some(errors) = compare(file, half, &image) else {
        return;
    };
    for (name, e) in ["feat4", "feat8", "feat16"].iter().zip(&errors) {
        eprintln!(
            "{label} {name}: max |opencl - tract| {:.2e} (scale {:.2}), mean {:.2e} (mean |out| {:.2e})",
            e.max_abs, e.ref_max, e.mean_abs, e.ref_mean
        );
        assert!(e.max_abs <= max_tol * e.ref_max, "{label} {name}: {e:?}");
        assert!(e.mean_abs <= mean_tol * e.ref_mean, "{label} {name}: {e:?}");
    }
}

#[test]
fn fp32_encoder_matches_tract_on_a_davis_frame() {
    // Only the summation order differs.
    check_davis_frame("fp32", "encoder_lite0_fp32.onnx", false, (1e-4, 1e-5));
}

#[test]
fn fp16_storage_encoder_matches_tract_on_a_davis_frame() {
    let tolerance = vosd_engine::encoder::SELF_TEST_TOLERANCE_FP16;
    check_davis_frame("fp16 storage", "encoder_lite0_fp32.onnx", true, tolerance);
}

#[test]
fn int8_encoder_matches_tract_on_a_davis_frame() {
    // Integer kernels against tract's float emulation of the QDQ graph:
    // rounding differs by a quantization step here and there and the
    // differences grow with depth (see docs/backends.md, "Measured").
    let tolerance = vosd_engine::encoder::SELF_TEST_TOLERANCE_INT8;
    check_davis_frame("int8", "encoder_lite0_int8.onnx", false, tolerance);
}

#[test]
fn int8_kernels_match_onnxruntime_integer_kernels() {
    // onnxruntime ran the int8 file with integer kernels at export time
    // (models/testdata); ours do the same arithmetic, so they agree much
    // more closely than tract's float emulation does.
    let Some(gpu) = gpu() else { return };
    let bytes = std::fs::read(model("testdata/encoder_lite0_int8_pattern64.f32")).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let enc = Encoder::load(&model("encoder_lite0_int8.onnx"), 64, 64, 1).unwrap();
    let mut tract = enc.new_features();
    enc.encode_tract(&common::pattern64(), &mut tract).unwrap();
    enc.attach_device(gpu, false).unwrap();
    let mut got = enc.new_features();
    enc.encode(&common::pattern64(), &mut got).unwrap();
    let cat = |f: &Features| flat(f).concat();
    let ours = OutputError::between(&cat(&got), &want);
    let theirs = OutputError::between(&cat(&tract), &want);
    eprintln!("vs onnxruntime int8: opencl mean {:.3e} max {:.3e}; tract mean {:.3e} max {:.3e} (mean |out| {:.3e})", ours.mean_abs, ours.max_abs, theirs.mean_abs, theirs.max_abs, ours.ref_mean);
    assert!(ours.mean_abs <= 0.02 * ours.ref_mean, "{ours:?}");
    assert!(
        ours.mean_abs <= theirs.mean_abs,
        "opencl {ours:?} tract {theirs:?}"
    );
}

/// Label propagation, whose readout also runs on the device (the memory
/// network's heads run beside an OpenCL encoder on the CPU).
fn config(backend: BackendChoice) -> EngineConfig {
    EngineConfig {
        method: vosd_engine::config::Method::LabelPropagation,
        size: [256, 144],
        threads: 2,
        backend,
        ..Default::default()
    }
}

#[test]
fn eval_on_opencl_matches_cpu_on_two_sequences() {
    let Some(root) = common::davis_root() else {
        return;
    };
    if gpu().is_none() {
        return;
    }
    let davis = Davis::open(&root).unwrap();
    let names = vec!["dog-agility".to_string(), "surf".to_string()];
    let run = |backend| {
        let cfg = config(backend);
        let r = evaluate(
            &davis,
            &names,
            Predictions::Segment {
                config: &cfg,
                out: None,
                init: &Init::Mask,
                temporal: false,
            },
        )
        .unwrap();
        (r.overall.scores.jf_mean, r.backend.unwrap())
    };
    let (cpu, cpu_backend) = run(BackendChoice::Cpu);
    let (ocl, ocl_backend) = run(BackendChoice::Opencl);
    eprintln!("J&F on dog-agility + surf at 256x144: cpu {cpu:.4}, opencl {ocl:.4}");
    assert_eq!(cpu_backend.active, ActiveBackend::Cpu);
    assert_eq!(ocl_backend.active, ActiveBackend::Opencl, "{ocl_backend:?}");
    assert!(cpu > 0.5, "cpu J&F {cpu}");
    // Within half a point (0.005 on the 0..1 scale).
    assert!((cpu - ocl).abs() <= 0.005, "cpu {cpu} opencl {ocl}");
}

#[test]
fn device_failure_mid_run_falls_back_to_tract() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let Some(gpu) = gpu() else { return };
    let seq = |i: usize| root.join(format!("JPEGImages/480p/bear/{i:05}.jpg"));
    let frame0 = load_rgb(&seq(0)).unwrap();
    let mask0 = load_mask(&root.join("Annotations/480p/bear/00000.png")).unwrap();
    let cfg = config(BackendChoice::Opencl);
    let enc = Encoder::load(&cfg.model_path(), cfg.size[0], cfg.size[1], 2).unwrap();
    enc.attach_device(gpu.clone(), false).unwrap();
    let mut tracker =
        Tracker::with_encoder(&cfg, std::sync::Arc::new(enc), frame0.width, frame0.height).unwrap();
    tracker.start(&frame0, &mask0).unwrap();
    let mut out = LabelMask::new(frame0.width, frame0.height);
    // start() used the device once (encode); the next frames each use it
    // twice (encode, readout). Fail the device in the middle of frame 3.
    gpu.inject_failure_after(5);
    let mut js = Vec::new();
    for i in 1..=8 {
        tracker
            .step(&load_rgb(&seq(i)).unwrap(), &mut out)
            .expect("frames keep flowing");
        let status = tracker.backend_status();
        let want = if i < 3 {
            ActiveBackend::Opencl
        } else {
            ActiveBackend::Cpu
        };
        assert_eq!(status.active, want, "frame {i}: {status:?}");
        let gt = load_mask(&root.join(format!("Annotations/480p/bear/{i:05}.png"))).unwrap();
        let p: Vec<bool> = out.data.iter().map(|&v| v == 1).collect();
        let g: Vec<bool> = gt.data.iter().map(|&v| v == 1).collect();
        js.push(jaccard(&p, &g).unwrap());
    }
    let status = tracker.backend_status();
    assert_eq!(status.fallbacks, 1);
    assert!(status.reason.contains("injected"), "{status:?}");
    eprintln!("J per frame across the fallback: {js:.3?}");
    assert!(
        js.iter().all(|&j| j > 0.6),
        "masks stay good across the switch: {js:?}"
    );
}

#[test]
fn auto_never_fails_and_cpu_is_tract() {
    // `auto` never fails: it keeps tract when no GPU passes. On a machine
    // whose only OpenCL device is a CPU (CI) it says so.
    let cfg = config(BackendChoice::Auto);
    let enc = Encoder::load_with_backend(
        &cfg.model_path(),
        256,
        144,
        1,
        BackendChoice::Auto,
        vosd_engine::encoder::DeviceOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap();
    let s = enc.backend_status();
    if s.active == ActiveBackend::Cpu {
        assert!(s.reason.starts_with("auto: "), "{s:?}");
    }
    // `cpu` is always tract.
    let mut cfg = config(BackendChoice::Cpu);
    cfg.precision = Precision::Int8;
    let enc = Encoder::load_with_backend(
        &cfg.model_path(),
        256,
        144,
        1,
        BackendChoice::Cpu,
        vosd_engine::encoder::DeviceOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(enc.backend_status().active, ActiveBackend::Cpu);
    assert!(enc.device().is_none());
}

#[test]
fn daemon_keeps_publishing_when_the_device_fails() {
    use crate::daemon_support::*;
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("oclfail");
    let frames = 40;
    // Label propagation at 256x192: PoCL's CPU device runs about 1 frame a
    // second at the daemon tests' 512x384.
    let text = config_text(&shm, 10.0, frames, "")
        .replacen(
            "size = [512, 384]",
            "size = [256, 192]\nmethod = \"label-propagation\"",
            1,
        )
        .replace("[engine]\n", "[engine]\nbackend = \"opencl\"\n");
    let cfg = write_config(dir.path(), &text);
    let mut child = spawn_daemon(&cfg, &[(vosd_engine::encoder::FAIL_HOOK_ENV, "6")]);
    let mut reader = open_reader(&shm, &mut child, Duration::from_secs(60));
    let mut last = 0;
    let (n, ended, _) = read_all(&mut reader, Duration::from_secs(120), |f| {
        last = f.frame_number();
    });
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let log = child_stderr(&mut child);
    assert!(status.success(), "vosd failed: {status}\n{log}");
    assert!(ended, "no end marker after {n} frames\n{log}");
    assert!(log.contains("encoder backend: opencl"), "{log}");
    assert!(log.contains("switching to tract"), "{log}");
    assert!(
        log.contains("backend cpu (fell back to tract)"),
        "stats line names the fallback\n{log}"
    );
    // Frames kept flowing after the switch, to the end of the source. How
    // many the engine took depends on the machine's speed (it drops what
    // it cannot keep up with).
    assert_eq!(last, frames - 1, "{log}");
    assert!(n >= 3, "only {n} frames published\n{log}");
}

#[test]
fn a_device_that_does_not_finish_in_time_is_a_timeout_error() {
    use vosd_engine::backend::opencl::{encoder::OpenclEncoder, OpenclError};
    if gpu().is_none() {
        return;
    }
    // A 1 µs budget for a frame that takes milliseconds on any device.
    // (`slow` is a device of its own: its kernels have not run yet.)
    let slow = Gpu::open_first(true, Duration::from_micros(1)).unwrap();
    let bytes = std::fs::read(model("encoder_lite0_fp32.onnx")).unwrap();
    let enc = OpenclEncoder::new(slow, &bytes, 854, 480).unwrap();
    let input = vec![0.5f32; 3 * 854 * 480];
    let g = &enc.graph().tensors;
    let mut outs: Vec<Vec<f32>> = enc
        .graph()
        .outputs
        .iter()
        .map(|&o| vec![0.0; g[o].len()])
        .collect();
    let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
    // The first run may take up to FIRST_RUN_TIMEOUT (the driver may compile
    // the kernels at their first launch); the budget holds from then on.
    enc.run(&input, &mut views)
        .expect("the first run is given FIRST_RUN_TIMEOUT");
    match enc.run(&input, &mut views) {
        Err(OpenclError::Timeout(d)) => assert_eq!(d, Duration::from_micros(1)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn bench_prints_stage_times_for_each_backend() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = crate::common::target_command(env!("CARGO_BIN_EXE_vosd"))
        .args([
            "bench",
            "--method",
            "label-propagation",
            "--backends",
            "cpu,opencl",
            "--frames",
            "2",
            "--size",
            "64x64",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stage in ["encode", "readout", "upsample"] {
        let lines = stdout.lines().filter(|l| l.starts_with(stage)).count();
        assert_eq!(lines, 2, "{stage} once per backend:\n{stdout}");
    }
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let active: Vec<_> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"]["active"].clone())
        .collect();
    assert_eq!(
        active,
        [serde_json::json!("cpu"), serde_json::json!("opencl")]
    );
}
