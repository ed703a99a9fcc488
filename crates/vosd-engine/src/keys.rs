//! The tracker's keys: what a frame's features are compared by.
//!
//! Per stride-8 cell: feat8 (40 channels) and feat16 bilinearly upsampled
//! to the cell (112 channels), each part L2-normalised and scaled by 1/√2,
//! so that a key has unit length and a dot product is a cosine affinity.
//! The tracker ([`crate::engine`]) and the box prompt ([`crate::prompt`])
//! both build them here.

use crate::encoder::{Encoder, EncoderError, Features};
use crate::frame::RgbFrame;
use crate::geometry::GridAxis;

/// Key dimension: 40 stride-8 channels + 112 stride-16 channels.
pub const KEY_DIM: usize = 40 + 112;

/// Bilinear interpolation from one grid axis onto another's cell centres.
#[derive(Clone, Debug)]
struct AxisInterp {
    idx: Vec<(u32, u32)>,
    w: Vec<f32>,
}

impl AxisInterp {
    fn new(from: &GridAxis, to: &GridAxis) -> Self {
        let mut idx = Vec::with_capacity(to.cells);
        let mut w = Vec::with_capacity(to.cells);
        for i in 0..to.cells {
            let u = from
                .cell_of(to.centre(i))
                .clamp(0.0, (from.cells - 1) as f32);
            let i0 = u.floor() as usize;
            let i1 = (i0 + 1).min(from.cells - 1);
            idx.push((i0 as u32, i1 as u32));
            w.push(u - i0 as f32);
        }
        Self { idx, w }
    }
}

/// Builds the keys of an encoder's features (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct KeyBuilder {
    s16_x: AxisInterp,
    s16_y: AxisInterp,
}

impl KeyBuilder {
    /// Prepares key building for `encoder`'s processing size.
    pub(crate) fn new(encoder: &Encoder) -> Self {
        let [_, grid, grid16] = *encoder.grids();
        Self {
            s16_x: AxisInterp::new(&grid16.x, &grid.x),
            s16_y: AxisInterp::new(&grid16.y, &grid.y),
        }
    }

    /// Writes the keys of `features` into `keys` (`cells * KEY_DIM`, row-major
    /// over the stride-8 grid).
    pub(crate) fn build(&self, features: &Features, keys: &mut [f32]) {
        let (s8, s16) = (&features.s8, &features.s16);
        let (gw, gh) = (s8.width, s8.height);
        let (p8, p16) = (gw * gh, s16.width * s16.height);
        let inv_sqrt2 = std::f32::consts::FRAC_1_SQRT_2;
        for y in 0..gh {
            let (y0, y1) = self.s16_y.idx[y];
            let wy = self.s16_y.w[y];
            for x in 0..gw {
                let (x0, x1) = self.s16_x.idx[x];
                let wx = self.s16_x.w[x];
                let key = &mut keys[(y * gw + x) * KEY_DIM..(y * gw + x + 1) * KEY_DIM];
                let (k8, k16) = key.split_at_mut(40);
                for (c, k) in k8.iter_mut().enumerate() {
                    *k = s8.data[c * p8 + y * gw + x];
                }
                let at = |c: usize, yy: u32, xx: u32| {
                    s16.data[c * p16 + yy as usize * s16.width + xx as usize]
                };
                for (c, k) in k16.iter_mut().enumerate() {
                    let top = at(c, y0, x0) * (1.0 - wx) + at(c, y0, x1) * wx;
                    let bottom = at(c, y1, x0) * (1.0 - wx) + at(c, y1, x1) * wx;
                    *k = top * (1.0 - wy) + bottom * wy;
                }
                for part in [k8, k16] {
                    let norm = part.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
                    let s = inv_sqrt2 / norm;
                    part.iter_mut().for_each(|v| *v *= s);
                }
            }
        }
    }
}

/// Encodes `image` (of the encoder's processing size) and returns its keys,
/// as the tracker computes them: `cells * KEY_DIM` values over the stride-8
/// grid (`encoder.grids()[1]`), row-major. Allocates; for one-off use.
pub(crate) fn image_keys(encoder: &Encoder, image: &RgbFrame) -> Result<Vec<f32>, EncoderError> {
    let mut features = encoder.new_features();
    encoder.encode(image, &mut features)?;
    let mut keys = vec![0.0; encoder.grids()[1].len() * KEY_DIM];
    KeyBuilder::new(encoder).build(&features, &mut keys);
    Ok(keys)
}
