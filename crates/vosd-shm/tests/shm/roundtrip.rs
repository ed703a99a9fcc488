//! Writer → reader in one process: content, ordering, skipping, end marker,
//! permissions, naming and lifecycle.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::*;
use vosd_shm::{
    monotonic_ns, GroupSpec, ObjectState, PublishConfig, PublishOptions, ReadStatus, ShmError,
    ShmReader, ShmWriter, SlotData, Visibility, WriterState,
};

#[test]
fn round_trip_in_process() {
    let name = unique_name("rt");
    let mut writer = ShmWriter::create(&config(&name, 37, 11, 4, 5)).expect("create");
    assert_eq!(writer.published(), 0);
    let mut reader = ShmReader::open(&name).expect("open");
    assert_eq!((reader.width(), reader.height()), (37, 11));
    assert_eq!((reader.max_objects(), reader.slot_count()), (5, 4));
    assert_eq!(reader.abi_version(), vosd_shm::layout::ABI_VERSION);
    assert_eq!(reader.writer_pid(), std::process::id());
    assert!(reader.writer_alive());
    assert_eq!(reader.writer_state(), WriterState::Running);
    let mut buf = reader.new_frame_buf();
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Empty
    );
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Empty);

    // A realistic frame: states computed from the mask.
    let (w, h) = (37usize, 11usize);
    let mut mask = vec![0u8; w * h];
    for y in 2..6 {
        for x in 3..9 {
            mask[y * w + x] = 1;
        }
    }
    mask[10 * w + 36] = 2;
    let mut a = ObjectState::from_mask(&mask, w, h, 1);
    a.velocity = [1.5, -2.0];
    a.confidence = 0.75;
    let mut b = ObjectState::from_mask(&mask, w, h, 2);
    b.visibility = Visibility::Occluded;
    let lost = ObjectState {
        id: 3,
        visibility: Visibility::Lost,
        ..ObjectState::default()
    };
    let objects = [a, b, lost];
    let capture = monotonic_ns();
    let seq = writer
        .publish(&SlotData {
            frame_number: 42,
            capture_ns: capture,
            objects: &objects,
            mask: &mask,
        })
        .expect("publish");
    assert_eq!(seq, 1);

    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Frame { seq: 1, skipped: 0 }
    );
    assert_eq!(buf.seq(), 1);
    assert_eq!(buf.frame_number(), 42);
    assert_eq!(buf.capture_ns(), capture);
    assert!(buf.publish_ns() >= capture);
    assert_eq!(buf.latency_ns(), buf.publish_ns() - capture);
    assert_eq!(buf.objects(), &objects);
    assert_eq!(buf.mask(), &mask[..]);
    assert_eq!(buf.label_at(3, 2), Some(1));
    assert_eq!(buf.label_at(36, 10), Some(2));
    assert_eq!(buf.label_at(37, 0), None);
    assert_eq!(buf.objects()[0].area, 24);
    assert_eq!((buf.objects()[0].bbox.x0, buf.objects()[0].bbox.x1), (3, 9));
    // Nothing new: Empty, buffer untouched.
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Empty
    );
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Empty);
    assert_eq!(buf.frame_number(), 42);

    // Zero objects is fine too.
    writer
        .publish(&SlotData {
            frame_number: 43,
            capture_ns: capture,
            objects: &[],
            mask: &mask,
        })
        .expect("publish");
    assert_eq!(
        reader.read_next(&mut buf).expect("read"),
        ReadStatus::Frame { seq: 2, skipped: 0 }
    );
    assert!(buf.objects().is_empty());
    assert_eq!(buf.frame_number(), 43);
}

#[test]
fn read_next_in_order_and_skips_when_lapped() {
    let name = unique_name("order");
    let mut writer = ShmWriter::create(&config(&name, 13, 7, 4, 3)).expect("create");
    let mut reader = ShmReader::open(&name).expect("open");
    let mut buf = reader.new_frame_buf();
    let mut mask = vec![0u8; 13 * 7];
    let mut objs = Vec::new();

    // The first read_next waits for the first publish, then frames come in order.
    for seq in 1..=3 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
    }
    for seq in 1..=3 {
        assert_eq!(
            reader.read_next(&mut buf).expect("read"),
            ReadStatus::Frame { seq, skipped: 0 }
        );
        check_noise_frame(&buf, 3).expect("content");
    }
    // Lap the reader: publishes 4..=13, the ring (4 slots) keeps 10..=13.
    for seq in 4..=13 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
    }
    assert_eq!(
        reader.read_next(&mut buf).expect("read"),
        ReadStatus::Frame {
            seq: 10,
            skipped: 6
        }
    );
    check_noise_frame(&buf, 3).expect("content");
    for seq in 11..=13 {
        assert_eq!(
            reader.read_next(&mut buf).expect("read"),
            ReadStatus::Frame { seq, skipped: 0 }
        );
        check_noise_frame(&buf, 3).expect("content");
    }
    // read_latest jumps to the newest and reports the gap.
    for seq in 14..=20 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
    }
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Frame {
            seq: 20,
            skipped: 6
        }
    );
    check_noise_frame(&buf, 3).expect("content");

    // A reader opened mid-stream starts at the newest frame.
    let mut late = ShmReader::open(&name).expect("open");
    let mut late_buf = late.new_frame_buf();
    assert_eq!(
        late.read_next(&mut late_buf).expect("read"),
        ReadStatus::Frame {
            seq: 20,
            skipped: 0
        }
    );

    // End marker: remaining frames first, then Ended.
    publish_noise(&mut writer, 21, &mut mask, &mut objs);
    writer.finish();
    assert_eq!(reader.writer_state(), WriterState::Ended);
    assert_eq!(
        reader.read_next(&mut buf).expect("read"),
        ReadStatus::Frame {
            seq: 21,
            skipped: 0
        }
    );
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Ended);
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Ended
    );
    assert_eq!(buf.seq(), 21);
    assert!(matches!(
        writer.publish(&SlotData {
            frame_number: 0,
            capture_ns: 0,
            objects: &[],
            mask: &mask
        }),
        Err(ShmError::Finished)
    ));
}

#[test]
fn publish_rejects_bad_input() {
    let name = unique_name("badin");
    let mut writer = ShmWriter::create(&config(&name, 8, 8, 2, 2)).expect("create");
    let mask = vec![0u8; 64];
    let err = writer
        .publish(&SlotData {
            frame_number: 0,
            capture_ns: 0,
            objects: &[],
            mask: &mask[..63],
        })
        .expect_err("short mask");
    assert!(
        matches!(
            err,
            ShmError::MaskSize {
                expected: 64,
                got: 63
            }
        ),
        "{err}"
    );
    let three = [ObjectState::default(); 3];
    let err = writer
        .publish(&SlotData {
            frame_number: 0,
            capture_ns: 0,
            objects: &three,
            mask: &mask,
        })
        .expect_err("too many objects");
    assert!(
        matches!(err, ShmError::TooManyObjects { max: 2, got: 3 }),
        "{err}"
    );
    assert_eq!(writer.published(), 0);
}

#[test]
fn invalid_configs_are_rejected() {
    let name = unique_name("cfg");
    for (cfg, what) in [
        (PublishConfig::new("no-slash", 8, 8), "name"),
        (PublishConfig::new("/a/b", 8, 8), "name"),
        (PublishConfig::new(name.as_str(), 0, 8), "width"),
        (config(&name, 8, 8, 1, 4), "slots"),
        (config(&name, 8, 8, 4, 0), "max_objects"),
        (config(&name, 8, 8, 4, 256), "max_objects"),
        (
            PublishOptions {
                mode: 0o4660,
                ..PublishOptions::new(name.as_str())
            }
            .to_config(8, 8),
            "mode",
        ),
    ] {
        let err = ShmWriter::create(&cfg).expect_err(what);
        assert!(
            matches!(
                err,
                ShmError::InvalidName { .. } | ShmError::InvalidConfig { .. }
            ),
            "{what}: {err}"
        );
    }
    assert!(!Path::new(&format!("/dev/shm{name}")).exists());
}

#[test]
fn mode_and_group_are_applied() {
    let name = unique_name("perm");
    let gid = rustix::process::getegid().as_raw();
    let cfg = PublishOptions {
        mode: 0o640,
        group: Some(GroupSpec::Gid(gid)),
        ..PublishOptions::new(name.as_str())
    }
    .to_config(8, 8);
    let writer = ShmWriter::create(&cfg).expect("create");
    let meta = std::fs::metadata(format!("/dev/shm{name}")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.len() as usize, writer.size_bytes());
    drop(writer);

    // A mode the umask would normally filter is applied exactly.
    let cfg = PublishOptions {
        mode: 0o666,
        ..PublishOptions::new(name.as_str())
    }
    .to_config(8, 8);
    let _writer = ShmWriter::create(&cfg).expect("create");
    let meta = std::fs::metadata(format!("/dev/shm{name}")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o666);
}

#[test]
fn missing_group_is_a_clear_error() {
    let name = unique_name("grp");
    let cfg = PublishOptions {
        group: Some(GroupSpec::Name("vosd-no-such-group-81c2".into())),
        ..PublishOptions::new(name.as_str())
    }
    .to_config(8, 8);
    let err = ShmWriter::create(&cfg).expect_err("missing group");
    assert!(matches!(err, ShmError::GroupNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("vosd-no-such-group-81c2") && msg.contains(&name),
        "{msg}"
    );
    assert!(!Path::new(&format!("/dev/shm{name}")).exists());
}

/// The `[publish]` table's TOML form (the `serde` feature, which the
/// crate's test build turns on).
#[test]
fn options_parse_from_toml() {
    let options: PublishOptions = toml::from_str(
        r#"
        name = "/vosd-cam0"
        mode = 0o660
        group = "video"
        "#,
    )
    .expect("toml");
    let cfg = options.to_config(640, 480);
    assert_eq!((cfg.width, cfg.height), (640, 480));
    assert_eq!(cfg.options.slots, 4);
    assert_eq!(cfg.options.max_objects, 16);
    assert_eq!(cfg.options.mode, 0o660);
    assert_eq!(cfg.options.group, Some(GroupSpec::Name("video".into())));
    let options: PublishOptions = toml::from_str("name = \"/x\"\ngroup = 44\n").expect("toml");
    assert_eq!(options.group, Some(GroupSpec::Gid(44)));
}

#[test]
fn lifecycle_unlink_in_use_and_stale() {
    let name = unique_name("life");
    let writer = ShmWriter::create(&PublishConfig::new(name.as_str(), 8, 8)).expect("create");
    // A second live writer of the same name is refused.
    let err = ShmWriter::create(&PublishConfig::new(name.as_str(), 8, 8)).expect_err("in use");
    assert!(
        matches!(err, ShmError::InUse { pid, .. } if pid == std::process::id()),
        "{err}"
    );

    // A reader that has it mapped keeps reading after the writer is gone.
    let mut reader = ShmReader::open(&name).expect("open");
    drop(writer);
    assert!(matches!(
        ShmReader::open(&name),
        Err(ShmError::NotFound { .. })
    ));
    let mut buf = reader.new_frame_buf();
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Ended);
    assert_eq!(reader.writer_state(), WriterState::Ended);

    // A stale object (garbage left behind) is replaced by a new writer.
    {
        let fd = rustix::shm::open(
            name.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::RDWR,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("shm_open");
        rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
    }
    let _guard = Unlink(name.clone());
    let writer = ShmWriter::create(&PublishConfig::new(name.as_str(), 8, 8)).expect("replace");
    assert_eq!(
        writer.size_bytes(),
        ShmReader::open(&name).expect("open").mapped_len()
    );

    // Not found: a clear message naming the segment.
    let err = ShmReader::open("/vosd-test-does-not-exist-7731").expect_err("missing");
    assert!(matches!(err, ShmError::NotFound { .. }));
    assert!(err.to_string().contains("/vosd-test-does-not-exist-7731"));
}

#[test]
fn many_publishes_do_not_drift() {
    // A long run keeps working across many ring wraps, and read_latest
    // always returns the newest publish.
    let name = unique_name("wrap");
    let mut writer = ShmWriter::create(&config(&name, 16, 4, 3, 4)).expect("create");
    let mut reader = ShmReader::open(&name).expect("open");
    let mut buf = reader.new_frame_buf();
    let mut mask = vec![0u8; 64];
    let mut objs = Vec::new();
    for seq in 1..=1000u64 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
        if seq % 7 == 0 {
            match reader.read_latest(&mut buf).expect("read") {
                ReadStatus::Frame { seq: got, .. } => assert_eq!(got, seq),
                other => panic!("unexpected {other:?}"),
            }
            check_noise_frame(&buf, 4).expect("content");
        }
    }
    assert_eq!(reader.latest_seq(), 1000);
    assert_eq!(reader.torn_retries(), 0);
}

#[test]
fn documented_size_example_holds() {
    // crates/vosd-shm/LAYOUT.md: 640×480, 4 slots, 16 objects → 1 232 256 bytes.
    let name = unique_name("size");
    let writer = ShmWriter::create(&PublishConfig::new(name.as_str(), 640, 480)).expect("create");
    assert_eq!((writer.slot_count(), writer.max_objects()), (4, 16));
    assert_eq!(writer.size_bytes(), 1_232_256);
}
