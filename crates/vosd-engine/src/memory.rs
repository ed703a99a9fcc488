//! The VOS memory: keys and values of past frames, allocated once.
//!
//! Slot 0 holds the first (annotated) frame and is never evicted. The other
//! `capacity` slots form the working memory, a ring that overwrites its
//! oldest frame when full. Keys are L2-normalised feature vectors per cell;
//! values are per-cell probabilities, channel 0 = background, channel `k` =
//! the tracker's `k`-th object.

/// Fixed-capacity key/value store for the first frame and recent frames.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    cells: usize,
    dim: usize,
    channels: usize,
    capacity: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
    /// Frame number stored in each slot (slot 0 = first frame).
    frame_of: Vec<u64>,
    has_first: bool,
    working_len: usize,
    /// Next working slot to write (0-based within the working ring).
    next: usize,
    /// Per slot, a number (unique in the process) that changes whenever its
    /// keys or values change; device copies re-upload a slot when it does.
    versions: Vec<u64>,
}

/// One stored frame, as seen by the readout.
#[derive(Clone, Copy, Debug)]
pub struct MemoryFrame<'a> {
    /// Slot index in the store (0 = first frame).
    pub slot: usize,
    /// True for the permanent first frame.
    pub is_first: bool,
    /// The frame number it was taken from.
    pub frame: u64,
    /// `cells * dim` keys.
    pub keys: &'a [f32],
    /// `cells * channels` values.
    pub values: &'a [f32],
}

impl MemoryStore {
    /// Allocates a store for `cells` cells of `dim`-dimensional keys and
    /// `channels` value channels, with `capacity` working frames.
    pub fn new(cells: usize, dim: usize, channels: usize, capacity: usize) -> Self {
        let slots = capacity + 1;
        Self {
            cells,
            dim,
            channels,
            capacity,
            keys: vec![0.0; slots * cells * dim],
            values: vec![0.0; slots * cells * channels],
            frame_of: vec![0; slots],
            has_first: false,
            working_len: 0,
            next: 0,
            versions: vec![0; slots],
        }
    }

    /// Slots (first frame + working capacity).
    pub fn slot_count(&self) -> usize {
        self.capacity + 1
    }

    /// The version of `slot`'s content: it changes whenever the slot's keys
    /// or values do.
    pub fn slot_version(&self, slot: usize) -> u64 {
        self.versions[slot]
    }

    /// Gives `slot` a new version, unique in the process: a device copy
    /// that was filled from another store (e.g. a self-test's) can never
    /// mistake its content for this store's.
    fn bump(&mut self, slot: usize) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.versions[slot] = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Key dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Value channels per cell.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Cells per frame.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Working-memory capacity in frames.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames in working memory now.
    pub fn working_len(&self) -> usize {
        self.working_len
    }

    /// Bytes held by keys and values (constant after `new`).
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * std::mem::size_of::<f32>()
    }

    fn write_slot(&mut self, slot: usize, frame: u64, keys: &[f32], values: &[f32]) {
        let (kd, vd) = (self.cells * self.dim, self.cells * self.channels);
        self.keys[slot * kd..(slot + 1) * kd].copy_from_slice(&keys[..kd]);
        self.values[slot * vd..(slot + 1) * vd].copy_from_slice(&values[..vd]);
        self.frame_of[slot] = frame;
        self.bump(slot);
    }

    /// Stores the first frame (permanent) and empties working memory.
    /// `keys` must hold `cells * dim` values and `values` `cells * channels`.
    pub fn set_first(&mut self, frame: u64, keys: &[f32], values: &[f32]) {
        self.write_slot(0, frame, keys, values);
        self.has_first = true;
        self.working_len = 0;
        self.next = 0;
    }

    /// Adds a frame to working memory, overwriting the oldest when full.
    /// A store with capacity 0 keeps only the first frame.
    pub fn push_working(&mut self, frame: u64, keys: &[f32], values: &[f32]) {
        if self.capacity == 0 {
            return;
        }
        let slot = 1 + self.next;
        self.write_slot(slot, frame, keys, values);
        self.next = (self.next + 1) % self.capacity;
        self.working_len = (self.working_len + 1).min(self.capacity);
    }

    /// Mutable values of every stored frame (to add or clear an object's channel).
    pub fn values_mut(&mut self) -> &mut [f32] {
        for slot in 0..self.versions.len() {
            self.bump(slot);
        }
        &mut self.values
    }

    /// Drops the working memory (the first frame stays).
    pub fn clear_working(&mut self) {
        self.working_len = 0;
        self.next = 0;
    }

    /// Frame numbers in working memory, oldest first.
    pub fn working_frames(&self) -> Vec<u64> {
        (0..self.working_len)
            .map(|i| {
                let ring = (self.next + self.capacity - self.working_len + i) % self.capacity;
                self.frame_of[1 + ring]
            })
            .collect()
    }

    /// The stored frames: the first frame (if set), then working memory.
    pub fn frames(&self) -> impl Iterator<Item = MemoryFrame<'_>> + '_ {
        let (kd, vd) = (self.cells * self.dim, self.cells * self.channels);
        let first = self.has_first.then_some(0);
        first
            .into_iter()
            .chain(1..=self.working_len)
            .map(move |slot| MemoryFrame {
                slot,
                is_first: slot == 0,
                frame: self.frame_of[slot],
                keys: &self.keys[slot * kd..(slot + 1) * kd],
                values: &self.values[slot * vd..(slot + 1) * vd],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: f32) -> (Vec<f32>, Vec<f32>) {
        (vec![v; 2 * 3], vec![v; 2 * 2])
    }

    #[test]
    fn capacity_bound_and_eviction_order() {
        let mut m = MemoryStore::new(2, 3, 2, 3);
        let bytes = m.bytes();
        let (k, v) = frame(0.0);
        m.set_first(0, &k, &v);
        for f in 1..=5u64 {
            let (k, v) = frame(f as f32);
            m.push_working(f, &k, &v);
            assert!(m.working_len() <= 3);
        }
        // Oldest two (1, 2) were evicted, in order.
        assert_eq!(m.working_frames(), vec![3, 4, 5]);
        assert_eq!(m.bytes(), bytes, "memory must not grow");
        let frames: Vec<_> = m.frames().collect();
        assert_eq!(frames.len(), 4);
        assert!(frames[0].is_first && frames[0].frame == 0 && frames[0].keys[0] == 0.0);
        assert!(frames[1..].iter().all(|f| !f.is_first));
    }

    #[test]
    fn first_frame_is_never_evicted() {
        let mut m = MemoryStore::new(2, 3, 2, 2);
        let (k, v) = frame(9.0);
        m.set_first(7, &k, &v);
        for f in 8..100u64 {
            let (k, v) = frame(f as f32);
            m.push_working(f, &k, &v);
        }
        let first = m.frames().next().unwrap();
        assert!(first.is_first);
        assert_eq!(first.frame, 7);
        assert!(first.keys.iter().all(|&x| x == 9.0));
        assert_eq!(m.working_frames(), vec![98, 99]);
    }

    #[test]
    fn zero_capacity_keeps_only_first() {
        let mut m = MemoryStore::new(2, 3, 2, 0);
        let (k, v) = frame(1.0);
        m.set_first(0, &k, &v);
        m.push_working(1, &k, &v);
        assert_eq!(m.frames().count(), 1);
    }
}
