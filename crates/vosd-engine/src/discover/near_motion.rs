//! The box prompt fills a box, but a moving region's box is often much
//! larger than the mover: a train along a diagonal, an arm held out. With
//! `discover.trim_to_motion`, the prompt's mask of a discovered region (a
//! new object or an extension) is kept only within [`REACH_CELLS`] of the
//! region's moving cells; the tracker grows it from there if the object
//! is larger. Where the moving cells cover only part of a compact mover,
//! this cuts the mask short, and a tracker started from too small a mask
//! can drift to a neighbour: on the synthetic scene, whose boxes fit their
//! shapes, it made one id cover two shapes. So it is off by default.

use super::regions::CellMotion;
use crate::frame::LabelMask;
use crate::geometry::{Grid, GridAxis};

/// How far from the region's moving cells, in cells (either axis), the
/// prompt's mask is kept. Chosen on the development fold (fold a of
/// DAVIS 2016 train): 1 cell scored better than 0, 2 or 3.
pub(crate) const REACH_CELLS: usize = 1;

/// The buffers of [`NearMotion::keep`], sized once for a frame size and a
/// cell grid.
#[derive(Clone, Debug)]
pub(crate) struct NearMotion {
    width: usize,
    height: usize,
    /// Cells within reach of the region's moving cells.
    near: Vec<bool>,
    /// The cell column of each frame column, and the cell row of each
    /// frame row.
    col_cell: Vec<u32>,
    row_cell: Vec<u32>,
}

impl NearMotion {
    /// Buffers for frames of `frame_w`×`frame_h` over the cell `grid` of
    /// the processing size, which is `scale` (x, y) times smaller than the
    /// frame.
    pub(crate) fn new((frame_w, frame_h): (usize, usize), grid: &Grid, scale: (f32, f32)) -> Self {
        // The cell whose centre is nearest to the frame pixel's centre.
        let cell = |p: usize, scale: f32, axis: &GridAxis| {
            let proc = (p as f32 + 0.5) / scale - 0.5;
            let c = axis.cell_of(proc).round().max(0.0) as usize;
            c.min(axis.cells.saturating_sub(1)) as u32
        };
        Self {
            width: grid.x.cells,
            height: grid.y.cells,
            near: vec![false; grid.x.cells * grid.y.cells],
            col_cell: (0..frame_w).map(|x| cell(x, scale.0, &grid.x)).collect(),
            row_cell: (0..frame_h).map(|y| cell(y, scale.1, &grid.y)).collect(),
        }
    }

    /// Clears the pixels of `id` in `mask` (frame size) whose cell is more
    /// than [`REACH_CELLS`] from every moving cell of `motion` within cell
    /// box `bbox`.
    pub(crate) fn keep(
        &mut self,
        mask: &mut LabelMask,
        id: u8,
        motion: &[CellMotion],
        bbox: [usize; 4],
    ) {
        let (w, h) = (self.width, self.height);
        self.near.fill(false);
        for y in bbox[1]..bbox[3].min(h) {
            for x in bbox[0]..bbox[2].min(w) {
                if motion[y * w + x] == CellMotion::Still {
                    continue;
                }
                for yy in y.saturating_sub(REACH_CELLS)..=(y + REACH_CELLS).min(h - 1) {
                    for xx in x.saturating_sub(REACH_CELLS)..=(x + REACH_CELLS).min(w - 1) {
                        self.near[yy * w + xx] = true;
                    }
                }
            }
        }
        self.clear_outside(mask, id, &self.near);
    }

    /// Labels `id` the pixels of `out` (frame size) where no object is,
    /// `candidates` is not 0 and the nearest cell is set in `cells`.
    pub(crate) fn fill_where(
        &self,
        out: &mut LabelMask,
        id: u8,
        cells: &[bool],
        candidates: &LabelMask,
    ) {
        let w = self.width;
        let width = out.width.max(1);
        let rows = out
            .data
            .chunks_mut(width)
            .zip(candidates.data.chunks(width));
        for ((row, cand), &cy) in rows.zip(&self.row_cell) {
            let cells = &cells[cy as usize * w..][..w];
            for ((v, &c), &cx) in row.iter_mut().zip(cand).zip(&self.col_cell) {
                if *v == 0 && c != 0 && cells[cx as usize] {
                    *v = id;
                }
            }
        }
    }

    /// Clears the pixels of `id` in `mask` (frame size) whose nearest
    /// cell is not set in `cells` (one flag per cell of the grid).
    pub(crate) fn clear_outside(&self, mask: &mut LabelMask, id: u8, cells: &[bool]) {
        let w = self.width;
        for (row, &cy) in mask.data.chunks_mut(mask.width.max(1)).zip(&self.row_cell) {
            let cells = &cells[cy as usize * w..][..w];
            for (v, &cx) in row.iter_mut().zip(&self.col_cell) {
                if *v == id && !cells[cx as usize] {
                    *v = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(cells: (usize, usize), stride: usize, offset: f32) -> Grid {
        let axis = |cells| GridAxis {
            cells,
            stride,
            offset,
        };
        Grid {
            x: axis(cells.0),
            y: axis(cells.1),
        }
    }

    #[test]
    fn the_mask_is_kept_within_reach_of_the_moving_cells() {
        // 80×40 pixels, 10×5 cells of 8 px centred at 3.5, 11.5...; one
        // moving cell at (2, 2).
        let (w, h) = (10, 5);
        let mut motion = vec![CellMotion::Still; w * h];
        motion[2 * w + 2] = CellMotion::Vector(1.0, 0.0);
        // A moving cell outside the box does not count.
        motion[2 * w + 8] = CellMotion::Changed;
        let mut near = NearMotion::new((80, 40), &grid((w, h), 8, 3.5), (1.0, 1.0));
        let mut mask = LabelMask::new(80, 40);
        mask.data.fill(3);
        mask.data[0] = 4;
        near.keep(&mut mask, 3, &motion, [0, 0, 6, 5]);
        let at = |x: usize, y: usize| mask.data[y * 80 + x];
        // Cells 1..=3 in both axes are kept: pixels 8..32.
        assert_eq!(at(8, 8), 3);
        assert_eq!(at(31, 31), 3);
        assert_eq!(at(7, 20), 0);
        assert_eq!(at(32, 20), 0);
        assert_eq!(at(66, 20), 0);
        // Other ids are left alone.
        assert_eq!(at(0, 0), 4);
    }

    #[test]
    fn pixels_go_to_the_cell_whose_centre_is_nearest() {
        // The encoder's stride-8 grid has its cell 0 centred at 7 px
        // (processing pixels), and the frame is twice the processing
        // size: cell c covers frame pixels within 8 of 2 * (7 + 8c) + 0.5.
        let near = NearMotion::new((160, 80), &grid((10, 5), 8, 7.0), (2.0, 2.0));
        // Cell 0's centre is frame pixel 14.5; cell 1's is 30.5.
        assert_eq!(near.col_cell[0], 0);
        assert_eq!(near.col_cell[22], 0);
        assert_eq!(near.col_cell[23], 1);
        assert_eq!(near.col_cell[38], 1);
        assert_eq!(near.col_cell[39], 2);
        // The last cells take the frame's edge.
        assert_eq!(near.col_cell[159], 9);
        assert_eq!(near.row_cell[79], 4);
    }
}
