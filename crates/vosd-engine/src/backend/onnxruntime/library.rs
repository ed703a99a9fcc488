//! Finding libonnxruntime and loading it, once per process.
//!
//! Nothing is linked at build time (`ort`'s `load-dynamic`): the library is
//! opened with `dlopen` when a backend first asks for it. Where it comes
//! from, in order:
//!
//! 1. `engine.onnxruntime_library`, when set;
//! 2. `ORT_DYLIB_PATH`, when set;
//! 3. the system library paths (`libonnxruntime.so.1`, then
//!    `libonnxruntime.so`, as the dynamic loader searches them);
//! 4. the `onnxruntime` Python package, found by looking in the usual
//!    site-packages folders (no Python is run): its wheel ships
//!    `onnxruntime/capi/libonnxruntime.so.<version>`.
//!
//! A path that is set (1 or 2) is the one used: when it cannot be loaded,
//! the search stops there with the reason, rather than quietly running
//! some other library. The first library that loads stays loaded for the
//! life of the process (ONNX Runtime cannot be unloaded, and `ort` keeps
//! one environment): a later request for another path gets the loaded one,
//! with a warning.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::OrtError;

/// The environment variable `ort` and ONNX Runtime's own tools read.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The library names the dynamic loader is asked for (step 3).
const SYSTEM_NAMES: [&str; 2] = ["libonnxruntime.so.1", "libonnxruntime.so"];

/// The loaded library and the one `ort` environment on it.
#[derive(Debug)]
pub struct Runtime {
    /// Where the library was loaded from (as given to the loader).
    pub path: PathBuf,
    /// Where that path came from ("engine.onnxruntime_library", ...).
    pub source: &'static str,
    /// The library's version string ("1.32.0").
    pub version: String,
    /// The execution providers the library was built with
    /// (`CPUExecutionProvider`, ...), as it lists them.
    pub providers: Vec<String>,
    /// The process's `ort` environment.
    pub environment: ort::environment::Environment,
}

/// One place the library may be, and why it is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The path given to the loader (a bare name searches the system).
    pub path: PathBuf,
    /// Its origin, for messages.
    pub source: &'static str,
    /// Whether it was set by the user (the search stops at it).
    pub explicit: bool,
}

/// The places to try, in order, for a configured path `configured`.
pub fn candidates(configured: Option<&Path>) -> Vec<Candidate> {
    let set = |path: PathBuf, source| Candidate {
        path,
        source,
        explicit: true,
    };
    if let Some(p) = configured.filter(|p| !p.as_os_str().is_empty()) {
        return vec![set(p.to_path_buf(), "engine.onnxruntime_library")];
    }
    if let Some(p) = std::env::var_os(DYLIB_ENV).filter(|p| !p.is_empty()) {
        return vec![set(PathBuf::from(p), DYLIB_ENV)];
    }
    let mut found: Vec<Candidate> = SYSTEM_NAMES
        .iter()
        .map(|n| Candidate {
            path: PathBuf::from(n),
            source: "the system library paths",
            explicit: false,
        })
        .collect();
    found.extend(
        python_package_libraries()
            .into_iter()
            .map(|path| Candidate {
                path,
                source: "the onnxruntime Python package",
                explicit: false,
            }),
    );
    found
}

/// The folders where pip puts packages: the system's and `/usr/local`'s
/// Python, the user's (`~/.local`), an active virtual environment, conda
/// and pyenv installations.
fn site_package_roots() -> Vec<PathBuf> {
    let mut lib_dirs: Vec<PathBuf> = vec!["/usr/local/lib".into(), "/usr/lib".into()];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        lib_dirs.push(home.join(".local/lib"));
    }
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            lib_dirs.push(PathBuf::from(v).join("lib"));
        }
    }
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".pyenv")));
    if let Some(versions) = pyenv.map(|p| p.join("versions")) {
        lib_dirs.extend(subdirs(&versions).into_iter().map(|v| v.join("lib")));
    }
    let mut roots = Vec::new();
    for lib in lib_dirs {
        for python in subdirs(&lib) {
            let is_python = python
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"));
            if is_python {
                roots.push(python.join("site-packages"));
                roots.push(python.join("dist-packages"));
            }
        }
    }
    roots
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// `libonnxruntime.so*` files of installed `onnxruntime` (or
/// `onnxruntime-gpu`) Python packages, newest version first.
pub fn python_package_libraries() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in site_package_roots() {
        let capi = root.join("onnxruntime").join("capi");
        for entry in std::fs::read_dir(&capi).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("libonnxruntime.so") && entry.path().is_file() {
                found.push(entry.path());
            }
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    found.dedup();
    found
}

/// The version numbers in a file name like `libonnxruntime.so.1.32.0`.
fn version_of(path: &Path) -> Vec<u32> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.trim_start_matches("libonnxruntime.so")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The loaded runtime, once a library has loaded (every backend shares
/// it); `None` until then, and after failed attempts (a later one may find
/// a library installed since).
static LOADED: Mutex<Option<&'static Runtime>> = Mutex::new(None);

/// Loads the library from the first candidate that works (see the module
/// docs) and makes the process's environment on it; the runtime if one is
/// loaded already. The error lists every place tried and why it failed.
pub fn load(configured: Option<&Path>) -> Result<&'static Runtime, OrtError> {
    let mut state = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = *state {
        if let Some(want) = configured.filter(|p| !p.as_os_str().is_empty()) {
            if want != runtime.path {
                log::warn!(
                    "onnxruntime: {} is not loaded: {} is, and a process loads one ONNX Runtime",
                    want.display(),
                    runtime.path.display()
                );
            }
        }
        return Ok(runtime);
    }
    let mut tried = Vec::new();
    for candidate in candidates(configured) {
        match open(&candidate) {
            Ok(runtime) => {
                let runtime: &'static Runtime = Box::leak(Box::new(runtime));
                log::info!(
                    "onnxruntime: loaded {} {} (from {}); execution providers: {}",
                    runtime.path.display(),
                    runtime.version,
                    runtime.source,
                    runtime.providers.join(", ")
                );
                *state = Some(runtime);
                return Ok(runtime);
            }
            Err(why) => {
                tried.push(format!(
                    "{} ({}): {why}",
                    candidate.path.display(),
                    candidate.source
                ));
                if candidate.explicit {
                    break;
                }
            }
        }
    }
    Err(OrtError::Library(if tried.is_empty() {
        "no place to look".into()
    } else {
        tried.join("; ")
    }))
}

/// Opens one candidate: `dlopen`, the version check, the environment and
/// the provider list. No `ort` call is made before `init_from` succeeds
/// (any would load a library of its own choosing, or panic).
fn open(candidate: &Candidate) -> Result<Runtime, String> {
    let path = &candidate.path;
    if candidate.explicit && !path.exists() {
        return Err("no such file".into());
    }
    let builder = ort::init_from(path).map_err(|e| load_error(&e))?;
    let environment = builder
        .with_name("vosd")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
    Ok(Runtime {
        path: path.clone(),
        source: candidate.source,
        version: super::providers::version(path).unwrap_or_else(|e| format!("(unknown: {e})")),
        providers: super::providers::available(),
        environment,
    })
}

/// `ort`'s load error as a sentence that says what to do.
fn load_error(e: &ort::LoadDynamicError) -> String {
    match e {
        ort::LoadDynamicError::Dlopen { error, .. } => format!("cannot be loaded: {error}"),
        ort::LoadDynamicError::MissingApi { .. } => {
            "not an ONNX Runtime library (it has no OrtGetApiBase)".into()
        }
        ort::LoadDynamicError::InvalidVersionString => {
            "the library reports a malformed version".into()
        }
        ort::LoadDynamicError::BadVersion { version_str, .. } => format!(
            "version {version_str} is too old: vosd needs ONNX Runtime 1.{} or newer",
            ort::MINOR_VERSION
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_path_is_the_only_candidate() {
        let c = candidates(Some(Path::new("/opt/ort/libonnxruntime.so")));
        assert_eq!(c.len(), 1);
        assert!(c[0].explicit);
        assert_eq!(c[0].source, "engine.onnxruntime_library");
    }

    #[test]
    fn without_settings_the_system_comes_before_python() {
        if std::env::var_os(DYLIB_ENV).is_some() {
            eprintln!("SKIP: {DYLIB_ENV} is set");
            return;
        }
        let c = candidates(None);
        assert_eq!(c[0].path, Path::new("libonnxruntime.so.1"));
        assert!(!c[0].explicit);
        assert!(c[2..]
            .iter()
            .all(|c| c.source == "the onnxruntime Python package"));
    }

    #[test]
    fn wheel_libraries_sort_newest_first() {
        let mut v = [
            PathBuf::from("/a/libonnxruntime.so.1.9.0"),
            PathBuf::from("/b/libonnxruntime.so.1.32.0"),
        ];
        v.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
        assert_eq!(v[0], Path::new("/b/libonnxruntime.so.1.32.0"));
    }
}
