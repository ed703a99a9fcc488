//! `ShmWriter::publish` and the reader's copies do not allocate (checked
//! with a counting global allocator, in a test binary of its own).

#[path = "shm/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use support::*;
use vosd_shm::{ObjectState, ReadStatus, ShmReader, ShmWriter, SlotData};

struct Counting;

thread_local! {
    /// Allocations made by this thread while counting is on (None: off).
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

#[test]
fn publish_and_read_do_not_allocate() {
    // The counter itself works.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);

    let name = unique_name("alloc");
    let mut writer = ShmWriter::create(&config(&name, 64, 48, 3, 8)).expect("create");
    let mut reader = ShmReader::open(&name).expect("open");
    let mut buf = reader.new_frame_buf();
    let mut mask = vec![0u8; 64 * 48];
    let objects: Vec<ObjectState> = (0..8).map(|k| noise_object(7, k)).collect();

    // Warm up once (nothing here should allocate either, but be fair).
    writer
        .publish(&SlotData {
            frame_number: 0,
            capture_ns: 0,
            objects: &objects,
            mask: &mask,
        })
        .expect("publish");
    assert!(matches!(
        reader.read_next(&mut buf).expect("read"),
        ReadStatus::Frame { .. }
    ));

    let n = allocations_during(|| {
        for i in 1..=500u64 {
            mask[(i as usize) % (64 * 48)] = i as u8;
            writer
                .publish(&SlotData {
                    frame_number: i,
                    capture_ns: i,
                    objects: &objects[..(i % 9) as usize],
                    mask: &mask,
                })
                .expect("publish");
            if i % 2 == 0 {
                let _ = reader.read_next(&mut buf).expect("read");
                let _ = reader.read_latest(&mut buf).expect("read");
            }
        }
    });
    assert_eq!(n, 0, "publish/read allocated {n} times");
    assert_eq!(buf.frame_number(), 500);
}
