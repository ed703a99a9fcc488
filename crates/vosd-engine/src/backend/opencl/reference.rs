//! Plain-Rust references of the lowered ops, and the kernel tests that
//! compare each OpenCL kernel with them (random and edge-case shapes: odd
//! sizes, stride 2, channel counts that are no multiple of a vector width).
//! uint8 tensors are carried as `f32` holding 0..=255.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::graph::{ConvGeom, Op};
use super::Gpu;

/// The first OpenCL device of any kind (PoCL in CI), opened once per test
/// binary, or `None` with a note when the machine has none.
pub(crate) fn test_gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::open_first(true, Duration::from_secs(60)) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("SKIP: {e} (install pocl-opencl-icd)");
            None
        }
    })
    .clone()
}

/// `round half to even`, as OpenCL's `rint` in the default rounding mode.
fn rint(v: f32) -> f32 {
    v.round_ties_even()
}

/// `v` rounded to the nearest IEEE half (ties to even), as `vstore_half`.
pub fn to_half(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Runs `op` on `tensors` (indexed by tensor id), writing its output.
/// Half tensors hold half-representable values: the caller rounds the
/// inputs it writes and the outputs of ops that write half tensors.
pub fn run_op(op: &Op, tensors: &mut [Vec<f32>]) {
    match op {
        Op::ConvF32 {
            input,
            output,
            geom,
            weights,
            bias,
            clip,
        } => {
            let (lo, hi) = clip.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
            let x = tensors[*input].clone();
            let y = conv(
                geom,
                |i| x[i],
                |i| weights[i],
                |c| bias[c] as f64,
                |_, acc| (acc as f32).clamp(lo, hi),
            );
            tensors[*output] = y;
        }
        Op::ConvQ8 {
            input,
            output,
            geom,
            weights,
            weight_zero,
            weight_scale,
            bias,
            x,
            y,
        } => {
            let xs = tensors[*input].clone();
            let per_out = geom.out_h() * geom.out_w();
            let _ = per_out;
            let out = conv(
                geom,
                |i| xs[i] - x.zero_point as f32,
                |i| {
                    let oc = i / (geom.in_per_group() * geom.kernel * geom.kernel);
                    weights[i] as f32 - weight_zero[oc] as f32
                },
                |c| bias[c] as f64,
                |c, acc| {
                    let mult = x.scale * weight_scale[c] / y.scale;
                    (rint(acc as f32 * mult) + y.zero_point as f32).clamp(0.0, 255.0)
                },
            );
            tensors[*output] = out;
        }
        Op::AddF32 { a, b, output } => {
            tensors[*output] = tensors[*a]
                .iter()
                .zip(&tensors[*b])
                .map(|(p, q)| p + q)
                .collect();
        }
        Op::AddQ8 {
            a,
            b,
            output,
            qa,
            qb,
            qy,
        } => {
            tensors[*output] = tensors[*a]
                .iter()
                .zip(&tensors[*b])
                .map(|(&p, &q)| {
                    let v = ((p - qa.zero_point as f32) * qa.scale
                        + (q - qb.zero_point as f32) * qb.scale)
                        / qy.scale;
                    (rint(v) + qy.zero_point as f32).clamp(0.0, 255.0)
                })
                .collect();
        }
        Op::Quantize { input, output, q } => {
            tensors[*output] = tensors[*input]
                .iter()
                .map(|&v| (rint(v / q.scale) + q.zero_point as f32).clamp(0.0, 255.0))
                .collect();
        }
        Op::ToHalf { input, output } => {
            tensors[*output] = tensors[*input].iter().map(|&v| to_half(v)).collect();
        }
        Op::ToFloat { input, output } => {
            tensors[*output] = tensors[*input].clone();
        }
        Op::Dequantize { input, output, q } => {
            tensors[*output] = tensors[*input]
                .iter()
                .map(|&v| (v - q.zero_point as f32) * q.scale)
                .collect();
        }
    }
}

/// Direct convolution in f64 accumulation with SAME_UPPER padding.
fn conv(
    g: &ConvGeom,
    x: impl Fn(usize) -> f32,
    w: impl Fn(usize) -> f32,
    bias: impl Fn(usize) -> f64,
    finish: impl Fn(usize, f64) -> f32,
) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (pt, pl) = g.pad_top_left();
    let (cin_g, cout_g) = (g.in_per_group(), g.out_c / g.groups);
    let k = g.kernel;
    let mut y = vec![0.0; g.out_c * oh * ow];
    for oc in 0..g.out_c {
        let grp = oc / cout_g;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias(oc);
                for ic in 0..cin_g {
                    for ky in 0..k {
                        let iy = (oy * g.stride + ky) as isize - pt as isize;
                        if iy < 0 || iy >= g.in_h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * g.stride + kx) as isize - pl as isize;
                            if ix < 0 || ix >= g.in_w as isize {
                                continue;
                            }
                            let xi =
                                ((grp * cin_g + ic) * g.in_h + iy as usize) * g.in_w + ix as usize;
                            let wi = ((oc * cin_g + ic) * k + ky) * k + kx;
                            acc += x(xi) as f64 * w(wi) as f64;
                        }
                    }
                }
                y[(oc * oh + oy) * ow + ox] = finish(oc, acc);
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::super::encoder::OpenclEncoder;
    use super::super::graph::{Elem, Graph, Quant, TensorInfo};
    use super::*;

    /// Deterministic pseudo-random numbers ([`crate::prng`]).
    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f32 {
            crate::prng::unit(&mut self.0)
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (crate::prng::splitmix(&mut self.0) % (hi - lo + 1) as u64) as i64
        }
    }

    fn info(c: usize, h: usize, w: usize, elem: Elem) -> TensorInfo {
        TensorInfo {
            channels: c,
            height: h,
            width: w,
            elem,
        }
    }

    /// Input and output tensors (ids 0 and 1) of a convolution of `geom`
    /// with activations of `elem`.
    fn conv_tensors(geom: &ConvGeom, elem: Elem) -> Vec<TensorInfo> {
        vec![
            info(geom.in_c, geom.in_h, geom.in_w, elem),
            geom.output(elem),
        ]
    }

    /// Runs a float convolution of `geom` (tensor 0 to 1) with random
    /// weights, bias and input on the device and on the reference.
    fn random_float_conv(
        gpu: &Arc<Gpu>,
        rng: &mut Rng,
        geom: ConvGeom,
        elem: Elem,
        clip: Option<(f32, f32)>,
    ) -> (Vec<f32>, Vec<f32>) {
        let tensors = conv_tensors(&geom, elem);
        let wn = geom.out_c * geom.in_per_group() * geom.kernel * geom.kernel;
        let op = Op::ConvF32 {
            input: 0,
            output: 1,
            geom,
            weights: (0..wn).map(|_| rng.unit() * 2.0 - 1.0).collect(),
            bias: (0..geom.out_c).map(|_| rng.unit() - 0.5).collect(),
            clip,
        };
        let x: Vec<f32> = (0..tensors[0].len())
            .map(|_| rng.unit() * 8.0 - 4.0)
            .collect();
        both(gpu, tensors, op, &[(0, x)], 1)
    }

    /// Largest difference (a NaN counts as infinite).
    fn max_error(dev: &[f32], reference: &[f32]) -> f32 {
        crate::backend::compare::OutputError::between(dev, reference).max_abs
    }

    /// Runs `op` over `inputs` (tensor id, values) on the device and on the
    /// reference; returns (device, reference) outputs.
    fn both(
        gpu: &Arc<Gpu>,
        tensors: Vec<TensorInfo>,
        op: Op,
        inputs: &[(usize, Vec<f32>)],
        output: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let graph = Graph {
            tensors: tensors.clone(),
            ops: vec![op.clone()],
            outputs: vec![],
        };
        let enc = OpenclEncoder::from_graph(gpu.clone(), graph).expect("prepare");
        let mut host: Vec<Vec<f32>> = tensors.iter().map(|t| vec![0.0; t.len()]).collect();
        let half = |t: usize, v: &[f32]| -> Vec<f32> {
            if tensors[t].elem == Elem::F16 {
                v.iter().map(|&x| to_half(x)).collect()
            } else {
                v.to_vec()
            }
        };
        for (t, v) in inputs {
            enc.write_tensor(*t, v);
            host[*t] = half(*t, v);
        }
        enc.run_ops();
        run_op(&op, &mut host);
        (enc.read_tensor_f32(output), half(output, &host[output]))
    }

    /// uint8 results of a float division and rounding: OpenCL allows `/` to
    /// be off by 2.5 ulp, which can flip a value that lies on a .5 boundary.
    /// Equal to the unit, and rarely off by one (PoCL: always equal).
    fn assert_quantized_close(dev: &[f32], reference: &[f32]) {
        assert_eq!(dev.len(), reference.len());
        let off = dev.iter().zip(reference).filter(|(a, b)| a != b).count();
        let far = dev.iter().zip(reference).any(|(a, b)| (a - b).abs() > 1.0);
        assert!(
            !far && off * 100 <= dev.len().max(100),
            "{off} differ: {dev:?} vs {reference:?}"
        );
    }

    /// Shapes: standard 3×3 stride 2 on odd sizes, depthwise 5×5 stride 2,
    /// depthwise 3×3 stride 1, 1×1 with channels and pixels not a multiple
    /// of 4 (the blocked kernel's tails) and a 1×1 without tails, a 1×1
    /// image, and a kernel larger than the image.
    fn shapes() -> Vec<ConvGeom> {
        let g = |in_c, in_h, in_w, out_c, kernel, stride, groups| ConvGeom {
            in_c,
            in_h,
            in_w,
            out_c,
            kernel,
            stride,
            groups,
        };
        vec![
            g(3, 17, 23, 8, 3, 2, 1),
            g(7, 9, 13, 7, 5, 2, 7),
            g(12, 10, 11, 12, 3, 1, 12),
            g(13, 7, 9, 19, 1, 1, 1),
            g(8, 4, 6, 12, 1, 1, 1),
            g(5, 1, 1, 3, 3, 2, 1),
            g(6, 2, 3, 6, 5, 1, 6),
        ]
    }

    #[test]
    fn conv_f32_matches_reference() {
        let Some(gpu) = test_gpu() else { return };
        let mut rng = Rng(1);
        for (n, geom) in shapes().into_iter().enumerate() {
            for clip in [None, Some((0.0, 6.0))] {
                let (dev, reference) = random_float_conv(&gpu, &mut rng, geom, Elem::F32, clip);
                let err = max_error(&dev, &reference);
                assert!(
                    err < 1e-4,
                    "shape {n} {geom:?} clip {clip:?}: max error {err}"
                );
                if clip.is_some() {
                    assert!(dev.iter().all(|v| (0.0..=6.0).contains(v)));
                }
            }
        }
    }

    #[test]
    fn half_storage_kernels_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let mut rng = Rng(4);
        for (n, geom) in shapes().into_iter().enumerate() {
            let (dev, reference) =
                random_float_conv(&gpu, &mut rng, geom, Elem::F16, Some((0.0, 6.0)));
            // Float arithmetic on the same half inputs; the sums differ only
            // in order, so the rounded outputs agree within one half ulp
            // (2^-10 relative, at most 6 * 2^-10 here).
            let err = max_error(&dev, &reference);
            assert!(err <= 6.0 / 1024.0, "shape {n} {geom:?}: max error {err}");
        }
        let t = |elem| info(3, 5, 7, elem);
        let len = 3 * 5 * 7;
        let a: Vec<f32> = (0..len).map(|_| rng.unit() * 100.0 - 50.0).collect();
        let b: Vec<f32> = (0..len).map(|_| rng.unit() * 100.0 - 50.0).collect();
        let op = Op::AddF32 {
            a: 0,
            b: 1,
            output: 2,
        };
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::F16), t(Elem::F16), t(Elem::F16)],
            op,
            &[(0, a.clone()), (1, b)],
            2,
        );
        assert_eq!(dev, reference);
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::F32), t(Elem::F16)],
            Op::ToHalf {
                input: 0,
                output: 1,
            },
            &[(0, a.clone())],
            1,
        );
        assert_eq!(dev, reference);
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::F16), t(Elem::F32)],
            Op::ToFloat {
                input: 0,
                output: 1,
            },
            &[(0, a)],
            1,
        );
        assert_eq!(dev, reference);
    }

    #[test]
    fn conv_q8_matches_reference_exactly() {
        let Some(gpu) = test_gpu() else { return };
        let mut rng = Rng(2);
        for (n, geom) in shapes().into_iter().enumerate() {
            let tensors = conv_tensors(&geom, Elem::U8);
            let wn = geom.out_c * geom.in_per_group() * geom.kernel * geom.kernel;
            let x = Quant {
                scale: 0.02 + rng.unit() * 0.05,
                zero_point: rng.range(0, 255) as i32,
            };
            let y = Quant {
                scale: 0.05 + rng.unit() * 0.1,
                zero_point: rng.range(0, 40) as i32,
            };
            let op = Op::ConvQ8 {
                input: 0,
                output: 1,
                geom,
                // Edge values included: -128 and 127.
                weights: (0..wn)
                    .map(|i| {
                        if i % 11 == 0 {
                            -128
                        } else if i % 13 == 0 {
                            127
                        } else {
                            rng.range(-128, 127) as i8
                        }
                    })
                    .collect(),
                weight_zero: (0..geom.out_c)
                    .map(|c| {
                        if c % 3 == 0 {
                            rng.range(-3, 3) as i32
                        } else {
                            0
                        }
                    })
                    .collect(),
                weight_scale: (0..geom.out_c).map(|_| 0.001 + rng.unit() * 0.01).collect(),
                bias: (0..geom.out_c)
                    .map(|_| rng.range(-3000, 3000) as i32)
                    .collect(),
                x,
                y,
            };
            let xs: Vec<f32> = (0..tensors[0].len())
                .map(|i| {
                    if i % 17 == 0 {
                        255.0
                    } else {
                        rng.range(0, 255) as f32
                    }
                })
                .collect();
            let (dev, reference) = both(&gpu, tensors, op, &[(0, xs)], 1);
            // Integer accumulation is exact; requantization rounds the same
            // float product, so results agree to the unit.
            let off = dev
                .iter()
                .zip(&reference)
                .filter(|(a, b)| (*a - *b).abs() > 1.0)
                .count();
            let diff = dev.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert_eq!(off, 0, "shape {n} {geom:?}: values off by more than 1");
            assert!(
                diff * 100 <= dev.len(),
                "shape {n}: {diff} of {} differ by one",
                dev.len()
            );
            // Outputs not all saturated at 0 (the comparison means something).
            assert!(
                dev.len() < 16 || dev.iter().any(|&v| v > 0.0),
                "shape {n}: all zero"
            );
        }
    }

    #[test]
    fn adds_and_quantization_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let mut rng = Rng(3);
        let t = |elem| info(5, 7, 3, elem);
        let n = 5 * 7 * 3;
        let a: Vec<f32> = (0..n).map(|_| rng.unit() * 10.0 - 5.0).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.unit() * 10.0 - 5.0).collect();
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::F32), t(Elem::F32), t(Elem::F32)],
            Op::AddF32 {
                a: 0,
                b: 1,
                output: 2,
            },
            &[(0, a.clone()), (1, b)],
            2,
        );
        assert_eq!(dev, reference);

        let qa: Vec<f32> = (0..n)
            .map(|i| {
                if i == 0 {
                    255.0
                } else {
                    rng.range(0, 255) as f32
                }
            })
            .collect();
        let qb: Vec<f32> = (0..n)
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    rng.range(0, 255) as f32
                }
            })
            .collect();
        let op = Op::AddQ8 {
            a: 0,
            b: 1,
            output: 2,
            qa: Quant {
                scale: 0.03,
                zero_point: 128,
            },
            qb: Quant {
                scale: 0.05,
                zero_point: 3,
            },
            qy: Quant {
                scale: 0.06,
                zero_point: 100,
            },
        };
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::U8), t(Elem::U8), t(Elem::U8)],
            op,
            &[(0, qa), (1, qb)],
            2,
        );
        assert_quantized_close(&dev, &reference);

        let q = Quant {
            scale: 0.037,
            zero_point: 120,
        };
        // Values beyond the range saturate at 0 and 255.
        let mut x = a.clone();
        x[0] = 1e6;
        x[1] = -1e6;
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::F32), t(Elem::U8)],
            Op::Quantize {
                input: 0,
                output: 1,
                q,
            },
            &[(0, x)],
            1,
        );
        assert_quantized_close(&dev, &reference);
        assert_eq!((dev[0], dev[1]), (255.0, 0.0));
        let u: Vec<f32> = (0..n).map(|i| (i * 7 % 256) as f32).collect();
        let (dev, reference) = both(
            &gpu,
            vec![t(Elem::U8), t(Elem::F32)],
            Op::Dequantize {
                input: 0,
                output: 1,
                q,
            },
            &[(0, u)],
            1,
        );
        assert_eq!(dev, reference);
    }
}
