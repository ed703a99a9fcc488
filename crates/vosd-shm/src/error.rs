//! Errors of the shared-memory publisher and reader.

use thiserror::Error;

/// Everything that can go wrong creating, publishing to, opening or reading
/// a shared-memory segment. Messages name the segment (`shm '/vosd-cam0'`)
/// and say what is wrong.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The name is not a valid POSIX shared-memory name.
    #[error("shm name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The writer configuration is unusable.
    #[error("shm '{name}': invalid publish configuration: {reason}")]
    InvalidConfig {
        /// Segment name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The configured group does not exist.
    #[error("shm '{name}': group '{group}' does not exist")]
    GroupNotFound {
        /// Segment name.
        name: String,
        /// The group name from the configuration.
        group: String,
    },
    /// A system call failed.
    #[error("shm '{name}': {op} failed: {source}")]
    Os {
        /// Segment name.
        name: String,
        /// What was being done (e.g. "shm_open", "setting group gid 44").
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No segment of that name exists (the writer is not running).
    #[error("shm '{name}' does not exist (is the vosd pipeline running?)")]
    NotFound {
        /// Segment name.
        name: String,
    },
    /// Another live writer owns a segment of that name.
    #[error("shm '{name}' is in use by a running writer (pid {pid})")]
    InUse {
        /// Segment name.
        name: String,
        /// The other writer's pid.
        pid: u32,
    },
    /// The segment exists but its writer has not finished initialising it;
    /// retry shortly.
    #[error("shm '{name}' is not initialised yet (writer starting); retry")]
    NotReady {
        /// Segment name.
        name: String,
    },
    /// The segment is smaller than its header or than what the header describes.
    #[error("shm '{name}' is truncated: {size} bytes, need {needed} ({what})")]
    Truncated {
        /// Segment name.
        name: String,
        /// Actual size of the segment in bytes.
        size: u64,
        /// Bytes needed.
        needed: u64,
        /// What needs them.
        what: &'static str,
    },
    /// The segment does not start with the vosd magic bytes.
    #[error("shm '{name}' is not a vosd segment: bad magic {found:02x?}")]
    BadMagic {
        /// Segment name.
        name: String,
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The segment's ABI version cannot be read by this reader.
    #[error(
        "shm '{name}' has ABI version {found} (readable by ABI {compat}..={found}), \
         this reader implements ABI {supported}"
    )]
    AbiMismatch {
        /// Segment name.
        name: String,
        /// The segment's `abi_version`.
        found: u32,
        /// The segment's `compat_version`.
        compat: u32,
        /// The ABI version this reader implements.
        supported: u32,
    },
    /// The header's geometry is inconsistent or does not fit the segment.
    #[error("shm '{name}' has an invalid layout: {reason}")]
    BadLayout {
        /// Segment name.
        name: String,
        /// What is inconsistent.
        reason: String,
    },
    /// `publish` was given a mask of the wrong size.
    #[error("mask has {got} bytes, the segment expects {expected} (width × height)")]
    MaskSize {
        /// Expected bytes.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// `publish` was given more objects than a slot holds.
    #[error("{got} object states exceed the segment's max_objects {max}")]
    TooManyObjects {
        /// Slot capacity.
        max: u32,
        /// Objects given.
        got: usize,
    },
    /// `publish` after `finish`.
    #[error("the writer has finished; no more frames can be published")]
    Finished,
    /// A slot passed the seqlock check but holds impossible content (a bug
    /// or a foreign writer).
    #[error("shm '{name}': slot of publish {seq} is corrupt: {reason}")]
    Corrupt {
        /// Segment name.
        name: String,
        /// Publish sequence number of the slot.
        seq: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The writer overwrote the slot on every attempt: the reader is too slow
    /// for this ring (more slots, or a faster copy, are needed).
    #[error("shm '{name}': no consistent copy after {attempts} attempts (writer laps the reader)")]
    Starved {
        /// Segment name.
        name: String,
        /// Attempts made.
        attempts: u32,
    },
}
