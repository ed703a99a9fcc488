//! vosd — real-time video object segmentation daemon for edge boards.
//!
//! This crate is the daemon: its [`config`] (the one configuration model
//! of every command), frame [`source`]s, the [`pipeline`] stages, the
//! [`control`] socket and the [`service`] around them. The engine is the
//! `vosd-engine` crate, evaluation `vosd-eval`, and the shared-memory ABI
//! with its readers `vosd-shm`; the commands are the binary's
//! (`src/cmd/`). See ARCHITECTURE.md.

pub mod config;
pub mod control;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod procfs;
pub mod service;
pub mod source;
pub mod view;
pub mod zenoh;
