//! The picture of `vosd view`: a published label mask drawn on a neutral
//! grey background (the ring carries no frame pixels), each object in its
//! [`color`], with its box and a label `#ID S` (S: `V` visible, `O`
//! occluded, `L` lost), encoded as JPEG.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, Rgb, RgbImage};

use vosd_shm::{ObjectState, Visibility};

use super::font;

/// The background: a neutral grey, far from every object colour.
pub const BACKGROUND: [u8; 3] = [64, 64, 64];

/// Widest picture drawn; wider masks are subsampled by an integer factor.
pub const MAX_WIDTH: u32 = 960;

/// JPEG quality of the picture.
const QUALITY: u8 = 85;

/// Object colours, saturated and distinct (Sasha Trubetskoy's list of 20
/// distinct colours, its first ten); object `id` gets entry
/// `(id - 1) % 10`.
const PALETTE: [[u8; 3]; 10] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
];

/// The colour of object `id` (ids 1..=255; 0, the background, gets
/// [`BACKGROUND`]).
pub fn color(id: u32) -> [u8; 3] {
    if id == 0 {
        BACKGROUND
    } else {
        PALETTE[(id as usize - 1) % PALETTE.len()]
    }
}

/// `#rrggbb` of [`color`].
pub fn color_hex(id: u32) -> String {
    let [r, g, b] = color(id);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The state letter of a label.
fn state_letter(v: Visibility) -> char {
    match v {
        Visibility::Visible => 'V',
        Visibility::Occluded => 'O',
        Visibility::Lost => 'L',
    }
}

/// Draws `mask` (`width`×`height`, row-major, 0 = background) with the
/// boxes and labels of `objects`. A mask shorter than `width`×`height`
/// draws its missing pixels as background.
pub fn render(mask: &[u8], width: u32, height: u32, objects: &[ObjectState]) -> RgbImage {
    let f = width.div_ceil(MAX_WIDTH).max(1);
    let (w, h) = ((width / f).max(1), (height / f).max(1));
    let mut img = RgbImage::from_pixel(w, h, Rgb(BACKGROUND));
    for y in 0..h {
        for x in 0..w {
            let i = (y * f) as usize * width as usize + (x * f) as usize;
            let id = mask.get(i).copied().unwrap_or(0);
            if id != 0 {
                img.put_pixel(x, y, Rgb(color(u32::from(id))));
            }
        }
    }
    // Lines and text: 1 px per 320 px of picture width.
    let scale = (w / 320).max(1);
    let set = |img: &mut RgbImage, x: u32, y: u32, c: [u8; 3]| {
        if x < w && y < h {
            img.put_pixel(x, y, Rgb(c));
        }
    };
    for o in objects.iter().filter(|o| !o.bbox.is_empty()) {
        let c = color(o.id);
        // The box a shade lighter than the fill, so that it shows on it.
        let edge = c.map(|v| ((u16::from(v) + 255) / 2) as u8);
        let (x0, y0) = (o.bbox.x0 / f, o.bbox.y0 / f);
        let (x1, y1) = (
            (o.bbox.x1 / f).saturating_sub(1).max(x0),
            (o.bbox.y1 / f).saturating_sub(1).max(y0),
        );
        for t in 0..scale {
            for x in x0..=x1 {
                set(&mut img, x, y0 + t, edge);
                set(&mut img, x, y1.saturating_sub(t), edge);
            }
            for y in y0..=y1 {
                set(&mut img, x0 + t, y, edge);
                set(&mut img, x1.saturating_sub(t), y, edge);
            }
        }
        // The label above the box (inside it at the top edge), white on
        // black.
        let label = format!("#{} {}", o.id, state_letter(o.visibility));
        let lh = (font::GLYPH_H + 2) * scale;
        let lw = (label.len() as u32 * font::CELL_W + 1) * scale;
        let ly = y0.checked_sub(lh).unwrap_or(y0);
        for y in ly..ly + lh {
            for x in x0..x0 + lw {
                set(&mut img, x, y, [0, 0, 0]);
            }
        }
        font::draw(&label, x0 + scale, ly + scale, scale, |x, y| {
            set(&mut img, x, y, [255, 255, 255])
        });
    }
    img
}

/// Encodes `img` as JPEG.
pub fn jpeg(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::with_capacity(img.as_raw().len() / 8);
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vosd_shm::BBox;

    #[test]
    fn masks_boxes_and_labels_are_drawn() {
        let (w, h) = (40u32, 30u32);
        let mut mask = vec![0u8; (w * h) as usize];
        for y in 10..20 {
            for x in 12..24 {
                mask[(y * w + x) as usize] = 2;
            }
        }
        let obj = ObjectState {
            id: 2,
            area: 120,
            bbox: BBox {
                x0: 12,
                y0: 10,
                x1: 24,
                y1: 20,
            },
            ..Default::default()
        };
        let img = render(&mask, w, h, &[obj]);
        assert_eq!(img.dimensions(), (w, h));
        assert_eq!(img.get_pixel(0, h - 1).0, BACKGROUND);
        assert_eq!(img.get_pixel(17, 15).0, color(2), "the fill");
        assert_ne!(img.get_pixel(12, 15).0, color(2), "the box edge");
        // The label sits above the box: black cells with white glyphs.
        let label = (0..w).flat_map(|x| (0..10).map(move |y| (x, y)));
        let white = label.filter(|&(x, y)| img.get_pixel(x, y).0 == [255; 3]);
        assert!(white.count() > 10);
        let j = jpeg(&img).unwrap();
        assert_eq!(&j[..2], &[0xff, 0xd8], "a JPEG");
    }

    #[test]
    fn wide_masks_are_subsampled_and_short_ones_tolerated() {
        let img = render(&[1u8; 10], 1920, 1080, &[]);
        assert_eq!(img.dimensions(), (960, 540));
        assert_eq!(img.get_pixel(0, 0).0, color(1));
        assert_eq!(img.get_pixel(500, 500).0, BACKGROUND);
        assert_eq!(color(11), color(1));
        assert_eq!(color_hex(1), "#e6194b");
    }
}
