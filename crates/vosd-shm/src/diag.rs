//! The writer's diagnostics (a stale segment replaced, an unlink that
//! failed): logged through the `log` crate with the `log` feature, dropped
//! without it, so that a reader-only build needs no logging dependency.

/// Logs at warn level (with the `log` feature).
macro_rules! diag_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::warn!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = format_args!($($arg)*);
    }};
}

/// Logs at debug level (with the `log` feature).
macro_rules! diag_debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::debug!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = format_args!($($arg)*);
    }};
}

pub(crate) use {diag_debug, diag_warn};
