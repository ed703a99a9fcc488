//! Readers facing foreign, damaged or lying segments get the documented
//! errors (never a panic or an out-of-bounds read), and cannot write.

use std::os::unix::process::ExitStatusExt;

use crate::support::*;
use rustix::fs::Mode;
use rustix::shm;
use vosd_shm::layout::*;
use vosd_shm::{ReadStatus, ShmError, ShmReader, ShmWriter};

/// Opens an existing segment read-write (as a foreign process could).
fn open_rw(name: &str) -> std::os::fd::OwnedFd {
    shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("shm_open rw")
}

fn pwrite(fd: &std::os::fd::OwnedFd, off: u64, bytes: &[u8]) {
    let n = rustix::io::pwrite(fd, bytes, off).expect("pwrite");
    assert_eq!(n, bytes.len());
}

/// Creates a segment holding exactly `bytes`.
fn make_segment(name: &str, bytes: &[u8]) -> Unlink {
    let guard = Unlink(name.to_owned());
    let fd = shm::open(
        name,
        shm::OFlags::CREATE | shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )
    .expect("shm_open");
    rustix::fs::ftruncate(&fd, bytes.len() as u64).expect("ftruncate");
    if !bytes.is_empty() {
        pwrite(&fd, 0, bytes);
    }
    guard
}

/// The bytes of a valid, freshly written segment with a few publishes.
fn valid_segment_bytes(w: u32, h: u32, slots: u32, max_objects: u32, frames: u64) -> Vec<u8> {
    let name = unique_name("src");
    let mut writer = ShmWriter::create(&config(&name, w, h, slots, max_objects)).expect("create");
    let mut mask = vec![0u8; (w * h) as usize];
    for seq in 1..=frames {
        let f = seq + FRAME_OFFSET;
        noise_mask(f, &mut mask);
        let objs: Vec<_> = (0..noise_count(f, max_objects))
            .map(|k| noise_object(f, k))
            .collect();
        writer
            .publish(&vosd_shm::SlotData {
                frame_number: f,
                capture_ns: noise_capture(f),
                objects: &objs,
                mask: &mask,
            })
            .expect("publish");
    }
    std::fs::read(format!("/dev/shm{name}")).expect("read segment")
}

#[test]
fn abi_version_mismatch_is_reported() {
    let name = unique_name("abi");
    let _writer = ShmWriter::create(&config(&name, 8, 8, 2, 2)).expect("create");
    let fd = open_rw(&name);

    // A segment of an incompatible (newer) ABI.
    pwrite(&fd, H_ABI_VERSION as u64, &3u32.to_ne_bytes());
    pwrite(&fd, H_COMPAT_VERSION as u64, &3u32.to_ne_bytes());
    let err = ShmReader::open(&name).expect_err("abi 3");
    assert!(
        matches!(
            err,
            ShmError::AbiMismatch {
                found: 3,
                compat: 3,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("ABI version 3"),
        "{msg}"
    );

    // A newer ABI that declares itself readable by version-1 readers opens.
    pwrite(&fd, H_COMPAT_VERSION as u64, &1u32.to_ne_bytes());
    let reader = ShmReader::open(&name).expect("compatible newer ABI");
    assert_eq!(reader.abi_version(), 3);
    assert!(
        reader.stats().is_some(),
        "a newer ABI keeps the stats block"
    );

    // An older ABI that this reader knows (version 1) opens.
    pwrite(&fd, H_ABI_VERSION as u64, &1u32.to_ne_bytes());
    let reader = ShmReader::open(&name).expect("abi 1");
    assert_eq!(reader.abi_version(), 1);
    assert_eq!(reader.stats(), None);

    // A segment that claims to need a newer reader than its own version.
    pwrite(&fd, H_COMPAT_VERSION as u64, &2u32.to_ne_bytes());
    let err = ShmReader::open(&name).expect_err("abi 1, compat 2");
    assert!(
        matches!(
            err,
            ShmError::AbiMismatch {
                found: 1,
                compat: 2,
                ..
            }
        ),
        "{err}"
    );

    // An older ABI than any this reader knows is refused.
    pwrite(&fd, H_ABI_VERSION as u64, &0u32.to_ne_bytes());
    pwrite(&fd, H_COMPAT_VERSION as u64, &0u32.to_ne_bytes());
    let err = ShmReader::open(&name).expect_err("abi 0");
    assert!(
        matches!(err, ShmError::AbiMismatch { found: 0, .. }),
        "{err}"
    );
}

#[test]
fn truncated_segments_are_reported() {
    let good = valid_segment_bytes(24, 16, 3, 4, 2);

    let name = unique_name("trunc");
    let _g = make_segment(&name, &good[..good.len() - 1]);
    let err = ShmReader::open(&name).expect_err("short ring");
    match &err {
        ShmError::Truncated {
            size, needed, what, ..
        } => {
            assert_eq!(*size as usize, good.len() - 1);
            assert_eq!(*needed as usize, good.len());
            assert_eq!(*what, "slot ring");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&name), "{err}");

    let name = unique_name("trunc");
    let _g = make_segment(&name, &good[..100]);
    let err = ShmReader::open(&name).expect_err("short header");
    assert!(
        matches!(
            err,
            ShmError::Truncated {
                needed: 128,
                what: "header",
                ..
            }
        ),
        "{err}"
    );

    // Empty: the writer has just created it.
    let name = unique_name("trunc");
    let _g = make_segment(&name, &[]);
    let err = ShmReader::open(&name).expect_err("empty");
    assert!(matches!(err, ShmError::NotReady { .. }), "{err}");

    // A longer file than the header describes is fine.
    let name = unique_name("trunc");
    let mut longer = good.clone();
    longer.resize(good.len() + 4096, 0xEE);
    let _g = make_segment(&name, &longer);
    let mut reader = ShmReader::open(&name).expect("longer file");
    let mut buf = reader.new_frame_buf();
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Frame { seq: 2, skipped: 0 }
    );
    check_noise_frame(&buf, 4).expect("content");
}

#[test]
fn foreign_and_unready_segments_are_reported() {
    let name = unique_name("magic");
    let garbage: Vec<u8> = (0..4096u64).map(|i| mix(i) as u8).collect();
    let _g = make_segment(&name, &garbage);
    let err = ShmReader::open(&name).expect_err("garbage");
    assert!(matches!(err, ShmError::BadMagic { .. }), "{err}");
    assert!(err.to_string().contains("not a vosd segment"));

    // All zero: created and sized, header not yet written.
    let name = unique_name("magic");
    let _g = make_segment(&name, &[0u8; 4096]);
    assert!(matches!(
        ShmReader::open(&name),
        Err(ShmError::NotReady { .. })
    ));

    // Header written but state still "initialising".
    let mut seg = valid_segment_bytes(8, 8, 2, 1, 0);
    seg[H_WRITER_STATE..H_WRITER_STATE + 4].copy_from_slice(&STATE_INITIALIZING.to_ne_bytes());
    let name = unique_name("magic");
    let _g = make_segment(&name, &seg);
    assert!(matches!(
        ShmReader::open(&name),
        Err(ShmError::NotReady { .. })
    ));

    // Inconsistent layout.
    let mut seg = valid_segment_bytes(8, 8, 2, 1, 0);
    seg[H_MASK_OFFSET..H_MASK_OFFSET + 4].copy_from_slice(&8u32.to_ne_bytes());
    let name = unique_name("magic");
    let _g = make_segment(&name, &seg);
    let err = ShmReader::open(&name).expect_err("layout");
    assert!(matches!(err, ShmError::BadLayout { .. }), "{err}");
    assert!(err.to_string().contains("mask_offset"), "{err}");

    // Invalid names.
    assert!(matches!(
        ShmReader::open("no-slash"),
        Err(ShmError::InvalidName { .. })
    ));
}

#[test]
fn corrupt_slot_content_is_an_error_not_a_panic() {
    let mut seg = valid_segment_bytes(8, 8, 2, 2, 1);
    let slots = u64::from_ne_bytes(
        seg[H_SLOTS_OFFSET..H_SLOTS_OFFSET + 8]
            .try_into()
            .expect("8"),
    );
    let count_at = slots as usize + 32;
    seg[count_at..count_at + 4].copy_from_slice(&9u32.to_ne_bytes());
    let name = unique_name("corrupt");
    let _g = make_segment(&name, &seg);
    let mut reader = ShmReader::open(&name).expect("open");
    let mut buf = reader.new_frame_buf();
    let err = reader.read_next(&mut buf).expect_err("corrupt");
    assert!(matches!(err, ShmError::Corrupt { seq: 1, .. }), "{err}");
    // The reader moves on instead of failing forever.
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Empty);
}

#[test]
fn lying_headers_never_crash_the_reader() {
    let good = valid_segment_bytes(20, 10, 3, 3, 5);
    let fields32 = [
        H_HEADER_SIZE,
        H_SLOT_COUNT,
        H_WIDTH,
        H_HEIGHT,
        H_MAX_OBJECTS,
        H_OBJECT_STRIDE,
        H_OBJECTS_OFFSET,
        H_MASK_OFFSET,
        H_WRITER_STATE,
    ];
    let fields64 = [H_SLOT_STRIDE, H_SLOTS_OFFSET, H_TOTAL_SIZE, H_LATEST_SEQ];
    let interesting = |r: u64| -> u64 {
        match r % 8 {
            0 => 0,
            1 => r >> 1,
            2 => (r >> 40) & 0xFFF,
            3 => u64::from(u32::MAX),
            4 => u64::MAX,
            5 => (r >> 20) & 0xFF,
            6 => 8 * ((r >> 30) & 0x3F),
            _ => 1,
        }
    };
    let mut opened = 0;
    for i in 0..300u64 {
        let mut seg = good.clone();
        let mut r = mix(i);
        for _ in 0..1 + (r % 3) {
            r = mix(r);
            if r % 3 == 0 {
                let off = fields64[(r >> 8) as usize % fields64.len()];
                seg[off..off + 8].copy_from_slice(&interesting(mix(r)).to_ne_bytes());
            } else {
                let off = fields32[(r >> 8) as usize % fields32.len()];
                seg[off..off + 4].copy_from_slice(&(interesting(mix(r)) as u32).to_ne_bytes());
            }
        }
        // Sometimes also scribble over slot sequence words and object counts.
        if r % 5 == 0 {
            for s in 0..3 {
                let at = 128 + s * (good.len() - 128) / 3;
                seg[at..at + 8].copy_from_slice(&(mix(r + s as u64) % 16).to_ne_bytes());
                seg[at + 32..at + 36].copy_from_slice(&((r >> s) as u32 % 300).to_ne_bytes());
            }
        }
        let len = match r % 4 {
            0 => seg.len() / 2,
            1 => seg.len() + 64,
            _ => seg.len(),
        };
        seg.resize(len.max(1), 0);
        let name = unique_name("lie");
        let _g = make_segment(&name, &seg);
        if let Ok(mut reader) = ShmReader::open(&name) {
            opened += 1;
            let mut buf = reader.new_frame_buf();
            for _ in 0..3 {
                let _ = reader.read_next(&mut buf);
                let _ = reader.read_latest(&mut buf);
            }
        }
    }
    assert!(
        opened > 0,
        "the mutations should leave some segments openable"
    );
}

/// Child role: map a segment read-only and try to write to it.
#[test]
fn child_role_write_through_reader() {
    let Ok(name) = std::env::var("VOSD_TEST_WRITE_THROUGH") else {
        return;
    };
    let reader = ShmReader::open(&name).expect("open");
    println!("VOSD:mapped");
    // SAFETY: deliberately invalid: the page is PROT_READ, so this faults.
    unsafe { reader.as_ptr().cast_mut().write_volatile(0x55) };
    println!("VOSD:wrote");
}

#[test]
fn reader_mapping_is_read_only() {
    let name = unique_name("ro");
    let _writer = ShmWriter::create(&config(&name, 64, 64, 2, 2)).expect("create");
    let reader = ShmReader::open(&name).expect("open");

    // 1. The kernel's view of the mapping: readable, shared, not writable.
    let start = reader.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let line = maps
        .lines()
        .find(|l| {
            l.split('-')
                .next()
                .and_then(|a| usize::from_str_radix(a, 16).ok())
                == Some(start)
        })
        .expect("mapping listed");
    let perms = line.split_whitespace().nth(1).expect("perms");
    assert_eq!(perms, "r--s", "{line}");

    // 2. It cannot even be made writable: the descriptor was opened O_RDONLY.
    // SAFETY: only the protection of our own mapping is changed (and it fails).
    let err = unsafe {
        rustix::mm::mprotect(
            reader.as_ptr().cast_mut().cast(),
            reader.mapped_len(),
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
        )
    }
    .expect_err("mprotect to writable must fail");
    assert_eq!(err, rustix::io::Errno::ACCESS);

    // 3. A write through it kills the process with SIGSEGV.
    let out = crate::support::target_command(std::env::current_exe().expect("exe"))
        .args([
            "errors::child_role_write_through_reader",
            "--exact",
            "--nocapture",
        ])
        .env("VOSD_TEST_WRITE_THROUGH", &name)
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("VOSD:mapped"), "{stdout}");
    assert!(!stdout.contains("VOSD:wrote"), "{stdout}");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{:?}", out.status);
}
