//! What procfs tells about this process: its resident memory (reported by
//! the control socket's `status` and by `vosd bench-pipeline`).

/// This process's resident set size in bytes (`VmRSS` of
/// `/proc/self/status`; `None` where there is no procfs).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_running_process_has_resident_memory() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(super::resident_bytes().is_some_and(|b| b > 0));
        }
    }
}
