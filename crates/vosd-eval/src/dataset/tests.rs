//! Fixtures in each layout, written from synthetic frames with known masks:
//! sparse annotations, an object that appears mid-sequence, a grey + alpha
//! PNG, BMP frames, and corrupt or missing files.

use std::path::{Path, PathBuf};

use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_engine::imageio::{save_jpeg, save_mask};

use super::*;
use crate::davis::Predictions;

const W: usize = 32;
const H: usize = 24;

/// Object 1: a square moving right by 1 px a frame; object 2 (from frame
/// `late`): a bar at the bottom.
fn truth(t: usize, late: usize) -> LabelMask {
    let mut m = LabelMask::new(W, H);
    for y in 4..12 {
        for x in 2 + t..10 + t {
            m.data[y * W + x] = 1;
        }
    }
    if t >= late {
        for y in 16..20 {
            for x in 4..28 {
                m.data[y * W + x] = 2;
            }
        }
    }
    m
}

fn frame_of(m: &LabelMask) -> RgbFrame {
    let mut f = RgbFrame::new(W, H);
    for (i, &v) in m.data.iter().enumerate() {
        f.data[i * 3..i * 3 + 3].copy_from_slice(&[40 + 100 * v, 60, 200 - 80 * v]);
    }
    f
}

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    p.to_path_buf()
}

fn save_bmp(path: &Path, f: &RgbFrame) {
    image::save_buffer_with_format(
        path,
        &f.data,
        W as u32,
        H as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Bmp,
    )
    .unwrap();
}

/// A grey + alpha PNG: grey 255 on the object, alpha 255 everywhere.
fn save_grey_alpha(path: &Path, m: &LabelMask, id: u8) {
    let la: Vec<u8> = m
        .data
        .iter()
        .flat_map(|&v| [if v == id { 255 } else { 0 }, 255])
        .collect();
    image::save_buffer(path, &la, W as u32, H as u32, image::ExtendedColorType::La8).unwrap();
}

/// Perfect predictions of `seq` as DIR/SEQ/NNNNN.png.
fn perfect_results(dir: &Path, seq: &VideoSequence, late: usize) {
    let d = mkdir(&dir.join(&seq.name));
    for t in 0..seq.frames.len() {
        save_mask(&d.join(seq.mask_name(t)), &truth(t, late)).unwrap();
    }
}

fn youtube_vos(root: &Path, n: usize, late: usize) {
    let jpg = mkdir(&root.join("JPEGImages/v1"));
    let ann = mkdir(&root.join("Annotations/v1"));
    for t in 0..n {
        let m = truth(t, late);
        save_jpeg(&jpg.join(format!("{t:05}.jpg")), &frame_of(&m), 95).unwrap();
        if t % 5 == 0 {
            save_mask(&ann.join(format!("{t:05}.png")), &m).unwrap();
        }
    }
    std::fs::write(
        root.join("meta.json"),
        r#"{"videos": {"v1": {"objects": {
            "1": {"category": "box", "frames": ["00000", "00005", "00010"]},
            "2": {"category": "bar", "frames": ["00005", "00010"]}}}}}"#,
    )
    .unwrap();
}

#[test]
fn youtube_vos_sparse_with_a_late_object() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    youtube_vos(root, 12, 5);
    assert_eq!(Dataset::detect(root).unwrap(), DatasetKind::YoutubeVos);
    let ds = Dataset::open(root, None).unwrap();
    assert_eq!(ds.sequence_names(None).unwrap(), vec!["v1"]);
    let seq = ds.load("v1").unwrap();
    assert_eq!(seq.frames.len(), 12);
    let annotated: Vec<usize> = (0..12).filter(|&t| seq.annotations[t].is_some()).collect();
    assert_eq!(annotated, vec![0, 5, 10]);
    assert_eq!(
        seq.objects,
        vec![
            ObjectStart {
                id: 1,
                first_frame: 0
            },
            ObjectStart {
                id: 2,
                first_frame: 5
            }
        ]
    );
    assert_eq!((seq.width, seq.height), (W, H));
    // Perfect predictions: J = F = 1, T = 0 (pure translation); object 1
    // is scored on frames 5 and 10, object 2 on frame 10 only.
    let res = tempfile::tempdir().unwrap();
    perfect_results(res.path(), &seq, 5);
    let r = evaluate_annotated(&ds, &["v1".into()], Predictions::Results(res.path())).unwrap();
    let o = &r.overall.scores;
    assert_eq!((o.j_mean, o.f_mean), (1.0, 1.0));
    assert!(o.t_mean.abs() < 1e-9, "{}", o.t_mean);
    // A prediction that never finds object 2: its J on frame 10 is 0.
    let d = res.path().join("v1");
    for t in 5..12 {
        let mut m = truth(t, 5);
        m.data.iter_mut().filter(|v| **v == 2).for_each(|v| *v = 0);
        save_mask(&d.join(format!("{t:05}.png")), &m).unwrap();
    }
    let r = evaluate_annotated(&ds, &["v1".into()], Predictions::Results(res.path())).unwrap();
    assert_eq!(r.overall.scores.j_mean, 0.5);
    // A missing prediction is an error naming the file.
    std::fs::remove_file(d.join("00007.png")).unwrap();
    let e = evaluate_annotated(&ds, &["v1".into()], Predictions::Results(res.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("00007.png"), "{e}");
}

#[test]
fn youtube_vos_bad_files_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    youtube_vos(root, 6, 5);
    let ds = Dataset::open(root, Some(DatasetKind::YoutubeVos)).unwrap();
    // Corrupt annotation.
    let bad = root.join("Annotations/v1/00005.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("00005.png"), "{e}");
    save_mask(&bad, &truth(5, 5)).unwrap();
    // Corrupt meta.json.
    std::fs::write(root.join("meta.json"), b"{\"videos\": ").unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("meta.json"), "{e}");
    // meta.json listing an object that no annotation has.
    std::fs::write(
        root.join("meta.json"),
        r#"{"videos": {"v1": {"objects": {"3": {"frames": ["00000"]}}}}}"#,
    )
    .unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("object 3"), "{e}");
    // A video meta.json does not know.
    std::fs::write(root.join("meta.json"), r#"{"videos": {}}"#).unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("meta.json") && e.contains("v1"), "{e}");
    // Missing annotation folder.
    std::fs::remove_file(root.join("meta.json")).unwrap();
    std::fs::remove_dir_all(root.join("Annotations/v1")).unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("Annotations/v1"), "{e}");
}

#[test]
fn segtrack_per_object_folders_bmp_and_grey_alpha() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let frames = mkdir(&root.join("JPEGImages/bmx"));
    let o1 = mkdir(&root.join("GroundTruth/bmx/1"));
    let o2 = mkdir(&root.join("GroundTruth/bmx/2"));
    for t in 0..5 {
        let m = truth(t, 2);
        save_bmp(&frames.join(format!("bmx_{t:05}.bmp")), &frame_of(&m));
        // Object 1 as a grey + alpha PNG, object 2 (empty until frame 2) as BMP.
        save_grey_alpha(&o1.join(format!("bmx_{t:05}.png")), &m, 1);
        let bar: Vec<u8> = m
            .data
            .iter()
            .flat_map(|&v| if v == 2 { [255; 3] } else { [0; 3] })
            .collect();
        image::save_buffer_with_format(
            o2.join(format!("bmx_{t:05}.bmp")),
            &bar,
            W as u32,
            H as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Bmp,
        )
        .unwrap();
    }
    assert_eq!(Dataset::detect(root).unwrap(), DatasetKind::SegTrack);
    let ds = Dataset::open(root, None).unwrap();
    let seq = ds.load("bmx").unwrap();
    for t in 0..5 {
        assert_eq!(
            seq.annotations[t].as_ref().unwrap(),
            &truth(t, 2),
            "frame {t}"
        );
    }
    assert_eq!(
        seq.objects[1],
        ObjectStart {
            id: 2,
            first_frame: 2
        }
    );
    let res = tempfile::tempdir().unwrap();
    perfect_results(res.path(), &seq, 2);
    let r = evaluate_annotated(&ds, &["bmx".into()], Predictions::Results(res.path())).unwrap();
    assert_eq!(r.overall.scores.j_mean, 1.0);
    assert_eq!(r.sequences["bmx"].objects, 2);
    // One object's mask missing for a frame the other has: error naming it.
    std::fs::remove_file(o2.join("bmx_00003.bmp")).unwrap();
    let e = format!("{:#}", ds.load("bmx").unwrap_err());
    assert!(e.contains("bmx_00003") && e.contains("object 2"), "{e}");
    // A corrupt BMP mask.
    std::fs::write(o2.join("bmx_00003.bmp"), b"BM garbage").unwrap();
    let e = format!("{:#}", ds.load("bmx").unwrap_err());
    assert!(e.contains("bmx_00003.bmp"), "{e}");
}

#[test]
fn folder_sparse_masks_late_object_and_layout_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = mkdir(&tmp.path().join("clip"));
    let frames = mkdir(&root.join("frames"));
    let masks = mkdir(&root.join("masks"));
    for t in 0..6 {
        let m = truth(t, 3);
        save_jpeg(&frames.join(format!("f{t:03}.jpg")), &frame_of(&m), 95).unwrap();
    }
    // Sparse: frame 0 (object 1, grey + alpha PNG: binary, so id 1) and
    // frame 3 (both objects, palette PNG).
    save_grey_alpha(&masks.join("f000.png"), &truth(0, 3), 1);
    save_mask(&masks.join("f003.png"), &truth(3, 3)).unwrap();
    assert_eq!(Dataset::detect(&root).unwrap(), DatasetKind::Folder);
    let ds = Dataset::open(&root, Some(DatasetKind::Folder)).unwrap();
    assert_eq!(ds.sequence_names(None).unwrap(), vec!["clip"]);
    let seq = ds.load("clip").unwrap();
    assert_eq!(seq.annotations[0].as_ref().unwrap(), &truth(0, 3));
    assert!(seq.annotations[1].is_none());
    assert_eq!(
        seq.objects,
        vec![
            ObjectStart {
                id: 1,
                first_frame: 0
            },
            ObjectStart {
                id: 2,
                first_frame: 3
            }
        ]
    );
    assert_eq!(seq.mask_name(4), "f004.png");
    // The parent holds it as one of several sequences.
    let parent = Dataset::open(tmp.path(), None).unwrap();
    assert_eq!(parent.kind(), DatasetKind::Folder);
    assert_eq!(parent.sequence_names(None).unwrap(), vec!["clip"]);
    assert!(parent.sequence_names(Some("train")).is_err());
    // A mask of another size names both files.
    let mut small = LabelMask::new(W - 1, H);
    small.data[0] = 1;
    save_mask(&masks.join("f003.png"), &small).unwrap();
    let e = format!("{:#}", ds.load("clip").unwrap_err());
    assert!(e.contains("f003.png") && e.contains("f000.png"), "{e}");
    // No mask at all.
    std::fs::remove_file(masks.join("f003.png")).unwrap();
    std::fs::remove_file(masks.join("f000.png")).unwrap();
    let e = format!("{:#}", ds.load("clip").unwrap_err());
    assert!(e.contains("no annotated frame"), "{e}");
}

#[test]
fn detection_errors_name_the_expected_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Dataset::open(tmp.path(), None).unwrap_err().to_string();
    for k in [
        "davis",
        "youtube-vos",
        "segtrack",
        "folder",
        "GroundTruth",
        "meta.json",
    ] {
        assert!(e.contains(k), "{e}");
    }
    mkdir(&tmp.path().join("JPEGImages/v1"));
    mkdir(&tmp.path().join("Annotations/v1"));
    let e = Dataset::open(tmp.path(), Some(DatasetKind::Davis))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a davis dataset") && e.contains("480p"),
        "{e}"
    );
    // An empty frame folder is an error naming it.
    let ds = Dataset::open(tmp.path(), None).unwrap();
    let e = format!("{:#}", ds.load("v1").unwrap_err());
    assert!(e.contains("JPEGImages/v1"), "{e}");
    assert!("youtube".parse::<DatasetKind>().is_err());
    assert_eq!(
        "segtrack".parse::<DatasetKind>().unwrap(),
        DatasetKind::SegTrack
    );
}

#[test]
fn davis_through_the_common_type() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let jpg = mkdir(&root.join("JPEGImages/480p/bear"));
    let ann = mkdir(&root.join("Annotations/480p/bear"));
    for t in 0..4 {
        let m = truth(t, 0);
        save_jpeg(&jpg.join(format!("{t:05}.jpg")), &frame_of(&m), 95).unwrap();
        save_mask(&ann.join(format!("{t:05}.png")), &m).unwrap();
    }
    let ds = Dataset::open(root, None).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Davis);
    assert!(ds.davis().is_some());
    let seq = ds.load("bear").unwrap();
    assert_eq!(seq.objects.len(), 2);
    assert!(seq.objects.iter().all(|o| o.first_frame == 0));
    assert!(seq.annotations.iter().all(Option::is_some));
}

/// The unsupervised protocol scores the union of the predicted objects
/// against the union of the annotated ones, whatever their ids: masks
/// that cover the objects exactly under other ids score J = 1 there, and
/// less per object; a missed object costs. Only DAVIS has it.
#[test]
fn unsupervised_scores_the_union_whatever_the_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let jpg = mkdir(&root.join("JPEGImages/480p/seq"));
    let ann = mkdir(&root.join("Annotations/480p/seq"));
    let (swapped, half) = (
        mkdir(&root.join("swapped/seq")),
        mkdir(&root.join("half/seq")),
    );
    for t in 0..5 {
        let m = truth(t, 0);
        save_jpeg(&jpg.join(format!("{t:05}.jpg")), &frame_of(&m), 95).unwrap();
        save_mask(&ann.join(format!("{t:05}.png")), &m).unwrap();
        // The same pixels under ids 7 and 9.
        let mut s = m.clone();
        s.data.iter_mut().for_each(|v| *v = [0, 9, 7][*v as usize]);
        save_mask(&swapped.join(format!("{t:05}.png")), &s).unwrap();
        // Object 2 missed.
        let mut h = m.clone();
        h.data.iter_mut().for_each(|v| *v = u8::from(*v == 1) * 5);
        save_mask(&half.join(format!("{t:05}.png")), &h).unwrap();
    }
    let ds = Dataset::open(root, None).unwrap();
    let names = vec!["seq".to_string()];
    let (sw, hf) = (root.join("swapped"), root.join("half"));
    let j = |source: Predictions<'_>| ds.evaluate(&names, source).unwrap().overall.scores.j_mean;
    let union = j(Predictions::UnsupervisedResults(&sw));
    assert!((union - 1.0).abs() < 1e-9, "{union}");
    let per_object = j(Predictions::Results(&sw));
    assert!(per_object < 0.5, "{per_object}");
    let missed = j(Predictions::UnsupervisedResults(&hf));
    // Object 1 is 8x8 = 64 pixels of the 64 + 96 of the union.
    assert!((missed - 64.0 / 160.0).abs() < 1e-6, "{missed}");
    // Another layout has no unsupervised protocol.
    let yt = tempfile::tempdir().unwrap();
    youtube_vos(yt.path(), 3, 0);
    let ds = Dataset::open(yt.path(), None).unwrap();
    let e = format!(
        "{:#}",
        ds.evaluate(
            &["v1".to_string()],
            Predictions::UnsupervisedResults(yt.path())
        )
        .unwrap_err()
    );
    assert!(e.contains("unsupervised protocol is DAVIS"), "{e}");
}
