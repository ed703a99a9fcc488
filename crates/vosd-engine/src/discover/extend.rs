//! Extension: a moving region found next to a tracked object, moving with
//! it, is more of that object (a part the first box missed, or one that
//! started moving later: the rest of an animal whose legs were found
//! first), not a new object. Its box prompt is joined to the object's mask
//! instead of starting a new id.
//!
//! A region extends an object when its moving cells come within
//! [`TOUCH_CELLS`] of the object's cells (cells next to an object are not
//! searched for motion, so a region never touches one), and when the
//! object moves too, alike: the mean residual motion of the object's moving
//! cells and the region's [join](CellMotion::joins) as two cells of one
//! region would. An object that does not move keeps its shape: a hand
//! reaching past a box on a table is a new object, not more box. A region
//! that several such objects touch goes to the one it touches most: where
//! separate movers cross while moving alike, that can give one object
//! another's pixels, which is why `extend_objects` is off by default.

use super::regions::CellMotion;

/// A region's moving cells this close (in cells, either axis) to an
/// object's cells touch it: one more than the margin around objects that
/// is not searched.
pub(crate) const TOUCH_CELLS: usize = 2;

/// What [`object_to_extend`] reads of a frame, all on the cell grid.
pub(crate) struct CellView<'a> {
    /// Cells per row.
    pub(crate) width: usize,
    /// Cells per column.
    pub(crate) height: usize,
    /// Each cell's motion, objects and their margin left out.
    pub(crate) moving: &'a [CellMotion],
    /// Object id at each cell (0: none).
    pub(crate) ids: &'a [u8],
    /// Each cell's residual motion `(dx, dy)` in cells, when it moves on
    /// its own (a reliable match the camera's motion misses); `None` when
    /// it does not.
    pub(crate) residual: &'a [Option<(f32, f32)>],
}

/// The tracked object that the region in cell box `bbox` extends, if any
/// (see the module documentation): of the objects it touches that move
/// alike, the one most of its moving cells touch.
pub(crate) fn object_to_extend(view: &CellView, bbox: [usize; 4]) -> Option<u8> {
    let (w, h) = (view.width, view.height);
    let mut touches = [0u32; 256];
    let mut region_motion = Mean::default();
    let mut near = [false; 256];
    for y in bbox[1]..bbox[3].min(h) {
        for x in bbox[0]..bbox[2].min(w) {
            let c = y * w + x;
            match view.moving[c] {
                CellMotion::Still => continue,
                CellMotion::Vector(dx, dy) => region_motion.add(dx, dy),
                CellMotion::Changed => {}
            }
            near.fill(false);
            for yy in y.saturating_sub(TOUCH_CELLS)..=(y + TOUCH_CELLS).min(h - 1) {
                for xx in x.saturating_sub(TOUCH_CELLS)..=(x + TOUCH_CELLS).min(w - 1) {
                    near[view.ids[yy * w + xx] as usize] = true;
                }
            }
            for (t, &n) in touches.iter_mut().zip(&near).skip(1) {
                *t += u32::from(n);
            }
        }
    }
    let region = region_motion.get()?;
    let moves_alike = |id: u8| {
        let mut object_motion = Mean::default();
        for (c, _) in view.ids.iter().enumerate().filter(|(_, &i)| i == id) {
            if let Some((dx, dy)) = view.residual[c] {
                object_motion.add(dx, dy);
            }
        }
        object_motion.get().is_some_and(|o| {
            CellMotion::Vector(o.0, o.1).joins(CellMotion::Vector(region.0, region.1))
        })
    };
    (1..=255u8)
        .filter(|&id| touches[id as usize] > 0 && moves_alike(id))
        .max_by_key(|&id| (touches[id as usize], std::cmp::Reverse(id)))
}

/// Joins object `id`'s region prompt `prompt` (labels, `id` where the
/// prompt found the region) to the frame's labels `out`: `prompt` becomes
/// the object as it is in `out` plus the prompt's pixels that no object
/// has. Returns how many pixels that adds; with none, the object is as it
/// was and there is nothing to extend.
pub(crate) fn join(prompt: &mut [u8], out: &[u8], id: u8) -> usize {
    let mut added = 0;
    for (m, &o) in prompt.iter_mut().zip(out) {
        let new = *m == id && o == 0;
        added += usize::from(new);
        *m = if o == id || new { id } else { 0 };
    }
    added
}

/// A running mean of vectors.
#[derive(Default)]
struct Mean {
    sum: (f32, f32),
    n: u32,
}

impl Mean {
    fn add(&mut self, dx: f32, dy: f32) {
        self.sum.0 += dx;
        self.sum.1 += dy;
        self.n += 1;
    }

    fn get(&self) -> Option<(f32, f32)> {
        (self.n > 0).then(|| (self.sum.0 / self.n as f32, self.sum.1 / self.n as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a 14×8 grid: object 1 in cells x 2..5, y 2..6, moving by `one`;
    /// object 2 in x 11..14 moving by `two`; a region in columns `cols`
    /// (6..9: two cells from object 1, three from object 2), moving by
    /// `region`. What the region in `bbox` is.
    fn extends(
        one: Option<(f32, f32)>,
        two: Option<(f32, f32)>,
        region: CellMotion,
        cols: std::ops::Range<usize>,
        bbox: [usize; 4],
    ) -> Option<u8> {
        let (w, h) = (14, 8);
        let mut moving = vec![CellMotion::Still; w * h];
        let mut ids = vec![0u8; w * h];
        let mut residual = vec![None; w * h];
        for y in 2..6 {
            for x in 2..5 {
                ids[y * w + x] = 1;
                residual[y * w + x] = one;
            }
            for x in 11..14 {
                ids[y * w + x] = 2;
                residual[y * w + x] = two;
            }
            for x in cols.clone() {
                moving[y * w + x] = region;
            }
        }
        let view = CellView {
            width: w,
            height: h,
            moving: &moving,
            ids: &ids,
            residual: &residual,
        };
        object_to_extend(&view, bbox)
    }

    const RIGHT: (f32, f32) = (2.0, 0.0);
    const LEFT: (f32, f32) = (-2.0, 0.0);
    const REGION: [usize; 4] = [6, 2, 9, 6];

    #[test]
    fn a_region_moving_with_the_object_it_touches_extends_it() {
        let region = CellMotion::Vector(2.2, 0.1);
        assert_eq!(extends(Some(RIGHT), None, region, 6..9, REGION), Some(1));
        // Object 2, out of reach, moving alike, changes nothing.
        assert_eq!(
            extends(Some(RIGHT), Some(RIGHT), region, 6..9, REGION),
            Some(1)
        );
    }

    #[test]
    fn a_region_moving_apart_beside_a_still_object_or_with_no_vector_is_new() {
        let (left, right) = (
            CellMotion::Vector(LEFT.0, LEFT.1),
            CellMotion::Vector(2.0, 0.0),
        );
        assert_eq!(extends(Some(RIGHT), None, left, 6..9, REGION), None);
        assert_eq!(extends(None, None, right, 6..9, REGION), None);
        assert_eq!(
            extends(Some(RIGHT), None, CellMotion::Changed, 6..9, REGION),
            None
        );
    }

    #[test]
    fn a_join_keeps_the_object_adds_only_free_pixels_and_counts_them() {
        // Object 1 at 0..2, object 2 at 4; the prompt found 1 at 1..5.
        let out = [1, 1, 0, 0, 2, 0];
        let mut prompt = [0, 1, 1, 1, 1, 0];
        assert_eq!(join(&mut prompt, &out, 1), 2);
        assert_eq!(prompt, [1, 1, 1, 1, 0, 0]);
        // A prompt inside the object (or on another one) adds nothing.
        let mut inside = [1, 1, 0, 0, 1, 0];
        assert_eq!(join(&mut inside, &out, 1), 0);
        assert_eq!(inside, [1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_region_out_of_reach_is_new() {
        // Cells from x = 7 on: three cells from object 1.
        let right = CellMotion::Vector(2.0, 0.0);
        assert_eq!(extends(Some(RIGHT), None, right, 7..9, [7, 2, 9, 6]), None);
    }

    #[test]
    fn a_region_between_two_objects_moving_alike_goes_to_the_one_it_touches_most() {
        // Columns 6..10: two cells from both objects; from object 1, the
        // cells of columns 6 and 7 reach it (8 cells), from object 2 those
        // of column 9 only (4 cells).
        let right = CellMotion::Vector(2.0, 0.0);
        let both = [6, 2, 10, 6];
        assert_eq!(
            extends(Some(RIGHT), Some(RIGHT), right, 6..10, both),
            Some(1)
        );
        // Object 1 moving the other way: it is object 2's.
        assert_eq!(
            extends(Some(LEFT), Some(RIGHT), right, 6..10, both),
            Some(2)
        );
    }
}
