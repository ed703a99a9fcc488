//! From coarse per-cell probabilities to a frame-size label mask.
//!
//! Each output pixel mixes the 4×4 nearest feature cells. In edge-aware mode
//! (joint bilateral upsampling) a cell's weight is a spatial Gaussian times a
//! colour term comparing the pixel's colour with the cell's mean colour, so
//! that mask edges snap to image edges; in bilinear mode the weights are the
//! bilinear ones. The arg-max over channels gives the label.

use rayon::prelude::*;

use crate::frame::{LabelMask, RgbFrame};
use crate::geometry::Grid;

/// Taps per axis.
const TAPS: usize = 4;

/// Precomputed upsampling geometry for one (grid, processing size, frame size).
#[derive(Clone, Debug)]
pub struct Upsampler {
    grid: Grid,
    frame_w: usize,
    /// Per frame column: the 4 cell columns and their spatial weights.
    cols: Vec<([u32; TAPS], [f32; TAPS])>,
    /// Per frame row: the 4 cell rows and their spatial weights.
    rows: Vec<([u32; TAPS], [f32; TAPS])>,
    /// Colour weight by L1 RGB distance (0..=765); all ones when bilinear.
    colour_lut: Vec<f32>,
    /// Per cell column / row: the frame pixels whose strongest tap it is.
    cell_cols: Vec<(usize, usize)>,
    cell_rows: Vec<(usize, usize)>,
    /// Mean colour of each cell (RGB), updated per frame.
    cell_colour: Vec<[f32; 3]>,
    /// Per cell: the channel holding more than half of its probability, or
    /// `u8::MAX` when none does. Updated per frame.
    cell_major: Vec<u8>,
}

fn axis_taps(
    frame: usize,
    proc_size: usize,
    axis: &crate::geometry::GridAxis,
    sigma: Option<f32>,
) -> Vec<([u32; TAPS], [f32; TAPS])> {
    let scale = proc_size as f32 / frame as f32;
    (0..frame)
        .map(|p| {
            let u = axis.cell_of((p as f32 + 0.5) * scale - 0.5);
            let base = u.floor() as isize - 1;
            let mut idx = [0u32; TAPS];
            let mut w = [0f32; TAPS];
            for t in 0..TAPS {
                let c = base + t as isize;
                let d = u - c as f32;
                let clamped = c.clamp(0, axis.cells as isize - 1);
                idx[t] = clamped as u32;
                w[t] = match sigma {
                    Some(s) => (-d * d / (2.0 * s * s)).exp(),
                    None => (1.0 - d.abs()).max(0.0),
                };
            }
            (idx, w)
        })
        .collect()
}

/// For each cell, the range of frame pixels whose strongest tap is that cell.
fn nearest_ranges(cells: usize, taps: &[([u32; TAPS], [f32; TAPS])]) -> Vec<(usize, usize)> {
    let mut r = vec![(usize::MAX, 0usize); cells];
    for (p, (idx, w)) in taps.iter().enumerate() {
        let best = (0..TAPS)
            .max_by(|&a, &b| w[a].total_cmp(&w[b]))
            .unwrap_or(0);
        let c = idx[best] as usize;
        r[c].0 = r[c].0.min(p);
        r[c].1 = r[c].1.max(p + 1);
    }
    r
}

impl Upsampler {
    /// Prepares upsampling from `grid` (over a `proc_w`×`proc_h` image) to a
    /// `frame_w`×`frame_h` mask. `edge_aware = Some((sigma_colour, sigma_space))`
    /// selects joint bilateral upsampling; `None` selects bilinear.
    pub fn new(
        grid: Grid,
        proc_w: usize,
        proc_h: usize,
        frame_w: usize,
        frame_h: usize,
        edge_aware: Option<(f32, f32)>,
    ) -> Self {
        let sigma_space = edge_aware.map(|e| e.1);
        let colour_lut = (0..=765)
            .map(|d| match edge_aware {
                Some((sc, _)) => {
                    let d = d as f32 / 3.0;
                    (-d * d / (2.0 * sc * sc)).exp().max(1e-6)
                }
                None => 1.0,
            })
            .collect();
        let cols = axis_taps(frame_w, proc_w, &grid.x, sigma_space);
        let rows = axis_taps(frame_h, proc_h, &grid.y, sigma_space);
        let cell_cols = nearest_ranges(grid.x.cells, &cols);
        let cell_rows = nearest_ranges(grid.y.cells, &rows);
        Self {
            grid,
            frame_w,
            cols,
            cell_cols,
            rows,
            cell_rows,
            colour_lut,
            cell_colour: vec![[0.0; 3]; grid.len()],
            cell_major: vec![u8::MAX; grid.len()],
        }
    }

    /// Computes each cell's mean colour from the frame (box of one stride
    /// around the cell centre, mapped to frame pixels).
    fn update_cell_colours(&mut self, frame: &RgbFrame) {
        let (gw, gh) = (self.grid.x.cells, self.grid.y.cells);
        let (xr, yr) = (&self.cell_cols, &self.cell_rows);
        for (gy, &(y0, y1)) in yr.iter().enumerate().take(gh) {
            for (gx, &(x0, x1)) in xr.iter().enumerate().take(gw) {
                let mut sum = [0.0f32; 3];
                let mut n = 0.0f32;
                if x0 < x1 && y0 < y1 {
                    for y in y0..y1 {
                        for px in frame.data
                            [(y * self.frame_w + x0) * 3..(y * self.frame_w + x1) * 3]
                            .chunks_exact(3)
                        {
                            sum[0] += px[0] as f32;
                            sum[1] += px[1] as f32;
                            sum[2] += px[2] as f32;
                            n += 1.0;
                        }
                    }
                }
                self.cell_colour[gy * gw + gx] = if n > 0.0 {
                    [sum[0] / n, sum[1] / n, sum[2] / n]
                } else {
                    [0.0; 3]
                };
            }
        }
    }

    /// Upsamples `probs` (`cells * channels`, channel 0 = background) to the
    /// frame and writes `labels[channel]` of the arg-max into `out`.
    pub fn upsample(
        &mut self,
        probs: &[f32],
        channels: usize,
        labels: &[u8],
        frame: &RgbFrame,
        out: &mut LabelMask,
    ) {
        self.upsample_active(probs, channels, channels, labels, frame, out)
    }

    /// Like [`Upsampler::upsample`] when only the first `active` of the
    /// `channels` stored per cell are in use.
    pub fn upsample_active(
        &mut self,
        probs: &[f32],
        channels: usize,
        active: usize,
        labels: &[u8],
        frame: &RgbFrame,
        out: &mut LabelMask,
    ) {
        self.update_cell_colours(frame);
        for (major, p) in self.cell_major.iter_mut().zip(probs.chunks_exact(channels)) {
            *major = p[..active]
                .iter()
                .position(|&v| v > 0.5)
                .map_or(u8::MAX, |c| c as u8);
        }
        let gw = self.grid.x.cells;
        let fw = self.frame_w;
        let this = &*self;
        out.data
            .par_chunks_mut(fw)
            .enumerate()
            .for_each(|(y, out_row)| {
                let (ry, wy) = this.rows[y];
                let mut acc = [0.0f32; 256];
                for (x, o) in out_row.iter_mut().enumerate() {
                    let (rx, wx) = this.cols[x];
                    // All 16 cells give more than half to one channel: any convex
                    // combination does too, so that channel is the arg-max.
                    let first = this.cell_major[ry[0] as usize * gw + rx[0] as usize];
                    if first != u8::MAX
                        && ry.iter().all(|&cy| {
                            rx.iter()
                                .all(|&cx| this.cell_major[cy as usize * gw + cx as usize] == first)
                        })
                    {
                        *o = labels[first as usize];
                        continue;
                    }
                    let px = &frame.data[(y * fw + x) * 3..(y * fw + x) * 3 + 3];
                    let acc = &mut acc[..active];
                    acc.fill(0.0);
                    for (&cy, &wyj) in ry.iter().zip(&wy) {
                        for (&cx, &wxi) in rx.iter().zip(&wx) {
                            let cell = cy as usize * gw + cx as usize;
                            let cc = this.cell_colour[cell];
                            let d = (px[0] as f32 - cc[0]).abs()
                                + (px[1] as f32 - cc[1]).abs()
                                + (px[2] as f32 - cc[2]).abs();
                            let w = wyj * wxi * this.colour_lut[(d as usize).min(765)];
                            let p = &probs[cell * channels..cell * channels + active];
                            for (a, v) in acc.iter_mut().zip(p) {
                                *a += w * v;
                            }
                        }
                    }
                    let mut best = 0;
                    for c in 1..active {
                        if acc[c] > acc[best] {
                            best = c;
                        }
                    }
                    *o = labels[best];
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_reproduces_a_step_at_the_right_place() {
        // 64x16 image, stride-8 grid: 8x2 cells centred at 7 + 8i.
        let grid = Grid::new(64, 16, 3);
        assert_eq!(grid.x.offset, 7.0);
        let mut up = Upsampler::new(grid, 64, 16, 64, 16, None);
        // Object probability 1 in cell columns >= 4, 0 before.
        let mut probs = vec![0.0; grid.len() * 2];
        for gy in 0..2 {
            for gx in 0..8 {
                let fg = if gx >= 4 { 1.0 } else { 0.0 };
                probs[(gy * 8 + gx) * 2] = 1.0 - fg;
                probs[(gy * 8 + gx) * 2 + 1] = fg;
            }
        }
        let frame = RgbFrame::new(64, 16);
        let mut out = LabelMask::new(64, 16);
        up.upsample(&probs, 2, &[0, 3], &frame, &mut out);
        // The 0.5 crossing is midway between centres 31 and 39: pixel 35.
        let row = &out.data[..64];
        assert!(row[..35].iter().all(|&v| v == 0), "{row:?}");
        assert!(row[36..].iter().all(|&v| v == 3), "{row:?}");
    }

    #[test]
    fn edge_aware_follows_colour_edge() {
        // Dark left half up to pixel 28, bright from 28 on; the coarse step sits at 35.
        let grid = Grid::new(64, 16, 3);
        let mut up = Upsampler::new(grid, 64, 16, 64, 16, Some((10.0, 1.0)));
        let mut frame = RgbFrame::new(64, 16);
        for y in 0..16 {
            for x in 28..64 {
                frame.data[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3]
                    .copy_from_slice(&[200, 200, 200]);
            }
        }
        let mut probs = vec![0.0; grid.len() * 2];
        for gy in 0..2 {
            for gx in 0..8 {
                let fg = if gx >= 4 { 1.0 } else { 0.0 };
                probs[(gy * 8 + gx) * 2] = 1.0 - fg;
                probs[(gy * 8 + gx) * 2 + 1] = fg;
            }
        }
        let mut out = LabelMask::new(64, 16);
        up.upsample(&probs, 2, &[0, 1], &frame, &mut out);
        let row = &out.data[64 * 8..64 * 9];
        // Pixels 28..35 are bright like the object cells: they join the object.
        assert!(row[30..].iter().all(|&v| v == 1), "{row:?}");
        assert!(row[..24].iter().all(|&v| v == 0), "{row:?}");
    }
}
