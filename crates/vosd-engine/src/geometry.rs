//! Where the encoder's feature cells sit on the image.
//!
//! With TensorFlow "SAME" padding a stride-2 layer pads asymmetrically (the
//! extra pixel goes to the bottom/right), so cell `i` of a stride-`s` map is
//! not centred at `s * i + (s - 1) / 2`. At 854×480 the stride-8 cells sit at
//! pixel `7 + 8i` vertically but `5 + 8i` horizontally. [`GridAxis`] computes
//! the exact affine map from cell index to pixel coordinate for one axis.

/// Kernel sizes of EfficientNet-Lite0's stride-2 layers, in order:
/// the stem (3×3), `_blocks.1` (3×3), `_blocks.3` (5×5), `_blocks.5` (3×3).
pub const STRIDE2_KERNELS: [usize; 4] = [3, 3, 5, 3];

/// One axis of a feature grid: cell `i` is centred at pixel
/// `offset + stride * i` of the processed image (pixel centres at integers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridAxis {
    /// Number of cells.
    pub cells: usize,
    /// Pixels between neighbouring cells.
    pub stride: usize,
    /// Pixel coordinate of cell 0's centre.
    pub offset: f32,
}

impl GridAxis {
    /// The grid after `levels` stride-2 layers of the encoder over an axis of
    /// `size` pixels (levels 2, 3, 4 give strides 4, 8, 16).
    pub fn for_level(size: usize, levels: usize) -> Self {
        // centre(i) = a * i + b at each level, starting from pixels.
        let (mut a, mut b, mut n) = (1.0f32, 0.0f32, size);
        for &k in STRIDE2_KERNELS.iter().take(levels) {
            let out = n.div_ceil(2);
            let pad_total = ((out.saturating_sub(1)) * 2 + k).saturating_sub(n);
            let before = pad_total / 2;
            // Output cell i reads input cells 2i - before .. 2i - before + k - 1.
            let centre_in = -(before as f32) + (k as f32 - 1.0) / 2.0;
            b += a * centre_in;
            a *= 2.0;
            n = out;
        }
        Self {
            cells: n,
            stride: a as usize,
            offset: b,
        }
    }

    /// Pixel coordinate (processed image) of cell `i`'s centre.
    pub fn centre(&self, i: usize) -> f32 {
        self.offset + (self.stride * i) as f32
    }

    /// Fractional cell coordinate of processed-image pixel coordinate `p`.
    pub fn cell_of(&self, p: f32) -> f32 {
        (p - self.offset) / self.stride as f32
    }
}

/// The 2-D grid of one feature map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    /// Horizontal axis.
    pub x: GridAxis,
    /// Vertical axis.
    pub y: GridAxis,
}

impl Grid {
    /// The grid of the stride-`2^levels` map for a `width`×`height` input.
    pub fn new(width: usize, height: usize, levels: usize) -> Self {
        Self {
            x: GridAxis::for_level(width, levels),
            y: GridAxis::for_level(height, levels),
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.x.cells * self.y.cells
    }

    /// True if the grid has no cells.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn davis_480p_stride8_alignment() {
        // Stated in the engine issue: 7 + 8i vertically, 5 + 8i horizontally.
        let g = Grid::new(854, 480, 3);
        assert_eq!((g.x.cells, g.y.cells), (107, 60));
        assert_eq!(g.y.offset, 7.0);
        assert_eq!(g.x.offset, 5.0);
        assert_eq!(g.x.stride, 8);
    }

    #[test]
    fn multiple_of_sixteen_is_uniform() {
        let g = Grid::new(512, 288, 4);
        assert_eq!((g.x.cells, g.y.cells), (32, 18));
        assert_eq!(g.x.offset, 15.0);
        assert_eq!(g.y.offset, 15.0);
        let g4 = Grid::new(512, 288, 2);
        assert_eq!(g4.x.offset, 3.0);
        assert_eq!(g4.x.centre(2), 11.0);
        assert_eq!(g4.x.cell_of(11.0), 2.0);
    }

    #[test]
    fn odd_sizes_shift_by_padding() {
        // 5 pixels, one 3x3 stride-2 layer: out 3, pad 2 (1 before): centres 0, 2, 4.
        let a = GridAxis::for_level(5, 1);
        assert_eq!((a.cells, a.offset), (3, 0.0));
        // 6 pixels: out 3, pad 1 (0 before): centres 1, 3, 5.
        let b = GridAxis::for_level(6, 1);
        assert_eq!((b.cells, b.offset), (3, 1.0));
    }
}
