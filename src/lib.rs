//! vosd — real-time video object segmentation daemon for edge boards.
//!
//! The library holds every part of the daemon, one module per concept; the
//! `vosd` binary (src/main.rs) is a thin command-line layer over it.

pub mod metrics;
pub mod publish;
