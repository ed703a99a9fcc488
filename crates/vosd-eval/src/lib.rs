//! vosd-eval: DAVIS-style evaluation of vosd's engine.
//!
//! [`davis`] reads a DAVIS dataset, runs the engine over its sequences (or
//! reads existing predictions) and scores them with [`metrics`]: region
//! similarity J, contour accuracy F, temporal stability T and their
//! statistics, computed as the official toolkit computes them. [`dataset`]
//! reads the other layouts (YouTube-VOS, SegTrack v2, a plain folder) and
//! evaluates them with objects that may appear after the first frame.

pub mod dataset;
pub mod davis;
pub mod metrics;
