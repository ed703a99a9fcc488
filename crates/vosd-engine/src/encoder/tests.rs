//! The encoder's fallback with frames normalised straight into each
//! backend's own input tensor.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::backend::{Accelerator, InjectedFailure, ReadoutBackend};
use crate::memory::MemoryStore;
use crate::readout::GridSize;

/// A device whose encoder is tract with an input tensor of its own, which
/// fails once `broken` is set, after the frame was written into that
/// input: a failure in the middle of a frame.
#[derive(Debug)]
struct FlakyDevice {
    broken: Arc<AtomicBool>,
    inject: InjectedFailure,
}

struct FlakyEncoder {
    tract: TractEncoder,
    broken: Arc<AtomicBool>,
}

impl EncoderBackend for FlakyEncoder {
    fn arithmetic(&self) -> crate::backend::Arithmetic {
        self.tract.arithmetic()
    }
    fn input_mut(&mut self) -> Result<&mut [f32], BackendError> {
        self.tract.input_mut()
    }
    fn run_input(&mut self, outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(BackendError::Unavailable("lost the device".into()));
        }
        self.tract.run_input(outputs)
    }
    fn encode(&mut self, input: &[f32], outputs: [&mut [f32]; 3]) -> Result<(), BackendError> {
        self.tract.encode(input, outputs)
    }
}

impl Accelerator for FlakyDevice {
    fn kind(&self) -> ActiveBackend {
        ActiveBackend::Onnxruntime
    }
    fn name(&self) -> &str {
        "flaky"
    }
    fn encoder(
        self: Arc<Self>,
        model: &[u8],
        spec: &EncoderSpec,
        _: bool,
    ) -> Result<Box<dyn EncoderBackend>, BackendError> {
        let tract = TractEncoder::load(model, spec, 1)
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(Box::new(FlakyEncoder {
            tract,
            broken: self.broken.clone(),
        }))
    }
    fn readout(
        self: Arc<Self>,
        _: GridSize,
        _: &MemoryStore,
    ) -> Result<Option<Box<dyn ReadoutBackend>>, BackendError> {
        Ok(None)
    }
    fn inject_failure_after(&self, n: u64) {
        self.inject.arm(n);
    }
    fn check_injected(&self) -> Result<(), BackendError> {
        match self.inject.fires() {
            true => Err(BackendError::Unavailable("injected failure".into())),
            false => Ok(()),
        }
    }
}

fn model() -> PathBuf {
    crate::config::bundled_model_dir().join("encoder_lite0_fp32.onnx")
}

/// A frame unlike the self-test image (which the CPU's input holds after
/// the self-test).
fn other_image(width: usize, height: usize) -> RgbFrame {
    let mut img = RgbFrame::new(width, height);
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = ((i * 37 + i / 191) % 256) as u8;
    }
    img
}

fn flat(f: &Features) -> Vec<f32> {
    [&f.s4.data, &f.s8.data, &f.s16.data]
        .into_iter()
        .flatten()
        .copied()
        .collect()
}

#[test]
fn a_device_failing_mid_frame_redoes_the_frame_on_tract_with_its_input() {
    let (w, h) = (64, 48);
    let encoder = Encoder::load(&model(), w, h, 1).unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let device: Device = Arc::new(FlakyDevice {
        broken: broken.clone(),
        inject: InjectedFailure::default(),
    });
    encoder.attach_device(device, false).unwrap();
    assert!(encoder.on_device());

    let reference = Encoder::load(&model(), w, h, 1).unwrap();
    let (first, second) = (self_test_image(w, h), other_image(w, h));
    let (mut got, mut want) = (encoder.new_features(), reference.new_features());
    encoder.encode(&first, &mut got).unwrap();
    reference.encode(&first, &mut want).unwrap();
    assert!(encoder.on_device());
    assert_eq!(flat(&got), flat(&want), "on the device");

    broken.store(true, Ordering::Relaxed);
    encoder.encode(&second, &mut got).unwrap();
    reference.encode(&second, &mut want).unwrap();
    assert!(!encoder.on_device(), "switched to tract");
    assert_eq!(encoder.backend_status().fallbacks, 1);
    assert_eq!(flat(&got), flat(&want), "the frame redone on tract");

    // And the frames after it, on tract.
    encoder.encode(&first, &mut got).unwrap();
    reference.encode(&first, &mut want).unwrap();
    assert_eq!(flat(&got), flat(&want), "the next frame on tract");
}

#[test]
fn encode_and_encode_tract_agree_on_the_cpu() {
    let (w, h) = (64, 48);
    let encoder = Encoder::load(&model(), w, h, 1).unwrap();
    let image = other_image(w, h);
    let (mut a, mut b) = (encoder.new_features(), encoder.new_features());
    encoder.encode(&image, &mut a).unwrap();
    encoder.encode_tract(&image, &mut b).unwrap();
    assert_eq!(flat(&a), flat(&b));
    // The backend's input holds exactly the normalised frame.
    let mut input = vec![0.0; 3 * w * h];
    normalise(&image, &mut input);
    let mut c = encoder.new_features();
    let outputs = [&mut c.s4.data[..], &mut c.s8.data[..], &mut c.s16.data[..]];
    encoder
        .lock()
        .fallback
        .cpu()
        .encode(&input, outputs)
        .unwrap();
    assert_eq!(flat(&a), flat(&c));
}
