//! The OpenCL backend: device discovery, the kernels (`kernels/*.cl`,
//! built when a device is opened, i.e. once per encoder load; the driver's
//! own cache makes later builds fast), the encoder executor and the memory
//! readout with the memory kept on the device.
//!
//! A standalone executor rather than a tract runtime: see docs/backends.md,
//! "Design: a standalone executor, not a tract runtime", for why.

pub mod cache;
pub mod encoder;
pub mod graph;
pub mod readout;
#[cfg(test)]
mod reference;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ocl::enums::{DeviceInfo, DeviceInfoResult};
use ocl::flags::DeviceType;
use ocl::{Context, Device, Platform, Program, Queue};

use super::{
    Accelerator, ActiveBackend, BackendError, EncoderBackend, EncoderSpec, ReadoutBackend,
};
use crate::memory::MemoryStore;
use crate::readout::GridSize;

/// Source of the integer and conversion encoder kernels.
pub const ENCODER_KERNELS: &str = include_str!("kernels/encoder.cl");
/// The float encoder kernels, a template instantiated by [`encoder_source`].
pub const ENCODER_FLOAT_TEMPLATE: &str = include_str!("kernels/encoder_float.cl");

/// The two instantiations of [`ENCODER_FLOAT_TEMPLATE`]: float activations
/// (kernel suffix `_f32`) and half ones (`_f16s`, fp16 storage).
const FLOAT_VARIANTS: [&str; 2] = [
    "#define ACT float\n\
     #define KERNEL(name) name##_f32\n\
     #define LOAD1(p, i) ((p)[i])\n\
     #define STORE1(p, i, v) ((p)[i] = (v))\n\
     #define LOAD4(p, i) vload4(0, (p) + (i))\n\
     #define STORE4(p, i, v) vstore4((v), 0, (p) + (i))\n",
    "#define ACT half\n\
     #define KERNEL(name) name##_f16s\n\
     #define LOAD1(p, i) vload_half((i), (p))\n\
     #define STORE1(p, i, v) vstore_half((v), (i), (p))\n\
     #define LOAD4(p, i) vload_half4(0, (p) + (i))\n\
     #define STORE4(p, i, v) vstore_half4((v), 0, (p) + (i))\n",
];

/// Output channels per work-item of the 1×1 convolution kernels (defined
/// for the kernels by [`encoder_source`]).
pub(crate) const OC_BLOCK: usize = 8;

/// The whole encoder program: the shared defines, `encoder.cl`, then the
/// float template once per variant.
pub fn encoder_source() -> String {
    let mut src = format!("#define OC_BLOCK {OC_BLOCK}\n");
    src.push_str(ENCODER_KERNELS);
    for defines in FLOAT_VARIANTS {
        src.push('\n');
        src.push_str(defines);
        src.push_str(ENCODER_FLOAT_TEMPLATE);
        src.push_str("\n#undef ACT\n#undef KERNEL\n#undef LOAD1\n#undef STORE1\n#undef LOAD4\n#undef STORE4\n");
    }
    src
}
/// Source of the readout kernel.
pub const READOUT_KERNELS: &str = include_str!("kernels/readout.cl");

/// One OpenCL device as `vosd probe` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSummary {
    /// Platform index.
    pub platform: usize,
    /// Device index within the platform.
    pub device: usize,
    /// Platform name.
    pub platform_name: String,
    /// Device name.
    pub name: String,
    /// "gpu", "cpu", "accelerator" or "other".
    pub kind: &'static str,
    /// OpenCL version string of the device.
    pub version: String,
    /// Global memory in bytes.
    pub memory_bytes: u64,
    /// Compute units.
    pub compute_units: u32,
    /// Local (work-group shared) memory in bytes.
    pub local_memory_bytes: u64,
}

impl std::fmt::Display for DeviceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "opencl {}.{}: {} ({}, {}, {} compute units, {} MiB) on platform \"{}\"",
            self.platform,
            self.device,
            self.name,
            self.kind,
            self.version,
            self.compute_units,
            self.memory_bytes >> 20,
            self.platform_name
        )
    }
}

fn kind_of(t: DeviceType) -> &'static str {
    if t.contains(DeviceType::GPU) {
        "gpu"
    } else if t.contains(DeviceType::ACCELERATOR) {
        "accelerator"
    } else if t.contains(DeviceType::CPU) {
        "cpu"
    } else {
        "other"
    }
}

fn summarise(pi: usize, di: usize, platform: &Platform, device: &Device) -> DeviceSummary {
    let kind = match device.info(DeviceInfo::Type) {
        Ok(DeviceInfoResult::Type(t)) => kind_of(t),
        _ => "other",
    };
    let memory_bytes = match device.info(DeviceInfo::GlobalMemSize) {
        Ok(DeviceInfoResult::GlobalMemSize(b)) => b,
        _ => 0,
    };
    let compute_units = match device.info(DeviceInfo::MaxComputeUnits) {
        Ok(DeviceInfoResult::MaxComputeUnits(n)) => n,
        _ => 0,
    };
    let local_memory_bytes = match device.info(DeviceInfo::LocalMemSize) {
        Ok(DeviceInfoResult::LocalMemSize(b)) => b,
        _ => 0,
    };
    DeviceSummary {
        platform: pi,
        device: di,
        platform_name: platform.name().unwrap_or_else(|e| format!("? ({e})")),
        name: device.name().unwrap_or_else(|e| format!("? ({e})")),
        kind,
        version: device
            .version()
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "?".into()),
        memory_bytes,
        compute_units,
        local_memory_bytes,
    }
}

/// The platforms, listed by one thread at a time: the ICD loader's first
/// listing is not safe to run from several threads at once (tests open
/// devices in parallel), and a racing call can see no platform at all.
fn platforms() -> Vec<Platform> {
    static LISTING: Mutex<()> = Mutex::new(());
    let _one = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    Platform::list()
}

/// Every OpenCL device of every platform (empty when the ICD loader finds
/// no platform).
pub fn list_devices() -> Vec<DeviceSummary> {
    let mut out = Vec::new();
    for (pi, platform) in platforms().iter().enumerate() {
        for (di, device) in Device::list_all(platform)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            out.push(summarise(pi, di, platform, device));
        }
    }
    out
}

/// The device `auto` uses: the first GPU or accelerator, if any. CPU
/// devices (PoCL's, for one) are left to tract, which is faster on a CPU;
/// `backend = "opencl"` uses them.
pub fn auto_choice(devices: &[DeviceSummary]) -> Option<&DeviceSummary> {
    devices
        .iter()
        .find(|d| d.kind == "gpu" || d.kind == "accelerator")
}

/// Why the OpenCL backend could not start or failed while running.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OpenclError {
    /// No platform or device.
    #[error("no OpenCL device: {0}")]
    NoDevice(String),
    /// Context, queue, program or buffer creation failed.
    #[error("OpenCL setup failed: {0}")]
    Setup(String),
    /// A kernel failed to compile.
    #[error("OpenCL kernels do not build on {device}: {log}")]
    Build {
        /// The device.
        device: String,
        /// The compiler's message.
        log: String,
    },
    /// The model has an op the kernels lack, or an unexpected layout.
    #[error("the encoder cannot run on OpenCL: {0}")]
    Unsupported(String),
    /// An enqueue, transfer or wait failed while running.
    #[error("OpenCL device error: {0}")]
    Device(String),
    /// The device did not finish a frame in time.
    #[error("OpenCL device did not finish within {0:?}")]
    Timeout(Duration),
    /// A failure injected by a test (`Gpu::inject_failure`).
    #[error("injected OpenCL failure (test hook)")]
    Injected,
}

fn device_err(e: ocl::Error) -> OpenclError {
    OpenclError::Device(e.to_string())
}

/// The execution status of `event`'s command (`CL_COMPLETE`, a positive
/// "not yet" state, or a negative error code). Read into a local, where
/// ocl's `Event::info` would allocate on every poll of the per-frame wait.
fn command_status(event: &ocl::Event) -> Result<i32, OpenclError> {
    use ocl::core::ffi;
    let mut status: ffi::cl_int = 0;
    // SAFETY: `event` is a live event, and the buffer is a cl_int, exactly
    // the size of the value asked for.
    let err = unsafe {
        ffi::clGetEventInfo(
            *event.as_core().as_ptr_ref(),
            ffi::CL_EVENT_COMMAND_EXECUTION_STATUS,
            std::mem::size_of::<ffi::cl_int>(),
            &mut status as *mut ffi::cl_int as *mut std::ffi::c_void,
            std::ptr::null_mut(),
        )
    };
    if err != ffi::CL_SUCCESS {
        return Err(OpenclError::Device(format!(
            "cannot query a command's status (error {err})"
        )));
    }
    Ok(status)
}

/// The least time the first run of a set of kernels may take (see
/// [`Gpu::wait`]); `device_timeout_ms` bounds every later run.
pub const FIRST_RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// An opened device: an in-order queue (which holds the context) and the
/// compiled kernels, shared by an encoder and its trackers' readouts.
pub struct Gpu {
    /// The device as listed.
    pub summary: DeviceSummary,
    queue: Queue,
    encoder_program: Program,
    readout_program: Program,
    /// Longest wait for one frame's work.
    timeout: Duration,
    /// Test hook: fail the next `Gpu::check_injected` call after this many.
    injected: crate::backend::InjectedFailure,
    /// Whether both programs came from vosd's kernel cache.
    pub kernels_from_cache: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.summary)
    }
}

impl Gpu {
    /// Opens device `device` of platform `platform` (indices as in
    /// [`list_devices`]) and builds the kernels.
    pub fn open(
        platform: usize,
        device: usize,
        timeout: Duration,
    ) -> Result<Arc<Self>, OpenclError> {
        Self::open_with_cache(platform, device, timeout, cache::default_dir().as_deref())
    }

    /// [`Gpu::open`] with an explicit kernel cache directory (`None`: no
    /// cache).
    pub fn open_with_cache(
        platform: usize,
        device: usize,
        timeout: Duration,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Self>, OpenclError> {
        let platforms = platforms();
        let p = *platforms
            .get(platform)
            .ok_or_else(|| OpenclError::NoDevice(format!("no platform {platform}")))?;
        let devices = Device::list_all(p).map_err(|e| OpenclError::NoDevice(e.to_string()))?;
        let d = *devices.get(device).ok_or_else(|| {
            OpenclError::NoDevice(format!("platform {platform} has no device {device}"))
        })?;
        let summary = summarise(platform, device, &p, &d);
        let setup = |e: ocl::Error| OpenclError::Setup(e.to_string());
        let context = Context::builder()
            .platform(p)
            .devices(d)
            .build()
            .map_err(setup)?;
        let queue = Queue::new(&context, d, None).map_err(setup)?;
        let started = Instant::now();
        let (encoder_program, enc_cached) = cache::build(
            &context,
            d,
            &summary,
            "encoder",
            &encoder_source(),
            cache_dir,
        )?;
        let (readout_program, read_cached) =
            cache::build(&context, d, &summary, "readout", READOUT_KERNELS, cache_dir)?;
        let kernels_from_cache = enc_cached && read_cached;
        log::debug!(
            "OpenCL kernels {} for {} in {:?}",
            if kernels_from_cache {
                "loaded from the cache"
            } else {
                "built"
            },
            summary.name,
            started.elapsed()
        );
        Ok(Arc::new(Self {
            summary,
            queue,
            encoder_program,
            readout_program,
            timeout,
            injected: Default::default(),
            kernels_from_cache,
        }))
    }

    /// Opens the first device of the given kinds (`gpu`/`accelerator` for
    /// `auto`; any kind when `any_kind`).
    pub fn open_first(any_kind: bool, timeout: Duration) -> Result<Arc<Self>, OpenclError> {
        let devices = list_devices();
        let pick = if any_kind {
            devices.first()
        } else {
            auto_choice(&devices)
        };
        match pick {
            Some(d) => Self::open(d.platform, d.device, timeout),
            None if devices.is_empty() => Err(OpenclError::NoDevice(
                "the OpenCL loader lists no platform or device".into(),
            )),
            None => Err(OpenclError::NoDevice(format!(
                "only CPU OpenCL devices ({}); tract is used on the CPU",
                devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The command queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The OpenCL device.
    pub fn device(&self) -> Device {
        self.queue.device()
    }

    /// Makes the `n+1`-th later use of the device fail, as a lost device
    /// would (tests of the fallback; the uses are counted by
    /// [`super::Fallback::run`]).
    pub fn inject_failure_after(&self, n: u64) {
        self.injected.arm(n);
    }

    /// Counts down an injected failure; `Err` when it fires (the fallback
    /// asks before every use of the device).
    fn check_injected(&self) -> Result<(), OpenclError> {
        if self.injected.fires() {
            return Err(OpenclError::Injected);
        }
        Ok(())
    }

    /// Waits until everything enqueued so far has run, polling so that a
    /// kernel that never finishes becomes [`OpenclError::Timeout`] instead
    /// of a hang. Transfers are blocking calls outside this bound: a device
    /// that hangs inside one is left to systemd's watchdog.
    ///
    /// `warmed` is the caller's own flag: until its kernels have finished
    /// once, the bound is at least [`FIRST_RUN_TIMEOUT`], since drivers
    /// such as PoCL compile a kernel's work-group code at its first launch
    /// (seconds, on a loaded machine with a cold driver cache).
    fn wait(&self, warmed: &AtomicBool) -> Result<(), OpenclError> {
        let limit = if warmed.load(Ordering::Relaxed) {
            self.timeout
        } else {
            self.timeout.max(FIRST_RUN_TIMEOUT)
        };
        let marker = self
            .queue
            .enqueue_marker::<&ocl::EventList>(None)
            .map_err(device_err)?;
        self.queue.flush().map_err(device_err)?;
        let started = Instant::now();
        let mut nap = Duration::from_micros(20);
        loop {
            // A failed command has a negative status: a device error at
            // once, not a wait for the timeout.
            match command_status(&marker)? {
                ocl::core::ffi::CL_COMPLETE => {
                    warmed.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                status if status < 0 => {
                    return Err(OpenclError::Device(format!(
                        "a command failed on the device (status {status})"
                    )))
                }
                _ => {}
            }
            if started.elapsed() > limit {
                return Err(OpenclError::Timeout(limit));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_micros(500));
        }
    }
}

impl Accelerator for Gpu {
    fn kind(&self) -> ActiveBackend {
        ActiveBackend::Opencl
    }

    fn name(&self) -> &str {
        &self.summary.name
    }

    fn encoder(
        self: Arc<Self>,
        model: &[u8],
        spec: &EncoderSpec,
        half_storage: bool,
    ) -> Result<Box<dyn EncoderBackend>, BackendError> {
        let mut graph =
            graph::lower(model, spec.width, spec.height).map_err(OpenclError::Unsupported)?;
        if half_storage {
            graph = graph::to_half_storage(graph).map_err(OpenclError::Unsupported)?;
        }
        Ok(Box::new(encoder::OpenclEncoder::from_graph(self, graph)?))
    }

    fn readout(
        self: Arc<Self>,
        grid: GridSize,
        memory: &MemoryStore,
    ) -> Result<Option<Box<dyn ReadoutBackend>>, BackendError> {
        Ok(Some(Box::new(readout::OpenclReadout::new(
            self, grid, memory,
        )?)))
    }

    fn inject_failure_after(&self, n: u64) {
        Gpu::inject_failure_after(self, n);
    }

    fn check_injected(&self) -> Result<(), BackendError> {
        Ok(Gpu::check_injected(self)?)
    }
}
