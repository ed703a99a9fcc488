//! vosd-engine: the video object segmentation engine of vosd.
//!
//! A frame goes through the [`encoder`] (EfficientNet-Lite0 features), the
//! [`memory`] and its [`readout`] (affinity to the stored frames' keys),
//! and the [`upsample`] step to a label mask; the [`engine::Tracker`] runs
//! that loop frame by frame, comparing frames by their [`keys`]; [`prompt`]
//! turns a box into a first mask; [`discover`] finds moving objects with
//! no first mask (unsupervised mode). [`backend`] is the seam between the
//! engine and what runs the encoder and the readout (tract and vosd's
//! readout on the CPU, or OpenCL), with the fallback between them. The
//! crate has no daemon code: capture, the pipeline and publication live in
//! the `vosd` crate.

pub mod backend;
pub mod config;
pub mod discover;
pub mod encoder;
pub mod engine;
pub mod frame;
pub mod geometry;
pub mod imageio;
pub mod keys;
pub mod label_propagation;
pub mod memnet;
pub mod memory;
pub mod prng;
pub mod prompt;
pub mod readout;
pub mod upsample;
