//! Reading frames and masks from disk, writing palette masks and overlays.
//!
//! Every error names the file and what is wrong with it.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::frame::{LabelMask, RgbFrame};

/// Why an image or mask could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageIoError {
    /// The file could not be opened, read or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's content is not a decodable image.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The image decoded but is not a usable label mask.
    #[error("{path}: unsupported mask: {reason}")]
    Mask {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the image failed.
    #[error("{path}: cannot write image: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> ImageIoError {
    ImageIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Decodes a JPEG or PNG (or any format the `image` crate was built with) as RGB.
pub fn load_rgb(path: &Path) -> Result<RgbFrame, ImageIoError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    decode_rgb(&bytes, path)
}

/// Decodes an RGB frame from encoded bytes in memory (JPEG, PNG).
pub fn decode_rgb(bytes: &[u8], what: &Path) -> Result<RgbFrame, ImageIoError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| ImageIoError::Decode {
            path: what.to_path_buf(),
            reason: e.to_string(),
        })?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbFrame {
        width: w as usize,
        height: h as usize,
        data: img.into_raw(),
    })
}

/// The 256-colour DAVIS / PASCAL VOC palette (index 0 black, 1 red, 2 green...).
pub fn davis_palette() -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    for (i, entry) in pal.iter_mut().enumerate() {
        let mut c = i;
        let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        *entry = [r, g, b];
    }
    pal
}

/// Reads a label mask PNG.
///
/// - palette PNGs (DAVIS 2017): the palette index is the object id;
/// - greyscale PNGs (also with alpha, any bit depth): a mask whose only
///   non-zero value is the maximum (DAVIS 2016's 0/255) is binary, object 1;
///   otherwise the grey value is the object id;
/// - RGB(A) PNGs: colours are looked up in the DAVIS palette; black is
///   background and any other colour is an error.
pub fn load_mask(path: &Path) -> Result<LabelMask, ImageIoError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let decode_err = |e: png::DecodingError| ImageIoError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut reader = decoder.read_info().map_err(decode_err)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(decode_err)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let bits = info.bit_depth as usize;
    let line = info.line_size;
    let mask_err = |reason: String| ImageIoError::Mask {
        path: path.to_path_buf(),
        reason,
    };
    let channels = match info.color_type {
        png::ColorType::Grayscale | png::ColorType::Indexed => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
    };
    // Sample `c` of pixel `x` on row `y`, scaled to 8 bits for depth 16.
    let sample = |y: usize, x: usize, c: usize| -> u8 {
        let row = &buf[y * line..(y + 1) * line];
        match bits {
            8 => row[x * channels + c],
            16 => row[(x * channels + c) * 2],
            _ => {
                let per_byte = 8 / bits;
                let byte = row[x / per_byte];
                let shift = 8 - bits * (x % per_byte + 1);
                (byte >> shift) & ((1u8 << bits) - 1)
            }
        }
    };
    let mut data = vec![0u8; w * h];
    match info.color_type {
        png::ColorType::Indexed => {
            for y in 0..h {
                for x in 0..w {
                    data[y * w + x] = sample(y, x, 0);
                }
            }
        }
        png::ColorType::Grayscale | png::ColorType::GrayscaleAlpha => {
            let max = if bits >= 8 {
                255u8
            } else {
                ((1u16 << bits) - 1) as u8
            };
            for y in 0..h {
                for x in 0..w {
                    data[y * w + x] = sample(y, x, 0);
                }
            }
            let mut values = [false; 256];
            data.iter().for_each(|&v| values[v as usize] = true);
            let binary = (1..max as usize).all(|v| !values[v]) && max > 1;
            if binary || max == 1 {
                data.iter_mut().for_each(|v| *v = u8::from(*v == max));
            }
        }
        png::ColorType::Rgb | png::ColorType::Rgba => {
            let pal = davis_palette();
            for y in 0..h {
                for x in 0..w {
                    let px = [sample(y, x, 0), sample(y, x, 1), sample(y, x, 2)];
                    let id = pal.iter().position(|c| *c == px).ok_or_else(|| {
                        mask_err(format!(
                            "colour {px:?} at ({x}, {y}) is not in the DAVIS palette"
                        ))
                    })?;
                    data[y * w + x] = id as u8;
                }
            }
        }
    }
    Ok(LabelMask {
        width: w,
        height: h,
        data,
    })
}

/// Writes a label mask as an 8-bit palette PNG (DAVIS 2017 style: pixel = id).
pub fn save_mask(path: &Path, mask: &LabelMask) -> Result<(), ImageIoError> {
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let enc_err = |e: png::EncodingError| ImageIoError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut enc = png::Encoder::new(BufWriter::new(file), mask.width as u32, mask.height as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(davis_palette().concat());
    let mut writer = enc.write_header().map_err(enc_err)?;
    writer.write_image_data(&mask.data).map_err(enc_err)?;
    writer.finish().map_err(enc_err)
}

/// Draws the masks over the frame (half-transparent fill in the palette
/// colour, solid contour) for a person to look at.
pub fn render_overlay(frame: &RgbFrame, mask: &LabelMask) -> RgbFrame {
    let pal = davis_palette();
    let mut out = frame.clone();
    let (w, h) = (mask.width, mask.height);
    for y in 0..h {
        for x in 0..w {
            let id = mask.data[y * w + x];
            if id == 0 {
                continue;
            }
            let edge = (x == 0 || mask.data[y * w + x - 1] != id)
                || (x + 1 == w || mask.data[y * w + x + 1] != id)
                || (y == 0 || mask.data[(y - 1) * w + x] != id)
                || (y + 1 == h || mask.data[(y + 1) * w + x] != id);
            let c = pal[id as usize];
            let px = &mut out.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
            for k in 0..3 {
                px[k] = if edge {
                    c[k]
                } else {
                    ((px[k] as u16 + c[k] as u16) / 2) as u8
                };
            }
        }
    }
    out
}

/// Writes an RGB frame as a JPEG.
pub fn save_jpeg(path: &Path, frame: &RgbFrame, quality: u8) -> Result<(), ImageIoError> {
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(BufWriter::new(file), quality);
    enc.encode(
        &frame.data,
        frame.width as u32,
        frame.height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| ImageIoError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Lists the image files (jpg, jpeg, png) of a directory in name order.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, ImageIoError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_matches_davis() {
        let p = davis_palette();
        assert_eq!(p[0], [0, 0, 0]);
        assert_eq!(p[1], [128, 0, 0]);
        assert_eq!(p[2], [0, 128, 0]);
        assert_eq!(p[3], [128, 128, 0]);
        assert_eq!(p[4], [0, 0, 128]);
    }

    #[test]
    fn palette_mask_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let mask = LabelMask {
            width: 3,
            height: 2,
            data: vec![0, 1, 2, 3, 0, 7],
        };
        save_mask(&path, &mask).unwrap();
        assert_eq!(load_mask(&path).unwrap(), mask);
    }

    #[test]
    fn binary_grey_mask_is_object_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        image::GrayImage::from_raw(2, 2, vec![0, 255, 255, 0])
            .unwrap()
            .save(&path)
            .unwrap();
        assert_eq!(load_mask(&path).unwrap().data, vec![0, 1, 1, 0]);
        // Grey + alpha, as some DAVIS files are.
        let path2 = dir.path().join("ga.png");
        image::GrayAlphaImage::from_raw(2, 1, vec![255, 255, 0, 255])
            .unwrap()
            .save(&path2)
            .unwrap();
        assert_eq!(load_mask(&path2).unwrap().data, vec![1, 0]);
    }

    #[test]
    fn corrupt_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = load_mask(&path).unwrap_err().to_string();
        assert!(e.contains("bad.png"), "{e}");
        let jpg = dir.path().join("bad.jpg");
        std::fs::write(&jpg, b"\xff\xd8\xff\xe0garbage").unwrap();
        let e = load_rgb(&jpg).unwrap_err().to_string();
        assert!(e.contains("bad.jpg") && e.contains("decode"), "{e}");
        let e = load_rgb(&dir.path().join("missing.jpg"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.jpg"), "{e}");
    }

    #[test]
    fn rgb_mask_outside_palette_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgb.png");
        image::RgbImage::from_raw(2, 1, vec![128, 0, 0, 1, 2, 3])
            .unwrap()
            .save(&path)
            .unwrap();
        let e = load_mask(&path).unwrap_err().to_string();
        assert!(e.contains("not in the DAVIS palette"), "{e}");
    }
}
