//! How far one backend's outputs are from another's: the metric of the
//! self-tests ([`super::fallback`]) and of the tests that compare the
//! device kernels with tract and with plain-Rust references.

/// How far one encoder's outputs are from another's, per output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputError {
    /// Largest absolute difference (a NaN counts as infinite).
    pub max_abs: f32,
    /// Mean absolute difference.
    pub mean_abs: f32,
    /// Largest absolute value of the reference.
    pub ref_max: f32,
    /// Mean absolute value of the reference.
    pub ref_mean: f32,
}

impl OutputError {
    /// Compares `got` with `reference`.
    pub fn between(got: &[f32], reference: &[f32]) -> Self {
        let n = reference.len().max(1) as f64;
        let (mut max_abs, mut sum, mut ref_max, mut ref_sum) = (0f32, 0f64, 0f32, 0f64);
        for (a, b) in got.iter().zip(reference) {
            let d = (a - b).abs();
            max_abs = max_abs.max(if d.is_nan() { f32::INFINITY } else { d });
            sum += d as f64;
            ref_max = ref_max.max(b.abs());
            ref_sum += b.abs() as f64;
        }
        Self {
            max_abs,
            mean_abs: (sum / n) as f32,
            ref_max,
            ref_mean: (ref_sum / n) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_scales() {
        let e = OutputError::between(&[1.0, -2.5, 3.0], &[1.0, -2.0, 4.0]);
        assert_eq!(e.max_abs, 1.0);
        assert!((e.mean_abs - 0.5).abs() < 1e-6);
        assert_eq!(e.ref_max, 4.0);
        assert!((e.ref_mean - 7.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_nan_counts_as_infinite() {
        let e = OutputError::between(&[0.0, f32::NAN], &[0.0, 1.0]);
        assert_eq!(e.max_abs, f32::INFINITY);
    }
}
