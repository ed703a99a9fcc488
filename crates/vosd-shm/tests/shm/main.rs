//! vosd-shm's integration tests, in one test binary (the allocation test
//! keeps a binary of its own: it installs a counting global allocator).

mod support;

mod errors;
mod process;
mod roundtrip;
mod stats;
