//! Moving cells into regions: neighbouring moving cells (a one-cell gap
//! bridged) that move alike are one region, so that two objects that touch
//! but move apart are two.

/// A region touching more sides of the frame than this is taken for the
/// scene (water, foliage, sky: texture that moves but is no object), not
/// an object; an object cut by one side of the frame is kept.
pub(crate) const MAX_SIDES: usize = 1;

/// A connected region of moving cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    /// Cells in it.
    pub(crate) cells: usize,
    /// `[x0, y0, x1, y1]` in cells, `x1`/`y1` one past the last.
    pub(crate) bbox: [usize; 4],
}

impl Region {
    /// Intersection over union of two cell boxes.
    pub(crate) fn box_iou(a: [usize; 4], b: [usize; 4]) -> f32 {
        let iw = a[2].min(b[2]).saturating_sub(a[0].max(b[0]));
        let ih = a[3].min(b[3]).saturating_sub(a[1].max(b[1]));
        let inter = (iw * ih) as f32;
        let area = |r: [usize; 4]| ((r[2] - r[0]) * (r[3] - r[1])) as f32;
        let union = area(a) + area(b) - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// The motion of a moving cell, for telling apart objects that touch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum CellMotion {
    /// Not moving.
    #[default]
    Still,
    /// Moving with this residual motion `(dx, dy)` in cells (its match
    /// minus the camera's prediction).
    Vector(f32, f32),
    /// Moving (its appearance changed) with no reliable vector: it joins
    /// any moving neighbour.
    Changed,
}

impl CellMotion {
    fn moving(self) -> bool {
        self != CellMotion::Still
    }

    /// Whether two neighbouring moving cells belong to one object: their
    /// vectors differ by less than half their mean length (and less than
    /// [`SPLIT_MIN_CELLS`] always joins).
    pub(crate) fn joins(self, other: CellMotion) -> bool {
        match (self, other) {
            (CellMotion::Vector(ax, ay), CellMotion::Vector(bx, by)) => {
                let d = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt();
                let mean = 0.5 * ((ax * ax + ay * ay).sqrt() + (bx * bx + by * by).sqrt());
                d <= SPLIT_MIN_CELLS.max(0.5 * mean)
            }
            (a, b) => a.moving() && b.moving(),
        }
    }
}

/// Moving cells whose vectors differ by less than this many cells are
/// always one object.
pub(crate) const SPLIT_MIN_CELLS: f32 = 0.75;

/// The buffers of [`RegionFinder::find`], sized once for a grid.
#[derive(Clone, Debug)]
pub(crate) struct RegionFinder {
    width: usize,
    height: usize,
    seen: Vec<bool>,
    stack: Vec<u32>,
}

impl RegionFinder {
    /// Buffers for a `width`×`height` grid.
    pub(crate) fn new(width: usize, height: usize) -> Self {
        let n = width * height;
        Self {
            width,
            height,
            seen: vec![false; n],
            stack: Vec::with_capacity(n),
        }
    }

    /// The regions of the moving cells of `motion`, into `out` (cleared):
    /// moving cells up to two cells apart (a gap of one cell bridged) whose
    /// motions [join](CellMotion::joins) are one region. Kept: regions of
    /// `min_cells..=max_cells` moving cells touching at most [`MAX_SIDES`]
    /// sides of the frame.
    pub(crate) fn find(
        &mut self,
        motion: &[CellMotion],
        min_cells: usize,
        max_cells: usize,
        out: &mut Vec<Region>,
    ) {
        let (w, h) = (self.width, self.height);
        out.clear();
        self.seen.fill(false);
        for start in 0..w * h {
            if !motion[start].moving() || self.seen[start] {
                continue;
            }
            self.seen[start] = true;
            self.stack.clear();
            self.stack.push(start as u32);
            let mut r = Region {
                cells: 0,
                bbox: [w, h, 0, 0],
            };
            while let Some(c) = self.stack.pop() {
                let c = c as usize;
                let (x, y) = (c % w, c / w);
                r.cells += 1;
                r.bbox = [
                    r.bbox[0].min(x),
                    r.bbox[1].min(y),
                    r.bbox[2].max(x + 1),
                    r.bbox[3].max(y + 1),
                ];
                for yy in y.saturating_sub(2)..=(y + 2).min(h - 1) {
                    for xx in x.saturating_sub(2)..=(x + 2).min(w - 1) {
                        let n = yy * w + xx;
                        if !self.seen[n] && motion[c].joins(motion[n]) {
                            self.seen[n] = true;
                            self.stack.push(n as u32);
                        }
                    }
                }
            }
            let sides = usize::from(r.bbox[0] == 0)
                + usize::from(r.bbox[1] == 0)
                + usize::from(r.bbox[2] == w)
                + usize::from(r.bbox[3] == h);
            if (min_cells..=max_cells).contains(&r.cells) && sides <= MAX_SIDES {
                out.push(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(w: usize, h: usize, set: &[(usize, usize, CellMotion)]) -> Vec<CellMotion> {
        let mut g = vec![CellMotion::Still; w * h];
        for &(x, y, m) in set {
            g[y * w + x] = m;
        }
        g
    }

    #[test]
    fn a_one_cell_gap_is_bridged_and_size_limits_filter() {
        let (w, h) = (12, 8);
        let right = CellMotion::Vector(2.0, 0.0);
        // Two 2x3 blocks one cell apart, and a lone cell far away.
        let mut set = Vec::new();
        for y in 2..5 {
            set.extend([(2, y, right), (3, y, right), (5, y, right), (6, y, right)]);
        }
        set.push((10, 6, right));
        let g = grid(w, h, &set);
        let mut finder = RegionFinder::new(w, h);
        let mut out = Vec::new();
        finder.find(&g, 4, 100, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].bbox, [2, 2, 7, 5]);
        assert_eq!(out[0].cells, 12);
        finder.find(&g, 13, 100, &mut out);
        assert!(out.is_empty());
        finder.find(&g, 1, 10, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].bbox, [10, 6, 11, 7]);
    }

    #[test]
    fn touching_objects_that_move_apart_are_two_regions() {
        let (w, h) = (12, 8);
        let (left, right) = (CellMotion::Vector(-2.0, 0.0), CellMotion::Vector(2.0, 0.0));
        let mut set = Vec::new();
        for y in 2..5 {
            set.extend([(2, y, left), (3, y, left), (4, y, right), (5, y, right)]);
        }
        // A cell with no vector joins whichever it touches.
        set.push((6, 3, CellMotion::Changed));
        let mut finder = RegionFinder::new(w, h);
        let mut out = Vec::new();
        finder.find(&grid(w, h, &set), 1, 100, &mut out);
        out.sort_by_key(|r| r.bbox[0]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].bbox, [2, 2, 4, 5]);
        assert_eq!(out[1].bbox, [4, 2, 7, 5]);
    }

    #[test]
    fn regions_across_the_frame_are_the_scene() {
        let (w, h) = (10, 6);
        let v = CellMotion::Vector(1.0, 1.0);
        let set: Vec<_> = (0..w).map(|x| (x, 0, v)).collect();
        let mut finder = RegionFinder::new(w, h);
        let mut out = Vec::new();
        finder.find(&grid(w, h, &set), 1, 100, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn box_iou() {
        assert_eq!(Region::box_iou([0, 0, 2, 2], [0, 0, 2, 2]), 1.0);
        assert_eq!(Region::box_iou([0, 0, 2, 2], [2, 2, 4, 4]), 0.0);
        assert!((Region::box_iou([0, 0, 2, 2], [1, 0, 3, 2]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
