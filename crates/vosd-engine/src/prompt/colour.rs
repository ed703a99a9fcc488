//! The colour evidence of step 5: colour histograms of the first estimate
//! and of the rest of the window, per cell.

use crate::frame::RgbFrame;
use crate::geometry::Grid;

/// Bins per channel of the colour histograms.
const COLOUR_BINS: usize = 16;

/// Per cell, the mean over its pixels (those nearest its centre) of
/// `ln(P(colour | object) / P(colour | background))`, with both colour
/// histograms taken over `window`: the object is the pixels for which
/// `is_object(x, y)` holds, the background every other pixel.
pub(super) fn colour_evidence(
    window: &RgbFrame,
    is_object: impl Fn(usize, usize) -> bool,
    grid: Grid,
    sx: f32,
    sy: f32,
) -> Vec<f32> {
    const B: usize = COLOUR_BINS;
    let bin = |px: &[u8]| {
        let q = |v: u8| v as usize * B / 256;
        (q(px[0]) * B + q(px[1])) * B + q(px[2])
    };
    let (mut object, mut background) = (vec![0.0f32; B * B * B], vec![0.0f32; B * B * B]);
    for (i, px) in window.data.chunks_exact(3).enumerate() {
        let (x, y) = (i % window.width, i / window.width);
        if is_object(x, y) {
            object[bin(px)] += 1.0;
        } else {
            background[bin(px)] += 1.0;
        }
    }
    let n_object = object.iter().sum::<f32>().max(1.0);
    let n_background = background.iter().sum::<f32>().max(1.0);
    let (gw, gh) = (grid.x.cells, grid.y.cells);
    let nearest = |axis: &crate::geometry::GridAxis, p: usize, scale: f32, cells: usize| {
        axis.cell_of((p as f32 + 0.5) / scale - 0.5)
            .round()
            .clamp(0.0, (cells - 1) as f32) as usize
    };
    let (mut sum, mut count) = (vec![0.0f32; gw * gh], vec![0.0f32; gw * gh]);
    for (i, px) in window.data.chunks_exact(3).enumerate() {
        let cell = nearest(&grid.y, i / window.width, sy, gh) * gw
            + nearest(&grid.x, i % window.width, sx, gw);
        let b = bin(px);
        // Half a count of smoothing keeps unseen colours finite.
        sum[cell] += ((object[b] + 0.5) / n_object / ((background[b] + 0.5) / n_background)).ln();
        count[cell] += 1.0;
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &n)| s / n.max(1.0))
        .collect()
}
