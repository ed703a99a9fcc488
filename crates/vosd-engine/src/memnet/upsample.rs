//! From stride-4 (or stride-8) probabilities to a frame-size label mask:
//! bilinear ×4 (×8) to the processing size (`(x + 0.5)/4 − 0.5`, clamped,
//! cropped), bilinear
//! to the frame size (pixel centres aligned), arg-max (training/README.md,
//! "Inference", step 6). Taps are computed once; the processing-size
//! planes are allocated once.

use rayon::prelude::*;

use super::masks::axis_taps;
use crate::frame::LabelMask;

/// The upsampling of one grid, processing size and frame size.
#[derive(Debug)]
pub struct ProbUpsampler {
    grid: (usize, usize),
    proc: (usize, usize),
    frame: (usize, usize),
    grid_columns: Vec<(usize, usize, f32)>,
    grid_rows: Vec<(usize, usize, f32)>,
    frame_columns: Vec<(usize, usize, f32)>,
    frame_rows: Vec<(usize, usize, f32)>,
    /// `channels × proc` probabilities.
    planes: Vec<f32>,
}

impl ProbUpsampler {
    /// For a `grid` of `stride` (4 for the decoder's logits, 8 for the
    /// objectness head's), a processing size `proc` and frames of `frame`
    /// size, with up to `channels` channels (all `(width, height)`).
    pub fn new(
        stride: usize,
        grid: (usize, usize),
        proc: (usize, usize),
        frame: (usize, usize),
        channels: usize,
    ) -> Self {
        Self {
            grid,
            proc,
            frame,
            grid_columns: axis_taps(grid.0, proc.0, 1.0 / stride as f32),
            grid_rows: axis_taps(grid.1, proc.1, 1.0 / stride as f32),
            frame_columns: axis_taps(proc.0, frame.0, proc.0 as f32 / frame.0 as f32),
            frame_rows: axis_taps(proc.1, frame.1, proc.1 as f32 / frame.1 as f32),
            planes: vec![0.0; channels * proc.0 * proc.1],
        }
    }

    /// Upsamples `channels` planes of `probs` (channel 0 = background) and
    /// writes, per frame pixel, `labels[c]` of the most probable channel.
    pub fn labels(&mut self, probs: &[f32], channels: usize, labels: &[u8], out: &mut LabelMask) {
        let (gw, gh) = self.grid;
        let (pw, ph) = self.proc;
        let (fw, fh) = self.frame;
        let plane = pw * ph;
        let (columns, rows) = (&self.grid_columns, &self.grid_rows);
        self.planes[..channels * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(c, dst)| {
                let src = &probs[c * gw * gh..(c + 1) * gw * gh];
                bilinear(src, gw, columns, rows, dst);
            });
        let planes = &self.planes;
        if (fw, fh) == (pw, ph) {
            out.data
                .par_chunks_mut(fw)
                .enumerate()
                .for_each(|(y, row)| {
                    for (x, o) in row.iter_mut().enumerate() {
                        *o = labels[arg_max(channels, |c| planes[c * plane + y * pw + x])];
                    }
                });
            return;
        }
        let (columns, rows) = (&self.frame_columns, &self.frame_rows);
        out.data
            .par_chunks_mut(fw)
            .zip(rows.par_iter())
            .for_each(|(row, &(r0, r1, wy))| {
                for (o, &(c0, c1, wx)) in row.iter_mut().zip(columns) {
                    let best = arg_max(channels, |c| {
                        let p = &planes[c * plane..];
                        let a = p[r0 * pw + c0] * (1.0 - wx) + p[r0 * pw + c1] * wx;
                        let b = p[r1 * pw + c0] * (1.0 - wx) + p[r1 * pw + c1] * wx;
                        a * (1.0 - wy) + b * wy
                    });
                    *o = labels[best];
                }
            });
    }
}

/// The channel of the largest `value(c)` for `c` in `0..channels` (the
/// first on ties).
#[inline(always)]
fn arg_max(channels: usize, value: impl Fn(usize) -> f32) -> usize {
    let mut best = 0;
    let mut top = value(0);
    for c in 1..channels {
        let v = value(c);
        if v > top {
            top = v;
            best = c;
        }
    }
    best
}

/// Bilinear resize of one `src` plane (`width` columns) with the given
/// taps into `dst` (`columns.len() × rows.len()`).
fn bilinear(
    src: &[f32],
    width: usize,
    columns: &[(usize, usize, f32)],
    rows: &[(usize, usize, f32)],
    dst: &mut [f32],
) {
    for (row, &(r0, r1, wy)) in dst.chunks_exact_mut(columns.len()).zip(rows) {
        let (s0, s1) = (&src[r0 * width..], &src[r1 * width..]);
        for (d, &(c0, c1, wx)) in row.iter_mut().zip(columns) {
            let a = s0[c0] * (1.0 - wx) + s0[c1] * wx;
            let b = s1[c0] * (1.0 - wx) + s1[c1] * wx;
            *d = a * (1.0 - wy) + b * wy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_half_stays_a_left_half() {
        // Grid 4x2 (processing 16x8), object in the two left columns.
        let mut probs = vec![0.0; 2 * 8];
        for j in 0..8 {
            let left = j % 4 < 2;
            probs[j] = if left { 0.0 } else { 1.0 };
            probs[8 + j] = if left { 1.0 } else { 0.0 };
        }
        for frame in [(16, 8), (32, 16)] {
            let mut up = ProbUpsampler::new(4, (4, 2), (16, 8), frame, 2);
            let mut out = LabelMask::new(frame.0, frame.1);
            up.labels(&probs, 2, &[0, 7], &mut out);
            for y in 0..frame.1 {
                for x in 0..frame.0 {
                    let want = if x < frame.0 / 2 { 7 } else { 0 };
                    assert_eq!(out.data[y * frame.0 + x], want, "{frame:?} ({x}, {y})");
                }
            }
        }
    }
}
