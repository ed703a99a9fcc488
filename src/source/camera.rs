//! What the camera backends (`v4l2`, `nokhwa`) share and what can be tested
//! without a camera: pixel-format choice, buffer conversion, kernel
//! timestamps, the reconnection back-off and stall detection.

use std::path::Path;
use std::time::Duration;

use super::convert::{self, ConvertError};
use super::{PixelFormat, SourceError};
use vosd_engine::frame::{LabelMask, RgbFrame};

/// The formats `auto` tries, in order of preference: MJPEG first (the only
/// format most USB2 cameras deliver at full rate above VGA), then the raw
/// formats.
pub const AUTO_PREFERENCE: [PixelFormat; 4] = [
    PixelFormat::Mjpeg,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Grey,
];

impl PixelFormat {
    /// The V4L2 FourCC code of a concrete format (`None` for `auto`).
    pub fn fourcc(self) -> Option<[u8; 4]> {
        match self {
            PixelFormat::Auto => None,
            PixelFormat::Mjpeg => Some(*b"MJPG"),
            PixelFormat::Yuyv => Some(*b"YUYV"),
            PixelFormat::Nv12 => Some(*b"NV12"),
            PixelFormat::Grey => Some(*b"GREY"),
        }
    }

    /// The format of a V4L2 FourCC code vosd can convert (`JPEG` counts as
    /// MJPEG: some drivers name it so).
    pub fn from_fourcc(code: &[u8; 4]) -> Option<Self> {
        match code {
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"NV12" => Some(PixelFormat::Nv12),
            b"GREY" => Some(PixelFormat::Grey),
            _ => None,
        }
    }
}

/// Shows a FourCC code as text (`"YUYV"`), escaping bytes that are not
/// printable ASCII.
pub fn fourcc_text(code: &[u8; 4]) -> String {
    code.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// Picks the format to ask for among those the camera `offered` (FourCC
/// codes, in the driver's order). `requested` = a concrete format must be
/// offered; `auto` takes the first of [`AUTO_PREFERENCE`] that is. Offered
/// codes vosd cannot convert are ignored. The error names what the camera
/// offers.
pub fn choose_format(
    requested: PixelFormat,
    offered: &[[u8; 4]],
) -> Result<(PixelFormat, [u8; 4]), String> {
    let find = |want: PixelFormat| {
        offered
            .iter()
            .find(|code| PixelFormat::from_fourcc(code) == Some(want))
            .map(|code| (want, *code))
    };
    let found = match requested {
        PixelFormat::Auto => AUTO_PREFERENCE.iter().find_map(|&f| find(f)),
        f => find(f),
    };
    found.ok_or_else(|| {
        let list: Vec<String> = offered.iter().map(fourcc_text).collect();
        let offered = if list.is_empty() {
            "no formats".to_string()
        } else {
            list.join(", ")
        };
        match requested {
            PixelFormat::Auto => {
                format!("the camera offers {offered}; vosd converts MJPG, YUYV, NV12 and GREY")
            }
            f => format!(
                "format {} is not offered by the camera (it offers {offered})",
                fourcc_text(&f.fourcc().unwrap_or(*b"????"))
            ),
        }
    })
}

/// Converts one camera buffer of `format` (rows `stride` bytes apart) into
/// `out`, which has the stream's size. Only MJPEG allocates (the decoder's
/// output).
pub fn convert_buffer(
    format: PixelFormat,
    bytes: &[u8],
    stride: usize,
    out: &mut RgbFrame,
) -> Result<(), ConvertError> {
    match format {
        PixelFormat::Mjpeg => convert::mjpeg_to_rgb(bytes, out),
        PixelFormat::Yuyv => convert::yuyv_to_rgb(bytes, stride, out),
        PixelFormat::Nv12 => convert::nv12_to_rgb(bytes, stride, out),
        PixelFormat::Grey => convert::grey_to_rgb(bytes, stride, out),
        PixelFormat::Auto => Err(ConvertError(
            "internal: no concrete pixel format was negotiated".into(),
        )),
    }
}

/// The capture time of a buffer in CLOCK_MONOTONIC ns: the kernel's
/// timestamp when the driver says it is monotonic (UVC and most drivers),
/// else `now_ns` (the time vosd dequeued it). Negative or absurd kernel
/// values also fall back to `now_ns`.
pub fn capture_time_ns(sec: i64, usec: i64, monotonic: bool, now_ns: u64) -> u64 {
    if !monotonic || sec < 0 || !(0..1_000_000).contains(&usec) {
        return now_ns;
    }
    let ns = (sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(usec as u64 * 1_000);
    // A timestamp from the future is not a capture time.
    if ns == 0 || ns > now_ns {
        now_ns
    } else {
        ns
    }
}

/// The first-frame objects of a camera source: the label mask PNG at
/// `path` (`source.initial_mask`), which must have the stream's size.
pub fn load_initial_mask(
    path: Option<&Path>,
    width: usize,
    height: usize,
) -> Result<Option<LabelMask>, SourceError> {
    let Some(p) = path else {
        return Ok(None);
    };
    let m = vosd_engine::imageio::load_mask(p)?;
    if (m.width, m.height) != (width, height) {
        return Err(SourceError::FrameSize {
            what: format!("source.initial_mask {}", p.display()),
            got_w: m.width,
            got_h: m.height,
            want_w: width,
            want_h: height,
        });
    }
    Ok(Some(m))
}

/// Exponential back-off between reconnection attempts: 0.1 s, doubling up
/// to a ceiling; [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at 100 ms and doubles up to `max`.
    pub fn new(max: Duration) -> Self {
        let first = Duration::from_millis(100).min(max);
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first, short pause (after a successful reconnection).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// How long a camera may send nothing before vosd treats it as lost and
/// reopens it: ten frame periods, and at least 2 s.
pub fn stall_timeout(fps: f64) -> Duration {
    let periods = if fps.is_finite() && fps > 0.0 {
        Duration::from_secs_f64(10.0 / fps)
    } else {
        Duration::ZERO
    };
    periods.max(Duration::from_secs(2))
}

/// Explains an error opening or using a camera device, with the fix where
/// there is an obvious one.
pub fn explain_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such device node (is the camera plugged in?)".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied (run vosd as a member of the `video` group)".into()
        }
        Some(libc::EBUSY) => "device busy (another process is capturing from it)".into(),
        Some(libc::ENOTTY) | Some(libc::EINVAL) => {
            format!("not a V4L2 capture device ({e})")
        }
        Some(libc::ENOSYS) => format!(
            "not a V4L2 capture device, or V4L2 calls are unavailable here (qemu-user does not emulate them) ({e})"
        ),
        Some(libc::ENODEV) | Some(libc::ENXIO) => "device went away (unplugged?)".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_mjpeg_then_raw_formats() {
        let offered = [*b"YUYV", *b"MJPG"];
        assert_eq!(
            choose_format(PixelFormat::Auto, &offered).unwrap(),
            (PixelFormat::Mjpeg, *b"MJPG")
        );
        let offered = [*b"RGB3", *b"NV12", *b"GREY"];
        assert_eq!(
            choose_format(PixelFormat::Auto, &offered).unwrap(),
            (PixelFormat::Nv12, *b"NV12")
        );
        // JPEG is MJPEG under another name; the driver's code is kept.
        assert_eq!(
            choose_format(PixelFormat::Mjpeg, &[*b"JPEG"]).unwrap(),
            (PixelFormat::Mjpeg, *b"JPEG")
        );
    }

    #[test]
    fn unusable_formats_are_named_in_the_error() {
        let e = choose_format(PixelFormat::Auto, &[*b"RGB3", [b'B', b'G', 0, 1]]).unwrap_err();
        assert!(e.contains("RGB3") && e.contains("BG\\x00\\x01"), "{e}");
        let e = choose_format(PixelFormat::Nv12, &[*b"YUYV"]).unwrap_err();
        assert!(
            e.contains("NV12 is not offered") && e.contains("YUYV"),
            "{e}"
        );
        let e = choose_format(PixelFormat::Auto, &[]).unwrap_err();
        assert!(e.contains("no formats"), "{e}");
    }

    #[test]
    fn fourcc_round_trips() {
        for f in AUTO_PREFERENCE {
            assert_eq!(PixelFormat::from_fourcc(&f.fourcc().unwrap()), Some(f));
        }
        assert_eq!(PixelFormat::Auto.fourcc(), None);
    }

    #[test]
    fn convert_buffer_dispatches_on_the_format() {
        // A 4x2 GREY frame with a padded stride of 6.
        let src = [10, 20, 30, 40, 0, 0, 50, 60, 70, 80, 0, 0];
        let mut out = RgbFrame::new(4, 2);
        convert_buffer(PixelFormat::Grey, &src, 6, &mut out).unwrap();
        assert_eq!(&out.data[..6], &[10, 10, 10, 20, 20, 20]);
        assert_eq!(&out.data[12..15], &[50, 50, 50]);
        // The same bytes are too short for YUYV at that size.
        assert!(convert_buffer(PixelFormat::Yuyv, &src, 8, &mut out).is_err());
        assert!(convert_buffer(PixelFormat::Auto, &src, 6, &mut out).is_err());
        // Not a JPEG.
        let e = convert_buffer(PixelFormat::Mjpeg, &src, 0, &mut out).unwrap_err();
        assert!(e.0.contains("MJPEG"), "{e}");
    }

    #[test]
    fn kernel_timestamps_are_used_only_when_monotonic_and_sane() {
        let now = 5_000_000_000;
        assert_eq!(capture_time_ns(4, 250_000, true, now), 4_250_000_000);
        assert_eq!(capture_time_ns(4, 250_000, false, now), now);
        assert_eq!(capture_time_ns(-1, 0, true, now), now);
        assert_eq!(capture_time_ns(4, 1_000_000, true, now), now);
        assert_eq!(capture_time_ns(6, 0, true, now), now, "future");
        assert_eq!(capture_time_ns(0, 0, true, now), now, "unset");
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let seq: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seq, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn stall_timeout_is_ten_periods_but_at_least_two_seconds() {
        assert_eq!(stall_timeout(30.0), Duration::from_secs(2));
        assert_eq!(stall_timeout(2.0), Duration::from_secs(5));
        assert_eq!(stall_timeout(f64::NAN), Duration::from_secs(2));
    }

    #[test]
    fn io_errors_are_explained() {
        let e = |code| explain_io(&std::io::Error::from_raw_os_error(code));
        assert!(e(libc::ENOENT).contains("no such device"));
        assert!(e(libc::EACCES).contains("video"));
        assert!(e(libc::EBUSY).contains("busy"));
        assert!(e(libc::ENOTTY).contains("not a V4L2"));
        assert!(e(libc::ENOSYS).contains("not a V4L2"));
    }
}
