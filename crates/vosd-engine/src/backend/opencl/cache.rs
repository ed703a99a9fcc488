//! A cache of compiled kernels, for drivers that keep none of their own.
//!
//! After a program is built from source, its device binary is written to
//! the cache directory under a key made of the source, the build options,
//! the platform, the device and the driver version. A later start loads it
//! from there. A missing, unreadable or rejected cache file just means a
//! build from source: the cache can only save time.

use std::path::{Path, PathBuf};

use ocl::enums::{ProgramInfo, ProgramInfoResult};
use ocl::{Context, Device, Program};

use super::{DeviceSummary, OpenclError};

/// Options every program is built with.
pub const BUILD_OPTIONS: &str = "-cl-std=CL1.2";

/// The cache directory: `$VOSD_KERNEL_CACHE` (empty: no cache), else
/// `$XDG_CACHE_HOME/vosd/kernels`, else `$HOME/.cache/vosd/kernels`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VOSD_KERNEL_CACHE") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("vosd").join("kernels"))
}

/// FNV-1a, 64 bits: a stable key (std's hasher may change between Rust
/// versions, which would only cost a rebuild, but a fixed one is clearer).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The cache file of program `name` built from `src` for `summary`'s device.
pub fn file_for(
    dir: &Path,
    name: &str,
    src: &str,
    summary: &DeviceSummary,
    driver: &str,
) -> PathBuf {
    let key = fnv1a(&[
        src,
        BUILD_OPTIONS,
        &summary.platform_name,
        &summary.name,
        &summary.version,
        driver,
    ]);
    dir.join(format!("{name}-{key:016x}.bin"))
}

/// Builds `src` for `device`, through the cache in `dir` when there is one.
/// Returns the program and whether it came from the cache.
pub fn build(
    context: &Context,
    device: Device,
    summary: &DeviceSummary,
    name: &str,
    src: &str,
    dir: Option<&Path>,
) -> Result<(Program, bool), OpenclError> {
    let driver = device
        .info(ocl::enums::DeviceInfo::DriverVersion)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let file = dir.map(|d| file_for(d, name, src, summary, &driver));
    if let Some(file) = &file {
        if let Ok(binary) = std::fs::read(file) {
            let bins = [binary.as_slice()];
            match Program::builder()
                .binaries(&bins)
                .devices(device)
                .cmplr_opt(BUILD_OPTIONS)
                .build(context)
            {
                Ok(program) => return Ok((program, true)),
                Err(e) => log::debug!(
                    "{}: cached kernels rejected ({e}); building from source",
                    file.display()
                ),
            }
        }
    }
    let program = Program::builder()
        .src(src)
        .devices(device)
        .cmplr_opt(BUILD_OPTIONS)
        .build(context)
        .map_err(|e| OpenclError::Build {
            device: summary.name.clone(),
            log: e.to_string(),
        })?;
    if let Some(file) = &file {
        if let Err(e) = store(&program, file) {
            log::debug!("{}: kernels not cached: {e}", file.display());
        }
    }
    Ok((program, false))
}

/// Writes the program's (single-device) binary to `file`, atomically.
fn store(program: &Program, file: &Path) -> Result<(), String> {
    let binary = match program
        .info(ProgramInfo::Binaries)
        .map_err(|e| e.to_string())?
    {
        ProgramInfoResult::Binaries(mut bins) if bins.len() == 1 && !bins[0].is_empty() => {
            bins.remove(0)
        }
        _ => return Err("the driver gave no binary".into()),
    };
    let dir = file.parent().ok_or("no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // Unique per process and call: threads of one process may store at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, &binary).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::super::{list_devices, readout::OpenclReadout, Gpu};
    use crate::backend::cpu::CpuReadout;
    use crate::backend::self_test::{ReadoutProbe, READOUT_SELF_TEST};
    use crate::backend::{Device, ReadoutBackend};
    use crate::memory::MemoryStore;
    use crate::readout::{GridSize, ReadoutParams};
    use std::time::Duration;

    /// Opens the first device with `dir` as the cache and checks that the
    /// kernels run (the readout self-test); returns whether they came from
    /// the cache.
    fn open_and_run(dir: &std::path::Path) -> Option<bool> {
        let d = list_devices().into_iter().next()?;
        let gpu =
            Gpu::open_with_cache(d.platform, d.device, Duration::from_secs(60), Some(dir)).unwrap();
        let grid = GridSize {
            width: 5,
            height: 4,
        };
        let memory = MemoryStore::new(20, 8, 2, 1);
        let mut r = OpenclReadout::new(gpu.clone(), grid, &memory).unwrap();
        let p = ReadoutParams {
            top_k: 3,
            temperature: 0.1,
            window_radius: 0,
            first_frame_radius: 0,
        };
        let probe = ReadoutProbe::new(grid, &memory, &p);
        let device: Device = gpu.clone();
        READOUT_SELF_TEST
            .check(
                &device,
                &mut CpuReadout::new(grid, 1) as &mut dyn ReadoutBackend,
                &mut r as &mut dyn ReadoutBackend,
                |b| probe.run(b),
            )
            .expect("kernels work");
        Some(gpu.kernels_from_cache)
    }

    fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn second_open_loads_kernels_from_the_cache_and_bad_files_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("kernels");
        let Some(first) = open_and_run(&cache) else {
            eprintln!("SKIP: no OpenCL device");
            return;
        };
        assert!(!first, "an empty cache cannot serve the kernels");
        let files = cache_files(&cache);
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(open_and_run(&cache), Some(true));
        // A corrupt (or foreign) cache file is rejected by the driver: the
        // kernels are built from source again and the file is replaced.
        for f in &files {
            std::fs::write(f, b"not a program binary").unwrap();
        }
        assert_eq!(open_and_run(&cache), Some(false));
        assert_eq!(open_and_run(&cache), Some(true));
        // An unwritable cache directory only costs the cache.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        assert_eq!(open_and_run(&blocked.join("kernels")), Some(false));
    }
}
