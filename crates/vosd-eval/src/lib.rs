//! vosd-eval: DAVIS-style evaluation of vosd's engine.
//!
//! [`davis`] reads a DAVIS dataset, runs the engine over its sequences (or
//! reads existing predictions) and scores them with [`metrics`]: region
//! similarity J, contour accuracy F and their statistics, computed as the
//! official toolkit computes them.

pub mod davis;
pub mod metrics;
