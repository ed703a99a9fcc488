//! Masks at the memory network's stride 4: a label mask brought down to
//! per-object fractions, and the decoder's per-object logits combined
//! into one distribution by soft aggregation, with each object's
//! confidence.
//!
//! Both follow training/README.md ("Inference", steps 1 and 5) exactly,
//! so that what the engine feeds the heads is what they were trained on.

use crate::frame::LabelMask;

/// Bilinear taps of one axis, `(i0, i1, w)`: the source indices and the
/// weight of the second, pixel centres aligned (`(d + 0.5)·src/dst −
/// 0.5`, clamped to the source).
pub fn axis_taps(src: usize, dst: usize, scale: f32) -> Vec<(usize, usize, f32)> {
    (0..dst)
        .map(|d| {
            let f = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, src.saturating_sub(1) as f32);
            let i0 = f as usize;
            (i0, (i0 + 1).min(src - 1), f - i0 as f32)
        })
        .collect()
}

/// Brings frame-size label masks to the processing size (per object: the
/// bilinear resize of its 0/255 mask, as `frame::resize_bilinear` rounds,
/// at least 128) and then to stride-4 fractions.
#[derive(Clone, Debug)]
pub struct MaskDownsampler {
    frame: (usize, usize),
    proc: (usize, usize),
    grid: (usize, usize),
    columns: Vec<(usize, usize, f32)>,
    rows: Vec<(usize, usize, f32)>,
    /// Processing-size labels, reused.
    labels: Vec<u8>,
}

impl MaskDownsampler {
    /// For frames of `frame` size, processing at `proc`, stride-4 grid
    /// `grid` (all `(width, height)`).
    pub fn new(frame: (usize, usize), proc: (usize, usize), grid: (usize, usize)) -> Self {
        Self {
            frame,
            proc,
            grid,
            columns: axis_taps(frame.0, proc.0, frame.0 as f32 / proc.0 as f32),
            rows: axis_taps(frame.1, proc.1, frame.1 as f32 / proc.1 as f32),
            labels: vec![0; proc.0 * proc.1],
        }
    }

    /// Writes, for each object `ids[n]`, the fraction of its
    /// processing-size pixels in each stride-4 cell into
    /// `out[n × cells ..]` (a cell at the right or bottom edge averages the
    /// pixels it has). Ids of `mask` not in `ids` count as background.
    pub fn fractions(&mut self, mask: &LabelMask, ids: &[u8], out: &mut [f32]) {
        self.resize_labels(mask, ids);
        let (pw, ph) = self.proc;
        let (gw, gh) = self.grid;
        let cells = gw * gh;
        out[..ids.len() * cells].fill(0.0);
        let mut channel = [usize::MAX; 256];
        for (n, &id) in ids.iter().enumerate() {
            channel[id as usize] = n;
        }
        for gy in 0..gh {
            let (y0, y1) = (gy * 4, (gy * 4 + 4).min(ph));
            for gx in 0..gw {
                let (x0, x1) = (gx * 4, (gx * 4 + 4).min(pw));
                let share = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                for y in y0..y1 {
                    for &id in &self.labels[y * pw + x0..y * pw + x1] {
                        let n = channel[id as usize];
                        if n != usize::MAX {
                            out[n * cells + gy * gw + gx] += share;
                        }
                    }
                }
            }
        }
    }

    /// Per object (ascending id, a later one winning), its 0/255 mask
    /// resized bilinearly and kept where at least 128.
    fn resize_labels(&mut self, mask: &LabelMask, ids: &[u8]) {
        let (fw, fh) = self.frame;
        let pw = self.proc.0;
        self.labels.fill(0);
        if mask.width != fw || mask.height != fh || mask.data.len() != fw * fh {
            return;
        }
        let mut sorted: heapless::Vec<u8, 256> = ids.iter().copied().collect();
        sorted.sort_unstable();
        for (y, &(r0, r1, wy)) in self.rows.iter().enumerate() {
            let (row0, row1) = (&mask.data[r0 * fw..][..fw], &mask.data[r1 * fw..][..fw]);
            for (x, &(c0, c1, wx)) in self.columns.iter().enumerate() {
                let taps = [row0[c0], row0[c1], row1[c0], row1[c1]];
                if taps.iter().all(|&t| t == 0) {
                    continue;
                }
                for &id in &sorted {
                    if !taps.contains(&id) {
                        continue;
                    }
                    let v = |t: u8| if t == id { 255.0f32 } else { 0.0 };
                    let a = v(taps[0]) * (1.0 - wx) + v(taps[1]) * wx;
                    let b = v(taps[2]) * (1.0 - wx) + v(taps[3]) * wx;
                    if (a * (1.0 - wy) + b * wy + 0.5) as u8 >= 128 {
                        self.labels[y * pw + x] = id;
                    }
                }
            }
        }
    }
}

/// Soft aggregation (STM, XMem) of `objects` logit planes (`logits[n ×
/// cells ..]`) into `probs` (`(objects + 1) × cells`, channel 0 the
/// background): `p_n = σ(l_n)`, `p_0 = Π(1 − p_n)`, each clamped to
/// `[1e-7, 1 − 1e-7]`, then the softmax of their log-odds.
pub fn aggregate(logits: &[f32], objects: usize, cells: usize, probs: &mut [f32]) {
    const EPS: f32 = 1e-7;
    let mut z = [0f32; 256];
    for j in 0..cells {
        let mut bg = 1.0f32;
        for n in 0..objects {
            let p = 1.0 / (1.0 + (-logits[n * cells + j]).exp());
            bg *= 1.0 - p;
            z[n + 1] = p;
        }
        z[0] = bg;
        let mut max = f32::NEG_INFINITY;
        for v in &mut z[..=objects] {
            let q = v.clamp(EPS, 1.0 - EPS);
            *v = (q / (1.0 - q)).ln();
            max = max.max(*v);
        }
        let mut sum = 0.0;
        for v in &mut z[..=objects] {
            *v = (*v - max).exp();
            sum += *v;
        }
        for (c, v) in z[..=objects].iter().enumerate() {
            probs[c * cells + j] = v / sum;
        }
    }
}

/// Each object's confidence: its mean probability over the stride-4 cells
/// where it is the most probable channel (0 where it is nowhere).
pub fn confidences(probs: &[f32], objects: usize, cells: usize, out: &mut [f32]) {
    let mut sums = [0f64; 256];
    let mut counts = [0usize; 256];
    for j in 0..cells {
        let mut best = 0;
        for c in 1..=objects {
            if probs[c * cells + j] > probs[best * cells + j] {
                best = c;
            }
        }
        if best > 0 {
            sums[best] += probs[best * cells + j] as f64;
            counts[best] += 1;
        }
    }
    for (n, o) in out.iter_mut().enumerate().take(objects) {
        *o = if counts[n + 1] > 0 {
            (sums[n + 1] / counts[n + 1] as f64) as f32
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_of_a_square_at_the_same_size() {
        // 10x6 frame = processing size; grid 3x2, the last column and row
        // of cells are partial (2 pixels wide / high).
        let mut mask = LabelMask::new(10, 6);
        for y in 0..4 {
            for x in 0..4 {
                mask.data[y * 10 + x] = 3;
            }
        }
        mask.data[5 * 10 + 9] = 3;
        let mut d = MaskDownsampler::new((10, 6), (10, 6), (3, 2));
        let mut out = vec![0.0; 6];
        d.fractions(&mask, &[3], &mut out);
        assert_eq!(out, vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.25]);
    }

    #[test]
    fn fractions_after_a_resize_follow_the_rounded_bilinear_mask() {
        // A 2x downscale of a left half: the processing mask is the left
        // half again.
        let mut mask = LabelMask::new(16, 8);
        for y in 0..8 {
            for x in 0..8 {
                mask.data[y * 16 + x] = 1;
            }
        }
        let mut d = MaskDownsampler::new((16, 8), (8, 4), (2, 1));
        let mut out = vec![0.0; 2];
        d.fractions(&mask, &[1], &mut out);
        assert_eq!(out, vec![1.0, 0.0]);
    }

    #[test]
    fn aggregation_is_a_distribution_and_follows_the_logits() {
        let logits = [4.0, -4.0, -4.0, -4.0, 4.0, -4.0];
        let mut probs = vec![0.0; 9];
        aggregate(&logits, 2, 3, &mut probs);
        for j in 0..3 {
            let s: f32 = (0..3).map(|c| probs[c * 3 + j]).sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        // Cell 0: object 1; cell 1: object 2; cell 2: background.
        assert!(probs[3] > 0.9 && probs[7] > 0.9 && probs[2] > 0.9);
        let mut conf = vec![0.0; 2];
        confidences(&probs, 2, 3, &mut conf);
        assert!((conf[0] - probs[3]).abs() < 1e-6 && (conf[1] - probs[7]).abs() < 1e-6);
    }
}
