//! Persistence: a moving region becomes an object only after it was seen in
//! `min_persistence` consecutive compared frames, at about the same place
//! (its box overlapping the last one's). And suppression: the region of an
//! object removed by hand is not discovered again for a while.

use super::regions::Region;

/// Boxes that overlap at least this much are the same candidate.
const SAME_IOU: f32 = 0.2;
/// Most candidates followed at once (the rest are ignored until room).
pub(crate) const MAX_CANDIDATES: usize = 16;

/// A moving region followed over frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    /// Its box in the last frame it was seen, in cells.
    pub(crate) bbox: [usize; 4],
    /// Consecutive frames it was seen in.
    pub(crate) hits: u32,
}

/// The candidates, and the regions suppressed after a removal.
#[derive(Clone, Debug)]
pub(crate) struct Candidates {
    list: Vec<Candidate>,
    next: Vec<Candidate>,
    /// `(box in cells, until this time in seconds)`.
    suppressed: Vec<([usize; 4], f64)>,
}

impl Candidates {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self {
            list: Vec::with_capacity(MAX_CANDIDATES),
            next: Vec::with_capacity(MAX_CANDIDATES),
            suppressed: Vec::with_capacity(MAX_CANDIDATES),
        }
    }

    /// Forgets every candidate (not the suppressions).
    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }

    /// Suppresses `bbox` (cells) until `until` (seconds).
    pub(crate) fn suppress(&mut self, bbox: [usize; 4], until: f64) {
        if self.suppressed.len() == MAX_CANDIDATES {
            self.suppressed.remove(0);
        }
        self.suppressed.push((bbox, until));
    }

    /// Whether cell `(x, y)` lies in a region suppressed at time `now`
    /// (with a one-cell margin).
    pub(crate) fn is_suppressed(&self, x: usize, y: usize, now: f64) -> bool {
        self.suppressed.iter().any(|&(b, until)| {
            now < until && x + 1 >= b[0] && x < b[2] + 1 && y + 1 >= b[1] && y < b[3] + 1
        })
    }

    /// Drops the suppressions that ended before `now`.
    pub(crate) fn expire(&mut self, now: f64) {
        self.suppressed.retain(|&(_, until)| now < until);
    }

    /// Updates the candidates with this frame's `regions`: a region that
    /// overlaps a candidate continues it, one that overlaps none starts a
    /// new one, a candidate that no region continues is dropped. Calls
    /// `ready` with the box of each candidate that reached `min_hits`
    /// (largest first), which then leaves the list.
    pub(crate) fn update(
        &mut self,
        regions: &[Region],
        min_hits: u32,
        mut ready: impl FnMut([usize; 4]),
    ) {
        self.next.clear();
        for r in regions {
            if self.next.len() == MAX_CANDIDATES {
                break;
            }
            let before = self
                .list
                .iter()
                .filter(|c| Region::box_iou(c.bbox, r.bbox) >= SAME_IOU)
                .map(|c| c.hits)
                .max()
                .unwrap_or(0);
            self.next.push(Candidate {
                bbox: r.bbox,
                hits: before + 1,
            });
        }
        std::mem::swap(&mut self.list, &mut self.next);
        self.list.sort_unstable_by_key(|c| {
            std::cmp::Reverse((c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1]))
        });
        self.list.retain(|c| {
            if c.hits >= min_hits {
                ready(c.bbox);
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(bbox: [usize; 4]) -> Region {
        Region {
            cells: (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]),
            bbox,
        }
    }

    #[test]
    fn a_region_is_ready_after_min_hits_consecutive_frames() {
        let mut c = Candidates::new();
        let mut got = Vec::new();
        for k in 0..3 {
            c.update(&[region([2 + k, 2, 6 + k, 5])], 3, |b| got.push(b));
        }
        assert_eq!(got, vec![[4, 2, 8, 5]]);
        // Once promoted it starts over.
        got.clear();
        c.update(&[region([4, 2, 8, 5])], 3, |b| got.push(b));
        assert!(got.is_empty());
    }

    #[test]
    fn a_gap_or_a_jump_restarts_the_count() {
        let mut c = Candidates::new();
        let mut got = Vec::new();
        c.update(&[region([2, 2, 6, 5])], 3, |b| got.push(b));
        c.update(&[region([2, 2, 6, 5])], 3, |b| got.push(b));
        c.update(&[], 3, |b| got.push(b));
        c.update(&[region([2, 2, 6, 5])], 3, |b| got.push(b));
        c.update(&[region([20, 20, 24, 25])], 3, |b| got.push(b));
        assert!(got.is_empty());
    }

    #[test]
    fn suppression_covers_the_box_with_a_margin_until_it_ends() {
        let mut c = Candidates::new();
        c.suppress([4, 4, 8, 8], 10.0);
        assert!(c.is_suppressed(3, 3, 5.0));
        assert!(c.is_suppressed(8, 8, 5.0));
        assert!(!c.is_suppressed(9, 4, 5.0));
        assert!(!c.is_suppressed(5, 5, 10.0));
        c.expire(11.0);
        assert!(!c.is_suppressed(5, 5, 0.0));
    }
}
