//! Plain data types for what is published: object states and slot contents.

/// Whether a tracked object can be seen in the current frame.
///
/// Published as one byte: 0 visible, 1 occluded, 2 lost.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Visibility {
    /// The object is segmented in this frame.
    #[default]
    Visible = 0,
    /// The object is expected in view but hidden (e.g. behind another object);
    /// its state is predicted.
    Occluded = 1,
    /// The tracker has lost the object; its state is the last known one.
    Lost = 2,
}

impl Visibility {
    /// The published byte of this value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The value of a published byte, `None` for an unknown byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Visible),
            1 => Some(Self::Occluded),
            2 => Some(Self::Lost),
            _ => None,
        }
    }

    /// Lower-case name (`visible`, `occluded`, `lost`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Visible => "visible",
            Self::Occluded => "occluded",
            Self::Lost => "lost",
        }
    }
}

impl core::fmt::Display for Visibility {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Axis-aligned bounding box in pixels: `x0`, `y0` inclusive, `x1`, `y1`
/// exclusive, so width = `x1 - x0` and an empty box has `x0 == x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BBox {
    /// Left column (inclusive).
    pub x0: u32,
    /// Top row (inclusive).
    pub y0: u32,
    /// Right column (exclusive).
    pub x1: u32,
    /// Bottom row (exclusive).
    pub y1: u32,
}

impl BBox {
    /// Width in pixels (0 for an empty or inverted box).
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    /// Height in pixels (0 for an empty or inverted box).
    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    /// Whether the box covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }
}

/// The state of one tracked object in one frame, as published to readers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ObjectState {
    /// Object id: the value of the object's pixels in the label mask (1..=255;
    /// 0 is background). Stored as a 32-bit field in the segment.
    pub id: u32,
    /// Visible, occluded or lost.
    pub visibility: Visibility,
    /// Area in pixels (pixels of the label mask equal to `id`).
    pub area: u32,
    /// Bounding box of the object's pixels (see [`BBox`]).
    pub bbox: BBox,
    /// Centroid `[x, y]`: mean column and mean row of the object's pixels
    /// (pixel `(x, y)` counts at integer coordinates `x`, `y`).
    pub centroid: [f32; 2],
    /// Velocity `[vx, vy]` of the centroid in pixels per second.
    pub velocity: [f32; 2],
    /// Confidence in 0..=1.
    pub confidence: f32,
}

impl ObjectState {
    /// Computes area, bounding box and centroid of object `id` from a
    /// row-major label mask of `width × height` pixels.
    ///
    /// Velocity is zero; visibility is [`Visibility::Visible`] with
    /// confidence 1 when the object has pixels, else [`Visibility::Lost`]
    /// with confidence 0 (callers that track over time overwrite these).
    /// An absent object gets area 0, an empty box at the origin and centroid
    /// `[0, 0]`. Pixels beyond `width × height` are ignored, missing ones
    /// count as background.
    pub fn from_mask(labels: &[u8], width: usize, height: usize, id: u8) -> ObjectState {
        let mut area = 0u64;
        let (mut sx, mut sy) = (0u64, 0u64);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
        if width > 0 {
            for (y, row) in labels.chunks(width).take(height).enumerate() {
                let mut row_area = 0u64;
                for (x, _) in row.iter().enumerate().filter(|(_, &l)| l == id) {
                    row_area += 1;
                    sx += x as u64;
                    x0 = x0.min(x);
                    x1 = x1.max(x + 1);
                }
                if row_area > 0 {
                    area += row_area;
                    sy += y as u64 * row_area;
                    y0 = y0.min(y);
                    y1 = y1.max(y + 1);
                }
            }
        }
        let sat = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        if area == 0 {
            return ObjectState {
                id: u32::from(id),
                visibility: Visibility::Lost,
                ..ObjectState::default()
            };
        }
        ObjectState {
            id: u32::from(id),
            visibility: Visibility::Visible,
            area: u32::try_from(area).unwrap_or(u32::MAX),
            bbox: BBox {
                x0: sat(x0),
                y0: sat(y0),
                x1: sat(x1),
                y1: sat(y1),
            },
            centroid: [
                (sx as f64 / area as f64) as f32,
                (sy as f64 / area as f64) as f32,
            ],
            velocity: [0.0, 0.0],
            confidence: 1.0,
        }
    }
}

/// What one publish carries, borrowed from the caller.
///
/// The writer copies it into the next slot; the publish timestamp is taken
/// by the writer.
#[derive(Debug, Clone, Copy)]
pub struct SlotData<'a> {
    /// Camera frame number.
    pub frame_number: u64,
    /// CLOCK_MONOTONIC nanoseconds when the frame was captured (see
    /// [`monotonic_ns`](super::monotonic_ns)).
    pub capture_ns: u64,
    /// Object states, at most the segment's `max_objects`.
    pub objects: &'a [ObjectState],
    /// Label mask, row-major, exactly `width × height` bytes; each pixel is
    /// 0 (background) or an object id.
    pub mask: &'a [u8],
}

/// Live pipeline statistics published in the segment header (ABI ≥ 2).
///
/// The writer stores them with [`ShmWriter::set_stats`](super::ShmWriter::set_stats)
/// after every publish and periodically while no frame arrives; readers
/// get them from [`ShmReader::stats`](super::ShmReader::stats). The fields
/// are independent counters, not a consistent snapshot: each is exact, but
/// two of them may come from slightly different moments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Frames the source delivered.
    pub frames_captured: u64,
    /// Frames dropped by any pipeline stage (a newer frame replaced them).
    pub frames_dropped: u64,
    /// Bad frames the source skipped (saturates at `u32::MAX`).
    pub capture_errors: u32,
    /// Failed camera reconnection attempts (saturates at `u32::MAX`).
    pub reconnects: u32,
    /// The camera is lost and being reopened: no new frames until it is back.
    pub camera_lost: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_bytes_round_trip() {
        for v in [Visibility::Visible, Visibility::Occluded, Visibility::Lost] {
            assert_eq!(Visibility::from_u8(v.as_u8()), Some(v));
        }
        assert_eq!(Visibility::from_u8(3), None);
        assert_eq!(Visibility::Occluded.to_string(), "occluded");
    }

    #[test]
    fn from_mask_computes_area_bbox_centroid() {
        // 6×4 mask; object 2 occupies columns 1..4 of rows 1..3 minus one pixel.
        #[rustfmt::skip]
        let m = [
            0, 0, 0, 0, 0, 1,
            0, 2, 2, 2, 0, 1,
            0, 2, 0, 2, 0, 0,
            0, 0, 0, 0, 0, 0,
        ];
        let s = ObjectState::from_mask(&m, 6, 4, 2);
        assert_eq!(s.id, 2);
        assert_eq!(s.area, 5);
        assert_eq!(
            s.bbox,
            BBox {
                x0: 1,
                y0: 1,
                x1: 4,
                y1: 3
            }
        );
        assert_eq!(s.bbox.width(), 3);
        assert!((s.centroid[0] - 2.0).abs() < 1e-6);
        assert!((s.centroid[1] - 1.4).abs() < 1e-6);
        assert_eq!(s.visibility, Visibility::Visible);
        assert_eq!(s.confidence, 1.0);

        let one = ObjectState::from_mask(&m, 6, 4, 1);
        assert_eq!(one.area, 2);
        assert_eq!(
            one.bbox,
            BBox {
                x0: 5,
                y0: 0,
                x1: 6,
                y1: 2
            }
        );
        assert_eq!(one.centroid, [5.0, 0.5]);
    }

    #[test]
    fn from_mask_absent_or_degenerate() {
        let m = [0u8; 12];
        let s = ObjectState::from_mask(&m, 4, 3, 7);
        assert_eq!(s.area, 0);
        assert!(s.bbox.is_empty());
        assert_eq!(s.visibility, Visibility::Lost);
        assert_eq!(ObjectState::from_mask(&m, 0, 3, 7).area, 0);
        // A short mask: missing pixels are background; extra rows ignored.
        assert_eq!(ObjectState::from_mask(&[7, 7, 7], 2, 5, 7).area, 3);
        assert_eq!(ObjectState::from_mask(&[7, 7, 7, 7, 7], 2, 1, 7).area, 2);
    }
}
