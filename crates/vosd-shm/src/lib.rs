//! Publishing segmentation results over POSIX shared memory.
//!
//! Each pipeline owns one shared-memory object (e.g. `/vosd-cam0`) that it
//! creates with [`ShmWriter::create`]. The object holds a header and a ring
//! of slots; every [`ShmWriter::publish`] copies one frame's object states
//! and label mask into the next slot under a seqlock, so the writer never
//! waits for readers and readers detect (and retry) copies the writer tore.
//! Readers — [`ShmReader`] here, `clients/c/vosd_shm.h` in C and
//! `clients/python/vosd_reader.py` in Python — map the object read-only.
//! The header also carries live pipeline statistics (frames captured and
//! dropped, capture errors, reconnection attempts, camera lost), stored
//! with [`ShmWriter::set_stats`] and read with [`ShmReader::stats`].
//!
//! The binary layout is in [`layout`] and `LAYOUT.md`.
//!
//! ```no_run
//! use vosd_shm::{ObjectState, PublishConfig, ReadStatus, ShmReader, ShmWriter, SlotData};
//!
//! # fn main() -> Result<(), vosd_shm::ShmError> {
//! let mut writer = ShmWriter::create(&PublishConfig::new("/vosd-demo", 64, 48))?;
//! let mask = vec![0u8; 64 * 48];
//! let objects = [ObjectState::from_mask(&mask, 64, 48, 1)];
//! writer.publish(&SlotData {
//!     frame_number: 0,
//!     capture_ns: vosd_shm::monotonic_ns(),
//!     objects: &objects,
//!     mask: &mask,
//! })?;
//!
//! let mut reader = ShmReader::open("/vosd-demo")?;
//! let mut frame = reader.new_frame_buf();
//! if let ReadStatus::Frame { seq, skipped } = reader.read_latest(&mut frame)? {
//!     println!("publish {seq} (frame {}), {skipped} skipped", frame.frame_number());
//! }
//! writer.finish(); // end marker; dropping the writer unlinks the name
//! # Ok(())
//! # }
//! ```

mod diag;
mod error;
mod frame_buf;
pub mod layout;
mod reader;
pub(crate) mod sys;
pub mod tail;
mod types;
mod writer;

pub use error::ShmError;
pub use frame_buf::FrameBuf;
pub use reader::{ReadStatus, ShmReader, WriterState};
pub use sys::monotonic_ns;
pub use types::{BBox, ObjectState, PipelineCounters, SlotData, Visibility};
pub use writer::{GroupSpec, PublishConfig, PublishOptionError, PublishOptions, ShmWriter};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
