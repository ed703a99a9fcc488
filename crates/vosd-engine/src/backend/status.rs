//! What the daemon shows of the backends: the choice asked for, the
//! backend running now and why ([`BackendStatus`], shared through a
//! [`BackendHandle`] with the stats line, systemd STATUS and the control
//! socket).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The encoder's live backend status, shared with the service (stats,
/// systemd STATUS) and the control socket.
pub type BackendHandle = Arc<Mutex<BackendStatus>>;

/// A copy of the status behind `handle`.
pub fn current(handle: &BackendHandle) -> BackendStatus {
    handle.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The backend asked for in the config (`engine.backend`) or on the
/// command line (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// ONNX Runtime (its GPU providers first), else an OpenCL GPU or
    /// accelerator, else tract: the first that starts and passes the
    /// self-test.
    #[default]
    Auto,
    /// ONNX Runtime, on its best provider (TensorRT, CUDA, then the CPU);
    /// failing to start it is an error.
    Onnxruntime,
    /// OpenCL, on any device kind (PoCL's CPU device included); failing to
    /// start it is an error.
    Opencl,
    /// tract on the CPU.
    Cpu,
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Onnxruntime => "onnxruntime",
            Self::Opencl => "opencl",
            Self::Cpu => "cpu",
        })
    }
}

/// The backend running now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveBackend {
    /// An ONNX Runtime session (the readout runs on the CPU beside it).
    Onnxruntime,
    /// The OpenCL kernels.
    Opencl,
    /// tract on the CPU.
    Cpu,
}

impl ActiveBackend {
    /// The backend's proper name, for log lines ("OpenCL", "tract").
    pub fn label(self) -> &'static str {
        match self {
            Self::Onnxruntime => "ONNX Runtime",
            Self::Opencl => "OpenCL",
            Self::Cpu => "tract",
        }
    }

    /// The environment variable of its fault-injection test hook
    /// ([`crate::backend::arm_failure_hook`]).
    pub fn fail_hook_env(self) -> &'static str {
        match self {
            Self::Onnxruntime => crate::backend::FAIL_HOOK_ENV_ONNXRUNTIME,
            Self::Opencl | Self::Cpu => crate::backend::FAIL_HOOK_ENV,
        }
    }
}

impl std::fmt::Display for ActiveBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Onnxruntime => "onnxruntime",
            Self::Opencl => "opencl",
            Self::Cpu => "cpu",
        })
    }
}

/// What runs the encoder and readout, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendStatus {
    /// The backend in use.
    pub active: ActiveBackend,
    /// The device, when one is in use or was until a fallback.
    pub device: Option<String>,
    /// Why this backend: the self-test result, why no device was used, or
    /// the failure that switched to tract.
    pub reason: String,
    /// Switches to tract after a device failure while running (0 or 1).
    pub fallbacks: u32,
}

impl BackendStatus {
    /// tract, for `reason`.
    pub fn cpu(reason: impl Into<String>) -> Self {
        Self {
            active: ActiveBackend::Cpu,
            device: None,
            reason: reason.into(),
            fallbacks: 0,
        }
    }

    /// One line for logs and `vosd probe`.
    pub fn describe(&self) -> String {
        match (&self.device, self.active) {
            (Some(d), active) if active != ActiveBackend::Cpu => {
                format!("{active} on {d} ({})", self.reason)
            }
            _ => format!("cpu (tract): {}", self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_device_only_while_it_runs() {
        let mut s = BackendStatus {
            active: ActiveBackend::Opencl,
            device: Some("gfx".into()),
            reason: "self-test passed".into(),
            fallbacks: 0,
        };
        assert_eq!(s.describe(), "opencl on gfx (self-test passed)");
        s.active = ActiveBackend::Cpu;
        s.reason = "fell back to tract: lost".into();
        assert_eq!(s.describe(), "cpu (tract): fell back to tract: lost");
    }
}
