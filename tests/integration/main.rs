//! vosd's integration tests, in one test binary so that the suite links the
//! library once (the allocation tests keep binaries of their own: each
//! installs a counting global allocator).

mod common;
mod daemon_support;
mod web_support;

mod box_prompt;
mod camera_loss;
mod cli;
mod control;
mod daemon_config;
mod daemon_e2e;
mod daemon_notify;
mod daemon_signals;
mod daemon_unit;
mod discover;
mod encoder_parity;
mod engine_davis;
mod install;
mod memnet;
mod metrics;
#[cfg(feature = "onnxruntime")]
mod onnxruntime;
#[cfg(feature = "opencl")]
mod opencl;
mod view;
