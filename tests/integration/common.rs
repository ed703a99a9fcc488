//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The DAVIS 2016 train data beside the repository (../shared), if present.
pub fn davis_root() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/davis2016");
    if root.join("JPEGImages/480p").is_dir() {
        Some(root)
    } else {
        eprintln!("SKIP: {} not found", root.display());
        None
    }
}
