//! Empty: it exists so that cargo resolves this crate's build-dependencies
//! (host-side feature unification; see Cargo.toml).
fn main() {}
