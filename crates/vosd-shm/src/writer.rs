//! The writer side: creates a segment and publishes frames into its ring.

use crate::diag::{diag_debug, diag_warn};
use core::sync::atomic::{fence, Ordering};
use std::os::fd::OwnedFd;

use rustix::fs::{Gid, Mode};
use rustix::io::Errno;
use rustix::shm;

use super::error::ShmError;
use super::layout::*;
use super::sys::{self, Mapping};
use super::types::{PipelineCounters, SlotData};

mod config;

pub use config::{PublishConfig, PublishOptionError, PublishOptions};

/// The group that owns a segment: a name looked up in the system group
/// database, or a numeric gid.
///
/// In TOML either `group = "video"` or `group = 44`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum GroupSpec {
    /// A numeric group id, used as is.
    Gid(u32),
    /// A group name; a name the system does not know is an error.
    Name(String),
}

impl GroupSpec {
    /// The numeric group id: a [`GroupSpec::Gid`] as is, a name looked up
    /// in the system group database. `Ok(None)` when no group has the name.
    pub fn resolve(&self) -> std::io::Result<Option<u32>> {
        match self {
            GroupSpec::Gid(g) => Ok(Some(*g)),
            GroupSpec::Name(n) => sys::group_by_name(n),
        }
    }
}

/// Publishes frames into a POSIX shared-memory segment (the only writer).
///
/// `publish` never waits for readers and never allocates. The segment is
/// unlinked when the writer is dropped: readers that have it mapped keep
/// reading it (and see the end marker), new readers get
/// [`ShmError::NotFound`] until a new writer creates the name again.
#[derive(Debug)]
pub struct ShmWriter {
    name: String,
    fd: OwnedFd,
    map: Mapping,
    geom: Geometry,
    /// Sequence number of the next publish (1-based).
    next_seq: u64,
    /// Slot header + object records, encoded here then copied in one go.
    scratch: Vec<u8>,
    finished: bool,
}

impl ShmWriter {
    /// Creates the segment `config.options.name` with the configured permissions and
    /// group, lays out the header and an empty ring, and marks it running.
    ///
    /// A leftover segment of the same name whose writer is gone (crashed, or
    /// ended) is replaced; one whose writer is still running gives
    /// [`ShmError::InUse`].
    pub fn create(config: &PublishConfig) -> Result<ShmWriter, ShmError> {
        let geom = config.geometry()?;
        let name = config.options.name.as_str();
        let os = |op: &str, e: Errno| ShmError::Os {
            name: name.to_owned(),
            op: op.to_owned(),
            source: e.into(),
        };
        let gid = match &config.options.group {
            None => None,
            Some(GroupSpec::Gid(g)) => Some(*g),
            Some(GroupSpec::Name(g)) => Some(
                sys::group_by_name(g)
                    .map_err(|source| ShmError::Os {
                        name: name.to_owned(),
                        op: format!("looking up group '{g}'"),
                        source,
                    })?
                    .ok_or_else(|| ShmError::GroupNotFound {
                        name: name.to_owned(),
                        group: g.clone(),
                    })?,
            ),
        };

        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let fd = match shm::open(name, flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                remove_stale(name)?;
                shm::open(name, flags, Mode::RUSR | Mode::WUSR).map_err(|e| os("shm_open", e))?
            }
            Err(e) => return Err(os("shm_open", e)),
        };
        // From here on, a failure removes the half-made segment.
        let fail = |err: ShmError| {
            let _ = shm::unlink(name);
            err
        };
        if let Some(gid) = gid {
            rustix::fs::fchown(&fd, None, Some(Gid::from_raw(gid))).map_err(|e| {
                let group = sys::group_name(gid).map_or(String::new(), |n| format!("'{n}' "));
                fail(os(
                    &format!(
                        "setting group {group}(gid {gid}) (the writer must own the segment and belong to the group)"
                    ),
                    e,
                ))
            })?;
        }
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(config.options.mode))
            .map_err(|e| fail(os(&format!("setting mode {:#o}", config.options.mode), e)))?;
        rustix::fs::ftruncate(&fd, geom.total_size as u64)
            .map_err(|e| fail(os(&format!("resizing to {} bytes", geom.total_size), e)))?;
        let map = Mapping::map(&fd, geom.total_size, true).map_err(|e| fail(os("mmap", e)))?;

        // The object is zero-filled: state INITIALIZING, latest 0, every slot
        // seq 0. Write the header, then publish the state with release order.
        let mut h = [0u8; HEADER_SIZE];
        h[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        wr_u32(&mut h, H_ABI_VERSION, ABI_VERSION);
        wr_u32(&mut h, H_COMPAT_VERSION, COMPAT_VERSION);
        wr_u32(&mut h, H_HEADER_SIZE, HEADER_SIZE as u32);
        wr_u32(&mut h, H_SLOT_COUNT, geom.slot_count);
        wr_u32(&mut h, H_WIDTH, geom.width);
        wr_u32(&mut h, H_HEIGHT, geom.height);
        wr_u32(&mut h, H_MAX_OBJECTS, geom.max_objects);
        // All four fit in u32: bounded by 64 + 255 × 48 + 64.
        wr_u32(&mut h, H_OBJECT_STRIDE, geom.object_stride as u32);
        wr_u32(&mut h, H_OBJECTS_OFFSET, geom.objects_offset as u32);
        wr_u32(&mut h, H_MASK_OFFSET, geom.mask_offset as u32);
        wr_u64(&mut h, H_SLOT_STRIDE, geom.slot_stride as u64);
        wr_u64(&mut h, H_SLOTS_OFFSET, geom.slots_offset as u64);
        wr_u64(&mut h, H_TOTAL_SIZE, geom.total_size as u64);
        wr_u32(&mut h, H_WRITER_PID, sys::own_pid());
        wr_u32(&mut h, H_WRITER_STATE, STATE_INITIALIZING);
        wr_u64(&mut h, H_LATEST_SEQ, 0);
        wr_u64(&mut h, H_START_NS, sys::monotonic_ns());
        // SAFETY: the mapping is writable and total_size ≥ HEADER_SIZE.
        unsafe {
            map.store(0, &h);
            map.u32_at(H_WRITER_STATE)
                .store(STATE_RUNNING, Ordering::Release);
        }
        diag_debug!(
            "shm '{name}': created, {}x{} mask, {} slots of {} bytes, {} objects, mode {:#o}",
            geom.width,
            geom.height,
            geom.slot_count,
            geom.slot_stride,
            geom.max_objects,
            config.options.mode
        );
        Ok(ShmWriter {
            name: name.to_owned(),
            fd,
            map,
            scratch: vec![0u8; geom.meta_len(geom.max_objects as usize)],
            geom,
            next_seq: 1,
            finished: false,
        })
    }

    /// Copies one frame's states and mask into the next slot of the ring and
    /// makes it the latest. Returns the publish sequence number (1, 2, ...).
    ///
    /// Never waits for readers and never allocates. The publish timestamp is
    /// taken here (CLOCK_MONOTONIC).
    pub fn publish(&mut self, data: &SlotData<'_>) -> Result<u64, ShmError> {
        if self.finished {
            return Err(ShmError::Finished);
        }
        if data.mask.len() != self.geom.mask_len {
            return Err(ShmError::MaskSize {
                expected: self.geom.mask_len,
                got: data.mask.len(),
            });
        }
        if data.objects.len() > self.geom.max_objects as usize {
            return Err(ShmError::TooManyObjects {
                max: self.geom.max_objects,
                got: data.objects.len(),
            });
        }
        let seq = self.next_seq;
        let count = data.objects.len();
        let meta_len = self.geom.meta_len(count);
        let meta = &mut self.scratch[..meta_len];
        wr_u64(meta, S_SEQ, 0); // not copied; the seq word is written atomically below
        wr_u64(meta, S_FRAME_NUMBER, data.frame_number);
        wr_u64(meta, S_CAPTURE_NS, data.capture_ns);
        wr_u64(meta, S_PUBLISH_NS, sys::monotonic_ns());
        wr_u32(meta, S_OBJECT_COUNT, count as u32);
        for (i, o) in data.objects.iter().enumerate() {
            let r = &mut meta[self.geom.objects_offset + i * self.geom.object_stride..]
                [..OBJECT_RECORD_SIZE];
            wr_u32(r, O_ID, o.id);
            r[O_VISIBILITY] = o.visibility.as_u8();
            r[O_VISIBILITY + 1..O_AREA].fill(0);
            wr_u32(r, O_AREA, o.area);
            wr_u32(r, O_BBOX, o.bbox.x0);
            wr_u32(r, O_BBOX + 4, o.bbox.y0);
            wr_u32(r, O_BBOX + 8, o.bbox.x1);
            wr_u32(r, O_BBOX + 12, o.bbox.y1);
            wr_f32(r, O_CENTROID, o.centroid[0]);
            wr_f32(r, O_CENTROID + 4, o.centroid[1]);
            wr_f32(r, O_VELOCITY, o.velocity[0]);
            wr_f32(r, O_VELOCITY + 4, o.velocity[1]);
            wr_f32(r, O_CONFIDENCE, o.confidence);
        }

        let slot = self.geom.slot_offset(self.geom.slot_of(seq));
        // SAFETY: `slot` is a validated, 8-aligned slot offset; the slot
        // header + records fit before `mask_offset`, and the mask (padded to
        // 8 bytes) fits in the slot stride; the mapping is writable.
        unsafe {
            let seq_word = self.map.u64_at(slot + S_SEQ);
            // Seqlock write: odd, fence, data, even with release.
            seq_word.store(2 * seq - 1, Ordering::Relaxed);
            fence(Ordering::Release);
            self.map.store(slot + 8, &meta[8..]);
            self.map.store(slot + self.geom.mask_offset, data.mask);
            seq_word.store(2 * seq, Ordering::Release);
            self.map.u64_at(H_LATEST_SEQ).store(seq, Ordering::Release);
        }
        self.next_seq += 1;
        Ok(seq)
    }

    /// Stores the pipeline statistics in the segment header, where readers
    /// get them with [`ShmReader::stats`](super::ShmReader::stats).
    ///
    /// Each field is a relaxed atomic store, independent of the seqlock:
    /// never waits, never allocates, cheap enough for every frame (and
    /// allowed after [`finish`](Self::finish), for the final counts).
    pub fn set_stats(&self, s: &PipelineCounters) {
        let source_state = if s.camera_lost {
            SOURCE_STATE_LOST
        } else {
            SOURCE_STATE_OK
        };
        // SAFETY: the statistics fields lie in the header (inside the
        // mapping), are aligned to their size (checked at compile time in
        // `layout`), and the mapping is writable.
        unsafe {
            self.map
                .u64_at(H_FRAMES_CAPTURED)
                .store(s.frames_captured, Ordering::Relaxed);
            self.map
                .u64_at(H_FRAMES_DROPPED)
                .store(s.frames_dropped, Ordering::Relaxed);
            self.map
                .u32_at(H_CAPTURE_ERRORS)
                .store(s.capture_errors, Ordering::Relaxed);
            self.map
                .u32_at(H_RECONNECTS)
                .store(s.reconnects, Ordering::Relaxed);
            self.map
                .u32_at(H_SOURCE_STATE)
                .store(source_state, Ordering::Relaxed);
        }
    }

    /// Publishes the end marker (writer state "ended"): readers that have
    /// consumed the last frame get `ReadStatus::Ended`. Further publishes
    /// fail with [`ShmError::Finished`]. Idempotent; `Drop` calls it too.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            // SAFETY: H_WRITER_STATE is in the header, 4-aligned, writable.
            unsafe { self.map.u32_at(H_WRITER_STATE) }.store(STATE_ENDED, Ordering::Release);
        }
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

    /// Size of the segment in bytes.
    pub fn size_bytes(&self) -> usize {
        self.geom.total_size
    }

    /// Number of frames published so far (= sequence number of the latest).
    pub fn published(&self) -> u64 {
        self.next_seq - 1
    }
}

impl Drop for ShmWriter {
    /// Publishes the end marker (if `finish` was not called) and unlinks
    /// the name, unless the name now belongs to another segment.
    fn drop(&mut self) {
        self.finish();
        match same_object(&self.name, &self.fd) {
            Ok(true) => {
                if let Err(e) = shm::unlink(self.name.as_str()) {
                    diag_warn!("shm '{}': unlink failed: {e}", self.name);
                }
            }
            Ok(false) => diag_debug!(
                "shm '{}': name now belongs to another segment; not unlinking",
                self.name
            ),
            Err(e) => diag_debug!("shm '{}': not unlinked: {e}", self.name),
        }
    }
}

/// Whether `name` still refers to the object open as `fd`.
fn same_object(name: &str, fd: &OwnedFd) -> rustix::io::Result<bool> {
    let ours = rustix::fs::fstat(fd)?;
    let theirs_fd = shm::open(name, shm::OFlags::RDONLY, Mode::empty())?;
    let theirs = rustix::fs::fstat(&theirs_fd)?;
    Ok(ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino)
}

/// Unlinks a leftover segment unless its writer is still running.
fn remove_stale(name: &str) -> Result<(), ShmError> {
    let os = |op: &str, e: Errno| ShmError::Os {
        name: name.to_owned(),
        op: op.to_owned(),
        source: e.into(),
    };
    match shm::open(name, shm::OFlags::RDONLY, Mode::empty()) {
        Ok(fd) => {
            let size = rustix::fs::fstat(&fd)
                .map_err(|e| os("fstat of the existing segment", e))?
                .st_size;
            if size >= HEADER_SIZE as i64 {
                let map = Mapping::map(&fd, HEADER_SIZE, false)
                    .map_err(|e| os("mmap of the existing segment", e))?;
                let mut h = [0u8; HEADER_SIZE];
                // SAFETY: HEADER_SIZE bytes are mapped; relaxed loads only.
                unsafe { map.load(0, &mut h) };
                let pid = rd_u32(&h, H_WRITER_PID);
                if h[..8] == MAGIC
                    && rd_u32(&h, H_WRITER_STATE) == STATE_RUNNING
                    && sys::process_alive(pid)
                {
                    return Err(ShmError::InUse {
                        name: name.to_owned(),
                        pid,
                    });
                }
            }
            diag_warn!("shm '{name}': replacing a stale segment left by a previous writer");
        }
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(os("opening the existing segment", e)),
    }
    match shm::unlink(name) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(os("unlinking the stale segment", e)),
    }
}
