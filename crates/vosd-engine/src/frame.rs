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
    Resizer::new(src.width, src.height, dst.width, dst.height).resize(src, dst);
}

/// One output coordinate's bilinear taps: the two source indices (already
/// multiplied by the pixel stride) and the weight of the second.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

fn taps(src: usize, dst: usize, stride: usize) -> Vec<Tap> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|d| {
            let f = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f32);
            let i0 = f as usize;
            let i1 = (i0 + 1).min(src - 1);
            Tap {
                i0: i0 * stride,
                i1: i1 * stride,
                w: f - i0 as f32,
            }
        })
        .collect()
}

/// [`resize_bilinear`] between two fixed sizes, with its taps computed
/// once: the per-frame resize of the tracker allocates nothing and skips
/// the per-pixel coordinate arithmetic. Results are those of
/// [`resize_bilinear`], bit for bit.
#[derive(Clone, Debug)]
pub struct Resizer {
    src: (usize, usize),
    dst: (usize, usize),
    columns: Vec<Tap>,
    rows: Vec<Tap>,
}

impl Resizer {
    /// Prepares resizing `src_w`×`src_h` frames to `dst_w`×`dst_h`.
    pub fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        let empty = src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0;
        Self {
            src: (src_w, src_h),
            dst: (dst_w, dst_h),
            columns: if empty {
                Vec::new()
            } else {
                taps(src_w, dst_w, 3)
            },
            rows: if empty {
                Vec::new()
            } else {
                taps(src_h, dst_h, src_w * 3)
            },
        }
    }

    /// Resizes `src` into `dst`; frames of other sizes than prepared for
    /// (or empty ones) are left as they are.
    pub fn resize(&self, src: &RgbFrame, dst: &mut RgbFrame) {
        if (src.width, src.height) != self.src
            || (dst.width, dst.height) != self.dst
            || self.columns.is_empty()
        {
            return;
        }
        let sw3 = src.width * 3;
        for (row, out) in self
            .rows
            .iter()
            .zip(dst.data.chunks_exact_mut(self.dst.0 * 3))
        {
            let row0 = &src.data[row.i0..row.i0 + sw3];
            let row1 = &src.data[row.i1..row.i1 + sw3];
            let wy = row.w;
            for (col, px) in self.columns.iter().zip(out.chunks_exact_mut(3)) {
                let wx = col.w;
                for c in 0..3 {
                    let a = row0[col.i0 + c] as f32 * (1.0 - wx) + row0[col.i1 + c] as f32 * wx;
                    let b = row1[col.i0 + c] as f32 * (1.0 - wx) + row1[col.i1 + c] as f32 * wx;
                    px[c] = (a * (1.0 - wy) + b * wy + 0.5) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-pixel formula `Resizer` precomputes, as it was written
    /// before: the reference it must match bit for bit.
    fn resize_reference(src: &RgbFrame, dst: &mut RgbFrame) {
        let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
        let sx = sw as f32 / dw as f32;
        let sy = sh as f32 / dh as f32;
        for y in 0..dh {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
            let (y0, wy) = (fy as usize, fy - (fy as usize) as f32);
            let y1 = (y0 + 1).min(sh - 1);
            for x in 0..dw {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
                let (x0, wx) = (fx as usize, fx - (fx as usize) as f32);
                let x1 = (x0 + 1).min(sw - 1);
                for c in 0..3 {
                    let p = |yy: usize, xx: usize| src.data[(yy * sw + xx) * 3 + c] as f32;
                    let a = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                    let b = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                    dst.data[(y * dw + x) * 3 + c] = (a * (1.0 - wy) + b * wy + 0.5) as u8;
                }
            }
        }
    }

    #[test]
    fn the_resizer_matches_the_per_pixel_formula() {
        let mut src = RgbFrame::new(854, 480);
        for (i, v) in src.data.iter_mut().enumerate() {
            *v = ((i * 31 + i / 2561) % 256) as u8;
        }
        for (w, h) in [(512, 288), (854, 480), (1000, 600), (37, 19)] {
            let (mut got, mut want) = (RgbFrame::new(w, h), RgbFrame::new(w, h));
            resize_bilinear(&src, &mut got);
            resize_reference(&src, &mut want);
            assert_eq!(got, want, "{w}x{h}");
        }
    }

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
