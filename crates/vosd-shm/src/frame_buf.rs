//! [`FrameBuf`]: a reader's copy of one published frame.

use super::layout::Geometry;
use super::types::ObjectState;
#[cfg(doc)]
use super::ShmReader;

/// A reader's copy of one published frame, allocated once and refilled by
/// every read.
#[derive(Debug, Clone, Default)]
pub struct FrameBuf {
    pub(crate) seq: u64,
    pub(crate) frame_number: u64,
    pub(crate) capture_ns: u64,
    pub(crate) publish_ns: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) objects: Vec<ObjectState>,
    pub(crate) mask: Vec<u8>,
}

impl FrameBuf {
    /// An empty buffer; the first read sizes it (one allocation). Prefer
    /// [`ShmReader::new_frame_buf`], which sizes it up front.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sizes the buffer for a segment's geometry (allocates only when it grows).
    pub(crate) fn fit(&mut self, g: &Geometry) {
        self.width = g.width;
        self.height = g.height;
        if self.mask.len() != g.mask_len {
            self.mask.resize(g.mask_len, 0);
        }
        let max = g.max_objects as usize;
        if self.objects.capacity() < max {
            self.objects.reserve_exact(max - self.objects.len());
        }
    }

    /// Publish sequence number (1-based) of the frame; 0 before any read.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Camera frame number.
    pub fn frame_number(&self) -> u64 {
        self.frame_number
    }

    /// CLOCK_MONOTONIC nanoseconds when the frame was captured.
    pub fn capture_ns(&self) -> u64 {
        self.capture_ns
    }

    /// CLOCK_MONOTONIC nanoseconds when the frame was published.
    pub fn publish_ns(&self) -> u64 {
        self.publish_ns
    }

    /// Publish minus capture time in nanoseconds (0 if the clock values are inverted).
    pub fn latency_ns(&self) -> u64 {
        self.publish_ns.saturating_sub(self.capture_ns)
    }

    /// Object states of the frame.
    pub fn objects(&self) -> &[ObjectState] {
        &self.objects
    }

    /// Label mask, row-major, `width × height` bytes (0 background, else object id).
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// Mask width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Mask height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Label at pixel `(x, y)`, `None` outside the mask.
    pub fn label_at(&self, x: u32, y: u32) -> Option<u8> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.mask
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }
}
