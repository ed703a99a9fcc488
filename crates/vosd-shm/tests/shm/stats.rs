//! The live statistics block in the segment header (ABI version 2): the
//! writer's counters reach readers field by field, a version-1 segment
//! reports no statistics and still reads, and the bytes sit at the
//! documented offsets for the C and Python clients.

use std::os::fd::OwnedFd;

use crate::support::*;
use rustix::fs::Mode;
use rustix::shm;
use vosd_shm::layout::*;
use vosd_shm::{PipelineCounters, ReadStatus, ShmReader, ShmWriter, WriterState};

/// Opens an existing segment read-write (as a foreign process could).
fn open_rw(name: &str) -> OwnedFd {
    shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("shm_open rw")
}

fn pwrite(fd: &OwnedFd, off: usize, bytes: &[u8]) {
    let n = rustix::io::pwrite(fd, bytes, off as u64).expect("pwrite");
    assert_eq!(n, bytes.len());
}

/// The segment's header as a file read sees it (what a C or Python client maps).
fn header_bytes(name: &str) -> Vec<u8> {
    let all = std::fs::read(format!("/dev/shm{name}")).expect("read segment");
    all[..HEADER_SIZE].to_vec()
}

fn u32_at(h: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(h[off..off + 4].try_into().unwrap())
}

fn u64_at(h: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(h[off..off + 8].try_into().unwrap())
}

#[test]
fn stats_round_trip_every_field() {
    let name = unique_name("stats");
    let mut writer = ShmWriter::create(&config(&name, 24, 16, 3, 4)).expect("create");
    let mut reader = ShmReader::open(&name).expect("open");
    assert_eq!(reader.abi_version(), 2);
    assert_eq!(ABI_VERSION, 2);
    assert_eq!(COMPAT_VERSION, 1, "the stats block is a compatible change");
    // A new segment: nothing captured, the source not reported lost.
    assert_eq!(reader.stats(), Some(PipelineCounters::default()));

    // Every field distinct, beyond 32 bits where the field is 64-bit.
    let s = PipelineCounters {
        frames_captured: 0x1_2345_6789,
        frames_dropped: 0xABCD_0000_0042,
        capture_errors: 77,
        reconnects: u32::MAX,
        camera_lost: true,
    };
    writer.set_stats(&s);
    assert_eq!(reader.stats(), Some(s));
    // The raw bytes at the documented offsets (the C and Python layout).
    let h = header_bytes(&name);
    assert_eq!(u32_at(&h, 8), 2, "abi_version");
    assert_eq!(u32_at(&h, 12), 1, "compat_version");
    assert_eq!(u64_at(&h, 96), s.frames_captured);
    assert_eq!(u64_at(&h, 104), s.frames_dropped);
    assert_eq!(u32_at(&h, 112), s.capture_errors);
    assert_eq!(u32_at(&h, 116), s.reconnects);
    assert_eq!(u32_at(&h, 120), SOURCE_STATE_LOST);
    assert_eq!(u32_at(&h, 124), 0, "reserved stays zero");

    // Updates interleave with publishes without disturbing frames.
    let (mut mask, mut objs) = (vec![0u8; 24 * 16], Vec::new());
    let mut buf = reader.new_frame_buf();
    for seq in 1..=5u64 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
        let s = PipelineCounters {
            frames_captured: seq * 3,
            frames_dropped: seq,
            capture_errors: seq as u32 + 1,
            reconnects: 0,
            camera_lost: false,
        };
        writer.set_stats(&s);
        assert_eq!(reader.stats(), Some(s), "after publish {seq}");
        assert_eq!(
            reader.read_next(&mut buf).expect("read"),
            ReadStatus::Frame { seq, skipped: 0 }
        );
        check_noise_frame(&buf, 4).expect("content");
    }
    assert_eq!(u32_at(&header_bytes(&name), 120), SOURCE_STATE_OK);

    // Final counts after the end marker stay readable.
    writer.finish();
    let last = PipelineCounters {
        frames_captured: 99,
        ..PipelineCounters::default()
    };
    writer.set_stats(&last);
    assert_eq!(reader.writer_state(), WriterState::Ended);
    assert_eq!(reader.stats(), Some(last));
    // A reader opened afterwards sees them too.
    assert_eq!(ShmReader::open(&name).expect("reopen").stats(), Some(last));
}

#[test]
fn version_1_segment_has_no_stats_and_still_reads() {
    let name = unique_name("v1");
    let mut writer = ShmWriter::create(&config(&name, 40, 30, 4, 6)).expect("create");
    let (mut mask, mut objs) = (vec![0u8; 40 * 30], Vec::new());
    publish_noise(&mut writer, 1, &mut mask, &mut objs);
    publish_noise(&mut writer, 2, &mut mask, &mut objs);
    // Turn it into what a version-1 writer leaves: abi_version 1 and the
    // reserved bytes 96..128 zero.
    let fd = open_rw(&name);
    pwrite(&fd, H_ABI_VERSION, &1u32.to_ne_bytes());
    pwrite(&fd, H_FRAMES_CAPTURED, &[0u8; 32]);

    let mut reader = ShmReader::open(&name).expect("a v1 segment opens");
    assert_eq!(reader.abi_version(), 1);
    assert_eq!(reader.stats(), None, "zeros in a v1 header are not counts");
    let mut buf = reader.new_frame_buf();
    assert_eq!(
        reader.read_next(&mut buf).expect("read"),
        ReadStatus::Frame { seq: 2, skipped: 0 }
    );
    check_noise_frame(&buf, 6).expect("content");

    // Even non-zero bytes there are ignored for abi_version 1.
    writer.set_stats(&PipelineCounters {
        frames_captured: 5,
        camera_lost: true,
        ..PipelineCounters::default()
    });
    assert_eq!(reader.stats(), None);
    assert_eq!(ShmReader::open(&name).expect("reopen").stats(), None);

    // Frames keep coming, in order, through the end marker.
    for seq in 3..=6 {
        publish_noise(&mut writer, seq, &mut mask, &mut objs);
    }
    writer.finish();
    for seq in 3..=6 {
        assert_eq!(
            reader.read_next(&mut buf).expect("read"),
            ReadStatus::Frame { seq, skipped: 0 }
        );
        check_noise_frame(&buf, 6).expect("content");
    }
    assert_eq!(reader.read_next(&mut buf).expect("read"), ReadStatus::Ended);
}

#[test]
fn version_2_segments_are_accepted() {
    let name = unique_name("v2");
    let mut writer = ShmWriter::create(&config(&name, 16, 8, 2, 2)).expect("create");
    let (mut mask, mut objs) = (vec![0u8; 16 * 8], Vec::new());
    publish_noise(&mut writer, 1, &mut mask, &mut objs);
    let counters = PipelineCounters {
        frames_captured: 12,
        frames_dropped: 3,
        capture_errors: 1,
        reconnects: 2,
        camera_lost: false,
    };
    writer.set_stats(&counters);
    let fd = open_rw(&name);
    // As written (abi 2, compat 1), and with compat 2: a v2-only segment
    // is still one this (version-2) reader implements.
    for compat in [1u32, 2] {
        pwrite(&fd, H_COMPAT_VERSION, &compat.to_ne_bytes());
        let mut reader = ShmReader::open(&name).expect("abi 2 opens");
        assert_eq!(reader.abi_version(), 2);
        assert_eq!(reader.stats(), Some(counters), "compat {compat}");
        let mut buf = reader.new_frame_buf();
        assert_eq!(
            reader.read_latest(&mut buf).expect("read"),
            ReadStatus::Frame { seq: 1, skipped: 0 }
        );
        check_noise_frame(&buf, 2).expect("content");
    }
}
