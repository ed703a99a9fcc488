//! A deterministic synthetic scene: textured shapes that translate, scale
//! and occlude one another over a textured background, with the exact label
//! mask of every frame.
//!
//! Frame `k` of a scene depends only on the configuration (size, seed,
//! number of objects, noise) and `k`, so a reader in another process can
//! rebuild the ground truth of any published frame from its frame number
//! ([`Scene::render`]). Object `i` (id `i`, 1..=3) is drawn over objects
//! `1..i`; the label mask holds the id of the topmost object at each pixel
//! centre, 0 for background.

use std::f32::consts::TAU;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{check_fps, check_size, FrameMeta, FrameSource, Pacer, SourceError, SourceEvent};
use vosd_engine::frame::{LabelMask, RgbFrame};
use vosd_shm::monotonic_ns;

/// `kind = "synthetic"`: the synthetic scene.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Frame width in pixels.
    #[serde(default = "default_width")]
    pub width: usize,
    /// Frame height in pixels.
    #[serde(default = "default_height")]
    pub height: usize,
    /// Frames per second the source delivers.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Seed of the scene's phases, speeds and colours.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of objects, 1..=3.
    #[serde(default = "default_objects")]
    pub objects: usize,
    /// Frames to deliver before the stream ends; 0 = endless.
    #[serde(default)]
    pub frames: u64,
    /// Amplitude of the per-pixel sensor noise (0..=64 grey levels).
    #[serde(default = "default_noise")]
    pub noise: u8,
}

fn default_width() -> usize {
    320
}
fn default_height() -> usize {
    240
}
fn default_fps() -> f64 {
    30.0
}
fn default_seed() -> u64 {
    1
}
fn default_objects() -> usize {
    3
}
fn default_noise() -> u8 {
    4
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            seed: default_seed(),
            objects: default_objects(),
            frames: 0,
            noise: default_noise(),
        }
    }
}

impl SyntheticConfig {
    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        check_size(self.width, self.height)?;
        check_fps(self.fps)?;
        if !(1..=3).contains(&self.objects) {
            return Err(SourceError::Config {
                key: "objects",
                reason: format!("{} is not within 1..=3", self.objects),
            });
        }
        if self.noise > 64 {
            return Err(SourceError::Config {
                key: "noise",
                reason: format!("{} is not within 0..=64", self.noise),
            });
        }
        Ok(())
    }
}

fn hash3(x: u32, y: u32, z: u64) -> u32 {
    let mut h = (x as u64).wrapping_mul(0x9E37_79B1)
        ^ (y as u64).wrapping_mul(0x85EB_CA77)
        ^ z.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h ^ (h >> 32)) as u32
}

#[derive(Clone, Copy, Debug)]
enum Outline {
    Ellipse,
    Rect,
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    Stripes,
    Checker,
    Rings,
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    outline: Outline,
    texture: Texture,
    colours: [[f32; 3]; 2],
    /// Half-extents at scale 1, in pixels.
    half: [f32; 2],
    /// Centre of the motion, as fractions of the frame.
    centre: [f32; 2],
    /// Motion amplitude, as fractions of the frame.
    amplitude: [f32; 2],
    /// Motion periods in frames.
    period: [f32; 2],
    phase: [f32; 2],
    scale_amplitude: f32,
    scale_period: f32,
    scale_phase: f32,
}

/// Where a shape is in one frame.
#[derive(Clone, Copy, Debug)]
struct Placed {
    cx: f32,
    cy: f32,
    hx: f32,
    hy: f32,
    scale: f32,
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
}

/// The synthetic scene: renders frame `k` and its ground truth.
#[derive(Clone, Debug)]
pub struct Scene {
    width: usize,
    height: usize,
    seed: u64,
    noise: u8,
    shapes: Vec<Shape>,
    background: Vec<u8>,
}

impl Scene {
    /// Builds the scene a configuration describes (allocates the background).
    pub fn new(cfg: &SyntheticConfig) -> Result<Self, SourceError> {
        cfg.validate()?;
        let (w, h) = (cfg.width, cfg.height);
        let m = w.min(h) as f32;
        let mut rng = cfg.seed ^ 0x05EE_D0F5_CE4E;
        let mut jitter =
            |spread: f32| 1.0 + spread * (2.0 * vosd_engine::prng::unit(&mut rng) - 1.0);
        let base = [
            Shape {
                outline: Outline::Ellipse,
                texture: Texture::Stripes,
                colours: [[205.0, 55.0, 40.0], [245.0, 175.0, 70.0]],
                half: [0.17 * m, 0.11 * m],
                centre: [0.5, 0.36],
                amplitude: [0.28, 0.08],
                period: [140.0, 90.0],
                phase: [0.0, 0.0],
                scale_amplitude: 0.2,
                scale_period: 120.0,
                scale_phase: 0.0,
            },
            Shape {
                outline: Outline::Rect,
                texture: Texture::Checker,
                colours: [[40.0, 70.0, 190.0], [225.0, 225.0, 235.0]],
                half: [0.12 * m, 0.17 * m],
                centre: [0.5, 0.62],
                amplitude: [0.26, 0.1],
                period: [110.0, 130.0],
                phase: [3.1, 1.0],
                scale_amplitude: 0.18,
                scale_period: 150.0,
                scale_phase: 2.0,
            },
            Shape {
                outline: Outline::Ellipse,
                texture: Texture::Rings,
                colours: [[235.0, 215.0, 40.0], [30.0, 95.0, 45.0]],
                half: [0.14 * m, 0.14 * m],
                centre: [0.5, 0.5],
                amplitude: [0.3, 0.24],
                period: [160.0, 160.0],
                phase: [1.6, 0.0],
                scale_amplitude: 0.25,
                scale_period: 100.0,
                scale_phase: 0.0,
            },
        ];
        let mut shapes = Vec::with_capacity(cfg.objects);
        for s in base.iter().take(cfg.objects) {
            let mut s = *s;
            for p in &mut s.phase {
                *p += 0.6 * (jitter(1.0) - 1.0);
            }
            for p in &mut s.period {
                *p *= jitter(0.15);
            }
            s.scale_period *= jitter(0.15);
            for c in s.colours.iter_mut().flatten() {
                *c = (*c * jitter(0.08)).clamp(0.0, 255.0);
            }
            shapes.push(s);
        }
        // Background: two octaves of value noise in earthy tones plus a
        // faint diagonal weave, computed once.
        let mut background = vec![0u8; w * h * 3];
        let noise_at = |x: f32, y: f32, cell: f32, salt: u64| -> f32 {
            let (gx, gy) = (x / cell, y / cell);
            let (ix, iy) = (gx.floor(), gy.floor());
            let (fx, fy) = (gx - ix, gy - iy);
            let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
            let v = |dx: u32, dy: u32| {
                (hash3(ix as u32 + dx, iy as u32 + dy, cfg.seed ^ salt) & 0xFFFF) as f32 / 65535.0
            };
            let top = v(0, 0) * (1.0 - sx) + v(1, 0) * sx;
            let bottom = v(0, 1) * (1.0 - sx) + v(1, 1) * sx;
            top * (1.0 - sy) + bottom * sy
        };
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32, y as f32);
                let n1 = noise_at(fx, fy, 0.2 * m, 11);
                let n2 = noise_at(fx, fy, 0.05 * m, 23);
                let weave = if ((x + 2 * y) / 7) % 2 == 0 {
                    8.0
                } else {
                    -8.0
                };
                let l = 60.0 + 90.0 * n1 + 40.0 * n2 + weave;
                let px = &mut background[(y * w + x) * 3..][..3];
                px[0] = (l * 0.95 + 12.0).clamp(0.0, 255.0) as u8;
                px[1] = (l * 0.9 + 10.0 * n2).clamp(0.0, 255.0) as u8;
                px[2] = (l * 0.75).clamp(0.0, 255.0) as u8;
            }
        }
        Ok(Self {
            width: w,
            height: h,
            seed: cfg.seed,
            noise: cfg.noise,
            shapes,
            background,
        })
    }

    /// Frame size `(width, height)`.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Object ids of the scene (1..=n).
    pub fn object_ids(&self) -> Vec<u8> {
        (1..=self.shapes.len() as u8).collect()
    }

    fn place(&self, k: u64) -> [Option<Placed>; 3] {
        let (w, h) = (self.width as f32, self.height as f32);
        let t = k as f32;
        let mut out = [None; 3];
        for (slot, s) in out.iter_mut().zip(&self.shapes) {
            let cx =
                w * (s.centre[0] + s.amplitude[0] * (TAU * t / s.period[0] + s.phase[0]).sin());
            let cy =
                h * (s.centre[1] + s.amplitude[1] * (TAU * t / s.period[1] + s.phase[1]).sin());
            let scale = 1.0 + s.scale_amplitude * (TAU * t / s.scale_period + s.scale_phase).sin();
            let (hx, hy) = (s.half[0] * scale, s.half[1] * scale);
            let clampi = |v: f32, n: usize| (v.max(0.0) as usize).min(n);
            *slot = Some(Placed {
                cx,
                cy,
                hx,
                hy,
                scale,
                x0: clampi((cx - hx - 1.0).floor(), self.width),
                x1: clampi((cx + hx + 2.0).ceil(), self.width),
                y0: clampi((cy - hy - 1.0).floor(), self.height),
                y1: clampi((cy + hy + 2.0).ceil(), self.height),
            });
        }
        out
    }

    /// Renders frame `k` into `rgb` and/or its label mask into `mask`
    /// (each resized to the scene if needed). No allocation when sized.
    pub fn render(&self, k: u64, mut rgb: Option<&mut RgbFrame>, mut mask: Option<&mut LabelMask>) {
        let (w, h) = (self.width, self.height);
        if let Some(f) = rgb.as_deref_mut() {
            f.ensure_size(w, h);
        }
        if let Some(m) = mask.as_deref_mut() {
            if m.width != w || m.height != h || m.data.len() != w * h {
                *m = LabelMask::new(w, h);
            }
        }
        let placed = self.place(k);
        let noise = u32::from(self.noise);
        let frame_salt = self.seed.wrapping_mul(31).wrapping_add(k);
        for y in 0..h {
            let py = y as f32 + 0.5;
            for x in 0..w {
                let px = x as f32 + 0.5;
                let mut label = 0u8;
                let mut colour = [0f32; 3];
                for (i, (s, p)) in self.shapes.iter().zip(placed.iter()).enumerate().rev() {
                    let Some(p) = p else { continue };
                    if x < p.x0 || x >= p.x1 || y < p.y0 || y >= p.y1 {
                        continue;
                    }
                    let (dx, dy) = (px - p.cx, py - p.cy);
                    let inside = match s.outline {
                        Outline::Ellipse => (dx / p.hx).powi(2) + (dy / p.hy).powi(2) <= 1.0,
                        Outline::Rect => dx.abs() <= p.hx && dy.abs() <= p.hy,
                    };
                    if !inside {
                        continue;
                    }
                    label = i as u8 + 1;
                    if rgb.is_some() {
                        let (u, v) = (dx / p.scale, dy / p.scale);
                        let which = match s.texture {
                            Texture::Stripes => ((u + 0.6 * v) / 10.0).floor() as i32 & 1,
                            Texture::Checker => {
                                ((u / 13.0).floor() as i32 + (v / 13.0).floor() as i32) & 1
                            }
                            Texture::Rings => ((u * u + v * v).sqrt() / 8.0).floor() as i32 & 1,
                        };
                        colour = s.colours[which as usize];
                        // Shading towards the rim gives the shapes some relief.
                        let rim = ((dx / p.hx).powi(2) + (dy / p.hy).powi(2)).min(1.0);
                        let shade = 1.0 - 0.2 * rim;
                        colour.iter_mut().for_each(|c| *c *= shade);
                    }
                    break;
                }
                if let Some(m) = mask.as_deref_mut() {
                    m.data[y * w + x] = label;
                }
                if let Some(f) = rgb.as_deref_mut() {
                    let out = &mut f.data[(y * w + x) * 3..][..3];
                    let n = if noise > 0 {
                        (hash3(x as u32, y as u32, frame_salt) % (2 * noise + 1)) as i32
                            - noise as i32
                    } else {
                        0
                    };
                    if label == 0 {
                        let bg = &self.background[(y * w + x) * 3..][..3];
                        for c in 0..3 {
                            out[c] = (bg[c] as i32 + n).clamp(0, 255) as u8;
                        }
                    } else {
                        for c in 0..3 {
                            out[c] = (colour[c] as i32 + n).clamp(0, 255) as u8;
                        }
                    }
                }
            }
        }
    }

    /// The label mask of frame `k`.
    pub fn ground_truth(&self, k: u64, mask: &mut LabelMask) {
        self.render(k, None, Some(mask));
    }
}

/// The synthetic scene as a paced [`FrameSource`].
#[derive(Debug)]
pub struct Synthetic {
    scene: Scene,
    limit: u64,
    next: u64,
    pacer: Pacer,
    fps: f64,
}

impl Synthetic {
    /// A paced source over the scene `cfg` describes.
    pub fn new(cfg: &SyntheticConfig, stop: Arc<AtomicBool>) -> Result<Self, SourceError> {
        Ok(Self {
            scene: Scene::new(cfg)?,
            limit: cfg.frames,
            next: 0,
            pacer: Pacer::new(cfg.fps, stop),
            fps: cfg.fps,
        })
    }

    /// The scene (to compute ground truth).
    pub fn scene(&self) -> &Scene {
        &self.scene
    }
}

impl FrameSource for Synthetic {
    fn size(&self) -> (usize, usize) {
        self.scene.size()
    }

    fn next_frame(&mut self, buf: &mut RgbFrame) -> Result<SourceEvent, SourceError> {
        let k = self.next;
        if self.limit > 0 && k >= self.limit {
            return Ok(SourceEvent::Ended);
        }
        if !self.pacer.wait(k) {
            return Ok(SourceEvent::Stopped);
        }
        self.scene.render(k, Some(buf), None);
        self.next += 1;
        Ok(SourceEvent::Frame(FrameMeta {
            frame_number: k,
            capture_ns: monotonic_ns(),
            source_index: k,
            restart: k == 0,
        }))
    }

    fn initial_objects(&self) -> Option<LabelMask> {
        let mut m = LabelMask::default();
        self.scene.ground_truth(0, &mut m);
        Some(m)
    }

    fn describe(&self) -> String {
        let (w, h) = self.scene.size();
        format!(
            "synthetic {w}x{h} at {} fps, {} objects, seed {}",
            self.fps,
            self.scene.shapes.len(),
            self.scene.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SyntheticConfig {
        SyntheticConfig {
            width: 160,
            height: 120,
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_and_consistent_with_ground_truth() {
        let scene = Scene::new(&cfg()).unwrap();
        let (mut a, mut b) = (RgbFrame::default(), RgbFrame::default());
        let (mut ma, mut mb) = (LabelMask::default(), LabelMask::default());
        scene.render(17, Some(&mut a), Some(&mut ma));
        Scene::new(&cfg())
            .unwrap()
            .render(17, Some(&mut b), Some(&mut mb));
        assert_eq!(a, b);
        assert_eq!(ma, mb);
        let mut gt = LabelMask::default();
        scene.ground_truth(17, &mut gt);
        assert_eq!(gt, ma);
        // A different seed gives a different frame.
        let other = Scene::new(&SyntheticConfig { seed: 9, ..cfg() }).unwrap();
        let mut c = RgbFrame::default();
        other.render(17, Some(&mut c), None);
        assert_ne!(a, c);
    }

    #[test]
    fn objects_move_scale_and_occlude() {
        let scene = Scene::new(&cfg()).unwrap();
        let mut m = LabelMask::default();
        scene.ground_truth(0, &mut m);
        assert_eq!(m.object_ids(), vec![1, 2, 3]);
        let mut centroids = Vec::new();
        let mut areas = [Vec::new(), Vec::new(), Vec::new()];
        let mut occluded_somewhere = false;
        for k in 0..200 {
            scene.ground_truth(k, &mut m);
            let placed = scene.place(k);
            for id in 1..=3u8 {
                let p = placed[id as usize - 1].unwrap();
                areas[id as usize - 1].push(m.area(id));
                // Visible area below the unoccluded area: someone is in front.
                let full = if id == 2 {
                    4.0 * p.hx * p.hy
                } else {
                    std::f32::consts::PI * p.hx * p.hy
                };
                if id < 3 && (m.area(id) as f32) < 0.8 * full {
                    occluded_somewhere = true;
                }
            }
            if k % 50 == 0 {
                let p = placed[0].unwrap();
                centroids.push((p.cx, p.cy));
            }
        }
        assert!(occluded_somewhere, "no occlusion in 200 frames");
        assert!(centroids
            .windows(2)
            .all(|c| (c[0].0 - c[1].0).abs() + (c[0].1 - c[1].1).abs() > 5.0));
        let a3 = &areas[2];
        let (lo, hi) = (*a3.iter().min().unwrap(), *a3.iter().max().unwrap());
        assert!(
            hi as f32 > 1.4 * lo as f32,
            "object 3 does not scale: {lo}..{hi}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = SyntheticConfig {
            objects: 4,
            ..cfg()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("source.objects"), "{e}");
        let e = SyntheticConfig { fps: 0.0, ..cfg() }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.fps"), "{e}");
        let e = SyntheticConfig { width: 4, ..cfg() }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.width"), "{e}");
    }

    #[test]
    fn paced_source_delivers_in_order_and_ends() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Synthetic::new(
            &SyntheticConfig {
                fps: 200.0,
                frames: 5,
                ..cfg()
            },
            stop,
        )
        .unwrap();
        let mut buf = RgbFrame::default();
        let t0 = std::time::Instant::now();
        let mut last = 0;
        for k in 0..5 {
            let meta = s.next_frame(&mut buf).unwrap().frame().expect("a frame");
            assert_eq!(meta.frame_number, k);
            assert_eq!(meta.restart, k == 0);
            assert!(meta.capture_ns >= last);
            last = meta.capture_ns;
        }
        assert!(t0.elapsed() >= std::time::Duration::from_millis(19));
        assert_eq!(s.next_frame(&mut buf).unwrap(), SourceEvent::Ended);
    }
}
