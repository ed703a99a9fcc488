//! The reader side: maps a segment read-only and copies frames out of it
//! with the seqlock protocol.

use core::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;

use super::error::ShmError;
use super::frame_buf::FrameBuf;
use super::layout::*;
use super::sys::{self, Mapping};
use super::types::{BBox, ObjectState, PipelineCounters, Visibility};

/// Copy attempts before a read gives up with [`ShmError::Starved`].
const MAX_ATTEMPTS: u32 = 10_000;

/// The writer's state as published in the segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    /// The writer is still filling in the header.
    Initializing,
    /// The writer is publishing frames (or crashed without ending: compare
    /// with [`ShmReader::writer_alive`]).
    Running,
    /// The writer published its end marker; no frame will follow.
    Ended,
    /// A value this reader does not know.
    Unknown(u32),
}

impl WriterState {
    fn from_raw(v: u32) -> Self {
        match v {
            STATE_INITIALIZING => Self::Initializing,
            STATE_RUNNING => Self::Running,
            STATE_ENDED => Self::Ended,
            other => Self::Unknown(other),
        }
    }
}

/// Outcome of a successful read call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// A consistent copy of publish `seq` is in the buffer. `skipped` counts
    /// the frames between the reader's previous position and `seq` that it
    /// never returned (see [`ShmReader::last_seq`]).
    Frame {
        /// Publish sequence number (1-based) of the frame copied.
        seq: u64,
        /// Frames passed over since the previous read.
        skipped: u64,
    },
    /// Nothing newer than the last frame read (or nothing published yet);
    /// the buffer is unchanged. Poll again later.
    Empty,
    /// The writer has ended and every frame up to its last was returned
    /// (or passed over); the buffer is unchanged.
    Ended,
}

/// Outcome of one copy attempt.
enum Copy {
    Done,
    Missed,
    Corrupt(&'static str),
}

/// A read-only view of a segment.
///
/// The mapping is `PROT_READ` of a descriptor opened `O_RDONLY`: the reader
/// cannot modify the segment, so a reader killed at any point (even in the
/// middle of a copy) affects neither the writer nor other readers. Every
/// address it touches was checked against the segment size when it opened,
/// whatever the header says.
#[derive(Debug)]
pub struct ShmReader {
    name: String,
    map: Mapping,
    geom: Geometry,
    abi_version: u32,
    writer_pid: u32,
    start_ns: u64,
    /// The reader's position: sequence number of the last frame returned;
    /// before the first read, one less than the newest frame at open.
    last_seq: u64,
    /// Slot header and object records of the slot being copied.
    scratch: Vec<u8>,
    retries: u64,
}

impl ShmReader {
    /// Opens segment `name` (e.g. `"/vosd-cam0"`) read-only and validates
    /// its magic, ABI version and layout against its real size.
    ///
    /// Segments of this reader's ABI version, of an older version it knows
    /// (down to [`OLDEST_READABLE_ABI`]) and of newer compatible versions
    /// open; see [`COMPAT_VERSION`] for the rule.
    ///
    /// Errors: [`ShmError::NotFound`], [`ShmError::NotReady`] (the writer is
    /// starting; retry), [`ShmError::Truncated`], [`ShmError::BadMagic`],
    /// [`ShmError::AbiMismatch`], [`ShmError::BadLayout`], [`ShmError::Os`].
    pub fn open(name: &str) -> Result<ShmReader, ShmError> {
        sys::check_name(name).map_err(|reason| ShmError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let os = |op: &str, e: Errno| ShmError::Os {
            name: name.to_owned(),
            op: op.to_owned(),
            source: e.into(),
        };
        let fd = match shm::open(name, shm::OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(ShmError::NotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => return Err(os("shm_open (read-only)", e)),
        };
        let size = rustix::fs::fstat(&fd).map_err(|e| os("fstat", e))?.st_size;
        let size = u64::try_from(size).unwrap_or(0);
        if size == 0 {
            return Err(ShmError::NotReady {
                name: name.to_owned(),
            });
        }
        if size < HEADER_SIZE as u64 {
            return Err(ShmError::Truncated {
                name: name.to_owned(),
                size,
                needed: HEADER_SIZE as u64,
                what: "header",
            });
        }
        let len = usize::try_from(size).map_err(|_| ShmError::BadLayout {
            name: name.to_owned(),
            reason: format!("{size} bytes exceed the address space"),
        })?;
        let map = Mapping::map(&fd, len, false).map_err(|e| os("mmap (read-only)", e))?;
        drop(fd); // the mapping keeps the object alive

        // State first, with acquire: a non-initialising state means the
        // header below is complete.
        // SAFETY: H_WRITER_STATE + 4 ≤ HEADER_SIZE ≤ len; relaxed load only.
        let state = unsafe { map.u32_at(H_WRITER_STATE) }.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let mut h = [0u8; HEADER_SIZE];
        // SAFETY: HEADER_SIZE ≤ len; relaxed loads only.
        unsafe { map.load(0, &mut h) };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&h[H_MAGIC..H_MAGIC + 8]);
        if magic == [0u8; 8] && state == STATE_INITIALIZING {
            return Err(ShmError::NotReady {
                name: name.to_owned(),
            });
        }
        if magic != MAGIC {
            return Err(ShmError::BadMagic {
                name: name.to_owned(),
                found: magic,
            });
        }
        let abi_version = rd_u32(&h, H_ABI_VERSION);
        let compat = rd_u32(&h, H_COMPAT_VERSION);
        if !reader_accepts(abi_version, compat) {
            return Err(ShmError::AbiMismatch {
                name: name.to_owned(),
                found: abi_version,
                compat,
                supported: ABI_VERSION,
            });
        }
        if state == STATE_INITIALIZING {
            return Err(ShmError::NotReady {
                name: name.to_owned(),
            });
        }
        let geom = Geometry::from_header(&h, size).map_err(|e| match e {
            LayoutError::Truncated { needed } => ShmError::Truncated {
                name: name.to_owned(),
                size,
                needed,
                what: "slot ring",
            },
            LayoutError::Invalid(reason) => ShmError::BadLayout {
                name: name.to_owned(),
                reason,
            },
        })?;
        // SAFETY: H_LATEST_SEQ + 8 ≤ HEADER_SIZE ≤ len; relaxed load only.
        let latest = unsafe { map.u64_at(H_LATEST_SEQ) }.load(Ordering::Relaxed);
        Ok(ShmReader {
            name: name.to_owned(),
            scratch: vec![0u8; geom.meta_len(geom.max_objects as usize)],
            map,
            geom,
            abi_version,
            writer_pid: rd_u32(&h, H_WRITER_PID),
            start_ns: rd_u64(&h, H_START_NS),
            last_seq: latest.saturating_sub(1),
            retries: 0,
        })
    }

    /// A frame buffer sized for this segment (the only allocation a reader needs).
    pub fn new_frame_buf(&self) -> FrameBuf {
        let mut b = FrameBuf::new();
        b.fit(&self.geom);
        b
    }

    /// Copies the newest published frame into `buf`, skipping any frames
    /// between the last one read and it.
    ///
    /// Returns [`ReadStatus::Empty`] when the newest frame is the one read
    /// last (or none was published), [`ReadStatus::Ended`] when moreover the
    /// writer has ended. Torn copies are retried; never blocks on the writer.
    pub fn read_latest(&mut self, buf: &mut FrameBuf) -> Result<ReadStatus, ShmError> {
        self.read(buf, true)
    }

    /// Copies the frame after the last one read into `buf`, so that frames
    /// come in publish order. When the writer has lapped the reader (the
    /// frame was overwritten) it jumps to the oldest frame still in the ring
    /// (or, if that one is overwritten while being copied, to the newest)
    /// and reports how many were skipped. A new reader starts with the
    /// newest frame at the time it opened (or with the first frame, if it
    /// opened before any was published).
    pub fn read_next(&mut self, buf: &mut FrameBuf) -> Result<ReadStatus, ShmError> {
        self.read(buf, false)
    }

    /// Like [`read_next`](Self::read_next), but polls (sleeping between
    /// polls, up to 1 ms) until a frame arrives, the writer ends, or
    /// `timeout` passes (then [`ReadStatus::Empty`]).
    pub fn wait_next(
        &mut self,
        buf: &mut FrameBuf,
        timeout: Duration,
    ) -> Result<ReadStatus, ShmError> {
        self.wait(buf, timeout, false)
    }

    /// Like [`read_latest`](Self::read_latest), polling as
    /// [`wait_next`](Self::wait_next) does until a new frame arrives.
    pub fn wait_latest(
        &mut self,
        buf: &mut FrameBuf,
        timeout: Duration,
    ) -> Result<ReadStatus, ShmError> {
        self.wait(buf, timeout, true)
    }

    fn wait(
        &mut self,
        buf: &mut FrameBuf,
        timeout: Duration,
        latest: bool,
    ) -> Result<ReadStatus, ShmError> {
        let start = Instant::now();
        let mut nap = Duration::from_micros(50);
        loop {
            let status = self.read(buf, latest)?;
            if status != ReadStatus::Empty || start.elapsed() >= timeout {
                return Ok(status);
            }
            std::thread::sleep(nap.min(timeout.saturating_sub(start.elapsed())));
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    /// Writer state and latest sequence number, in an order that makes
    /// "ended" imply "latest is final".
    fn poll(&self) -> (u32, u64) {
        // SAFETY: both fields lie in the validated header; relaxed loads only.
        unsafe {
            let state = self.map.u32_at(H_WRITER_STATE).load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let latest = self.map.u64_at(H_LATEST_SEQ).load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            (state, latest)
        }
    }

    fn read(&mut self, buf: &mut FrameBuf, latest_only: bool) -> Result<ReadStatus, ShmError> {
        buf.fit(&self.geom);
        let ring = u64::from(self.geom.slot_count);
        // After one missed copy, `read_next` also takes the newest frame: the
        // oldest slot is the next one the writer overwrites, so chasing it
        // starves a reader that is slower than the writer.
        let mut missed = false;
        for attempt in 0..MAX_ATTEMPTS {
            let (state, latest) = self.poll();
            if latest == 0 || latest <= self.last_seq {
                return Ok(if state == STATE_ENDED {
                    ReadStatus::Ended
                } else {
                    ReadStatus::Empty
                });
            }
            let want = if latest_only || missed {
                latest
            } else {
                // The oldest publish that can still be intact in the ring.
                let oldest = latest.saturating_sub(ring - 1).max(1);
                (self.last_seq + 1).max(oldest)
            };
            match self.try_copy(want, buf) {
                Copy::Done => {
                    let skipped = want - self.last_seq - 1;
                    self.last_seq = want;
                    return Ok(ReadStatus::Frame { seq: want, skipped });
                }
                Copy::Missed => {
                    missed = true;
                    if attempt < 16 {
                        core::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                Copy::Corrupt(reason) => {
                    self.last_seq = want;
                    return Err(ShmError::Corrupt {
                        name: self.name.clone(),
                        seq: want,
                        reason,
                    });
                }
            }
        }
        Err(ShmError::Starved {
            name: self.name.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// One seqlock read of publish `seq` into `buf`.
    fn try_copy(&mut self, seq: u64, buf: &mut FrameBuf) -> Copy {
        let g = self.geom;
        let slot = g.slot_offset(g.slot_of(seq));
        let expect = seq.wrapping_mul(2);
        // Why the accesses below are in bounds: `slot` is one of the
        // validated slots; the slot header + `max_objects` records end at or
        // before `mask_offset`, the mask padded to 8 bytes ends within
        // `slot_stride`, and the ring lies inside the mapping. All offsets
        // are multiples of 8. Only relaxed loads are made.
        // SAFETY: the slot's sequence word is 8-aligned and inside the mapping (above).
        let seq_word = unsafe { self.map.u64_at(slot + S_SEQ) };
        let s1 = seq_word.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if s1 != expect {
            // Being written (odd), already overwritten by a later publish,
            // or never written: not (or no longer) publish `seq`.
            return Copy::Missed;
        }
        let head = g.objects_offset;
        // SAFETY: the slot header ends at `objects_offset`, inside the slot (above).
        unsafe { self.map.load(slot, &mut self.scratch[..head]) };
        let raw_count = rd_u32(&self.scratch, S_OBJECT_COUNT);
        let count = (raw_count as usize).min(g.max_objects as usize);
        let meta_len = g.meta_len(count);
        // SAFETY: `count` is clamped to `max_objects`, so the records end at or
        // before `mask_offset`; the mask ends within the slot (above).
        unsafe {
            self.map
                .load(slot + head, &mut self.scratch[head..meta_len]);
            self.map
                .load(slot + g.mask_offset, &mut buf.mask[..g.mask_len]);
        }
        fence(Ordering::Acquire);
        let s2 = seq_word.load(Ordering::Relaxed);
        if s2 != s1 {
            self.retries += 1;
            return Copy::Missed;
        }
        // A consistent copy: decode it.
        if raw_count > g.max_objects {
            return Copy::Corrupt("object_count exceeds max_objects");
        }
        let m = &self.scratch;
        buf.objects.clear();
        for i in 0..count {
            let r = &m[head + i * g.object_stride..][..OBJECT_RECORD_SIZE];
            let Some(visibility) = Visibility::from_u8(r[O_VISIBILITY]) else {
                return Copy::Corrupt("unknown visibility value");
            };
            buf.objects.push(ObjectState {
                id: rd_u32(r, O_ID),
                visibility,
                area: rd_u32(r, O_AREA),
                bbox: BBox {
                    x0: rd_u32(r, O_BBOX),
                    y0: rd_u32(r, O_BBOX + 4),
                    x1: rd_u32(r, O_BBOX + 8),
                    y1: rd_u32(r, O_BBOX + 12),
                },
                centroid: [rd_f32(r, O_CENTROID), rd_f32(r, O_CENTROID + 4)],
                velocity: [rd_f32(r, O_VELOCITY), rd_f32(r, O_VELOCITY + 4)],
                confidence: rd_f32(r, O_CONFIDENCE),
            });
        }
        buf.seq = seq;
        buf.frame_number = rd_u64(m, S_FRAME_NUMBER);
        buf.capture_ns = rd_u64(m, S_CAPTURE_NS);
        buf.publish_ns = rd_u64(m, S_PUBLISH_NS);
        Copy::Done
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Label mask width in pixels.
    pub fn width(&self) -> u32 {
        self.geom.width
    }

    /// Label mask height in pixels.
    pub fn height(&self) -> u32 {
        self.geom.height
    }

    /// Object states per slot.
    pub fn max_objects(&self) -> u32 {
        self.geom.max_objects
    }

    /// Number of slots in the ring.
    pub fn slot_count(&self) -> u32 {
        self.geom.slot_count
    }

    /// The segment's ABI version (may be newer than [`ABI_VERSION`] if
    /// compatible, or older down to [`OLDEST_READABLE_ABI`]).
    pub fn abi_version(&self) -> u32 {
        self.abi_version
    }

    /// Process id of the writer, as published in the header.
    pub fn writer_pid(&self) -> u32 {
        self.writer_pid
    }

    /// CLOCK_MONOTONIC nanoseconds when the writer created the segment.
    pub fn writer_start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The writer's current state.
    pub fn writer_state(&self) -> WriterState {
        WriterState::from_raw(self.poll().0)
    }

    /// Whether the writer process still exists (`kill(pid, 0)`; only
    /// meaningful within the writer's pid namespace). A segment in state
    /// [`WriterState::Running`] whose writer is gone was left by a crash.
    pub fn writer_alive(&self) -> bool {
        sys::process_alive(self.writer_pid)
    }

    /// Sequence number of the newest published frame (0: none yet).
    pub fn latest_seq(&self) -> u64 {
        self.poll().1
    }

    /// The writer's live pipeline statistics, read now (relaxed atomic
    /// loads; no seqlock, so the fields may come from slightly different
    /// moments). `None` for a segment older than ABI version 2
    /// ([`STATS_ABI_VERSION`]), whose writer publishes none.
    ///
    /// While frames flow they follow each publish; while none arrive (e.g.
    /// the camera is lost) the writer still refreshes them periodically, so
    /// `camera_lost` turns true although `latest_seq` stands still.
    pub fn stats(&self) -> Option<PipelineCounters> {
        if self.abi_version < STATS_ABI_VERSION {
            return None;
        }
        // SAFETY: the fields lie in the validated header (HEADER_SIZE ≤
        // mapping length), aligned to their size; relaxed loads only.
        unsafe {
            Some(PipelineCounters {
                frames_captured: self.map.u64_at(H_FRAMES_CAPTURED).load(Ordering::Relaxed),
                frames_dropped: self.map.u64_at(H_FRAMES_DROPPED).load(Ordering::Relaxed),
                capture_errors: self.map.u32_at(H_CAPTURE_ERRORS).load(Ordering::Relaxed),
                reconnects: self.map.u32_at(H_RECONNECTS).load(Ordering::Relaxed),
                camera_lost: self.map.u32_at(H_SOURCE_STATE).load(Ordering::Relaxed)
                    == SOURCE_STATE_LOST,
            })
        }
    }

    /// The reader's position: sequence number of the last frame returned.
    /// Before the first read it is one less than the newest frame when the
    /// reader opened (0 if none was published), so that `read_next` starts
    /// with that frame.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Number of copies discarded because the writer changed the slot
    /// during the copy (torn reads detected and retried).
    pub fn torn_retries(&self) -> u64 {
        self.retries
    }

    /// Start of the read-only mapping, for diagnostics (e.g. checking its
    /// protection). Reading through it bypasses the seqlock; writing
    /// through it faults.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Length of the mapping in bytes (the segment's size when opened).
    pub fn mapped_len(&self) -> usize {
        self.map.len()
    }
}
