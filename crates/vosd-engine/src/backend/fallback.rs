//! The one place that decides whether the device or the CPU runs a call:
//! the self-test before first use, the switch to the CPU when the device
//! fails, and the status that reports both.

use super::compare::OutputError;
use super::{current, ActiveBackend, BackendError, BackendHandle, BackendStatus, Device};

/// Environment variable of the OpenCL fallback test hook: the device fails
/// (as a lost device would) after this many uses (encoder runs and
/// readouts).
pub const FAIL_HOOK_ENV: &str = "VOSD_TEST_FAIL_OPENCL_AFTER";

/// The same hook for the ONNX Runtime backend (its encoder runs).
pub const FAIL_HOOK_ENV_ONNXRUNTIME: &str = "VOSD_TEST_FAIL_ONNXRUNTIME_AFTER";

/// Test hook (documented in docs/backends.md): when the device kind's
/// variable ([`FAIL_HOOK_ENV`], [`FAIL_HOOK_ENV_ONNXRUNTIME`]) holds a
/// number `n`, makes `device` fail after `n` uses, to exercise the
/// fallback in a running daemon.
pub fn arm_failure_hook(device: &Device) {
    let var = device.kind().fail_hook_env();
    let hook = std::env::var(var).ok();
    if let Some(n) = hook.and_then(|v| v.parse().ok()) {
        log::warn!(
            "{var}: the {} device will fail after {n} uses",
            device.kind().label()
        );
        device.inject_failure_after(n);
    }
}

/// The countdown behind [`Accelerator::inject_failure_after`] and
/// [`Accelerator::check_injected`], shared by every device backend.
///
/// [`Accelerator::inject_failure_after`]: super::Accelerator::inject_failure_after
/// [`Accelerator::check_injected`]: super::Accelerator::check_injected
#[derive(Debug, Default)]
pub struct InjectedFailure(std::sync::Mutex<Option<u64>>);

impl InjectedFailure {
    /// Makes the `n+1`-th later [`InjectedFailure::fires`] return true.
    pub fn arm(&self, n: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    }

    /// Counts one use down; true (once) when the armed failure is due.
    pub fn fires(&self) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match *slot {
            Some(0) => {
                *slot = None;
                true
            }
            Some(n) => {
                *slot = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

/// How close a device's outputs must come to the CPU's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// Per output: the largest error at most `max` × the reference's
    /// largest magnitude, and the mean error at most `mean` × its mean
    /// magnitude.
    Relative {
        /// Bound on the largest error, relative to the largest value.
        max: f32,
        /// Bound on the mean error, relative to the mean value.
        mean: f32,
    },
    /// The largest error over every output at most this.
    Absolute(f32),
}

/// What a self-test checks and how its results are named.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfTest<'a> {
    /// Its name in messages ("self-test", "readout self-test").
    pub name: &'a str,
    /// The CPU side's name in messages ("tract").
    pub reference: &'a str,
    /// The probe's outputs, in order (messages name the one that differs).
    pub outputs: &'a [&'a str],
    /// The bound on the difference.
    pub tolerance: Tolerance,
    /// The device's arithmetic, for the status reason.
    pub kernels: &'a str,
}

impl SelfTest<'_> {
    /// Runs `probe` on `cpu` (the reference) and on `backend` (on `device`)
    /// and compares the outputs; `Ok` with the worst error (relative to the
    /// output's scale for [`Tolerance::Relative`]), or the error naming the
    /// output that is out of bounds.
    pub fn check<B: ?Sized>(
        &self,
        device: &Device,
        cpu: &mut B,
        backend: &mut B,
        mut probe: impl FnMut(&mut B) -> Result<Vec<Vec<f32>>, BackendError>,
    ) -> Result<f32, BackendError> {
        let failed = |reason: String| BackendError::SelfTest {
            device: device.kind().label(),
            reason: format!("{} failed on {}: {reason}", self.name, device.name()),
        };
        let want = probe(cpu).map_err(|e| failed(format!("the CPU reference failed: {e}")))?;
        let got = probe(backend)?;
        if got.len() != want.len() || got.iter().zip(&want).any(|(g, w)| g.len() != w.len()) {
            return Err(failed(format!(
                "its outputs do not have the sizes of {}'s",
                self.reference
            )));
        }
        let names = self.outputs.iter().chain(std::iter::repeat(&"output"));
        let mut worst = 0f32;
        for ((name, g), w) in names.zip(&got).zip(&want) {
            let e = OutputError::between(g, w);
            match self.tolerance {
                Tolerance::Relative { max, mean } => {
                    worst = worst.max(e.max_abs / e.ref_max.max(1e-6));
                    if e.max_abs > max * e.ref_max || e.mean_abs > mean * e.ref_mean {
                        return Err(failed(format!(
                            "{name} differs from {} by max {:.3e} / mean {:.3e} (scale {:.3e} / {:.3e})",
                            self.reference, e.max_abs, e.mean_abs, e.ref_max, e.ref_mean
                        )));
                    }
                }
                Tolerance::Absolute(_) => worst = worst.max(e.max_abs),
            }
        }
        if let Tolerance::Absolute(limit) = self.tolerance {
            if worst.is_nan() || worst > limit {
                return Err(failed(format!(
                    "max error {worst:.3e} against {}",
                    self.reference
                )));
            }
        }
        Ok(worst)
    }
}

fn lock(status: &BackendHandle) -> std::sync::MutexGuard<'_, BackendStatus> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}

/// A CPU implementation of a backend trait `B` and, while it works, a
/// device one, with the status they share with the other fallbacks on the
/// same device.
pub struct Fallback<B: ?Sized> {
    cpu: Box<B>,
    device: Option<(Device, Box<B>)>,
    status: BackendHandle,
    /// What runs here ("readout"), prefixed to the reasons of its switches;
    /// `None` for the encoder.
    role: Option<&'static str>,
}

impl<B: ?Sized> std::fmt::Debug for Fallback<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.device {
            Some((d, _)) => write!(f, "Fallback(cpu, {d:?})"),
            None => write!(f, "Fallback(cpu)"),
        }
    }
}

impl<B: ?Sized> Fallback<B> {
    /// The CPU implementation alone, reporting to `status`; `role` names
    /// what runs here in the reasons of a switch ("readout"), `None` for
    /// the encoder.
    pub fn new(cpu: Box<B>, status: BackendHandle, role: Option<&'static str>) -> Self {
        Self {
            cpu,
            device: None,
            status,
            role,
        }
    }

    /// Self-tests `backend` (on `device`) against the CPU implementation
    /// with `probe` ([`SelfTest::check`]) and, if it passes, uses it from
    /// now on. The first attach on a device reports it in the status
    /// (`"{kernels} kernels, self-test passed (…)"`); later ones (the
    /// trackers' readouts) keep the status as it is. On an error nothing
    /// changes.
    pub fn attach(
        &mut self,
        device: Device,
        mut backend: Box<B>,
        test: &SelfTest<'_>,
        probe: impl FnMut(&mut B) -> Result<Vec<Vec<f32>>, BackendError>,
    ) -> Result<(), BackendError> {
        let worst = test.check(&device, &mut *self.cpu, &mut *backend, probe)?;
        {
            let mut status = lock(&self.status);
            let reported =
                status.active == device.kind() && status.device.as_deref() == Some(device.name());
            if !reported {
                *status = BackendStatus {
                    active: device.kind(),
                    device: Some(device.name().to_string()),
                    reason: format!(
                        "{} kernels, self-test passed (max error {worst:.1e} of scale)",
                        test.kernels
                    ),
                    fallbacks: 0,
                };
            }
        }
        self.device = Some((device, backend));
        Ok(())
    }

    /// Runs `op` on the device while one is in use, else on the CPU. When
    /// the device call fails, `op` runs again on the CPU, and this and every
    /// fallback sharing the status stay on the CPU from then on.
    pub fn run<R>(
        &mut self,
        mut op: impl FnMut(&mut B) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        let outcome = match self.device.as_mut() {
            Some((device, backend)) if lock(&self.status).active == device.kind() => {
                Some(device.check_injected().and_then(|()| op(&mut **backend)))
            }
            _ => None,
        };
        match outcome {
            Some(Ok(r)) => return Ok(r),
            Some(Err(e)) => {
                let why = self.reason(&e);
                self.fall_back(&why);
            }
            // Another fallback on this status switched (or none was
            // attached): the device is not used again.
            None => self.device = None,
        }
        op(&mut *self.cpu)
    }

    /// `e` as the reason of a switch: prefixed with the role.
    fn reason(&self, e: &BackendError) -> String {
        match self.role {
            Some(role) => format!("{role}: {e}"),
            None => e.to_string(),
        }
    }

    /// Switches to the CPU after `e`, a device failure outside
    /// [`Fallback::run`] (a device readout that cannot start counts as one).
    pub fn fail(&mut self, e: &BackendError) {
        let why = self.reason(e);
        self.fall_back(&why);
    }

    /// Switches to the CPU for good because of `why`: logs it and counts it
    /// in the status, once for all the fallbacks sharing the status (later
    /// calls change nothing).
    pub fn fall_back(&mut self, why: &str) {
        self.device = None;
        let mut status = lock(&self.status);
        if status.active == ActiveBackend::Cpu {
            return;
        }
        log::warn!(
            "{} backend failed ({why}); switching to tract on the CPU",
            status.active.label()
        );
        status.active = ActiveBackend::Cpu;
        status.reason = format!("fell back to tract: {why}");
        status.fallbacks += 1;
    }

    /// Stays on the CPU (no device was attached, or it is dropped) and
    /// reports `reason`, as the start of a run does (`backend = cpu`, or
    /// why `auto` found no device).
    pub fn stay_on_cpu(&mut self, reason: impl Into<String>) {
        self.device = None;
        *lock(&self.status) = BackendStatus::cpu(reason);
    }

    /// The CPU implementation (the reference; tests and benchmarks).
    pub fn cpu(&mut self) -> &mut B {
        &mut self.cpu
    }

    /// The device in use, if any (none after a switch by any fallback
    /// sharing the status).
    pub fn device(&self) -> Option<&Device> {
        let (device, _) = self.device.as_ref()?;
        (lock(&self.status).active == device.kind()).then_some(device)
    }

    /// Whether the device runs the calls now.
    pub fn on_device(&self) -> bool {
        self.device().is_some()
    }

    /// A copy of the status.
    pub fn status(&self) -> BackendStatus {
        current(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Accelerator, EncoderBackend, EncoderSpec, ReadoutBackend};
    use crate::memory::MemoryStore;
    use crate::readout::GridSize;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A stand-in backend: doubles its input, optionally off by `error`,
    /// or fails when `broken` is set.
    trait Double: Send {
        fn double(&mut self, x: &[f32]) -> Result<Vec<f32>, BackendError>;
    }

    struct Exact;
    impl Double for Exact {
        fn double(&mut self, x: &[f32]) -> Result<Vec<f32>, BackendError> {
            Ok(x.iter().map(|v| 2.0 * v).collect())
        }
    }

    struct Fake {
        error: f32,
        broken: Arc<AtomicBool>,
    }
    impl Double for Fake {
        fn double(&mut self, x: &[f32]) -> Result<Vec<f32>, BackendError> {
            if self.broken.load(Ordering::Relaxed) {
                return Err(BackendError::Unavailable("lost the device".into()));
            }
            Ok(x.iter().map(|v| 2.0 * v + self.error).collect())
        }
    }

    /// A device that only counts down injected failures.
    #[derive(Debug, Default)]
    struct FakeDevice {
        inject: Mutex<Option<u64>>,
    }
    impl Accelerator for FakeDevice {
        fn kind(&self) -> ActiveBackend {
            ActiveBackend::Opencl
        }
        fn name(&self) -> &str {
            "fake"
        }
        fn encoder(
            self: Arc<Self>,
            _: &[u8],
            _: &EncoderSpec,
            _: bool,
        ) -> Result<Box<dyn EncoderBackend>, BackendError> {
            Err(BackendError::Unavailable("no encoder".into()))
        }
        fn readout(
            self: Arc<Self>,
            _: GridSize,
            _: &MemoryStore,
        ) -> Result<Option<Box<dyn ReadoutBackend>>, BackendError> {
            Ok(None)
        }
        fn inject_failure_after(&self, n: u64) {
            *self.inject.lock().unwrap() = Some(n);
        }
        fn check_injected(&self) -> Result<(), BackendError> {
            let mut slot = self.inject.lock().unwrap();
            match *slot {
                Some(0) => {
                    *slot = None;
                    Err(BackendError::Unavailable("injected failure".into()))
                }
                Some(n) => {
                    *slot = Some(n - 1);
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }

    const TEST: SelfTest<'static> = SelfTest {
        name: "self-test",
        reference: "tract",
        outputs: &["doubled"],
        tolerance: Tolerance::Relative {
            max: 1e-3,
            mean: 1e-4,
        },
        kernels: "fp32",
    };

    fn status() -> BackendHandle {
        Arc::new(Mutex::new(BackendStatus::cpu("tract on the CPU")))
    }

    fn probe(b: &mut (dyn Double + 'static)) -> Result<Vec<Vec<f32>>, BackendError> {
        Ok(vec![b.double(&[1.0, 2.0, 3.0])?])
    }

    fn attached(
        status: &BackendHandle,
        device: &Device,
        role: Option<&'static str>,
    ) -> (Fallback<dyn Double>, Arc<AtomicBool>) {
        let broken = Arc::new(AtomicBool::new(false));
        let mut f: Fallback<dyn Double> = Fallback::new(Box::new(Exact), status.clone(), role);
        let dev = Fake {
            error: 1e-6,
            broken: broken.clone(),
        };
        f.attach(device.clone(), Box::new(dev), &TEST, probe)
            .unwrap();
        (f, broken)
    }

    #[test]
    fn attach_runs_the_self_test_and_reports_the_device() {
        let (s, device): (_, Device) = (status(), Arc::new(FakeDevice::default()));
        let (mut f, _) = attached(&s, &device, None);
        assert!(f.on_device());
        let st = f.status();
        assert_eq!(st.active, ActiveBackend::Opencl);
        assert_eq!(st.device.as_deref(), Some("fake"));
        assert!(
            st.reason.starts_with("fp32 kernels, self-test passed"),
            "{st:?}"
        );
        // The device's (slightly off) result, not the CPU's.
        let y = f.run(|b| b.double(&[1.0])).unwrap();
        assert_eq!(y, [2.0 + 1e-6]);
    }

    #[test]
    fn a_failing_self_test_names_the_output_and_changes_nothing() {
        let (s, device): (_, Device) = (status(), Arc::new(FakeDevice::default()));
        let mut f: Fallback<dyn Double> = Fallback::new(Box::new(Exact), s.clone(), None);
        let off = Fake {
            error: 0.5,
            broken: Arc::new(AtomicBool::new(false)),
        };
        let e = f
            .attach(device.clone(), Box::new(off), &TEST, probe)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the encoder cannot run on OpenCL: self-test failed on fake: doubled differs from tract"),
            "{e}"
        );
        assert!(!f.on_device());
        assert_eq!(f.status(), BackendStatus::cpu("tract on the CPU"));
        let absolute = SelfTest {
            tolerance: Tolerance::Absolute(1e-3),
            name: "readout self-test",
            reference: "the CPU readout",
            ..TEST
        };
        let nan = |b: &mut (dyn Double + 'static)| Ok(vec![b.double(&[f32::NAN])?]);
        let mut off = Fake {
            error: 0.0,
            broken: Arc::new(AtomicBool::new(false)),
        };
        let e = absolute
            .check(
                &device,
                &mut Exact as &mut dyn Double,
                &mut off as &mut dyn Double,
                nan,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readout self-test failed on fake: max error inf against the CPU readout"),
            "{e}"
        );
    }

    #[test]
    fn a_device_failure_redoes_the_call_on_the_cpu_and_switches_once() {
        let (s, device): (_, Device) = (status(), Arc::new(FakeDevice::default()));
        let (mut encoder, broken) = attached(&s, &device, None);
        let (mut readout, _) = attached(&s, &device, Some("readout"));
        broken.store(true, Ordering::Relaxed);
        // The encoder's device fails: the call is redone on the CPU.
        assert_eq!(encoder.run(|b| b.double(&[1.0])).unwrap(), [2.0]);
        let st = current(&s);
        assert_eq!(st.active, ActiveBackend::Cpu);
        assert_eq!(st.reason, "fell back to tract: lost the device");
        assert_eq!(st.fallbacks, 1);
        assert_eq!(st.device.as_deref(), Some("fake"), "the device stays named");
        // The readout sharing the status drops its (working) device too.
        assert!(!readout.on_device());
        assert_eq!(readout.run(|b| b.double(&[1.0])).unwrap(), [2.0]);
        broken.store(false, Ordering::Relaxed);
        assert_eq!(encoder.run(|b| b.double(&[1.0])).unwrap(), [2.0]);
        // Once for all.
        readout.fall_back("again");
        assert_eq!(current(&s).fallbacks, 1);
    }

    #[test]
    fn an_injected_failure_counts_device_uses_and_names_the_role() {
        let (s, device): (_, Device) = (status(), Arc::new(FakeDevice::default()));
        let (mut readout, _) = attached(&s, &device, Some("readout"));
        device.inject_failure_after(2);
        for _ in 0..2 {
            assert_eq!(readout.run(|b| b.double(&[1.0])).unwrap(), [2.0 + 1e-6]);
        }
        assert_eq!(readout.run(|b| b.double(&[1.0])).unwrap(), [2.0]);
        let st = current(&s);
        assert_eq!(st.reason, "fell back to tract: readout: injected failure");
        assert_eq!(st.fallbacks, 1);
    }

    #[test]
    fn staying_on_the_cpu_reports_why() {
        let (s, device): (_, Device) = (status(), Arc::new(FakeDevice::default()));
        let (mut f, _) = attached(&s, &device, None);
        f.stay_on_cpu("backend = cpu");
        assert!(f.device().is_none());
        assert_eq!(current(&s), BackendStatus::cpu("backend = cpu"));
        assert_eq!(f.cpu().double(&[3.0]).unwrap(), [6.0]);
    }
}
