//! The `vosd segment` and `vosd eval` commands, including their errors.

use crate::common;

use std::path::Path;
use std::process::Command;

fn vosd() -> Command {
    crate::common::target_command(env!("CARGO_BIN_EXE_vosd"))
}

/// Copies the first `n` bear frames into `dir/frames` and returns the first mask path.
fn bear_clip(root: &Path, dir: &Path, n: usize) -> std::path::PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..n {
        let name = format!("{i:05}.jpg");
        std::fs::copy(
            root.join("JPEGImages/480p/bear").join(&name),
            frames.join(&name),
        )
        .unwrap();
    }
    let mask = dir.join("first.png");
    std::fs::copy(root.join("Annotations/480p/bear/00000.png"), &mask).unwrap();
    mask
}

fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "command should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

#[test]
fn segment_writes_palette_masks_and_overlays() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mask = bear_clip(&root, dir.path(), 4);
    let out = dir.path().join("out");
    let overlay = dir.path().join("overlay");
    let status = vosd()
        .args(["segment", "--size", "256x144", "--frames"])
        .arg(dir.path().join("frames"))
        .arg("--mask")
        .arg(&mask)
        .arg("--out")
        .arg(&out)
        .arg("--overlay")
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success());
    for i in 0..4 {
        let m = vosd_engine::imageio::load_mask(&out.join(format!("{i:05}.png"))).unwrap();
        assert_eq!((m.width, m.height), (854, 480));
        assert_eq!(m.object_ids(), vec![1], "frame {i}");
        let o = vosd_engine::imageio::load_rgb(&overlay.join(format!("{i:05}.jpg"))).unwrap();
        assert_eq!((o.width, o.height), (854, 480));
    }
    // The files are palette PNGs (DAVIS 2017 style).
    let decoder = png::Decoder::new(std::fs::File::open(out.join("00001.png")).unwrap());
    let reader = decoder.read_info().unwrap();
    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
}

#[test]
fn segment_input_errors_name_the_problem() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mask = bear_clip(&root, dir.path(), 3);
    let frames = dir.path().join("frames");
    let out = dir.path().join("out");
    let seg = |frames: &Path, mask: &Path| {
        let mut c = vosd();
        c.args(["segment", "--size", "256x144", "--frames"])
            .arg(frames)
            .arg("--mask")
            .arg(mask)
            .arg("--out")
            .arg(&out);
        c
    };
    // Missing frames folder.
    let e = run_err(&mut seg(&dir.path().join("nope"), &mask));
    assert!(e.contains("nope"), "{e}");
    // Empty first mask.
    let empty = dir.path().join("empty.png");
    image::GrayImage::new(854, 480).save(&empty).unwrap();
    let e = run_err(&mut seg(&frames, &empty));
    assert!(e.contains("empty"), "{e}");
    // Mask size different from the frames.
    let small = dir.path().join("small.png");
    image::GrayImage::from_pixel(100, 50, image::Luma([255]))
        .save(&small)
        .unwrap();
    let e = run_err(&mut seg(&frames, &small));
    assert!(e.contains("small.png") && e.contains("100x50"), "{e}");
    // Corrupt mask PNG.
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRgarbage").unwrap();
    let e = run_err(&mut seg(&frames, &corrupt));
    assert!(e.contains("corrupt.png"), "{e}");
    // Corrupt JPEG among the frames.
    std::fs::write(frames.join("00002.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    let e = run_err(&mut seg(&frames, &mask));
    assert!(e.contains("00002.jpg"), "{e}");
}

#[test]
fn config_and_model_errors_name_the_key_or_file() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mask = bear_clip(&root, dir.path(), 2);
    let frames = dir.path().join("frames");
    let base = |extra: &[&str]| {
        let mut c = vosd();
        c.arg("segment")
            .arg("--frames")
            .arg(&frames)
            .arg("--mask")
            .arg(&mask)
            .arg("--out")
            .arg(dir.path().join("o"));
        c.args(extra);
        c
    };
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[engine]\ntop_kk = 4\n").unwrap();
    let e = run_err(base(&[]).arg("--config").arg(&cfg));
    assert!(e.contains("top_kk") && e.contains("bad.toml"), "{e}");
    std::fs::write(&cfg, "[engine]\ntemperature = -1.0\n").unwrap();
    let e = run_err(base(&[]).arg("--config").arg(&cfg));
    assert!(e.contains("engine.temperature"), "{e}");
    std::fs::write(&cfg, "[engin]\n").unwrap();
    let e = run_err(base(&[]).arg("--config").arg(&cfg));
    assert!(e.contains("engin"), "{e}");
    // A model file that is not an ONNX encoder at all.
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, b"this is not a model").unwrap();
    let e = run_err(base(&[]).arg("--model").arg(&model));
    assert!(e.contains("model.onnx"), "{e}");
    // A missing model file.
    let e = run_err(&mut base(&["--model", "/nonexistent/enc.onnx"]));
    assert!(e.contains("/nonexistent/enc.onnx"), "{e}");
}

#[test]
fn eval_scores_existing_results() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Perfect predictions: the ground truth itself, as palette PNGs.
    let seq = "boat";
    let res = dir.path().join("res").join(seq);
    std::fs::create_dir_all(&res).unwrap();
    for f in vosd_engine::imageio::list_images(&root.join("Annotations/480p").join(seq)).unwrap() {
        let m = vosd_engine::imageio::load_mask(&f).unwrap();
        vosd_engine::imageio::save_mask(&res.join(f.file_name().unwrap()), &m).unwrap();
    }
    let json = dir.path().join("eval.json");
    let out = vosd()
        .args(["eval", "--sequences", seq, "--davis"])
        .arg(&root)
        .arg("--results")
        .arg(dir.path().join("res"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["sequences"][seq]["j_mean"], 1.0);
    assert_eq!(v["sequences"][seq]["f_mean"], 1.0);
    assert_eq!(v["overall"]["jf_mean"], 1.0);
    // A missing prediction file is an error naming it.
    std::fs::remove_file(res.join("00010.png")).unwrap();
    let e = run_err(
        vosd()
            .args(["eval", "--sequences", seq, "--davis"])
            .arg(&root)
            .arg("--results")
            .arg(dir.path().join("res")),
    );
    assert!(e.contains("00010.png"), "{e}");
}

/// Three frames of the synthetic scene as PNGs in `dir/frames`, and the
/// first frame's mask; returns the mask path.
fn synthetic_clip(dir: &Path) -> std::path::PathBuf {
    synthetic_clip_of(dir, 3)
}

/// [`synthetic_clip`] with `n` frames.
fn synthetic_clip_of(dir: &Path, n: u64) -> std::path::PathBuf {
    use vosd::source::synthetic::{Scene, SyntheticConfig};
    let scene = Scene::new(&SyntheticConfig {
        width: 320,
        height: 240,
        ..Default::default()
    })
    .unwrap();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let mut mask = vosd_engine::frame::LabelMask::default();
    for k in 0..n {
        let mut f = vosd_engine::frame::RgbFrame::new(320, 240);
        scene.render(k, Some(&mut f), (k == 0).then_some(&mut mask));
        image::RgbImage::from_raw(320, 240, f.data)
            .unwrap()
            .save(frames.join(format!("{k:05}.png")))
            .unwrap();
    }
    let path = dir.join("first.png");
    vosd_engine::imageio::save_mask(&path, &mask).unwrap();
    path
}

/// `segment --config` takes a whole daemon configuration (its [engine]
/// table is used; [source], [publish], [pipeline], [control] are accepted).
#[test]
fn segment_accepts_a_daemon_config() {
    let dir = tempfile::tempdir().unwrap();
    let mask = synthetic_clip(dir.path());
    let out = dir.path().join("out");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let run = vosd()
        .arg("segment")
        .arg("--config")
        .arg(&config)
        .arg("--frames")
        .arg(dir.path().join("frames"))
        .arg("--mask")
        .arg(&mask)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let first = vosd_engine::imageio::load_mask(&mask).unwrap();
    for k in 0..3 {
        let m = vosd_engine::imageio::load_mask(&out.join(format!("{k:05}.png"))).unwrap();
        assert_eq!((m.width, m.height), (320, 240));
        assert_eq!(m.object_ids(), first.object_ids(), "frame {k}");
    }
}

/// `segment --discover` (unsupervised mode) on the synthetic scene with
/// the discover demo's configuration: no mask given; the first frames are
/// empty, ids appear within the first second, overlays are written; and
/// the argument errors.
#[test]
fn segment_discovers_objects_without_a_mask() {
    let Some(_cpu) = crate::common::native_cpu_heavy("segment --discover") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    synthetic_clip_of(dir.path(), 30);
    let (out, overlay) = (dir.path().join("out"), dir.path().join("overlay"));
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-discover.toml");
    let run = vosd()
        .arg("segment")
        .arg("--discover")
        .arg("--config")
        .arg(&config)
        .arg("--frames")
        .arg(dir.path().join("frames"))
        .arg("--out")
        .arg(&out)
        .arg("--overlay")
        .arg(&overlay)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("discovered in box"), "{stderr}");
    let ids = |k: u64| {
        vosd_engine::imageio::load_mask(&out.join(format!("{k:05}.png")))
            .unwrap()
            .object_ids()
    };
    assert!(ids(0).is_empty(), "nothing is known at the first frame");
    assert!(ids(29).len() >= 2, "ids by frame 29: {:?}", ids(29));
    assert!(overlay.join("00029.jpg").exists());
    // The mask and --discover exclude each other; --fps needs a rate.
    let frames = dir.path().join("frames");
    for (args, want) in [
        (
            vec!["--discover", "--mask", "first.png"],
            "cannot be used with",
        ),
        (vec!["--discover", "--fps", "0"], "--fps 0"),
        (vec![], "--mask"),
    ] {
        let run = vosd()
            .arg("segment")
            .arg("--frames")
            .arg(&frames)
            .arg("--out")
            .arg(&out)
            .args(&args)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && e.contains(want), "{args:?}: {e}");
    }
}

/// The offline commands check the whole file they are given: a bad value
/// in any table is an error naming the file and `table.key`.
#[test]
fn offline_commands_name_the_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mask = synthetic_clip(dir.path());
    let demo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
            .unwrap();
    let cfg = dir.path().join("demo.toml");
    for (from, to, want) in [
        (
            "max_objects = 4",
            "max_objects = 4\ntop_k = 0",
            "engine.top_k: must be within 1..=64",
        ),
        (
            "objects = 3",
            "objects = 7",
            "source.objects: 7 is not within 1..=3",
        ),
        (
            "slots = 8",
            "slots = 1",
            "publish.slots: 1 is not within 2..=1024",
        ),
        (
            "stats_interval_s = 5",
            "stats_interval_s = 5\nmask_pool = 1",
            "pipeline.mask_pool: 1 is not within 3..=64",
        ),
        (
            "mode = 0o600",
            "mode = 0o600\nmax_clients = 100",
            "control.max_clients: 100 is not within 1..=64",
        ),
    ] {
        assert!(demo.contains(from), "{from}");
        std::fs::write(&cfg, demo.replacen(from, to, 1)).unwrap();
        let e = run_err(
            vosd()
                .arg("segment")
                .arg("--config")
                .arg(&cfg)
                .arg("--frames")
                .arg(dir.path().join("frames"))
                .arg("--mask")
                .arg(&mask)
                .arg("--out")
                .arg(dir.path().join("o")),
        );
        assert!(e.contains(&format!("demo.toml: {want}")), "{want}: {e}");
    }
}
