//! The memory network (`engine.method = "memory-network"`): each stage
//! against the PyTorch model's outputs (the committed test vector,
//! models/memnet/testvector.json), and the engine on real DAVIS frames.

use std::path::PathBuf;

use crate::common;

use vosd_engine::backend::{BackendStatus, Device};
use vosd_engine::config::{bundled_model_dir, EngineConfig, Method};
use vosd_engine::engine::Tracker;
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{load_mask, load_rgb};
use vosd_engine::memnet::attention::Attention;
use vosd_engine::memnet::bank::MemoryBank;
use vosd_engine::memnet::heads::{HeadGrids, Heads};
use vosd_engine::memnet::masks::aggregate;
use vosd_eval::metrics::jaccard;

fn memnet_dir() -> PathBuf {
    bundled_model_dir().join("memnet")
}

/// A test-vector tensor (raw little-endian f32).
fn tensor(name: &str) -> Vec<f32> {
    let path = memnet_dir().join("testdata").join(format!("{name}.f32"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Largest error relative to the reference's largest magnitude.
fn rel_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}

fn heads_on(device: Option<Device>) -> (Heads, HeadGrids) {
    let grids = HeadGrids::new(200, 120);
    let cfg = vosd_engine::config::MemoryNetworkConfig::default();
    let status = std::sync::Arc::new(std::sync::Mutex::new(BackendStatus::cpu("test")));
    (Heads::load(&cfg, &grids, device, status).unwrap(), grids)
}

/// Every stage of one step at 200x120 against PyTorch: the heads (run by
/// `heads`), vosd's top-k readout and soft aggregation.
fn check_testvector(mut heads: Heads, grids: HeadGrids, bound: f32) {
    let (c4, c16) = (grids.cells4(), grids.cells16());
    let mut key0 = vec![0.0; 64 * c16];
    heads
        .key
        .run(&[&tensor("frame0_feat16")], &mut key0)
        .unwrap();
    assert!(rel_error(&key0, &tensor("frame0_key")) < bound, "key");
    let (masks, others) = (tensor("frame0_mask"), tensor("frame0_others"));
    let want_value = tensor("frame0_value");
    let mut bank = MemoryBank::new(c16, 64, 64, 2, 1, 5, false);
    let (slot, entry) = bank.spare();
    entry.keys.copy_from_slice(&tensor("frame0_key"));
    for n in 0..2 {
        let out = &mut entry.values[n * 64 * c16..(n + 1) * 64 * c16];
        let feat16 = tensor("frame0_feat16");
        let inputs: [&[f32]; 3] = [
            &feat16,
            &masks[n * c4..(n + 1) * c4],
            &others[n * c4..(n + 1) * c4],
        ];
        heads.value.run(&inputs, out).unwrap();
        let want = &want_value[n * 64 * c16..(n + 1) * 64 * c16];
        assert!(rel_error(out, want) < bound, "value of object {n}");
    }
    // The readout from PyTorch's own values, so that its error is the
    // readout's alone.
    entry.values.copy_from_slice(&want_value);
    MemoryBank::finish_keys(entry, 64, c16);
    bank.set_first(slot);
    let mut readout = vec![0.0; 2 * 64 * c16];
    Attention::new(c16, bank.max_len(), 30, 2).read(&tensor("frame1_key"), &bank, 2, &mut readout);
    let e = rel_error(&readout, &tensor("frame1_readout"));
    assert!(e < 1e-4, "readout: {e}");
    let want_readout = tensor("frame1_readout");
    let (f16, f8, f4) = (
        tensor("frame1_feat16"),
        tensor("frame1_feat8"),
        tensor("frame1_feat4"),
    );
    let mut logits = vec![0.0; 2 * c4];
    for n in 0..2 {
        let r = &want_readout[n * 64 * c16..(n + 1) * 64 * c16];
        heads
            .decoder
            .run(&[r, &f16, &f8, &f4], &mut logits[n * c4..(n + 1) * c4])
            .unwrap();
    }
    let e = rel_error(&logits, &tensor("frame1_logits"));
    assert!(e < bound, "decoder: {e}");
    let mut probs = vec![0.0; 3 * c4];
    aggregate(&tensor("frame1_logits"), 2, c4, &mut probs);
    let e = rel_error(&probs, &tensor("frame1_probs"));
    assert!(e < 1e-5, "aggregation: {e}");
}

#[test]
fn every_stage_matches_the_pytorch_test_vector_on_tract() {
    let (heads, grids) = heads_on(None);
    check_testvector(heads, grids, 1e-4);
}

#[cfg(feature = "onnxruntime")]
#[test]
fn every_stage_matches_the_pytorch_test_vector_on_onnxruntime() {
    use vosd_engine::backend::{open_device, ActiveBackend, BackendChoice, DeviceOptions};
    let device = match open_device(
        ActiveBackend::Onnxruntime,
        BackendChoice::Onnxruntime,
        &DeviceOptions::default(),
    ) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                std::env::var_os("VOSD_REQUIRE_ONNXRUNTIME").is_none(),
                "VOSD_REQUIRE_ONNXRUNTIME is set but ONNX Runtime cannot start: {e}"
            );
            eprintln!("SKIP memnet on ONNX Runtime: {e}");
            return;
        }
    };
    let (heads, grids) = heads_on(Some(device));
    assert!(
        heads.key.on_device() && heads.value.on_device() && heads.decoder.on_device(),
        "the heads did not pass their self-test on ONNX Runtime"
    );
    check_testvector(heads, grids, 1e-4);
}

fn config() -> EngineConfig {
    EngineConfig {
        method: Method::MemoryNetwork,
        size: [512, 288],
        ..Default::default()
    }
}

/// Mean J of object 1 over `files[1..]`, tracked from frame 0.
fn mean_j(cfg: &EngineConfig, files: &[(PathBuf, PathBuf)]) -> f64 {
    let frame0 = load_rgb(&files[0].0).unwrap();
    let mut tracker = Tracker::new(cfg, frame0.width, frame0.height).unwrap();
    assert_eq!(tracker.method(), Method::MemoryNetwork);
    tracker
        .start(&frame0, &load_mask(&files[0].1).unwrap())
        .unwrap();
    let mut out = LabelMask::new(frame0.width, frame0.height);
    let mut js = Vec::new();
    for (img, ann) in &files[1..] {
        tracker.step(&load_rgb(img).unwrap(), &mut out).unwrap();
        let gt = load_mask(ann).unwrap();
        let p: Vec<bool> = out.data.iter().map(|&v| v == 1).collect();
        let g: Vec<bool> = gt.data.iter().map(|&v| v == 1).collect();
        js.push(jaccard(&p, &g).unwrap());
        assert_eq!(tracker.confidences().len(), 1);
    }
    js.iter().sum::<f64>() / js.len() as f64
}

#[test]
fn tracks_a_real_sequence() {
    let Some(root) = common::davis_root() else {
        eprintln!("SKIP memnet on DAVIS: ../shared/data/davis2016 not found");
        return;
    };
    let j = mean_j(&config(), &common::davis_files(&root, "dog-agility", 25));
    eprintln!("memory network, dog-agility, 24 frames: mean J {j:.3}");
    assert!(j > 0.75, "mean J {j:.3} on dog-agility is too low");
}

/// Two objects pasted on a textured background move, cross and part: the
/// soft aggregation keeps each on its own id.
#[test]
fn two_objects_on_a_composition_keep_their_ids() {
    let (w, h) = (320, 192);
    let texture = |x: usize, y: usize| -> [u8; 3] {
        let v = ((x * 7 + y * 13) % 64) as u8 + 40;
        [v, v / 2 + 60, 120 - v / 2]
    };
    // Object 1: a red disc moving right; object 2: a blue square moving left.
    let place = |t: usize| ((40 + 6 * t, 90), (260 - 6 * t, 60));
    let render = |t: usize| {
        let mut f = RgbFrame::new(w, h);
        let mut m = LabelMask::new(w, h);
        let ((ax, ay), (bx, by)) = place(t);
        for y in 0..h {
            for x in 0..w {
                let mut px = texture(x, y);
                let (dx, dy) = (x as i64 - ax as i64, y as i64 - ay as i64);
                if dx * dx + dy * dy <= 22 * 22 {
                    px = [220, 40, 40];
                    m.data[y * w + x] = 1;
                }
                if x.abs_diff(bx) <= 18 && y.abs_diff(by) <= 18 {
                    px = [40, 60, 220];
                    m.data[y * w + x] = 2;
                }
                f.data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
            }
        }
        (f, m)
    };
    let cfg = EngineConfig {
        size: [320, 192],
        ..config()
    };
    let (f0, m0) = render(0);
    let mut tracker = Tracker::new(&cfg, w, h).unwrap();
    tracker.start(&f0, &m0).unwrap();
    let mut out = LabelMask::new(w, h);
    let mut js = [Vec::new(), Vec::new()];
    for t in 1..30 {
        let (f, gt) = render(t);
        tracker.step(&f, &mut out).unwrap();
        for (id, j) in [1u8, 2].into_iter().zip(&mut js) {
            let p: Vec<bool> = out.data.iter().map(|&v| v == id).collect();
            let g: Vec<bool> = gt.data.iter().map(|&v| v == id).collect();
            j.push(jaccard(&p, &g).unwrap());
        }
    }
    for (id, j) in [1u8, 2].into_iter().zip(&js) {
        let mean = j.iter().sum::<f64>() / j.len() as f64;
        let worst = j.iter().copied().fold(1.0, f64::min);
        eprintln!("composition object {id}: mean J {mean:.3}, worst {worst:.3}");
        // The worst frame is where the two cross (0.43 seen under qemu on
        // aarch64); each keeps its id through it.
        assert!(
            mean > 0.7 && worst > 0.25,
            "object {id}: mean J {mean:.3}, worst {worst:.3}: {j:.2?}"
        );
    }
    // Removing object 2 leaves only object 1 in the masks.
    tracker.remove_object(2).unwrap();
    assert_eq!(tracker.object_ids(), &[1]);
    let (f, _) = render(30);
    tracker.step(&f, &mut out).unwrap();
    assert!(out.data.iter().all(|&v| v != 2));
    assert!(out.data.contains(&1));
    // Adding it back from its true mask brings it back.
    let (f, gt) = render(31);
    tracker.set_object_mask(&f, 2, &gt).unwrap();
    let (f, gt) = render(32);
    tracker.step(&f, &mut out).unwrap();
    let p: Vec<bool> = out.data.iter().map(|&v| v == 2).collect();
    let g: Vec<bool> = gt.data.iter().map(|&v| v == 2).collect();
    assert!(jaccard(&p, &g).unwrap() > 0.5);
}

/// The demo's synthetic scene (320x240, three textured shapes that move,
/// cross and part) at the demo's processing size, 512x384: every object
/// stays tracked. (At 256x144 the shapes span about two stride-16 cells
/// and the network loses one of them at once; see docs/engine.md.)
#[test]
fn follows_the_synthetic_scene_at_the_demo_size() {
    if common::emulated() {
        eprintln!("SKIP synthetic-scene test under emulation (the daemon tests cover the scene)");
        return;
    }
    use vosd::source::synthetic::{Scene, SyntheticConfig};
    let scene = Scene::new(&SyntheticConfig {
        width: 320,
        height: 240,
        fps: 12.0,
        seed: 1,
        objects: 3,
        frames: 60,
        noise: 4,
    })
    .unwrap();
    let cfg = EngineConfig {
        size: [512, 384],
        ..config()
    };
    let (mut f, mut m) = (RgbFrame::new(320, 240), LabelMask::new(320, 240));
    scene.render(0, Some(&mut f), Some(&mut m));
    let mut tracker = Tracker::new(&cfg, 320, 240).unwrap();
    tracker.start(&f, &m).unwrap();
    let mut out = LabelMask::new(320, 240);
    let mut js = [Vec::new(), Vec::new(), Vec::new()];
    for k in 1..60u64 {
        scene.render(k, Some(&mut f), Some(&mut m));
        tracker.step(&f, &mut out).unwrap();
        for (id, j) in (1..=3u8).zip(&mut js) {
            let p: Vec<bool> = out.data.iter().map(|&v| v == id).collect();
            let g: Vec<bool> = m.data.iter().map(|&v| v == id).collect();
            j.push(jaccard(&p, &g).unwrap());
        }
    }
    for (id, j) in (1..=3).zip(&js) {
        let mean = j.iter().sum::<f64>() / j.len() as f64;
        let worst = j.iter().copied().fold(1.0, f64::min);
        eprintln!("synthetic object {id}: mean J {mean:.3}, worst {worst:.3}");
        // Measured: mean 0.93-0.98, worst 0.51-0.97 (the worst frame is
        // where two shapes overlap).
        assert!(
            mean > 0.85 && worst > 0.3,
            "object {id}: mean J {mean:.3}, worst {worst:.3}"
        );
    }
}

/// A long stream in constant memory, with a working memory that turns
/// over: bear played forwards and backwards for 3 000 frames, with the camera covered (grey frames) for 15 frames
/// every 500. After each cover the bear is found again, as well at the end
/// as at the start; the memory's size never changes.
#[test]
fn long_stream_redetects_after_occlusion_in_fixed_memory() {
    if common::emulated() {
        eprintln!("SKIP long-stream memory test under emulation (3 000 frames)");
        return;
    }
    let Some(root) = common::davis_root() else {
        eprintln!("SKIP long-stream memory test: ../shared/data/davis2016 not found");
        return;
    };
    let files = common::davis_files(&root, "bear", 82);
    let frames: Vec<RgbFrame> = files.iter().map(|f| load_rgb(&f.0).unwrap()).collect();
    let masks: Vec<LabelMask> = files.iter().map(|f| load_mask(&f.1).unwrap()).collect();
    let (w, h) = (frames[0].width, frames[0].height);
    // A working memory that keeps turning over (5 frames, one every 5, and
    // the previous frame), the case where old frames must leave.
    let mut cfg = EngineConfig {
        size: [256, 144],
        ..config()
    };
    cfg.memory_network.working_memory = 5;
    cfg.memory_network.mem_every = 5;
    cfg.memory_network.keep_previous = true;
    let mut tracker = Tracker::new(&cfg, w, h).unwrap();
    tracker.start(&frames[0], &masks[0]).unwrap();
    let bytes = tracker.memory_bytes();
    let mut grey = RgbFrame::new(w, h);
    grey.data.fill(128);
    let mut out = LabelMask::new(w, h);
    // Mean J over the 10 frames after each cover.
    let mut after_cover = Vec::new();
    let mut js = Vec::new();
    for t in 1..3000usize {
        let k = t % 162;
        let idx = if k < 82 { k } else { 161 - k };
        let covered = t % 500 >= 485;
        let frame = if covered { &grey } else { &frames[idx] };
        tracker.step(frame, &mut out).unwrap();
        if !covered && t % 500 < 10 && t >= 500 {
            let p: Vec<bool> = out.data.iter().map(|&v| v == 1).collect();
            let g: Vec<bool> = masks[idx].data.iter().map(|&v| v == 1).collect();
            js.push(jaccard(&p, &g).unwrap());
            if t % 500 == 9 {
                after_cover.push(js.iter().sum::<f64>() / js.len() as f64);
                js.clear();
            }
        }
    }
    assert_eq!(tracker.memory_bytes(), bytes);
    eprintln!("bear, 3000 frames, J after each of the 5 covers: {after_cover:.3?}");
    assert_eq!(after_cover.len(), 5);
    // Measured: 0.75, 0.82, 0.88, 0.88, 0.89 (with the first frame alone
    // in memory: 0.88, 0.86, 0.89, 0.89, 0.89).
    assert!(
        after_cover.iter().all(|&j| j > 0.6),
        "the bear was not found again after a cover: {after_cover:.3?}"
    );
}
