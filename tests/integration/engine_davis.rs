//! The engine on real DAVIS 2016 frames: single and multiple objects.

use crate::common;

use vosd_engine::config::EngineConfig;
use vosd_engine::engine::Tracker;
use vosd_engine::frame::LabelMask;
use vosd_engine::imageio::{load_mask, load_rgb};
use vosd_eval::metrics::jaccard;

fn small_config() -> EngineConfig {
    EngineConfig {
        size: [512, 288],
        ..Default::default()
    }
}

#[test]
fn tracks_bear_with_high_iou() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let files = common::davis_files(&root, "bear", 20);
    let frame0 = load_rgb(&files[0].0).unwrap();
    let mask0 = load_mask(&files[0].1).unwrap();
    let mut tracker = Tracker::new(&small_config(), frame0.width, frame0.height).unwrap();
    tracker.start(&frame0, &mask0).unwrap();
    assert_eq!(tracker.object_ids(), &[1]);
    let mut out = LabelMask::new(frame0.width, frame0.height);
    let mut js = Vec::new();
    for (img, ann) in &files[1..] {
        tracker.step(&load_rgb(img).unwrap(), &mut out).unwrap();
        let gt = load_mask(ann).unwrap();
        let p: Vec<bool> = out.data.iter().map(|&v| v == 1).collect();
        let g: Vec<bool> = gt.data.iter().map(|&v| v == 1).collect();
        js.push(jaccard(&p, &g).unwrap());
    }
    let mean = js.iter().sum::<f64>() / js.len() as f64;
    eprintln!("bear, 19 frames: mean J {mean:.3}");
    assert!(mean > 0.8, "mean J {mean:.3} on bear is too low");
    assert!(
        js.iter().all(|&j| j > 0.6),
        "some frame lost the bear: {js:?}"
    );
}

#[test]
fn tracks_two_objects_at_once() {
    let Some(root) = common::davis_root() else {
        return;
    };
    // Split the first-frame bear mask into a left part (id 2) and a right part (id 5).
    let files = common::davis_files(&root, "bear", 10);
    let frame0 = load_rgb(&files[0].0).unwrap();
    let mut mask0 = load_mask(&files[0].1).unwrap();
    let w = mask0.width;
    let xs: Vec<usize> = mask0
        .data
        .iter()
        .enumerate()
        .filter(|(_, &v)| v == 1)
        .map(|(i, _)| i % w)
        .collect();
    let split = (xs.iter().min().unwrap() + xs.iter().max().unwrap()) / 2;
    for (i, v) in mask0.data.iter_mut().enumerate() {
        if *v == 1 {
            *v = if i % w < split { 2 } else { 5 };
        }
    }
    let mut tracker = Tracker::new(&small_config(), frame0.width, frame0.height).unwrap();
    tracker.start(&frame0, &mask0).unwrap();
    assert_eq!(tracker.object_ids(), &[2, 5]);
    let mut out = LabelMask::new(frame0.width, frame0.height);
    for (img, ann) in &files[1..] {
        tracker.step(&load_rgb(img).unwrap(), &mut out).unwrap();
        let gt = load_mask(ann).unwrap();
        // Both parts are present, nothing else, and together they cover the bear.
        assert!(out.data.iter().all(|&v| v == 0 || v == 2 || v == 5));
        assert!(
            out.area(2) > 1000 && out.area(5) > 1000,
            "areas {} {}",
            out.area(2),
            out.area(5)
        );
        let p: Vec<bool> = out.data.iter().map(|&v| v != 0).collect();
        let g: Vec<bool> = gt.data.iter().map(|&v| v == 1).collect();
        let j = jaccard(&p, &g).unwrap();
        assert!(j > 0.7, "union J {j:.3}");
        // The left part stays left of the right part.
        let cx = |id: u8| {
            let v: Vec<usize> = out
                .data
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == id)
                .map(|(i, _)| i % w)
                .collect();
            v.iter().sum::<usize>() as f64 / v.len() as f64
        };
        assert!(cx(2) < cx(5));
    }
}

#[test]
fn bad_first_masks_are_errors() {
    let Some(root) = common::davis_root() else {
        return;
    };
    let files = common::davis_files(&root, "bear", 1);
    let frame0 = load_rgb(&files[0].0).unwrap();
    let mut tracker = Tracker::new(&small_config(), frame0.width, frame0.height).unwrap();
    let empty = LabelMask::new(frame0.width, frame0.height);
    let e = tracker.start(&frame0, &empty).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let small = LabelMask::new(10, 10);
    let e = tracker.start(&frame0, &small).unwrap_err().to_string();
    assert!(e.contains("10x10"), "{e}");
    let mut out = LabelMask::new(frame0.width, frame0.height);
    let e = tracker.step(&frame0, &mut out).unwrap_err().to_string();
    assert!(e.contains("start"), "{e}");
    let mut many = LabelMask::new(frame0.width, frame0.height);
    for (i, v) in many.data.iter_mut().enumerate() {
        *v = (i % 12) as u8 + 1;
    }
    let e = tracker.start(&frame0, &many).unwrap_err().to_string();
    assert!(e.contains("max_objects"), "{e}");
}
