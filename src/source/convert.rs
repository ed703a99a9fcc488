//! Camera pixel formats to RGB (and back, for tests and tools).
//!
//! YUV is BT.601 "limited range" (Y 16..=235, U/V 16..=240), what UVC
//! cameras send; integer arithmetic with 8 fractional bits. Every function
//! takes the source's bytes per line (`stride`, V4L2's `bytesperline`),
//! writes into a caller-sized frame and does not allocate, except
//! [`mjpeg_to_rgb`] (the JPEG decoder allocates its output).

use std::fmt;

use vosd_engine::frame::RgbFrame;

/// Why a buffer cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(pub String);

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

#[inline]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// One BT.601 limited-range YUV pixel to RGB.
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    [
        clamp8((c + 409 * e + 128) >> 8),
        clamp8((c - 100 * d - 208 * e + 128) >> 8),
        clamp8((c + 516 * d + 128) >> 8),
    ]
}

/// One RGB pixel to BT.601 limited-range YUV.
#[inline]
pub fn rgb_to_yuv(p: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    [
        clamp8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16),
        clamp8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128),
        clamp8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128),
    ]
}

fn check(out: &RgbFrame, src_len: usize, need: usize, what: &str) -> Result<(), ConvertError> {
    if out.data.len() != out.width * out.height * 3 {
        return Err(ConvertError(format!(
            "output frame {}x{} has {} bytes",
            out.width,
            out.height,
            out.data.len()
        )));
    }
    if src_len < need {
        return Err(ConvertError(format!(
            "{what} buffer has {src_len} bytes, a {}x{} frame needs {need}",
            out.width, out.height
        )));
    }
    Ok(())
}

/// Packed YUYV 4:2:2 (Y0 U Y1 V per two pixels) to RGB. `out` gives the size;
/// `stride` ≥ 2 × width; odd widths are not a YUYV size.
pub fn yuyv_to_rgb(src: &[u8], stride: usize, out: &mut RgbFrame) -> Result<(), ConvertError> {
    let (w, h) = (out.width, out.height);
    if w % 2 != 0 || stride < 2 * w {
        return Err(ConvertError(format!(
            "YUYV needs an even width and stride ≥ 2×width (width {w}, stride {stride})"
        )));
    }
    check(out, src.len(), stride * (h.max(1) - 1) + 2 * w, "YUYV")?;
    for y in 0..h {
        let row = &src[y * stride..y * stride + 2 * w];
        let dst = &mut out.data[y * w * 3..(y + 1) * w * 3];
        for (quad, px) in row.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            px[..3].copy_from_slice(&yuv_to_rgb(quad[0], quad[1], quad[3]));
            px[3..].copy_from_slice(&yuv_to_rgb(quad[2], quad[1], quad[3]));
        }
    }
    Ok(())
}

/// NV12 (a Y plane, then a half-resolution plane of interleaved U, V) to
/// RGB. Both planes use `stride`; the UV plane starts at `stride × height`.
pub fn nv12_to_rgb(src: &[u8], stride: usize, out: &mut RgbFrame) -> Result<(), ConvertError> {
    let (w, h) = (out.width, out.height);
    if w % 2 != 0 || h % 2 != 0 || stride < w {
        return Err(ConvertError(format!(
            "NV12 needs an even size and stride ≥ width ({w}x{h}, stride {stride})"
        )));
    }
    let uv_off = stride * h;
    check(
        out,
        src.len(),
        uv_off + stride * (h / 2).saturating_sub(1) + w,
        "NV12",
    )?;
    for y in 0..h {
        let yrow = &src[y * stride..y * stride + w];
        let uvrow = &src[uv_off + (y / 2) * stride..uv_off + (y / 2) * stride + w];
        let dst = &mut out.data[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let (u, v) = (uvrow[x & !1], uvrow[x | 1]);
            dst[x * 3..x * 3 + 3].copy_from_slice(&yuv_to_rgb(yrow[x], u, v));
        }
    }
    Ok(())
}

/// 8-bit greyscale to RGB (full range: 0 black, 255 white).
pub fn grey_to_rgb(src: &[u8], stride: usize, out: &mut RgbFrame) -> Result<(), ConvertError> {
    let (w, h) = (out.width, out.height);
    if stride < w {
        return Err(ConvertError(format!(
            "GREY stride {stride} is below the width {w}"
        )));
    }
    check(out, src.len(), stride * (h.max(1) - 1) + w, "GREY")?;
    for y in 0..h {
        let row = &src[y * stride..y * stride + w];
        for (g, px) in row
            .iter()
            .zip(out.data[y * w * 3..(y + 1) * w * 3].chunks_exact_mut(3))
        {
            px.fill(*g);
        }
    }
    Ok(())
}

/// Decodes one MJPEG frame (a JPEG image) into `out`, whose size it must
/// have.
pub fn mjpeg_to_rgb(src: &[u8], out: &mut RgbFrame) -> Result<(), ConvertError> {
    let img = image::load_from_memory_with_format(src, image::ImageFormat::Jpeg)
        .map_err(|e| ConvertError(format!("MJPEG frame does not decode: {e}")))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (w, h) != (out.width, out.height) || out.data.len() != w * h * 3 {
        return Err(ConvertError(format!(
            "MJPEG frame is {w}x{h}, the stream is {}x{}",
            out.width, out.height
        )));
    }
    out.data.copy_from_slice(img.as_raw());
    Ok(())
}

/// RGB to packed YUYV (chroma averaged over each pixel pair); tightly
/// packed (stride = 2 × width). For tests and tools.
pub fn rgb_to_yuyv(src: &RgbFrame) -> Vec<u8> {
    let w = src.width & !1;
    let mut out = Vec::with_capacity(w * src.height * 2);
    for y in 0..src.height {
        for x in (0..w).step_by(2) {
            let a = rgb_to_yuv(px(src, x, y));
            let b = rgb_to_yuv(px(src, x + 1, y));
            let avg = |i: usize| (u16::from(a[i]) + u16::from(b[i])).div_ceil(2) as u8;
            out.extend_from_slice(&[a[0], avg(1), b[0], avg(2)]);
        }
    }
    out
}

/// RGB to NV12 (chroma averaged over each 2×2 block); stride = width. For
/// tests and tools; even sizes.
pub fn rgb_to_nv12(src: &RgbFrame) -> Vec<u8> {
    let (w, h) = (src.width & !1, src.height & !1);
    let mut out = vec![0u8; w * h * 3 / 2];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = rgb_to_yuv(px(src, x, y))[0];
        }
    }
    for by in 0..h / 2 {
        for bx in 0..w / 2 {
            let (mut su, mut sv) = (0u32, 0u32);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let yuv = rgb_to_yuv(px(src, 2 * bx + dx, 2 * by + dy));
                su += u32::from(yuv[1]);
                sv += u32::from(yuv[2]);
            }
            out[w * h + by * w + 2 * bx] = ((su + 2) / 4) as u8;
            out[w * h + by * w + 2 * bx + 1] = ((sv + 2) / 4) as u8;
        }
    }
    out
}

fn px(f: &RgbFrame, x: usize, y: usize) -> [u8; 3] {
    let i = (y * f.width + x) * 3;
    [f.data[i], f.data[i + 1], f.data[i + 2]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A real camera-like frame: the first frame of a DAVIS 2016 sequence
    /// when the data is there, else a JPEG-compressed rendering of the
    /// synthetic scene (still real JPEG data through a real decoder).
    fn real_jpeg() -> (Vec<u8>, String) {
        let root = std::env::var_os("VOSD_DAVIS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/work/shared/data/davis2016"));
        let p = root.join("JPEGImages/480p/bear/00000.jpg");
        if let Ok(bytes) = std::fs::read(&p) {
            return (bytes, p.display().to_string());
        }
        let scene = crate::source::synthetic::Scene::new(&Default::default()).unwrap();
        let mut f = RgbFrame::default();
        scene.render(3, Some(&mut f), None);
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode(
                &f.data,
                f.width as u32,
                f.height as u32,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        (bytes, "synthetic frame".into())
    }

    fn decoded() -> (RgbFrame, Vec<u8>, String) {
        let (bytes, what) = real_jpeg();
        let f = vosd_engine::imageio::decode_rgb(&bytes, Path::new(&what)).unwrap();
        (f, bytes, what)
    }

    /// Mean and 99th percentile of the absolute channel differences.
    fn diff_stats(a: &RgbFrame, b: &RgbFrame) -> (f64, u8) {
        assert_eq!((a.width, a.height), (b.width, b.height));
        let mut hist = [0u64; 256];
        let mut sum = 0u64;
        for (x, y) in a.data.iter().zip(&b.data) {
            let d = x.abs_diff(*y);
            hist[d as usize] += 1;
            sum += u64::from(d);
        }
        let n = a.data.len() as u64;
        let mut acc = 0;
        let p99 = (0..256).find(|&i| {
            acc += hist[i];
            acc * 100 >= n * 99
        });
        (sum as f64 / n as f64, p99.unwrap_or(255) as u8)
    }

    #[test]
    fn known_colours_convert_exactly() {
        // BT.601 limited-range reference values.
        let cases = [
            ([16, 128, 128], [0, 0, 0]),
            ([235, 128, 128], [255, 255, 255]),
            ([81, 90, 240], [255, 0, 0]),
            ([145, 54, 34], [0, 255, 0]),
            ([41, 240, 110], [0, 0, 255]),
        ];
        for (yuv, rgb) in cases {
            let got = yuv_to_rgb(yuv[0], yuv[1], yuv[2]);
            for c in 0..3 {
                assert!(
                    got[c].abs_diff(rgb[c]) <= 2,
                    "{yuv:?} -> {got:?}, want {rgb:?}"
                );
            }
            let back = rgb_to_yuv(rgb);
            for c in 0..3 {
                assert!(
                    back[c].abs_diff(yuv[c]) <= 1,
                    "{rgb:?} -> {back:?}, want {yuv:?}"
                );
            }
        }
    }

    #[test]
    fn yuyv_of_a_real_frame_converts_back() {
        let (rgb, _, what) = decoded();
        let yuyv = rgb_to_yuyv(&rgb);
        let mut out = RgbFrame::new(rgb.width, rgb.height);
        yuyv_to_rgb(&yuyv, rgb.width * 2, &mut out).unwrap();
        let (mean, p99) = diff_stats(&rgb, &out);
        assert!(
            mean < 2.5 && p99 <= 16,
            "{what}: YUYV round trip mean {mean:.2}, p99 {p99}"
        );
        // With padding at the end of each line (bytesperline > 2 × width).
        let stride = rgb.width * 2 + 64;
        let mut padded = vec![0xAAu8; stride * rgb.height];
        for y in 0..rgb.height {
            padded[y * stride..y * stride + rgb.width * 2]
                .copy_from_slice(&yuyv[y * rgb.width * 2..(y + 1) * rgb.width * 2]);
        }
        let mut out2 = RgbFrame::new(rgb.width, rgb.height);
        yuyv_to_rgb(&padded, stride, &mut out2).unwrap();
        assert_eq!(out, out2);
    }

    #[test]
    fn nv12_of_a_real_frame_converts_back() {
        let (rgb, _, what) = decoded();
        let nv12 = rgb_to_nv12(&rgb);
        let mut out = RgbFrame::new(rgb.width, rgb.height);
        nv12_to_rgb(&nv12, rgb.width, &mut out).unwrap();
        let (mean, p99) = diff_stats(&rgb, &out);
        assert!(
            mean < 3.5 && p99 <= 24,
            "{what}: NV12 round trip mean {mean:.2}, p99 {p99}"
        );
    }

    #[test]
    fn grey_is_the_luma() {
        let (rgb, _, _) = decoded();
        let nv12 = rgb_to_nv12(&rgb);
        let mut out = RgbFrame::new(rgb.width, rgb.height);
        grey_to_rgb(&nv12[..rgb.width * rgb.height], rgb.width, &mut out).unwrap();
        for (i, px) in out.data.chunks_exact(3).enumerate() {
            assert!(px[0] == px[1] && px[1] == px[2]);
            assert_eq!(px[0], nv12[i]);
        }
    }

    #[test]
    fn mjpeg_decodes_a_real_jpeg() {
        let (rgb, bytes, _) = decoded();
        let mut out = RgbFrame::new(rgb.width, rgb.height);
        mjpeg_to_rgb(&bytes, &mut out).unwrap();
        assert_eq!(out, rgb);
        let mut wrong = RgbFrame::new(rgb.width / 2, rgb.height);
        let e = mjpeg_to_rgb(&bytes, &mut wrong).unwrap_err().to_string();
        assert!(e.contains("the stream is"), "{e}");
        let e = mjpeg_to_rgb(b"\xff\xd8\xff\xe0 not a jpeg", &mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not decode"), "{e}");
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let mut out = RgbFrame::new(64, 48);
        assert!(yuyv_to_rgb(&[0; 100], 128, &mut out)
            .unwrap_err()
            .to_string()
            .contains("needs"));
        assert!(nv12_to_rgb(&[0; 100], 64, &mut out)
            .unwrap_err()
            .to_string()
            .contains("needs"));
        assert!(grey_to_rgb(&[0; 100], 64, &mut out).is_err());
        assert!(yuyv_to_rgb(&[0; 100_000], 10, &mut out).is_err());
        let mut odd = RgbFrame::new(63, 48);
        assert!(yuyv_to_rgb(&[0; 100_000], 126, &mut odd).is_err());
    }
}
