//! No code: this crate only unifies dependency features between vosd's
//! default build and its `zenoh` build (see its Cargo.toml).
