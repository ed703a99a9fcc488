//! What the loaded library offers: its version and execution providers,
//! and the order in which vosd asks for them.

use std::ffi::{c_char, c_int, CStr};
use std::path::Path;

/// An execution provider vosd can ask ONNX Runtime for, in the order
/// [`PREFERENCE`] tries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// NVIDIA TensorRT (Jetson's JetPack builds, `onnxruntime-gpu`).
    TensorRt,
    /// NVIDIA CUDA.
    Cuda,
    /// ONNX Runtime's own CPU kernels (always built).
    Cpu,
}

/// GPUs first, the CPU provider last.
pub const PREFERENCE: [Provider; 3] = [Provider::TensorRt, Provider::Cuda, Provider::Cpu];

impl Provider {
    /// ONNX Runtime's name for it (`CUDAExecutionProvider`).
    pub fn ort_name(self) -> &'static str {
        match self {
            Self::TensorRt => "TensorrtExecutionProvider",
            Self::Cuda => "CUDAExecutionProvider",
            Self::Cpu => "CPUExecutionProvider",
        }
    }

    /// Its short name in logs and the status ("TensorRT").
    pub fn label(self) -> &'static str {
        match self {
            Self::TensorRt => "TensorRT",
            Self::Cuda => "CUDA",
            Self::Cpu => "CPU",
        }
    }
}

/// The providers of [`PREFERENCE`] that `available` (the library's list)
/// has, in order.
pub fn usable(available: &[String]) -> Vec<Provider> {
    PREFERENCE
        .into_iter()
        .filter(|p| available.iter().any(|a| a == p.ort_name()))
        .collect()
}

/// The version string of the ONNX Runtime library at `path` ("1.32.0"),
/// read from its `OrtGetApiBase` (the library is already loaded: this
/// opens another reference to it).
pub fn version(path: &Path) -> Result<String, String> {
    // SAFETY: the library at `path` has just been loaded by `ort` and
    // checked to export OrtGetApiBase; opening it again runs no
    // initialiser a second time.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: the symbol's type is ONNX Runtime's C API: `const OrtApiBase*
    // OrtGetApiBase(void)`.
    let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|e| e.to_string())?;
    // SAFETY: a C function without arguments, returning a static struct.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned null".into());
    }
    // SAFETY: `base` points at the library's static OrtApiBase; the version
    // is a static, null-terminated string.
    let version = unsafe { CStr::from_ptr(((*base).GetVersionString)()) };
    Ok(version.to_string_lossy().into_owned())
}

/// The execution providers the loaded library was built with, as it lists
/// them; empty if it cannot say.
pub fn available() -> Vec<String> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: ONNX Runtime's C API: fills `list` with `count` strings that
    // it owns until ReleaseAvailableProviders.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut count) };
    if !status.0.is_null() {
        // SAFETY: a non-null status is an OrtStatus we must release.
        unsafe { (api.ReleaseStatus)(status.0) };
        return Vec::new();
    }
    if list.is_null() {
        return Vec::new();
    }
    let names = (0..count.max(0) as usize)
        .map(|i| {
            // SAFETY: `i < count`, and each entry is a null-terminated
            // string owned by the list.
            unsafe { CStr::from_ptr(*list.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // SAFETY: releases the list GetAvailableProviders gave, once.
    let status = unsafe { (api.ReleaseAvailableProviders)(list, count) };
    if !status.0.is_null() {
        // SAFETY: as above.
        unsafe { (api.ReleaseStatus)(status.0) };
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_providers_come_first_and_only_if_listed() {
        let cpu_only = vec![
            "AzureExecutionProvider".into(),
            "CPUExecutionProvider".into(),
        ];
        assert_eq!(usable(&cpu_only), vec![Provider::Cpu]);
        let gpu: Vec<String> = [
            "CPUExecutionProvider",
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            usable(&gpu),
            vec![Provider::TensorRt, Provider::Cuda, Provider::Cpu]
        );
    }
}
