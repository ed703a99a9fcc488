//! vosd — real-time video object segmentation daemon for edge boards.
//!
//! This crate is the daemon: frame [`source`]s, the [`pipeline`] stages,
//! the [`control`] socket and the [`service`] around them. The engine is
//! the `vosd-engine` crate, evaluation `vosd-eval`, and the shared-memory
//! ABI with its readers `vosd-shm`; see ARCHITECTURE.md.

pub mod bench;
pub mod control;
pub mod pipeline;
pub mod segment;
pub mod service;
pub mod source;
pub mod tail;
