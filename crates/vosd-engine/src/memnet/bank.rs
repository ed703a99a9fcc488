//! The memory network's memory: the permanent first frame, a working
//! memory of every `mem_every`-th frame (first in, first out, a fixed
//! capacity) and the previous frame. Each entry holds a frame's learned
//! keys and, per object, its values.
//!
//! Every entry buffer is allocated at start (capacity + 3 of them: the
//! first frame, the working frames, the previous frame and the one being
//! written), so a long stream runs in constant memory and never
//! allocates.

/// One stored frame: its keys (`key_dim × cells`, channels-first), their
/// squared norms per cell, and per object its values (`objects ×
/// value_dim × cells`).
#[derive(Clone, Debug)]
pub struct Entry {
    /// The frame's index in the stream.
    pub frame: u64,
    /// Keys, `key_dim × cells`.
    pub keys: Vec<f32>,
    /// Squared L2 norm of each cell's key.
    pub key_norms: Vec<f32>,
    /// Values, `max_objects × value_dim × cells` (objects in channel order).
    pub values: Vec<f32>,
}

/// The bank of entries and their roles.
#[derive(Debug)]
pub struct MemoryBank {
    entries: Vec<Entry>,
    first: Option<usize>,
    /// Working-memory entries, oldest first (at most `capacity`).
    working: Vec<usize>,
    previous: Option<usize>,
    capacity: usize,
    mem_every: u64,
    keep_previous: bool,
    cells: usize,
    key_dim: usize,
    value_dim: usize,
    max_objects: usize,
}

impl MemoryBank {
    /// A bank for `cells` cells per frame, `capacity` working frames,
    /// keys of `key_dim` and values of `value_dim` channels for up to
    /// `max_objects` objects.
    pub fn new(
        cells: usize,
        key_dim: usize,
        value_dim: usize,
        max_objects: usize,
        capacity: usize,
        mem_every: usize,
        keep_previous: bool,
    ) -> Self {
        let entry = Entry {
            frame: 0,
            keys: vec![0.0; key_dim * cells],
            key_norms: vec![0.0; cells],
            values: vec![0.0; max_objects * value_dim * cells],
        };
        Self {
            entries: vec![entry; capacity + 3],
            first: None,
            working: Vec::with_capacity(capacity + 1),
            previous: None,
            capacity,
            mem_every: mem_every.max(1) as u64,
            keep_previous,
            cells,
            key_dim,
            value_dim,
            max_objects,
        }
    }

    /// Bytes held by the entries (constant).
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| (e.keys.len() + e.key_norms.len() + e.values.len()) * 4)
            .sum()
    }

    /// Cells per frame.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Channels of a key.
    pub fn key_dim(&self) -> usize {
        self.key_dim
    }

    /// Channels of a value.
    pub fn value_dim(&self) -> usize {
        self.value_dim
    }

    /// An entry not in use now, to be written and then stored.
    pub fn spare(&mut self) -> (usize, &mut Entry) {
        let used = |i: &usize| {
            Some(*i) == self.first || Some(*i) == self.previous || self.working.contains(i)
        };
        // capacity + 3 entries, at most capacity + 2 in use: one is free
        // (the fallback to the last is never taken).
        let last = self.entries.len() - 1;
        let slot = (0..self.entries.len()).find(|i| !used(i)).unwrap_or(last);
        debug_assert!(!used(&slot));
        (slot, &mut self.entries[slot])
    }

    /// Fills `entry`'s key norms from its keys.
    pub fn finish_keys(entry: &mut Entry, key_dim: usize, cells: usize) {
        entry.key_norms.fill(0.0);
        for c in 0..key_dim {
            let row = &entry.keys[c * cells..(c + 1) * cells];
            for (n, k) in entry.key_norms.iter_mut().zip(row) {
                *n += k * k;
            }
        }
    }

    /// Makes entry `slot` the permanent first frame and empties the rest
    /// of the memory.
    pub fn set_first(&mut self, slot: usize) {
        self.first = Some(slot);
        self.working.clear();
        self.previous = None;
    }

    /// Stores entry `slot` (frame `entries[slot].frame`) after its
    /// prediction: into working memory on every `mem_every`-th frame (the
    /// oldest working frame leaves when it is full), else as the previous
    /// frame (when kept).
    pub fn store(&mut self, slot: usize) {
        let frame = self.entries[slot].frame;
        if frame.is_multiple_of(self.mem_every) && self.capacity > 0 {
            if self.working.len() == self.capacity {
                self.working.remove(0);
            }
            self.working.push(slot);
            self.previous = None;
        } else if self.keep_previous {
            self.previous = Some(slot);
        }
    }

    /// The entries a query reads, in order: the first frame, the working
    /// frames oldest first, the previous frame.
    pub fn active(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.first
            .iter()
            .chain(self.working.iter())
            .chain(self.previous.iter())
            .map(|&i| &self.entries[i])
    }

    /// Number of entries a query reads.
    pub fn len(&self) -> usize {
        self.first.iter().count() + self.working.len() + self.previous.iter().count()
    }

    /// True before the first frame is set.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Most entries a query ever reads.
    pub fn max_len(&self) -> usize {
        self.capacity + 2
    }

    /// Stops storing object channel `k` (of `objects` in use): the last
    /// object's values take its place in every entry.
    pub fn remove_object(&mut self, k: usize, objects: usize) {
        let plane = self.value_dim * self.cells;
        if k >= objects || objects > self.max_objects {
            return;
        }
        let last = objects - 1;
        for e in &mut self.entries {
            if k != last {
                e.values
                    .copy_within(last * plane..(last + 1) * plane, k * plane);
            }
            e.values[last * plane..(last + 1) * plane].fill(0.0);
        }
    }

    /// Entry `slot`.
    pub fn entry(&self, slot: usize) -> &Entry {
        &self.entries[slot]
    }

    /// Entry `slot`, to write.
    pub fn entry_mut(&mut self, slot: usize) -> &mut Entry {
        &mut self.entries[slot]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(capacity: usize, mem_every: usize, keep_previous: bool) -> MemoryBank {
        MemoryBank::new(4, 2, 2, 2, capacity, mem_every, keep_previous)
    }

    fn push(b: &mut MemoryBank, frame: u64) {
        let (slot, e) = b.spare();
        e.frame = frame;
        if frame == 0 {
            b.set_first(slot);
        } else {
            b.store(slot);
        }
    }

    fn frames(b: &MemoryBank) -> Vec<u64> {
        b.active().map(|e| e.frame).collect()
    }

    #[test]
    fn first_working_and_previous_in_order() {
        let mut b = bank(2, 5, true);
        for t in 0..=12 {
            push(&mut b, t);
        }
        // Working: 5 and 10; previous: 12.
        assert_eq!(frames(&b), vec![0, 5, 10, 12]);
        push(&mut b, 13);
        push(&mut b, 14);
        push(&mut b, 15);
        // 15 entered working memory (5 left) and is not repeated as previous.
        assert_eq!(frames(&b), vec![0, 10, 15]);
    }

    #[test]
    fn memory_stays_bounded_on_a_long_stream() {
        let mut b = bank(3, 2, true);
        let bytes = b.bytes();
        for t in 0..10_000 {
            push(&mut b, t);
            assert!(b.len() <= b.max_len());
        }
        assert_eq!(frames(&b), vec![0, 9994, 9996, 9998, 9999]);
        assert_eq!(b.bytes(), bytes);
    }

    #[test]
    fn without_previous_or_working_memory() {
        let mut b = bank(0, 5, false);
        for t in 0..20 {
            push(&mut b, t);
        }
        assert_eq!(frames(&b), vec![0]);
    }

    #[test]
    fn removing_an_object_moves_the_last_into_its_place() {
        let mut b = MemoryBank::new(1, 1, 1, 3, 1, 1, true);
        let (slot, e) = b.spare();
        e.values.copy_from_slice(&[1.0, 2.0, 3.0]);
        b.set_first(slot);
        b.remove_object(0, 3);
        assert_eq!(b.entry(slot).values, vec![3.0, 2.0, 0.0]);
    }
}
