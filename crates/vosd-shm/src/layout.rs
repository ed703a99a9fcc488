//! The binary layout of a vosd shared-memory segment, ABI version 2.
//!
//! This module is the single source of truth for offsets and sizes; the
//! C header (`clients/c/vosd_shm.h`), the Python reader
//! (`clients/python/vosd_reader.py`) and `crates/vosd-shm/LAYOUT.md` mirror it, and
//! the compile-time assertions at the bottom of this file pin every offset.
//!
//! A segment is laid out as
//!
//! ```text
//! 0                 header_size        slots_offset
//! | SegmentHeader   | (reserved)       | slot 0 | slot 1 | ... | slot slot_count-1 |
//!                                       <------> slot_stride bytes each
//!
//! slot:  0               objects_offset                    mask_offset
//!        | SlotHeader    | ObjectRecord × max_objects      | mask (width×height u8) | pad |
//!                         <----------> object_stride each
//! ```
//!
//! All integers and floats are in the host's native byte order (little
//! endian on every supported target); the segment never leaves the host.
//! Readers must take geometry, strides and offsets from the header rather
//! than from these constants, so that a later ABI version that only appends
//! fields stays readable (see [`COMPAT_VERSION`]).
//!
//! The file is longer than vosd's usual ~600 lines on purpose: it is the
//! one place that defines the ABI, and its constants, the `#[repr(C)]`
//! records, the geometry checks and their tests are read together when the
//! layout changes.

use core::mem::{offset_of, size_of};

/// The eight magic bytes at offset 0 of every segment.
pub const MAGIC: [u8; 8] = *b"VOSDSHM\0";

/// ABI version written by this crate (the layout described in this module).
///
/// History: 1, the original layout; 2, the live pipeline statistics in the
/// header's formerly reserved bytes 96..128 (readable by version-1 readers).
pub const ABI_VERSION: u32 = 2;

/// Oldest reader ABI version that can read segments written by this crate.
///
/// A reader that implements ABI version `R` accepts a segment whose header
/// says `abi_version = A`, `compat_version = C` if `C <= R` and `C <= A`,
/// and either `R <= A` (the segment is as new as the reader, or newer and
/// compatible) or `A` is an older version the reader still knows (at least
/// [`OLDEST_READABLE_ABI`]; the reader then treats the fields that `A`
/// lacks as absent — e.g. no statistics block before version 2).
/// A writer that only appends fields (in reserved space or at the end of a
/// record, with strides taken from the header) bumps `abi_version` and keeps
/// `compat_version`; any other change sets `compat_version = abi_version`.
pub const COMPAT_VERSION: u32 = 1;

/// Oldest segment ABI version this crate's reader accepts (see
/// [`COMPAT_VERSION`]); older segments give `ShmError::AbiMismatch`.
pub const OLDEST_READABLE_ABI: u32 = 1;

/// First ABI version whose header carries the statistics block
/// ([`SegmentHeader::frames_captured`] .. [`SegmentHeader::source_state`]).
/// In older segments those bytes are reserved zeros: "no statistics".
pub const STATS_ABI_VERSION: u32 = 2;

/// Size in bytes of [`SegmentHeader`] (the header occupies the start of the segment).
pub const HEADER_SIZE: usize = 128;

/// Size in bytes of [`SlotHeader`] (the start of each slot).
pub const SLOT_HEADER_SIZE: usize = 64;

/// Size in bytes of one [`ObjectRecord`] in ABI versions 1 and 2.
pub const OBJECT_RECORD_SIZE: usize = 48;

/// Alignment of slots and of the regions inside a slot (a cache line).
pub const SLOT_ALIGN: usize = 64;

/// Largest `max_objects`: object ids in the `u8` label mask are 1..=255.
pub const MAX_OBJECTS_LIMIT: u32 = 255;

/// [`SegmentHeader::writer_state`]: the writer is still filling in the header.
pub const STATE_INITIALIZING: u32 = 0;
/// [`SegmentHeader::writer_state`]: the writer is publishing frames.
pub const STATE_RUNNING: u32 = 1;
/// [`SegmentHeader::writer_state`]: the writer has finished; no frame will follow.
pub const STATE_ENDED: u32 = 2;

/// [`SegmentHeader::source_state`]: frames are flowing (or capture has not
/// started yet).
pub const SOURCE_STATE_OK: u32 = 0;
/// [`SegmentHeader::source_state`]: the camera is lost and being reopened;
/// no frames arrive until it is back.
pub const SOURCE_STATE_LOST: u32 = 1;

/// The segment header at offset 0 (128 bytes; first cache line static,
/// second line holds the fields the writer updates).
///
/// This type documents the layout and pins its offsets; the crate never
/// reads or writes shared memory through a reference to it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// ABI version of the writer ([`ABI_VERSION`]).
    pub abi_version: u32,
    /// Oldest reader ABI version that can read this segment ([`COMPAT_VERSION`]).
    pub compat_version: u32,
    /// Size of the header in bytes (≥ [`HEADER_SIZE`]).
    pub header_size: u32,
    /// Number of slots in the ring (≥ 1).
    pub slot_count: u32,
    /// Label mask width in pixels.
    pub width: u32,
    /// Label mask height in pixels.
    pub height: u32,
    /// Capacity of each slot's object array (≤ [`MAX_OBJECTS_LIMIT`]).
    pub max_objects: u32,
    /// Bytes between consecutive object records (≥ [`OBJECT_RECORD_SIZE`], multiple of 8).
    pub object_stride: u32,
    /// Offset of the object array from the start of a slot (multiple of 8).
    pub objects_offset: u32,
    /// Offset of the label mask from the start of a slot (multiple of 8).
    pub mask_offset: u32,
    /// Bytes between consecutive slots (multiple of 8).
    pub slot_stride: u64,
    /// Offset of slot 0 from the start of the segment (multiple of 8).
    pub slots_offset: u64,
    /// Size of the whole segment: `slots_offset + slot_count * slot_stride`.
    pub total_size: u64,
    /// Process id of the writer.
    pub writer_pid: u32,
    /// [`STATE_INITIALIZING`], [`STATE_RUNNING`] or [`STATE_ENDED`] (atomic).
    pub writer_state: u32,
    /// Publish sequence number of the newest complete slot; 0 before the
    /// first publish (atomic). Publish `n` (1-based) lives in slot `(n - 1) % slot_count`.
    pub latest_seq: u64,
    /// CLOCK_MONOTONIC nanoseconds when the writer created the segment.
    pub start_ns: u64,
    /// Statistics (ABI ≥ 2, atomic): frames the source delivered.
    pub frames_captured: u64,
    /// Statistics (ABI ≥ 2, atomic): frames dropped by any pipeline stage.
    pub frames_dropped: u64,
    /// Statistics (ABI ≥ 2, atomic): bad frames the source skipped (saturating).
    pub capture_errors: u32,
    /// Statistics (ABI ≥ 2, atomic): failed camera reconnection attempts (saturating).
    pub reconnects: u32,
    /// Statistics (ABI ≥ 2, atomic): [`SOURCE_STATE_OK`] or [`SOURCE_STATE_LOST`].
    pub source_state: u32,
    /// Zero; reserved for later ABI versions.
    pub reserved: u32,
}

/// The start of each slot (64 bytes).
///
/// `seq` is the slot's seqlock: `2n - 1` while publish `n` is being written,
/// `2n` once it is complete, 0 if the slot was never written.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SlotHeader {
    /// Seqlock sequence counter (atomic; see above).
    pub seq: u64,
    /// Camera frame number of this slot's frame.
    pub frame_number: u64,
    /// CLOCK_MONOTONIC nanoseconds when the frame was captured.
    pub capture_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds when the writer published the slot.
    pub publish_ns: u64,
    /// Number of valid object records (≤ `max_objects`).
    pub object_count: u32,
    /// Zero; reserved.
    pub reserved0: u32,
    /// Zero; reserved.
    pub reserved: [u64; 3],
}

/// One object's published state (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ObjectRecord {
    /// Object id (the value of its pixels in the label mask).
    pub id: u32,
    /// 0 visible, 1 occluded, 2 lost.
    pub visibility: u8,
    /// Zero; reserved.
    pub reserved: [u8; 3],
    /// Area in pixels.
    pub area: u32,
    /// Bounding box `[x0, y0, x1, y1]`, x0/y0 inclusive, x1/y1 exclusive.
    pub bbox: [u32; 4],
    /// Centroid `[x, y]` in pixels.
    pub centroid: [f32; 2],
    /// Velocity `[vx, vy]` in pixels per second.
    pub velocity: [f32; 2],
    /// Confidence in 0..=1.
    pub confidence: f32,
}

// Header offsets.
/// Offset of [`SegmentHeader::magic`].
pub const H_MAGIC: usize = offset_of!(SegmentHeader, magic);
/// Offset of [`SegmentHeader::abi_version`].
pub const H_ABI_VERSION: usize = offset_of!(SegmentHeader, abi_version);
/// Offset of [`SegmentHeader::compat_version`].
pub const H_COMPAT_VERSION: usize = offset_of!(SegmentHeader, compat_version);
/// Offset of [`SegmentHeader::header_size`].
pub const H_HEADER_SIZE: usize = offset_of!(SegmentHeader, header_size);
/// Offset of [`SegmentHeader::slot_count`].
pub const H_SLOT_COUNT: usize = offset_of!(SegmentHeader, slot_count);
/// Offset of [`SegmentHeader::width`].
pub const H_WIDTH: usize = offset_of!(SegmentHeader, width);
/// Offset of [`SegmentHeader::height`].
pub const H_HEIGHT: usize = offset_of!(SegmentHeader, height);
/// Offset of [`SegmentHeader::max_objects`].
pub const H_MAX_OBJECTS: usize = offset_of!(SegmentHeader, max_objects);
/// Offset of [`SegmentHeader::object_stride`].
pub const H_OBJECT_STRIDE: usize = offset_of!(SegmentHeader, object_stride);
/// Offset of [`SegmentHeader::objects_offset`].
pub const H_OBJECTS_OFFSET: usize = offset_of!(SegmentHeader, objects_offset);
/// Offset of [`SegmentHeader::mask_offset`].
pub const H_MASK_OFFSET: usize = offset_of!(SegmentHeader, mask_offset);
/// Offset of [`SegmentHeader::slot_stride`].
pub const H_SLOT_STRIDE: usize = offset_of!(SegmentHeader, slot_stride);
/// Offset of [`SegmentHeader::slots_offset`].
pub const H_SLOTS_OFFSET: usize = offset_of!(SegmentHeader, slots_offset);
/// Offset of [`SegmentHeader::total_size`].
pub const H_TOTAL_SIZE: usize = offset_of!(SegmentHeader, total_size);
/// Offset of [`SegmentHeader::writer_pid`].
pub const H_WRITER_PID: usize = offset_of!(SegmentHeader, writer_pid);
/// Offset of [`SegmentHeader::writer_state`].
pub const H_WRITER_STATE: usize = offset_of!(SegmentHeader, writer_state);
/// Offset of [`SegmentHeader::latest_seq`].
pub const H_LATEST_SEQ: usize = offset_of!(SegmentHeader, latest_seq);
/// Offset of [`SegmentHeader::start_ns`].
pub const H_START_NS: usize = offset_of!(SegmentHeader, start_ns);
/// Offset of [`SegmentHeader::frames_captured`] (ABI ≥ 2).
pub const H_FRAMES_CAPTURED: usize = offset_of!(SegmentHeader, frames_captured);
/// Offset of [`SegmentHeader::frames_dropped`] (ABI ≥ 2).
pub const H_FRAMES_DROPPED: usize = offset_of!(SegmentHeader, frames_dropped);
/// Offset of [`SegmentHeader::capture_errors`] (ABI ≥ 2).
pub const H_CAPTURE_ERRORS: usize = offset_of!(SegmentHeader, capture_errors);
/// Offset of [`SegmentHeader::reconnects`] (ABI ≥ 2).
pub const H_RECONNECTS: usize = offset_of!(SegmentHeader, reconnects);
/// Offset of [`SegmentHeader::source_state`] (ABI ≥ 2).
pub const H_SOURCE_STATE: usize = offset_of!(SegmentHeader, source_state);

// Slot header offsets.
/// Offset of [`SlotHeader::seq`] in a slot.
pub const S_SEQ: usize = offset_of!(SlotHeader, seq);
/// Offset of [`SlotHeader::frame_number`] in a slot.
pub const S_FRAME_NUMBER: usize = offset_of!(SlotHeader, frame_number);
/// Offset of [`SlotHeader::capture_ns`] in a slot.
pub const S_CAPTURE_NS: usize = offset_of!(SlotHeader, capture_ns);
/// Offset of [`SlotHeader::publish_ns`] in a slot.
pub const S_PUBLISH_NS: usize = offset_of!(SlotHeader, publish_ns);
/// Offset of [`SlotHeader::object_count`] in a slot.
pub const S_OBJECT_COUNT: usize = offset_of!(SlotHeader, object_count);

// Object record offsets.
/// Offset of [`ObjectRecord::id`] in a record.
pub const O_ID: usize = offset_of!(ObjectRecord, id);
/// Offset of [`ObjectRecord::visibility`] in a record.
pub const O_VISIBILITY: usize = offset_of!(ObjectRecord, visibility);
/// Offset of [`ObjectRecord::area`] in a record.
pub const O_AREA: usize = offset_of!(ObjectRecord, area);
/// Offset of [`ObjectRecord::bbox`] in a record.
pub const O_BBOX: usize = offset_of!(ObjectRecord, bbox);
/// Offset of [`ObjectRecord::centroid`] in a record.
pub const O_CENTROID: usize = offset_of!(ObjectRecord, centroid);
/// Offset of [`ObjectRecord::velocity`] in a record.
pub const O_VELOCITY: usize = offset_of!(ObjectRecord, velocity);
/// Offset of [`ObjectRecord::confidence`] in a record.
pub const O_CONFIDENCE: usize = offset_of!(ObjectRecord, confidence);

// Compile-time checks: these numbers are the ABI. Changing any of them
// requires an ABI version bump and matching changes to the C header, the
// Python reader and crates/vosd-shm/LAYOUT.md.
const _: () = assert!(size_of::<SegmentHeader>() == HEADER_SIZE);
const _: () = assert!(H_MAGIC == 0);
const _: () = assert!(H_ABI_VERSION == 8);
const _: () = assert!(H_COMPAT_VERSION == 12);
const _: () = assert!(H_HEADER_SIZE == 16);
const _: () = assert!(H_SLOT_COUNT == 20);
const _: () = assert!(H_WIDTH == 24);
const _: () = assert!(H_HEIGHT == 28);
const _: () = assert!(H_MAX_OBJECTS == 32);
const _: () = assert!(H_OBJECT_STRIDE == 36);
const _: () = assert!(H_OBJECTS_OFFSET == 40);
const _: () = assert!(H_MASK_OFFSET == 44);
const _: () = assert!(H_SLOT_STRIDE == 48);
const _: () = assert!(H_SLOTS_OFFSET == 56);
const _: () = assert!(H_TOTAL_SIZE == 64);
const _: () = assert!(H_WRITER_PID == 72);
const _: () = assert!(H_WRITER_STATE == 76);
const _: () = assert!(H_LATEST_SEQ == 80);
const _: () = assert!(H_START_NS == 88);
// ABI 2: the statistics block in the formerly reserved bytes 96..128.
const _: () = assert!(H_FRAMES_CAPTURED == 96);
const _: () = assert!(H_FRAMES_DROPPED == 104);
const _: () = assert!(H_CAPTURE_ERRORS == 112);
const _: () = assert!(H_RECONNECTS == 116);
const _: () = assert!(H_SOURCE_STATE == 120);
const _: () = assert!(offset_of!(SegmentHeader, reserved) == 124);

const _: () = assert!(size_of::<SlotHeader>() == SLOT_HEADER_SIZE);
const _: () = assert!(S_SEQ == 0);
const _: () = assert!(S_FRAME_NUMBER == 8);
const _: () = assert!(S_CAPTURE_NS == 16);
const _: () = assert!(S_PUBLISH_NS == 24);
const _: () = assert!(S_OBJECT_COUNT == 32);
const _: () = assert!(offset_of!(SlotHeader, reserved0) == 36);
const _: () = assert!(offset_of!(SlotHeader, reserved) == 40);

const _: () = assert!(size_of::<ObjectRecord>() == OBJECT_RECORD_SIZE);
const _: () = assert!(O_ID == 0);
const _: () = assert!(O_VISIBILITY == 4);
const _: () = assert!(offset_of!(ObjectRecord, reserved) == 5);
const _: () = assert!(O_AREA == 8);
const _: () = assert!(O_BBOX == 12);
const _: () = assert!(O_CENTROID == 28);
const _: () = assert!(O_VELOCITY == 36);
const _: () = assert!(O_CONFIDENCE == 44);

// The word-wise copies need 8-byte alignment of every region.
const _: () = assert!(HEADER_SIZE % SLOT_ALIGN == 0);
const _: () = assert!(SLOT_HEADER_SIZE % 8 == 0);
const _: () = assert!(OBJECT_RECORD_SIZE % 8 == 0);
// The writer updates the dynamic fields in the header's second cache line.
const _: () = assert!(H_WRITER_STATE >= 64 && H_LATEST_SEQ >= 64 && H_LATEST_SEQ % 8 == 0);
// The statistics are single aligned atomics in the second cache line too.
const _: () = assert!(H_FRAMES_CAPTURED >= 64 && H_FRAMES_CAPTURED % 8 == 0);
const _: () = assert!(H_FRAMES_DROPPED % 8 == 0);
const _: () = assert!(H_CAPTURE_ERRORS % 4 == 0 && H_RECONNECTS % 4 == 0);
const _: () = assert!(H_SOURCE_STATE % 4 == 0 && H_SOURCE_STATE + 4 <= HEADER_SIZE);

/// Whether this crate's reader (ABI [`ABI_VERSION`]) can read a segment
/// whose header says `abi_version = abi`, `compat_version = compat` (the
/// rule at [`COMPAT_VERSION`]).
pub(crate) fn reader_accepts(abi: u32, compat: u32) -> bool {
    compat <= ABI_VERSION && compat <= abi && abi >= OLDEST_READABLE_ABI
}

/// Rounds `v` up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) fn round_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// Why a header does not describe a usable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// Consistent header, but the segment is smaller than it says.
    Truncated {
        /// Bytes the header describes.
        needed: u64,
    },
    /// Inconsistent header.
    Invalid(String),
}

/// Validated geometry of a segment: everything needed to address slots.
///
/// Built by the writer from its configuration, or by the reader from a
/// header after checking every field against the segment's real size, so
/// that every address computed from it lies inside the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub width: u32,
    pub height: u32,
    pub max_objects: u32,
    pub slot_count: u32,
    pub object_stride: usize,
    pub objects_offset: usize,
    pub mask_offset: usize,
    pub mask_len: usize,
    pub slot_stride: usize,
    pub slots_offset: usize,
    pub total_size: usize,
}

impl Geometry {
    /// The geometry vosd writes (ABI versions 1 and 2) for the given parameters (unchecked
    /// limits besides arithmetic overflow; the writer checks its config).
    pub fn new(width: u32, height: u32, slot_count: u32, max_objects: u32) -> Option<Self> {
        let mask_len = u64::from(width).checked_mul(u64::from(height))?;
        let objects_offset = SLOT_HEADER_SIZE as u64;
        let object_stride = OBJECT_RECORD_SIZE as u64;
        let objects_end =
            objects_offset.checked_add(object_stride.checked_mul(u64::from(max_objects))?)?;
        let mask_offset = round_up(objects_end, SLOT_ALIGN as u64)?;
        let slot_stride = round_up(mask_offset.checked_add(mask_len)?, SLOT_ALIGN as u64)?;
        let slots_offset = HEADER_SIZE as u64;
        let total_size =
            slots_offset.checked_add(slot_stride.checked_mul(u64::from(slot_count))?)?;
        Some(Self {
            width,
            height,
            max_objects,
            slot_count,
            object_stride: usize::try_from(object_stride).ok()?,
            objects_offset: usize::try_from(objects_offset).ok()?,
            mask_offset: usize::try_from(mask_offset).ok()?,
            mask_len: usize::try_from(mask_len).ok()?,
            slot_stride: usize::try_from(slot_stride).ok()?,
            slots_offset: usize::try_from(slots_offset).ok()?,
            total_size: usize::try_from(total_size).ok()?,
        })
    }

    /// Checks a header (its first [`HEADER_SIZE`] bytes) against the size of
    /// the segment. Returns a description of the first problem found.
    ///
    /// Magic and ABI version are checked by the caller; this checks that
    /// every region the header describes is aligned, non-overlapping and
    /// inside `file_size` bytes.
    pub fn from_header(h: &[u8; HEADER_SIZE], file_size: u64) -> Result<Self, LayoutError> {
        let geom = Self::check_header(h).map_err(LayoutError::Invalid)?;
        if geom.total_size as u64 > file_size {
            return Err(LayoutError::Truncated {
                needed: geom.total_size as u64,
            });
        }
        Ok(geom)
    }

    /// Checks a header's internal consistency (not against the file size).
    fn check_header(h: &[u8; HEADER_SIZE]) -> Result<Self, String> {
        let header_size = u64::from(rd_u32(h, H_HEADER_SIZE));
        let slot_count = rd_u32(h, H_SLOT_COUNT);
        let width = rd_u32(h, H_WIDTH);
        let height = rd_u32(h, H_HEIGHT);
        let max_objects = rd_u32(h, H_MAX_OBJECTS);
        let object_stride = u64::from(rd_u32(h, H_OBJECT_STRIDE));
        let objects_offset = u64::from(rd_u32(h, H_OBJECTS_OFFSET));
        let mask_offset = u64::from(rd_u32(h, H_MASK_OFFSET));
        let slot_stride = rd_u64(h, H_SLOT_STRIDE);
        let slots_offset = rd_u64(h, H_SLOTS_OFFSET);
        let total_size = rd_u64(h, H_TOTAL_SIZE);

        if header_size < HEADER_SIZE as u64 {
            return Err(format!(
                "header_size {header_size} is smaller than {HEADER_SIZE}"
            ));
        }
        if slot_count == 0 {
            return Err("slot_count is 0".into());
        }
        if width == 0 || height == 0 {
            return Err(format!("mask geometry {width}x{height} is empty"));
        }
        if max_objects > MAX_OBJECTS_LIMIT {
            return Err(format!(
                "max_objects {max_objects} exceeds {MAX_OBJECTS_LIMIT}"
            ));
        }
        if object_stride < OBJECT_RECORD_SIZE as u64 || object_stride % 8 != 0 {
            return Err(format!(
                "object_stride {object_stride} is not a multiple of 8 of at least {OBJECT_RECORD_SIZE}"
            ));
        }
        if objects_offset < SLOT_HEADER_SIZE as u64 || objects_offset % 8 != 0 {
            return Err(format!(
                "objects_offset {objects_offset} is not a multiple of 8 of at least {SLOT_HEADER_SIZE}"
            ));
        }
        let mask_len = u64::from(width) * u64::from(height);
        let objects_end = object_stride * u64::from(max_objects) + objects_offset;
        if mask_offset % 8 != 0 || mask_offset < objects_end {
            return Err(format!(
                "mask_offset {mask_offset} is unaligned or overlaps the object array (ends at {objects_end})"
            ));
        }
        // The mask region is copied in whole 8-byte words.
        let mask_end = round_up(mask_offset + mask_len, 8).ok_or("mask size overflows")?;
        if slot_stride % 8 != 0 || slot_stride < mask_end {
            return Err(format!(
                "slot_stride {slot_stride} is unaligned or smaller than the slot content ({mask_end} bytes)"
            ));
        }
        if slots_offset % 8 != 0 || slots_offset < header_size {
            return Err(format!(
                "slots_offset {slots_offset} is unaligned or inside the header ({header_size} bytes)"
            ));
        }
        let expected_total = slot_stride
            .checked_mul(u64::from(slot_count))
            .and_then(|s| s.checked_add(slots_offset))
            .ok_or("slot ring size overflows")?;
        if total_size != expected_total {
            return Err(format!(
                "total_size {total_size} does not match slots_offset + slot_count * slot_stride = {expected_total}"
            ));
        }
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| "size exceeds the address space");
        Ok(Self {
            width,
            height,
            max_objects,
            slot_count,
            object_stride: to_usize(object_stride)?,
            objects_offset: to_usize(objects_offset)?,
            mask_offset: to_usize(mask_offset)?,
            mask_len: to_usize(mask_len)?,
            slot_stride: to_usize(slot_stride)?,
            slots_offset: to_usize(slots_offset)?,
            total_size: to_usize(total_size)?,
        })
    }

    /// Offset of slot `index` (must be `< slot_count`) from the segment start.
    pub fn slot_offset(&self, index: usize) -> usize {
        self.slots_offset + index * self.slot_stride
    }

    /// Slot index of publish sequence number `seq` (≥ 1).
    pub fn slot_of(&self, seq: u64) -> usize {
        // `slot_count` ≥ 1 and the result is < slot_count ≤ u32::MAX.
        (seq.wrapping_sub(1) % u64::from(self.slot_count)) as usize
    }

    /// Bytes of a slot holding the header and `count` object records.
    pub fn meta_len(&self, count: usize) -> usize {
        self.objects_offset + count * self.object_stride
    }
}

/// Reads a native-endian u32 at `off` (caller guarantees bounds).
pub(crate) fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

/// Reads a native-endian u64 at `off` (caller guarantees bounds).
pub(crate) fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

/// Reads a native-endian f32 at `off` (caller guarantees bounds).
pub(crate) fn rd_f32(b: &[u8], off: usize) -> f32 {
    f32::from_bits(rd_u32(b, off))
}

/// Writes a native-endian u32 at `off` (caller guarantees bounds).
pub(crate) fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian u64 at `off` (caller guarantees bounds).
pub(crate) fn wr_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian f32 at `off` (caller guarantees bounds).
pub(crate) fn wr_f32(b: &mut [u8], off: usize, v: f32) {
    wr_u32(b, off, v.to_bits());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(g: &Geometry) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[..8].copy_from_slice(&MAGIC);
        wr_u32(&mut h, H_ABI_VERSION, ABI_VERSION);
        wr_u32(&mut h, H_COMPAT_VERSION, COMPAT_VERSION);
        wr_u32(&mut h, H_HEADER_SIZE, HEADER_SIZE as u32);
        wr_u32(&mut h, H_SLOT_COUNT, g.slot_count);
        wr_u32(&mut h, H_WIDTH, g.width);
        wr_u32(&mut h, H_HEIGHT, g.height);
        wr_u32(&mut h, H_MAX_OBJECTS, g.max_objects);
        wr_u32(&mut h, H_OBJECT_STRIDE, g.object_stride as u32);
        wr_u32(&mut h, H_OBJECTS_OFFSET, g.objects_offset as u32);
        wr_u32(&mut h, H_MASK_OFFSET, g.mask_offset as u32);
        wr_u64(&mut h, H_SLOT_STRIDE, g.slot_stride as u64);
        wr_u64(&mut h, H_SLOTS_OFFSET, g.slots_offset as u64);
        wr_u64(&mut h, H_TOTAL_SIZE, g.total_size as u64);
        h
    }

    #[test]
    fn v1_geometry_is_aligned_and_round_trips() {
        let g = Geometry::new(641, 479, 4, 16).expect("geometry");
        assert_eq!(g.objects_offset, 64);
        assert_eq!(g.mask_offset % SLOT_ALIGN, 0);
        assert!(g.mask_offset >= 64 + 16 * 48);
        assert_eq!(g.slot_stride % SLOT_ALIGN, 0);
        assert!(g.slot_stride >= g.mask_offset + 641 * 479);
        assert_eq!(g.total_size, 128 + 4 * g.slot_stride);
        let h = header_bytes(&g);
        let back = Geometry::from_header(&h, g.total_size as u64).expect("valid");
        assert_eq!(back, g);
        assert_eq!(
            Geometry::from_header(&h, g.total_size as u64 - 1),
            Err(LayoutError::Truncated {
                needed: g.total_size as u64
            })
        );
    }

    #[test]
    fn lying_headers_are_rejected() {
        let g = Geometry::new(64, 48, 3, 8).expect("geometry");
        let size = g.total_size as u64;
        let bad = |off: usize, v: u64, wide: bool, what: &str| {
            let mut h = header_bytes(&g);
            if wide {
                wr_u64(&mut h, off, v);
            } else {
                wr_u32(&mut h, off, v as u32);
            }
            let e = Geometry::from_header(&h, size).expect_err(what);
            assert!(
                matches!(e, LayoutError::Invalid(ref r) if !r.is_empty()),
                "{what}: {e:?}"
            );
        };
        bad(H_SLOT_COUNT, 0, false, "no slots");
        bad(H_SLOT_COUNT, 4, false, "more slots than the file holds");
        bad(H_WIDTH, 0, false, "empty mask");
        bad(H_MAX_OBJECTS, 256, false, "too many objects");
        bad(H_OBJECT_STRIDE, 40, false, "short records");
        bad(H_OBJECT_STRIDE, 52, false, "unaligned records");
        bad(H_MASK_OFFSET, 8, false, "mask over objects");
        bad(H_SLOT_STRIDE, 64, true, "short slots");
        bad(H_SLOTS_OFFSET, 0, true, "slots over header");
        bad(H_TOTAL_SIZE, u64::MAX, true, "total size lies");
        bad(H_SLOT_STRIDE, u64::MAX / 2, true, "overflow");
        bad(H_HEADER_SIZE, 64, false, "short header");
    }

    #[test]
    fn abi_versions_accepted_by_this_reader() {
        // The own version, an older one it knows, a newer compatible one.
        assert!(reader_accepts(ABI_VERSION, COMPAT_VERSION));
        assert!(reader_accepts(1, 1));
        assert!(reader_accepts(2, 1));
        assert!(reader_accepts(7, 1));
        assert!(reader_accepts(7, 2));
        // Newer and incompatible; older than anything it knows; incoherent.
        assert!(!reader_accepts(3, 3));
        assert!(!reader_accepts(0, 0));
        assert!(!reader_accepts(1, 2));
    }

    #[test]
    fn slot_index_wraps() {
        let g = Geometry::new(8, 8, 3, 1).expect("geometry");
        assert_eq!(g.slot_of(1), 0);
        assert_eq!(g.slot_of(3), 2);
        assert_eq!(g.slot_of(4), 0);
        assert_eq!(g.slot_of(0), (u64::MAX % 3) as usize);
    }
}
