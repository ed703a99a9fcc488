//! In-memory frames and label masks, and the resampling vosd needs on them.

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RgbFrame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, R, G, B per pixel.
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// A black frame of the given size.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// Makes this a `width`×`height` frame, reallocating only when it is not
    /// one already (pooled buffers keep their storage).
    pub fn ensure_size(&mut self, width: usize, height: usize) {
        if self.width != width || self.height != height || self.data.len() != width * height * 3 {
            *self = RgbFrame::new(width, height);
        }
    }

    /// Wraps existing RGB bytes; `None` if the length does not match the size.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Option<Self> {
        (data.len() == width * height * 3).then_some(Self {
            width,
            height,
            data,
        })
    }
}

/// A label mask: one byte per pixel, 0 = background, 1..=255 = object id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelMask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` object ids, row-major.
    pub data: Vec<u8>,
}

impl LabelMask {
    /// An all-background mask of the given size.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height],
        }
    }

    /// The distinct non-zero ids present, in increasing order.
    pub fn object_ids(&self) -> Vec<u8> {
        let mut seen = [false; 256];
        for &v in &self.data {
            seen[v as usize] = true;
        }
        (1..=255u8).filter(|&i| seen[i as usize]).collect()
    }

    /// Number of pixels labelled `id`.
    pub fn area(&self, id: u8) -> usize {
        self.data.iter().filter(|&&v| v == id).count()
    }
}

/// Bilinear resize of `src` into `dst` (whose size is the target size),
/// with pixel centres aligned (`(x + 0.5) * scale - 0.5`). No allocation.
pub fn resize_bilinear(src: &RgbFrame, dst: &mut RgbFrame) {
    let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    let sx = sw as f32 / dw as f32;
    let sy = sh as f32 / dh as f32;
    for y in 0..dh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(sh - 1);
        let wy = fy - y0 as f32;
        let row0 = &src.data[y0 * sw * 3..(y0 + 1) * sw * 3];
        let row1 = &src.data[y1 * sw * 3..(y1 + 1) * sw * 3];
        let out = &mut dst.data[y * dw * 3..(y + 1) * dw * 3];
        for x in 0..dw {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = fx as usize;
            let x1 = (x0 + 1).min(sw - 1);
            let wx = fx - x0 as f32;
            for c in 0..3 {
                let a = row0[x0 * 3 + c] as f32 * (1.0 - wx) + row0[x1 * 3 + c] as f32 * wx;
                let b = row1[x0 * 3 + c] as f32 * (1.0 - wx) + row1[x1 * 3 + c] as f32 * wx;
                out[x * 3 + c] = (a * (1.0 - wy) + b * wy + 0.5) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_keeps_pixels() {
        let mut src = RgbFrame::new(5, 3);
        for (i, v) in src.data.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        let mut dst = RgbFrame::new(5, 3);
        resize_bilinear(&src, &mut dst);
        assert_eq!(src, dst);
    }

    #[test]
    fn resize_halves_by_averaging_pairs() {
        let src = RgbFrame::from_raw(
            4,
            1,
            vec![0, 0, 0, 100, 100, 100, 200, 200, 200, 50, 50, 50],
        )
        .unwrap();
        let mut dst = RgbFrame::new(2, 1);
        resize_bilinear(&src, &mut dst);
        assert_eq!(dst.data, vec![50, 50, 50, 125, 125, 125]);
    }

    #[test]
    fn object_ids_and_area() {
        let m = LabelMask {
            width: 3,
            height: 1,
            data: vec![0, 4, 2],
        };
        assert_eq!(m.object_ids(), vec![2, 4]);
        assert_eq!(m.area(4), 1);
    }
}
