//! `vosd probe`: the cameras this machine has (V4L2 device nodes and
//! their formats) and its compute backends (the ONNX Runtime library, its
//! version and execution providers; OpenCL platforms and devices), and the
//! backend `auto` would choose.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One V4L2 device node.
#[derive(Clone, Debug)]
pub struct VideoNode {
    /// `/dev/videoN`.
    pub path: PathBuf,
    /// The driver's name for it (sysfs), if known.
    pub name: Option<String>,
}

/// Lists `/dev/video*` (in number order) with their sysfs names.
pub fn video_nodes(dev: &Path, sysfs: &Path) -> Vec<VideoNode> {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, VideoNode)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let n: u32 = file.strip_prefix("video")?.parse().ok()?;
            let name = std::fs::read_to_string(sysfs.join(&file).join("name"))
                .ok()
                .map(|s| s.trim().to_string());
            Some((
                n,
                VideoNode {
                    path: e.path(),
                    name,
                },
            ))
        })
        .collect();
    nodes.sort_by_key(|(n, _)| *n);
    nodes.into_iter().map(|(_, v)| v).collect()
}

/// `vosd probe`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// A vosd configuration whose `engine.onnxruntime_library` is the
    /// library to report (default: the search `auto` does).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs `vosd probe`: the cameras of `/dev`, then the compute backends.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let engine = match &args.config {
        Some(p) => vosd::config::DaemonConfig::load(p)?.engine,
        None => vosd_engine::config::EngineConfig::default(),
    };
    print!(
        "{}",
        report(Path::new("/dev"), Path::new("/sys/class/video4linux"))
    );
    let library = engine.device_options().onnxruntime_library;
    print!("{}", compute_report(library.as_deref()));
    Ok(())
}

/// The camera report `vosd probe` prints.
pub fn report(dev: &Path, sysfs: &Path) -> String {
    let nodes = video_nodes(dev, sysfs);
    let mut out = String::new();
    if nodes.is_empty() {
        let _ = writeln!(
            out,
            "no camera: there is no {}/video* device node (is a camera plugged in and its V4L2 driver loaded?)",
            dev.display()
        );
        return out;
    }
    for node in nodes {
        let _ = writeln!(
            out,
            "{}: {}",
            node.path.display(),
            node.name.as_deref().unwrap_or("(no name in sysfs)")
        );
        for line in vosd::source::camera_formats(&node.path) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// The compute backends: the ONNX Runtime library (loaded from `library`,
/// else found by the search), the OpenCL platforms and devices, and which
/// backend `backend = "auto"` would choose and why.
pub fn compute_report(library: Option<&Path>) -> String {
    use vosd_engine::backend::{survey_devices, survey_onnxruntime, AutoChoice};
    let mut out = String::new();
    let ort = survey_onnxruntime(library);
    let ort_choice = match &ort.library {
        Ok(lib) => {
            let _ = writeln!(
                out,
                "onnxruntime: {} (from {}), version {}",
                lib.path.display(),
                lib.source,
                lib.version
            );
            let _ = writeln!(out, "    execution providers: {}", lib.providers.join(", "));
            Some(lib.order.clone())
        }
        Err(e) => {
            let _ = writeln!(out, "onnxruntime: {e}");
            let _ = writeln!(out, "    {}", onnxruntime_hint(&ort.python_packages));
            None
        }
    };
    let survey = survey_devices();
    if survey.devices.is_empty() && survey.auto == AutoChoice::NoDevice {
        let _ = writeln!(
            out,
            "no OpenCL device: the loader (libOpenCL) lists no platform (install the board's OpenCL driver/ICD, e.g. pocl-opencl-icd, mesa-opencl-icd)"
        );
    }
    for d in &survey.devices {
        let _ = writeln!(out, "{d}");
    }
    let opencl = match survey.auto {
        AutoChoice::Device(ref name) => Some(format!(
            "opencl on \"{name}\" (the first GPU/accelerator; used if its self-test against tract passes at start)"
        )),
        AutoChoice::NoDevice => None,
        AutoChoice::OnlyCpuDevices => None,
        AutoChoice::NotBuilt => None,
    };
    let choice = match (ort_choice, opencl) {
        (Some(order), _) if order.len() == 1 => format!(
            "onnxruntime on its {} provider (used if its self-test against tract passes at start)",
            order[0]
        ),
        (Some(order), _) => format!(
            "onnxruntime, on the first of its {} providers that starts (used if its self-test against tract passes at start)",
            order.join(", ")
        ),
        (None, Some(opencl)) => opencl,
        (None, None) => match survey.auto {
            AutoChoice::OnlyCpuDevices => "cpu (tract): no ONNX Runtime, and only CPU OpenCL devices, where tract is faster (backend = \"opencl\" uses them anyway)".to_string(),
            AutoChoice::NotBuilt => "cpu (tract): no ONNX Runtime, and this vosd was built without the `opencl` feature".to_string(),
            _ => "cpu (tract): no ONNX Runtime and no OpenCL device".to_string(),
        },
    };
    let _ = writeln!(out, "backend auto -> {choice}");
    out
}

/// What to do when no ONNX Runtime library loads: the Python packages
/// found, else how to install one.
fn onnxruntime_hint(python_packages: &[PathBuf]) -> String {
    if let Some(found) = python_packages.first() {
        return format!(
            "a Python package ships {}: set engine.onnxruntime_library or ORT_DYLIB_PATH to it",
            found.display()
        );
    }
    match python_onnxruntime_dir() {
        Some(dir) => format!(
            "python3 finds onnxruntime in {dir}: set engine.onnxruntime_library or ORT_DYLIB_PATH to {dir}/capi/libonnxruntime.so.<version>"
        ),
        None => "install it with `pip install onnxruntime` (PC, Raspberry Pi), or NVIDIA's onnxruntime-gpu for JetPack (Jetson); see the README".to_string(),
    }
}

/// Where `python3` imports `onnxruntime` from (asked once, here only: the
/// daemon never runs Python).
fn python_onnxruntime_dir() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !dir.is_empty()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_devices_is_said_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let r = report(dir.path(), dir.path());
        assert!(r.starts_with("no camera"), "{r}");
    }

    #[test]
    fn lists_nodes_in_number_order_with_names() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        for n in [10, 2, 0] {
            std::fs::write(dev.path().join(format!("video{n}")), b"").unwrap();
        }
        std::fs::write(dev.path().join("videoX"), b"").unwrap();
        std::fs::create_dir(sys.path().join("video2")).unwrap();
        std::fs::write(sys.path().join("video2/name"), "USB Camera\n").unwrap();
        let nodes = video_nodes(dev.path(), sys.path());
        let names: Vec<String> = nodes
            .iter()
            .map(|n| n.path.file_name().unwrap().to_string_lossy().into())
            .collect();
        assert_eq!(names, vec!["video0", "video2", "video10"]);
        assert_eq!(nodes[1].name.as_deref(), Some("USB Camera"));
        let r = report(dev.path(), sys.path());
        assert!(r.contains("USB Camera"), "{r}");
        // Empty files are not cameras: the report says why, per node.
        if vosd::source::V4L2_BUILT {
            assert!(r.contains("cannot query: not a V4L2"), "{r}");
        } else {
            assert!(r.contains("built without the `v4l2` feature"), "{r}");
        }
    }
}
