//! The three published messages in CDR, written by hand into reused
//! buffers ([`CdrWriter`]): `sensor_msgs/msg/Image` (the label mask,
//! `mono8`), `vision_msgs/msg/Detection2DArray` (a box per object) and
//! `vosd_msgs/msg/ObjectStateArray` (velocity, visibility, area per
//! object). Field order and types follow the `.msg` definitions listed in
//! [`super::type_hash::TYPES`].

use vosd_shm::ObjectState;

use super::cdr::CdrWriter;

/// `std_msgs/msg/Header`: the capture time on the ROS (wall) clock and the
/// camera's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Seconds since the UNIX epoch.
    pub sec: i32,
    /// Nanoseconds within the second (0..1e9).
    pub nanosec: u32,
    /// The coordinate frame (`header.frame_id`).
    pub frame_id: &'a str,
}

impl<'a> Header<'a> {
    /// The header of a frame captured at `realtime_ns` (nanoseconds since
    /// the UNIX epoch, CLOCK_REALTIME). Times before the epoch or after
    /// 2038 saturate (ROS's `int32` seconds).
    pub fn from_ns(realtime_ns: i64, frame_id: &'a str) -> Self {
        let realtime_ns = realtime_ns.max(0);
        let sec = realtime_ns.div_euclid(1_000_000_000);
        let nanosec = realtime_ns.rem_euclid(1_000_000_000) as u32;
        match i32::try_from(sec) {
            Ok(sec) => Self {
                sec,
                nanosec,
                frame_id,
            },
            Err(_) => Self {
                sec: i32::MAX,
                nanosec: 999_999_999,
                frame_id,
            },
        }
    }

    /// The stamp in nanoseconds since the epoch.
    pub fn ns(&self) -> i64 {
        i64::from(self.sec) * 1_000_000_000 + i64::from(self.nanosec)
    }

    fn write(&self, w: &mut CdrWriter) {
        w.i32(self.sec);
        w.u32(self.nanosec);
        w.string(self.frame_id);
    }
}

/// The ROS encoding of a label image: one byte per pixel.
pub const MONO8: &str = "mono8";

/// Writes a `sensor_msgs/msg/Image` of a `width`×`height` label mask,
/// keeping every `downscale`-th pixel of every `downscale`-th row (1: the
/// whole mask; nearest-neighbour, so labels stay labels). `mask` holds
/// `width * height` bytes, row-major (fewer: the rest is background).
pub fn image(
    buf: &mut Vec<u8>,
    header: &Header,
    mask: &[u8],
    width: usize,
    height: usize,
    downscale: usize,
) {
    let mut w = CdrWriter::new(buf);
    header.write(&mut w);
    let step = downscale.max(1);
    let (dw, dh) = (width.div_ceil(step), height.div_ceil(step));
    w.u32(dh as u32);
    w.u32(dw as u32);
    w.string(MONO8);
    w.u8(0); // is_bigendian
    w.u32(dw as u32); // step: bytes per row
    w.sequence_len(dw * dh);
    if step == 1 && mask.len() >= width * height {
        w.raw(&mask[..width * height]);
        return;
    }
    for y in (0..height).step_by(step) {
        let row = mask.get(y * width..).unwrap_or(&[]);
        for x in (0..width).step_by(step) {
            w.u8(row.get(x).copied().unwrap_or(0));
        }
    }
}

/// Writes a `vision_msgs/msg/Detection2DArray`: one `Detection2D` per
/// object state, in order. `id` is the object id in decimal, `bbox` the
/// box's centre and size in pixels (theta 0), and the single result's
/// `hypothesis.score` the confidence (`class_id` empty: vosd's objects
/// have no class; `pose` the identity with zero covariance).
pub fn detections(buf: &mut Vec<u8>, header: &Header, states: &[ObjectState]) {
    let mut w = CdrWriter::new(buf);
    header.write(&mut w);
    w.sequence_len(states.len());
    for s in states {
        header.write(&mut w);
        // results: one ObjectHypothesisWithPose.
        w.sequence_len(1);
        w.string(""); // hypothesis.class_id
        w.f64(f64::from(s.confidence)); // hypothesis.score
        for v in [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0] {
            w.f64(v); // pose.pose: position x y z, orientation x y z w
        }
        for _ in 0..36 {
            w.f64(0.0); // pose.covariance
        }
        // bbox: center (position x y, theta), size_x, size_y.
        let b = &s.bbox;
        w.f64((f64::from(b.x0) + f64::from(b.x1)) / 2.0);
        w.f64((f64::from(b.y0) + f64::from(b.y1)) / 2.0);
        w.f64(0.0);
        w.f64(f64::from(b.width()));
        w.f64(f64::from(b.height()));
        w.string_u32(s.id);
    }
}

/// Writes a `vosd_msgs/msg/ObjectStateArray`: per object its id,
/// visibility (0 visible, 1 occluded, 2 lost), confidence, area (px),
/// centroid (px) and velocity (px/s).
pub fn states(buf: &mut Vec<u8>, header: &Header, states: &[ObjectState]) {
    let mut w = CdrWriter::new(buf);
    header.write(&mut w);
    w.sequence_len(states.len());
    for s in states {
        w.u32(s.id);
        w.u8(s.visibility.as_u8());
        w.f32(s.confidence);
        w.u32(s.area);
        w.f32(s.centroid[0]);
        w.f32(s.centroid[1]);
        w.f32(s.velocity[0]);
        w.f32(s.velocity[1]);
    }
}

/// Bytes of the largest [`detections`] message for `objects` objects and
/// a frame id of `frame_id_len` bytes (to size its buffer once).
pub fn detections_capacity(objects: usize, frame_id_len: usize) -> usize {
    let header = 8 + 4 + frame_id_len + 1 + 8;
    4 + header + 4 + objects * (header + 4 + 8 + 8 + 8 * 7 + 8 * 36 + 8 * 5 + 4 + 11 + 8)
}

/// Bytes of the largest [`states`] message (see [`detections_capacity`]).
pub fn states_capacity(objects: usize, frame_id_len: usize) -> usize {
    4 + 8 + 4 + frame_id_len + 1 + 8 + 4 + objects * 36
}

/// Bytes of an [`image`] message of `width`×`height` pixels.
pub fn image_capacity(width: usize, height: usize, frame_id_len: usize) -> usize {
    4 + 8 + 4 + frame_id_len + 1 + 8 + 8 + 4 + 6 + 3 + 1 + 4 + 4 + width * height + 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use vosd_shm::{BBox, Visibility};

    fn header() -> Header<'static> {
        Header {
            sec: 1_700_000_000,
            nanosec: 123_456_789,
            frame_id: "cam",
        }
    }

    fn state() -> ObjectState {
        ObjectState {
            id: 12,
            visibility: Visibility::Occluded,
            area: 300,
            bbox: BBox {
                x0: 10,
                y0: 20,
                x1: 31,
                y1: 40,
            },
            centroid: [20.5, 30.0],
            velocity: [-1.25, 2.0],
            confidence: 0.75,
        }
    }

    #[test]
    fn header_from_ns_splits_and_saturates() {
        let h = Header::from_ns(1_700_000_000_123_456_789, "f");
        assert_eq!((h.sec, h.nanosec), (1_700_000_000, 123_456_789));
        assert_eq!(h.ns(), 1_700_000_000_123_456_789);
        assert_eq!(Header::from_ns(-5, "f").ns(), 0);
        assert_eq!(Header::from_ns(i64::MAX, "f").sec, i32::MAX);
    }

    /// The Image bytes, field by field (the layout rosbags and rclcpp read;
    /// the Python test decodes the daemon's messages with rosbags).
    #[test]
    fn image_layout() {
        let mut buf = Vec::new();
        let mask = [0u8, 1, 2, 3, 4, 5];
        image(&mut buf, &header(), &mask, 3, 2, 1);
        let want: Vec<u8> = [
            &[0u8, 1, 0, 0][..],
            &1_700_000_000i32.to_le_bytes(),
            &123_456_789u32.to_le_bytes(),
            &[4, 0, 0, 0, b'c', b'a', b'm', 0],
            &2u32.to_le_bytes(), // height
            &3u32.to_le_bytes(), // width
            &[6, 0, 0, 0],
            b"mono8\0",
            &[0],                // is_bigendian at 34
            &[0],                // padding to 36
            &3u32.to_le_bytes(), // step
            &6u32.to_le_bytes(),
            &mask,
        ]
        .concat();
        assert_eq!(buf, want);
        assert!(buf.len() <= image_capacity(3, 2, 3));
    }

    #[test]
    fn downscaled_image_keeps_every_nth_pixel() {
        let (w, h) = (5, 3);
        let mask: Vec<u8> = (0..15).collect();
        let mut full = Vec::new();
        image(&mut full, &header(), &mask, w, h, 1);
        let mut half = Vec::new();
        image(&mut half, &header(), &mask, w, h, 2);
        // 3×2 pixels: rows 0 and 2, columns 0, 2, 4.
        let tail = &half[half.len() - 6..];
        assert_eq!(tail, &[0, 2, 4, 10, 12, 14]);
        let u32_at = |i: usize| u32::from_le_bytes(half[4 + i..8 + i].try_into().unwrap());
        // height, width, step and data length (offsets after the
        // encapsulation header; see image_layout).
        assert_eq!(
            (u32_at(16), u32_at(20), u32_at(36), u32_at(40)),
            (2, 3, 3, 6)
        );
        assert_eq!(half.len(), 4 + 44 + 6);
        // A short mask reads as background instead of panicking.
        let mut short = Vec::new();
        image(&mut short, &header(), &mask[..4], w, h, 1);
        assert_eq!(
            &short[short.len() - 15..],
            &[0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    /// ObjectStateArray, byte by byte.
    #[test]
    fn states_layout() {
        let mut buf = Vec::new();
        states(&mut buf, &header(), &[state()]);
        let want: Vec<u8> = [
            &[0u8, 1, 0, 0][..],
            &1_700_000_000i32.to_le_bytes(),
            &123_456_789u32.to_le_bytes(),
            &[4, 0, 0, 0, b'c', b'a', b'm', 0],
            &1u32.to_le_bytes(),  // one object, at 16
            &12u32.to_le_bytes(), // id at 20
            &[1, 0, 0, 0],        // visibility (occluded) at 24, padding
            &0.75f32.to_le_bytes(),
            &300u32.to_le_bytes(),
            &20.5f32.to_le_bytes(),
            &30.0f32.to_le_bytes(),
            &(-1.25f32).to_le_bytes(),
            &2.0f32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(buf, want);
        assert!(buf.len() <= states_capacity(1, 3));
    }

    /// Detection2DArray: the fields that carry vosd's values, at their
    /// offsets, and the total length (the whole message is decoded by
    /// rosbags in tests/zenoh/subscribe.py).
    #[test]
    fn detections_layout() {
        let mut buf = Vec::new();
        detections(&mut buf, &header(), &[state(), state()]);
        let f64_at = |i: usize| f64::from_le_bytes(buf[4 + i..12 + i].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(buf[4 + i..8 + i].try_into().unwrap());
        assert_eq!(u32_at(16), 2); // detections
                                   // First detection: its header at 20..36, results count at 36,
                                   // class_id "" at 40..45, score at 48 (aligned), pose 56..112,
                                   // covariance 112..400, bbox 400..440, id at 440.
        assert_eq!(u32_at(36), 1);
        assert_eq!(u32_at(40), 1); // "" with its NUL
        assert_eq!(f64_at(48), 0.75);
        assert_eq!(f64_at(104), 1.0); // orientation w
        assert_eq!(
            [
                f64_at(400),
                f64_at(408),
                f64_at(416),
                f64_at(424),
                f64_at(432)
            ],
            [20.5, 30.0, 0.0, 21.0, 20.0]
        );
        assert_eq!(u32_at(440), 3);
        assert_eq!(&buf[4 + 444..4 + 447], b"12\0");
        // The second detection starts aligned at 448 with the same header;
        // its score needs 4 more bytes of padding (class_id ends at 473).
        assert_eq!(u32_at(448), 1_700_000_000);
        assert_eq!(f64_at(480), 0.75);
        assert_eq!(buf.len(), 4 + 448 + 427 + 4);
        assert!(buf.len() <= detections_capacity(2, 3));
    }
}
