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
/// multiplied by the pixel stride), the weight of the second and that of
/// the first (`1 - w`, as the formula computes it).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
    w0: f32,
}

fn taps(src: usize, dst: usize, stride: usize) -> Vec<Tap> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|d| {
            let f = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f32);
            let i0 = f as usize;
            let i1 = (i0 + 1).min(src - 1);
            let w = f - i0 as f32;
            Tap {
                i0: i0 * stride,
                i1: i1 * stride,
                w,
                w0: 1.0 - w,
            }
        })
        .collect()
}

/// Output pixels of a row that [`Resizer::resize`] interpolates at once
/// (its two stack buffers of horizontal results are `3 ×` this many).
const RUN: usize = 128;

/// [`resize_bilinear`] between two fixed sizes, with its taps computed
/// once: the per-frame resize of the tracker allocates nothing and skips
/// the per-pixel coordinate arithmetic. Results are those of
/// [`resize_bilinear`], bit for bit.
///
/// A row is done in two passes over runs of [`RUN`] pixels: the horizontal
/// interpolation of both source rows (the same operations as the per-pixel
/// formula, in the same order), then the vertical one, which the compiler
/// vectorises. Equal sizes are a copy (the formula's weights are then 0
/// and 1, and it returns every byte unchanged).
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
            || src.data.len() != src.width * src.height * 3
            || dst.data.len() != dst.width * dst.height * 3
            || self.columns.is_empty()
        {
            return;
        }
        if self.src == self.dst {
            dst.data.copy_from_slice(&src.data);
            return;
        }
        // One spare value: a pixel's four-value store reaches one past it.
        let (mut top, mut bottom) = ([0f32; 3 * RUN + 1], [0f32; 3 * RUN + 1]);
        for (row, out) in self
            .rows
            .iter()
            .zip(dst.data.chunks_exact_mut(self.dst.0 * 3))
        {
            let (row0, row1) = (&src.data[row.i0..], &src.data[row.i1..]);
            for (columns, out) in self.columns.chunks(RUN).zip(out.chunks_mut(3 * RUN)) {
                horizontal(row0, columns, &mut top);
                horizontal(row1, columns, &mut bottom);
                for ((px, a), b) in out.iter_mut().zip(&top).zip(&bottom) {
                    *px = (a * row.w0 + b * row.w + 0.5) as u8;
                }
            }
        }
    }
}

/// The horizontal half of the bilinear formula for one source row (`row`
/// starts at the row and may run on to the end of the frame) at
/// `columns`: `3 × columns.len()` values into `out`, which has one more.
/// Each pixel is done as four values (its three and the next byte's,
/// overwritten by the next pixel), which the compiler vectorises; the
/// frame's last pixels, where a fourth byte is missing, three at a time.
#[inline(always)]
fn horizontal(row: &[u8], columns: &[Tap], out: &mut [f32]) {
    for (x, col) in columns.iter().enumerate() {
        let (i0, i1) = (col.i0, col.i1);
        match (row.get(i0..i0 + 4), row.get(i1..i1 + 4)) {
            (Some(p0), Some(p1)) => {
                let mut v = [0f32; 4];
                for k in 0..4 {
                    v[k] = p0[k] as f32 * col.w0 + p1[k] as f32 * col.w;
                }
                out[3 * x..3 * x + 4].copy_from_slice(&v);
            }
            _ => {
                for c in 0..3 {
                    out[3 * x + c] = row[i0 + c] as f32 * col.w0 + row[i1 + c] as f32 * col.w;
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
    fn the_resizer_matches_the_formula_on_small_and_odd_sizes() {
        // Sources a pixel wide or high (both taps on one pixel), and sizes
        // where a run of pixels ends mid-row and the frame's last pixel
        // lacks the byte after it.
        for (sw, sh) in [(1, 1), (1, 5), (6, 1), (2, 2), (7, 3), (300, 7)] {
            let mut src = RgbFrame::new(sw, sh);
            for (i, v) in src.data.iter_mut().enumerate() {
                *v = ((i * 97 + 13) % 256) as u8;
            }
            for (w, h) in [(1, 1), (3, 2), (5, 9), (129, 4), (257, 3), (sw, sh)] {
                let (mut got, mut want) = (RgbFrame::new(w, h), RgbFrame::new(w, h));
                Resizer::new(sw, sh, w, h).resize(&src, &mut got);
                resize_reference(&src, &mut want);
                assert_eq!(got, want, "{sw}x{sh} to {w}x{h}");
            }
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
