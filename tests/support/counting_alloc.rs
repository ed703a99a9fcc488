//! A counting global allocator for the allocation tests (each is a test
//! binary of its own, since a binary has one global allocator): while
//! [`counting`] is on, every allocation and reallocation is counted, on
//! every thread; while [`counting_this_thread`] is on, those of the
//! calling thread (work that stays on one thread, which the test
//! harness's own threads must not disturb).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted.
    static COUNTING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether an allocation now is counted.
fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) || COUNTING_HERE.try_with(Cell::get).unwrap_or(false)
}

struct Counting;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Turns counting on or off.
pub fn counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

/// Turns counting of the calling thread's allocations on or off.
pub fn counting_this_thread(on: bool) {
    COUNTING_HERE.with(|c| c.set(on));
}

/// The allocations counted so far, resetting the count to zero.
pub fn take_count() -> u64 {
    ALLOCS.swap(0, Ordering::SeqCst)
}

/// Asserts that the counter sees an allocation (a test of the test).
pub fn assert_counter_works() {
    counting(true);
    drop(std::hint::black_box(vec![0u8; 64]));
    counting(false);
    assert!(take_count() >= 1, "the counting allocator counts nothing");
}
