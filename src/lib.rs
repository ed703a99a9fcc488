//! vosd — real-time video object segmentation daemon for edge boards.
//!
//! The library holds every part of the daemon, one module per concept; the
//! `vosd` binary (src/main.rs) is a thin command-line layer over it.

pub mod backend;
pub mod bench;
pub mod config;
pub mod control;
pub mod encoder;
pub mod engine;
pub mod eval;
pub mod frame;
pub mod geometry;
pub mod imageio;
pub mod memory;
pub mod metrics;
pub mod pipeline;
mod prng;
pub mod prompt;
pub mod publish;
pub mod readout;
pub mod segment;
pub mod service;
pub mod source;
pub mod tail;
pub mod upsample;
