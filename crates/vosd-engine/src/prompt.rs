//! Box prompt: the mask of an object from its bounding box alone.
//!
//! [`mask_from_box`] turns a box around one object into a label mask that
//! can start (or correct) a [`crate::engine::Tracker`]. The method:
//!
//! 1. **Crop.** A window around the box (`context` × the box's size, grown to
//!    the encoder's aspect ratio, kept inside the frame) is resized to the
//!    processing size and encoded. The keys are the tracker's own
//!    (L2-normalised stride-8 feat8 + upsampled feat16).
//! 2. **Seeds.** Background: the cells outside the box, `gap` to `ring`
//!    cells away from it (every cell outside the box where the frame's edge
//!    leaves too few). Foreground: of the cells in the ellipse inscribed in
//!    the box (scaled by `core`), the `seed_fraction` least like the
//!    background (lowest mean of their `top_k` affinities to it).
//! 3. **Affinity.** Every cell in the box is scored by the mean of its
//!    `top_k` cosine affinities to the foreground cells against that to the
//!    background cells (a cell never matches itself):
//!    `p = sigmoid((fg − bg) / temperature)`. The cells with `p > 0.5`
//!    become the foreground seeds, and the others join the background seeds
//!    (`refine_bg`), for the next of `iterations` rounds.
//! 4. **Pixels.** The cell probabilities are brought to pixels with the
//!    engine's edge-aware (joint bilateral) upsampling guided by the image;
//!    only pixels inside the box are kept, then the largest 4-connected
//!    component, with its holes filled: the first estimate.
//! 5. **Colour.** Colour histograms (16 bins per channel) of the first
//!    estimate's pixels and of the rest of the window give each cell in the
//!    box the mean log-likelihood ratio of its pixels' colours;
//!    `colour_weight` × that is added to the cell's affinity margin, and
//!    step 4 runs again, keeping the component that overlaps the first
//!    estimate most (the colour refines the estimate, it does not move it).
//!
//! Every bad input is an error ([`PromptError`]); nothing panics.

use crate::encoder::{Encoder, EncoderError};
use crate::engine::{image_keys, KEY_DIM};
use crate::frame::{resize_bilinear, LabelMask, RgbFrame};
use crate::geometry::Grid;
use crate::readout::dot;
use crate::upsample::Upsampler;

/// Smallest box side accepted, in pixels.
pub const MIN_BOX_SIDE: usize = 4;

/// Fewest background cells the box must leave around it.
pub const MIN_BACKGROUND_CELLS: usize = 4;

/// An axis-aligned box in frame pixels: columns `x0..x1`, rows `y0..y1`
/// (ends exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxPrompt {
    /// First column inside the box.
    pub x0: usize,
    /// First row inside the box.
    pub y0: usize,
    /// One past the last column inside the box.
    pub x1: usize,
    /// One past the last row inside the box.
    pub y1: usize,
}

impl std::fmt::Display for BoxPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "box x {}..{}, y {}..{}",
            self.x0, self.x1, self.y0, self.y1
        )
    }
}

impl BoxPrompt {
    /// The box of columns `x0..x1` and rows `y0..y1` (ends exclusive).
    pub fn new(x0: usize, y0: usize, x1: usize, y1: usize) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// Width in pixels (0 for an inverted box).
    pub fn width(&self) -> usize {
        self.x1.saturating_sub(self.x0)
    }

    /// Height in pixels (0 for an inverted box).
    pub fn height(&self) -> usize {
        self.y1.saturating_sub(self.y0)
    }

    /// The tight bounding box of the pixels of `mask` equal to `id`, or
    /// `None` when there are none.
    pub fn of_object(mask: &LabelMask, id: u8) -> Option<Self> {
        let w = mask.width.max(1);
        let mut b: Option<Self> = None;
        for (i, _) in mask.data.iter().enumerate().filter(|(_, &v)| v == id) {
            let (x, y) = (i % w, i / w);
            let r = b.get_or_insert(Self::new(x, y, x + 1, y + 1));
            r.x0 = r.x0.min(x);
            r.y0 = r.y0.min(y);
            r.x1 = r.x1.max(x + 1);
            r.y1 = r.y1.max(y + 1);
        }
        b
    }
}

/// Settings of [`mask_from_box`]. The defaults were tuned on DAVIS 2016
/// train (see the README, "Box prompt").
#[derive(Clone, Debug, PartialEq)]
pub struct BoxPromptConfig {
    /// Side of the encoded window around the box, as a multiple of the
    /// box's side (at least 1); `0` encodes the whole frame.
    pub context: f32,
    /// Smallest window side, as a fraction of the frame's side (0..=1): it
    /// caps the zoom on small boxes; 0 = no cap.
    pub min_window: f32,
    /// Background seeds: cells outside the box at most `ring` cells from it;
    /// `0` = every cell of the window outside the box.
    pub ring: usize,
    /// Background seeds: cells outside the box at least `gap` cells from it
    /// (cells right at the edge often hold part of the object).
    pub gap: f32,
    /// Foreground seeds are taken from the cells within the ellipse inscribed
    /// in the box, scaled by `core` (0 < core <= 1).
    pub core: f32,
    /// Foreground seeds: this fraction of those cells, the ones least like
    /// the background (0 < seed_fraction <= 1).
    pub seed_fraction: f32,
    /// Cells inside the box that look like background join the background
    /// seeds in later rounds.
    pub refine_bg: bool,
    /// Affinities averaged per side (best matches), at least 1.
    pub top_k: usize,
    /// Temperature of the fg/bg decision on mean cosine affinities (it sets
    /// how soft the probabilities given to the upsampling are).
    pub temperature: f32,
    /// Weight of the colour evidence (mean log-likelihood ratio of the
    /// cell's pixel colours under object and background colour histograms
    /// taken from the first estimate) added to each cell's affinity margin;
    /// `0` = features alone.
    pub colour_weight: f32,
    /// Rounds in which the current estimate replaces the seeds (0..=20).
    pub iterations: usize,
    /// Edge-aware upsampling: colour scale (RGB distance, 0–255).
    pub edge_sigma_color: f32,
    /// Edge-aware upsampling: spatial scale, in cells.
    pub edge_sigma_space: f32,
}

impl Default for BoxPromptConfig {
    fn default() -> Self {
        Self {
            context: 1.5,
            min_window: 0.0,
            ring: 2,
            gap: 0.5,
            core: 1.0,
            seed_fraction: 0.3,
            refine_bg: true,
            top_k: 10,
            temperature: 0.05,
            colour_weight: 0.3,
            iterations: 3,
            edge_sigma_color: 20.0,
            edge_sigma_space: 1.0,
        }
    }
}

impl BoxPromptConfig {
    /// Checks every value's range; the error names the setting.
    pub fn validate(&self) -> Result<(), PromptError> {
        let bad = |what: &str| Err(PromptError::Config(what.to_string()));
        if !(self.context == 0.0 || (self.context >= 1.0 && self.context.is_finite())) {
            return bad("context must be 0 (whole frame) or at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_window) {
            return bad("min_window must be in 0..=1");
        }
        if !(self.core > 0.0 && self.core <= 1.0) {
            return bad("core must be in (0, 1]");
        }
        if self.top_k == 0 {
            return bad("top_k must be at least 1");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be positive");
        }
        if !(self.seed_fraction > 0.0 && self.seed_fraction <= 1.0) {
            return bad("seed_fraction must be in (0, 1]");
        }
        if !(self.gap >= 0.0 && self.gap.is_finite()) {
            return bad("gap must be 0 or more");
        }
        if !(self.colour_weight >= 0.0 && self.colour_weight.is_finite()) {
            return bad("colour_weight must be 0 or more");
        }
        if self.iterations > 20 {
            return bad("iterations must be at most 20");
        }
        if !(self.edge_sigma_color > 0.0 && self.edge_sigma_space > 0.0) {
            return bad("edge_sigma_color and edge_sigma_space must be positive");
        }
        Ok(())
    }
}

/// Why no mask could be made from a box.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The frame has no pixels or its data does not match its size.
    #[error("frame is {width}x{height} with {bytes} bytes: not a usable RGB frame")]
    Frame {
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// Bytes of pixel data.
        bytes: usize,
    },
    /// Object id 0 is the background.
    #[error("object id 0 is the background: a box prompt needs an id in 1..=255")]
    BackgroundId,
    /// The box has no area (an end not after its start).
    #[error("{0} is empty: x1 must be greater than x0 and y1 greater than y0")]
    Empty(BoxPrompt),
    /// The box is too thin to hold an object.
    #[error("{bbox} is {w}x{h} pixels: each side must be at least {min} pixels")]
    TooSmall {
        /// The box.
        bbox: BoxPrompt,
        /// Its width.
        w: usize,
        /// Its height.
        h: usize,
        /// Smallest side accepted.
        min: usize,
    },
    /// The box reaches outside the frame.
    #[error("{bbox} reaches outside the {width}x{height} frame")]
    OutsideFrame {
        /// The box.
        bbox: BoxPrompt,
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
    /// The box leaves (almost) no background around it to compare with.
    #[error(
        "{bbox} covers (nearly) the whole {width}x{height} frame: \
         it leaves {cells} background cells, at least {min} are needed"
    )]
    NoBackground {
        /// The box.
        bbox: BoxPrompt,
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
        /// Background cells left.
        cells: usize,
        /// Fewest needed.
        min: usize,
    },
    /// A setting is out of range.
    #[error("box prompt settings: {0}")]
    Config(String),
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// A pixel rectangle of the frame: the encoded window.
#[derive(Clone, Copy, Debug)]
struct Window {
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
}

/// Checks the frame, the id and the box against the frame.
fn check_inputs(frame: &RgbFrame, bbox: BoxPrompt, id: u8) -> Result<(), PromptError> {
    let bytes = frame
        .width
        .checked_mul(frame.height)
        .and_then(|n| n.checked_mul(3));
    if frame.width == 0 || frame.height == 0 || bytes != Some(frame.data.len()) {
        return Err(PromptError::Frame {
            width: frame.width,
            height: frame.height,
            bytes: frame.data.len(),
        });
    }
    if id == 0 {
        return Err(PromptError::BackgroundId);
    }
    if bbox.x1 <= bbox.x0 || bbox.y1 <= bbox.y0 {
        return Err(PromptError::Empty(bbox));
    }
    if bbox.x1 > frame.width || bbox.y1 > frame.height {
        return Err(PromptError::OutsideFrame {
            bbox,
            width: frame.width,
            height: frame.height,
        });
    }
    if bbox.width() < MIN_BOX_SIDE || bbox.height() < MIN_BOX_SIDE {
        return Err(PromptError::TooSmall {
            bbox,
            w: bbox.width(),
            h: bbox.height(),
            min: MIN_BOX_SIDE,
        });
    }
    Ok(())
}

/// The window encoded around `bbox`: `context` × the box, grown to the
/// aspect ratio `aspect` (width / height) and to `min_window` of the frame,
/// within the frame, containing the box.
fn window_around(
    bbox: BoxPrompt,
    frame_w: usize,
    frame_h: usize,
    aspect: f32,
    cfg: &BoxPromptConfig,
) -> Window {
    if cfg.context == 0.0 {
        return Window {
            x0: 0,
            y0: 0,
            w: frame_w,
            h: frame_h,
        };
    }
    let mut w = (bbox.width() as f32 * cfg.context).max(frame_w as f32 * cfg.min_window);
    let mut h = (bbox.height() as f32 * cfg.context).max(frame_h as f32 * cfg.min_window);
    if w / h < aspect {
        w = h * aspect;
    } else {
        h = w / aspect;
    }
    let w = (w.round() as usize).clamp(bbox.width(), frame_w);
    let h = (h.round() as usize).clamp(bbox.height(), frame_h);
    // Centred on the box, then moved inside the frame; it still holds the box.
    let place = |lo: usize, hi: usize, size: usize, frame: usize| {
        let centred = ((lo + hi) as f32 / 2.0 - size as f32 / 2.0)
            .round()
            .max(0.0) as usize;
        centred.clamp(hi.saturating_sub(size), lo.min(frame - size))
    };
    Window {
        x0: place(bbox.x0, bbox.x1, w, frame_w),
        y0: place(bbox.y0, bbox.y1, h, frame_h),
        w,
        h,
    }
}

/// Copies the window's pixels out of the frame.
fn crop(frame: &RgbFrame, win: Window) -> RgbFrame {
    let mut out = RgbFrame::new(win.w, win.h);
    for (y, row) in out.data.chunks_exact_mut(win.w * 3).enumerate() {
        let start = ((win.y0 + y) * frame.width + win.x0) * 3;
        row.copy_from_slice(&frame.data[start..start + win.w * 3]);
    }
    out
}

/// Mean of the `k` largest values of `v` (reordered), or `None` if empty.
fn top_k_mean(v: &mut [f32], k: usize) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let k = k.min(v.len());
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    }
    Some(v[..k].iter().sum::<f32>() / k as f32)
}

/// Foreground margin of each in-box cell: the mean of its `top_k`
/// affinities to the foreground seeds minus that to the background seeds
/// (positive = foreground).
///
/// `sim[i * cand + j]`: affinity of in-box cell `i` to candidate `j`, where
/// candidates `0..inside` are the in-box cells themselves and the rest are
/// the background seeds. `core[i]`: whether in-box cell `i` may be a
/// foreground seed.
fn classify(sim: &[f32], inside: usize, core: &[bool], cfg: &BoxPromptConfig) -> Vec<f32> {
    let cand = sim.len() / inside.max(1);
    let mut vals = Vec::with_capacity(cand);
    // Round 0: the core cells least like the background are the seeds.
    let bg_affinity: Vec<f32> = (0..inside)
        .map(|i| {
            vals.clear();
            vals.extend_from_slice(&sim[i * cand + inside..(i + 1) * cand]);
            top_k_mean(&mut vals, cfg.top_k).unwrap_or(-1.0)
        })
        .collect();
    let mut order: Vec<usize> = (0..inside).filter(|&i| core[i]).collect();
    order.sort_by(|&a, &b| bg_affinity[a].total_cmp(&bg_affinity[b]));
    let seeds =
        ((order.len() as f32 * cfg.seed_fraction).ceil() as usize).clamp(1, order.len().max(1));
    let mut fg = vec![false; inside];
    for &i in order.iter().take(seeds) {
        fg[i] = true;
    }
    let mut bg_inside = vec![false; inside];
    let mut margin = vec![0.0f32; inside];
    let (mut fg_vals, mut bg_vals) = (Vec::with_capacity(cand), Vec::with_capacity(cand));
    for round in 0..=cfg.iterations {
        for i in 0..inside {
            let row = &sim[i * cand..(i + 1) * cand];
            fg_vals.clear();
            bg_vals.clear();
            for j in 0..inside {
                if j == i {
                    continue;
                }
                if fg[j] {
                    fg_vals.push(row[j]);
                } else if bg_inside[j] {
                    bg_vals.push(row[j]);
                }
            }
            bg_vals.extend_from_slice(&row[inside..]);
            // A lone foreground seed is its own best match.
            let f = top_k_mean(&mut fg_vals, cfg.top_k).unwrap_or(row[i]);
            let b = top_k_mean(&mut bg_vals, cfg.top_k).unwrap_or(-1.0);
            margin[i] = f - b;
        }
        if round == cfg.iterations {
            break;
        }
        if margin.iter().any(|&m| m > 0.0) {
            for ((f, b), &m) in fg.iter_mut().zip(&mut bg_inside).zip(&margin) {
                *f = m > 0.0;
                *b = !*f && cfg.refine_bg;
            }
        }
    }
    margin
}

/// Bins per channel of the colour histograms.
const COLOUR_BINS: usize = 16;

/// Per cell, the mean over its pixels (those nearest its centre) of
/// `ln(P(colour | object) / P(colour | background))`, with both colour
/// histograms taken over `window`: the object is the pixels for which
/// `is_object(x, y)` holds, the background every other pixel.
fn colour_evidence(
    window: &RgbFrame,
    is_object: impl Fn(usize, usize) -> bool,
    grid: Grid,
    sx: f32,
    sy: f32,
) -> Vec<f32> {
    const B: usize = COLOUR_BINS;
    let bin = |px: &[u8]| {
        let q = |v: u8| v as usize * B / 256;
        (q(px[0]) * B + q(px[1])) * B + q(px[2])
    };
    let (mut object, mut background) = (vec![0.0f32; B * B * B], vec![0.0f32; B * B * B]);
    for (i, px) in window.data.chunks_exact(3).enumerate() {
        let (x, y) = (i % window.width, i / window.width);
        if is_object(x, y) {
            object[bin(px)] += 1.0;
        } else {
            background[bin(px)] += 1.0;
        }
    }
    let n_object = object.iter().sum::<f32>().max(1.0);
    let n_background = background.iter().sum::<f32>().max(1.0);
    let (gw, gh) = (grid.x.cells, grid.y.cells);
    let nearest = |axis: &crate::geometry::GridAxis, p: usize, scale: f32, cells: usize| {
        axis.cell_of((p as f32 + 0.5) / scale - 0.5)
            .round()
            .clamp(0.0, (cells - 1) as f32) as usize
    };
    let (mut sum, mut count) = (vec![0.0f32; gw * gh], vec![0.0f32; gw * gh]);
    for (i, px) in window.data.chunks_exact(3).enumerate() {
        let cell = nearest(&grid.y, i / window.width, sy, gh) * gw
            + nearest(&grid.x, i % window.width, sx, gw);
        let b = bin(px);
        // Half a count of smoothing keeps unseen colours finite.
        sum[cell] += ((object[b] + 0.5) / n_object / ((background[b] + 0.5) / n_background)).ln();
        count[cell] += 1.0;
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &n)| s / n.max(1.0))
        .collect()
}

/// Keeps one 4-connected component of `mask` (`w`×`h` booleans) and fills
/// its holes (background not connected to the border). The component kept
/// is the one sharing the most pixels with `prefer` when given (and any
/// does), else the largest.
fn main_component_filled(mask: &mut [bool], w: usize, h: usize, prefer: Option<&[bool]>) {
    let mut label = vec![0u32; w * h];
    let mut stack = Vec::new();
    let (mut best, mut best_size, mut next) = (0u32, (0usize, 0usize), 0u32);
    let neighbours = |i: usize| {
        let (x, y) = (i % w, i / w);
        [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ]
    };
    for start in 0..w * h {
        if !mask[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        // (pixels shared with `prefer`, pixels)
        let mut size = (0, 0);
        while let Some(i) = stack.pop() {
            size.0 += usize::from(prefer.is_some_and(|p| p[i]));
            size.1 += 1;
            for n in neighbours(i).into_iter().flatten() {
                if mask[n] && label[n] == 0 {
                    label[n] = next;
                    stack.push(n);
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
    }
    // Background reachable from the border stays background; the rest is a hole.
    let mut outside = vec![false; w * h];
    for i in 0..w * h {
        let (x, y) = (i % w, i / w);
        let border = x == 0 || y == 0 || x + 1 == w || y + 1 == h;
        if border && label[i] != best && !outside[i] {
            outside[i] = true;
            stack.push(i);
            while let Some(j) = stack.pop() {
                for n in neighbours(j).into_iter().flatten() {
                    if label[n] != best && !outside[n] {
                        outside[n] = true;
                        stack.push(n);
                    }
                }
            }
        }
    }
    for (m, o) in mask.iter_mut().zip(&outside) {
        *m = !o;
    }
    if best_size.1 == 0 {
        mask.fill(false);
    }
}

/// The mask of the object inside `bbox` in `frame`, labelled `id` (0 elsewhere).
///
/// The mask lies inside the box and is one 4-connected region without
/// holes; it is never empty (if nothing in the box looks like foreground,
/// the ellipse inscribed in the box, at half its size or `core` if
/// larger, is returned). The encoder runs
/// once, on a window around the box. See the module documentation for the
/// method.
pub fn mask_from_box(
    encoder: &Encoder,
    frame: &RgbFrame,
    bbox: BoxPrompt,
    id: u8,
    cfg: &BoxPromptConfig,
) -> Result<LabelMask, PromptError> {
    cfg.validate()?;
    check_inputs(frame, bbox, id)?;
    let (pw, ph) = (encoder.width(), encoder.height());
    let grid = encoder.grids()[1];
    let win = window_around(bbox, frame.width, frame.height, pw as f32 / ph as f32, cfg);
    let (sx, sy) = (win.w as f32 / pw as f32, win.h as f32 / ph as f32);

    // Each cell's centre in frame pixels (pixel edges at integers), and its
    // place relative to the box.
    let (bw, bh) = (bbox.width() as f32, bbox.height() as f32);
    let cell_step = (grid.x.stride as f32 * sx).max(grid.y.stride as f32 * sy);
    let (mut inside, mut core, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    for gy in 0..grid.y.cells {
        let fy = win.y0 as f32 + (grid.y.centre(gy) + 0.5) * sy;
        for gx in 0..grid.x.cells {
            let fx = win.x0 as f32 + (grid.x.centre(gx) + 0.5) * sx;
            let cell = gy * grid.x.cells + gx;
            let in_x = fx >= bbox.x0 as f32 && fx < bbox.x1 as f32;
            let in_y = fy >= bbox.y0 as f32 && fy < bbox.y1 as f32;
            if in_x && in_y {
                let u = (fx - bbox.x0 as f32) / bw - 0.5;
                let v = (fy - bbox.y0 as f32) / bh - 0.5;
                let r = cfg.core / 2.0;
                inside.push(cell);
                core.push((u / r).powi(2) + (v / r).powi(2) <= 1.0);
            } else {
                // Distance from the box, in cells.
                let dx = (bbox.x0 as f32 - fx).max(fx - bbox.x1 as f32).max(0.0);
                let dy = (bbox.y0 as f32 - fy).max(fy - bbox.y1 as f32).max(0.0);
                outside.push((cell, dx.max(dy) / cell_step));
            }
        }
    }
    if outside.len() < MIN_BACKGROUND_CELLS {
        return Err(PromptError::NoBackground {
            bbox,
            width: frame.width,
            height: frame.height,
            cells: outside.len(),
            min: MIN_BACKGROUND_CELLS,
        });
    }
    let mut background: Vec<usize> = outside
        .iter()
        .filter(|&&(_, d)| d >= cfg.gap && (cfg.ring == 0 || d <= cfg.ring as f32))
        .map(|&(c, _)| c)
        .collect();
    if background.len() < MIN_BACKGROUND_CELLS {
        // A box at the frame's edges leaves little ring: take all there is.
        background = outside.iter().map(|&(c, _)| c).collect();
    }

    let window = crop(frame, win);
    let mut image = RgbFrame::new(pw, ph);
    resize_bilinear(&window, &mut image);
    let keys = image_keys(encoder, &image)?;
    let key = |c: usize| &keys[c * KEY_DIM..(c + 1) * KEY_DIM];

    let mut probs = vec![0.0f32; grid.len() * 2];
    probs.chunks_exact_mut(2).for_each(|p| p[0] = 1.0);
    let set_probs = |probs: &mut [f32], margins: &mut dyn Iterator<Item = (usize, f32)>| {
        for (cell, m) in margins {
            let v = 1.0 / (1.0 + (-m / cfg.temperature).exp());
            probs[cell * 2] = 1.0 - v;
            probs[cell * 2 + 1] = v;
        }
    };
    let mut margins = Vec::new();
    if !inside.is_empty() {
        // A box between cell centres holds no cell: the upsampling below
        // still gives its pixels the nearest cells' (background) values, and
        // the fallback makes the mask.
        if !core.iter().any(|&c| c) {
            // A small box: its cell nearest the centre is the seed.
            let centre = |c: usize| {
                let (gx, gy) = (c % grid.x.cells, c / grid.x.cells);
                let fx = win.x0 as f32 + (grid.x.centre(gx) + 0.5) * sx;
                let fy = win.y0 as f32 + (grid.y.centre(gy) + 0.5) * sy;
                let (cx, cy) = (
                    (bbox.x0 + bbox.x1) as f32 / 2.0,
                    (bbox.y0 + bbox.y1) as f32 / 2.0,
                );
                (fx - cx).powi(2) + (fy - cy).powi(2)
            };
            if let Some(i) =
                (0..inside.len()).min_by(|&a, &b| centre(inside[a]).total_cmp(&centre(inside[b])))
            {
                core[i] = true;
            }
        }
        let candidates: Vec<usize> = inside.iter().chain(&background).copied().collect();
        let mut sim = vec![0.0f32; inside.len() * candidates.len()];
        for (row, &q) in sim.chunks_exact_mut(candidates.len()).zip(&inside) {
            for (s, &c) in row.iter_mut().zip(&candidates) {
                *s = dot(key(q), key(c));
            }
        }
        margins = classify(&sim, inside.len(), &core, cfg);
        set_probs(
            &mut probs,
            &mut inside.iter().copied().zip(margins.iter().copied()),
        );
    }

    let mut up = Upsampler::new(
        grid,
        pw,
        ph,
        win.w,
        win.h,
        Some((cfg.edge_sigma_color, cfg.edge_sigma_space)),
    );
    let mut win_mask = LabelMask::new(win.w, win.h);
    up.upsample(&probs, 2, &[0, 1], &window, &mut win_mask);
    // Keep the box's pixels, then one region without holes.
    let (bwu, bhu) = (bbox.width(), bbox.height());
    let box_pixels = |win_mask: &LabelMask| {
        let mut in_box = vec![false; bwu * bhu];
        for (y, row) in in_box.chunks_exact_mut(bwu).enumerate() {
            let start = (bbox.y0 + y - win.y0) * win.w + bbox.x0 - win.x0;
            for (m, &v) in row.iter_mut().zip(&win_mask.data[start..start + bwu]) {
                *m = v == 1;
            }
        }
        in_box
    };
    let mut first = box_pixels(&win_mask);
    main_component_filled(&mut first, bwu, bhu, None);
    let mut in_box = first.clone();
    if cfg.colour_weight > 0.0 && !inside.is_empty() {
        // Colour models from the first estimate (object: its pixels;
        // background: the rest of the window); their evidence joins the
        // affinity margin of each cell in the box.
        let is_object = |x: usize, y: usize| {
            let (fx, fy) = (win.x0 + x, win.y0 + y);
            let in_box = fx >= bbox.x0 && fx < bbox.x1 && fy >= bbox.y0 && fy < bbox.y1;
            in_box && first[(fy - bbox.y0) * bwu + fx - bbox.x0]
        };
        let colour = colour_evidence(&window, is_object, grid, sx, sy);
        set_probs(
            &mut probs,
            &mut inside
                .iter()
                .zip(&margins)
                .map(|(&c, &m)| (c, m + cfg.colour_weight * colour[c])),
        );
        up.upsample(&probs, 2, &[0, 1], &window, &mut win_mask);
        // The colour refines the first estimate: the region kept is the one
        // that overlaps it most.
        in_box = box_pixels(&win_mask);
        main_component_filled(&mut in_box, bwu, bhu, Some(&first));
    }

    if !in_box.iter().any(|&m| m) {
        in_box = first;
    }
    if !in_box.iter().any(|&m| m) {
        let r = cfg.core.max(0.5) / 2.0;
        for (i, m) in in_box.iter_mut().enumerate() {
            let u = ((i % bwu) as f32 + 0.5) / bwu as f32 - 0.5;
            let v = ((i / bwu) as f32 + 0.5) / bhu as f32 - 0.5;
            *m = (u / r).powi(2) + (v / r).powi(2) <= 1.0;
        }
    }
    let mut out = LabelMask::new(frame.width, frame.height);
    for (y, row) in in_box.chunks_exact(bwu).enumerate() {
        let start = (bbox.y0 + y) * frame.width + bbox.x0;
        for (o, &m) in out.data[start..start + bwu].iter_mut().zip(row) {
            if m {
                *o = id;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;

    /// The bundled encoder at a small processing size.
    fn encoder() -> Encoder {
        let cfg = EngineConfig::default();
        Encoder::load(&cfg.model_path(), 256, 160, 1).expect("bundled encoder")
    }

    /// Deterministic noise in 0..=255 at (x, y, channel).
    fn noise(x: usize, y: usize, c: usize) -> u8 {
        let mut h = (x as u32).wrapping_mul(0x9E37_79B1)
            ^ (y as u32).wrapping_mul(0x85EB_CA77)
            ^ (c as u32).wrapping_mul(0xC2B2_AE3D);
        h ^= h >> 15;
        h = h.wrapping_mul(0x2C1B_3C6D);
        h ^= h >> 12;
        (h & 0xFF) as u8
    }

    /// A 320×200 frame: a disc of red/yellow stripes on green/blue noise,
    /// and the disc's true mask (id 1).
    fn disc_scene(cx: f32, cy: f32, r: f32) -> (RgbFrame, LabelMask) {
        let (w, h) = (320, 200);
        let mut frame = RgbFrame::new(w, h);
        let mut mask = LabelMask::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let px = &mut frame.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    mask.data[y * w + x] = 1;
                    let stripe = ((x + y) / 4) % 2 == 0;
                    px.copy_from_slice(if stripe {
                        &[220, 40, 30]
                    } else {
                        &[240, 200, 40]
                    });
                } else {
                    let n = noise(x / 2, y / 2, 0) / 3;
                    px.copy_from_slice(&[20, 90 + n, 60 + noise(x / 2, y / 2, 1) / 2]);
                }
            }
        }
        (frame, mask)
    }

    fn iou(a: &LabelMask, b: &LabelMask, id: u8) -> f64 {
        let (mut i, mut u) = (0, 0);
        for (&p, &g) in a.data.iter().zip(&b.data) {
            i += usize::from(p == id && g == id);
            u += usize::from(p == id || g == id);
        }
        i as f64 / u.max(1) as f64
    }

    #[test]
    fn box_of_a_disc_gives_the_disc() {
        let enc = encoder();
        let features_only = BoxPromptConfig {
            colour_weight: 0.0,
            ..BoxPromptConfig::default()
        };
        // Measured: features alone 0.980 and 0.987, with colour 1.000 and
        // 1.000. The box alone gives pi/4 = 0.785, and every cell of the box
        // called foreground gives 0.88 (features alone).
        for (cfg, floor) in [(features_only, 0.94), (BoxPromptConfig::default(), 0.97)] {
            for (cx, cy, r) in [(180.0, 105.0, 50.0), (90.0, 80.0, 35.0)] {
                let (frame, truth) = disc_scene(cx, cy, r);
                let bbox = BoxPrompt::of_object(&truth, 1).unwrap();
                let m = mask_from_box(&enc, &frame, bbox, 7, &cfg).unwrap();
                // Only id 7, only inside the box.
                for (i, &v) in m.data.iter().enumerate() {
                    let (x, y) = (i % m.width, i / m.width);
                    assert!(v == 0 || v == 7);
                    if v == 7 {
                        assert!(x >= bbox.x0 && x < bbox.x1 && y >= bbox.y0 && y < bbox.y1);
                    }
                }
                let truth7 = LabelMask {
                    data: truth.data.iter().map(|&v| v * 7).collect(),
                    ..truth.clone()
                };
                let j = iou(&m, &truth7, 7);
                let what = format!("disc at ({cx}, {cy}) r {r}, colour {}", cfg.colour_weight);
                eprintln!("{what}: IoU {j:.3}");
                assert!(j > floor, "{what}: IoU {j:.3}");
            }
        }
    }

    #[test]
    fn bad_boxes_are_errors_naming_the_problem() {
        let enc = encoder();
        let (frame, _) = disc_scene(160.0, 100.0, 40.0);
        let cfg = BoxPromptConfig::default();
        let run = |b: BoxPrompt, id: u8| mask_from_box(&enc, &frame, b, id, &cfg).unwrap_err();
        let e = run(BoxPrompt::new(100, 50, 200, 150), 0);
        assert!(matches!(e, PromptError::BackgroundId), "{e}");
        let e = run(BoxPrompt::new(100, 50, 100, 150), 1);
        assert!(matches!(e, PromptError::Empty(_)), "{e}");
        assert!(e.to_string().contains("x 100..100"), "{e}");
        let e = run(BoxPrompt::new(200, 150, 100, 50), 1);
        assert!(matches!(e, PromptError::Empty(_)), "{e}");
        let e = run(BoxPrompt::new(300, 50, 330, 150), 1);
        assert!(matches!(e, PromptError::OutsideFrame { .. }), "{e}");
        assert!(e.to_string().contains("320x200"), "{e}");
        let e = run(BoxPrompt::new(1000, 1000, 1010, 1010), 1);
        assert!(matches!(e, PromptError::OutsideFrame { .. }), "{e}");
        let e = run(BoxPrompt::new(100, 50, 103, 150), 1);
        assert!(matches!(e, PromptError::TooSmall { w: 3, .. }), "{e}");
        let e = run(BoxPrompt::new(0, 0, 320, 200), 1);
        assert!(matches!(e, PromptError::NoBackground { .. }), "{e}");
        assert!(e.to_string().contains("whole"), "{e}");
        // A frame whose bytes do not match its size.
        let broken = RgbFrame {
            width: 320,
            height: 200,
            data: vec![0; 10],
        };
        let e = mask_from_box(&enc, &broken, BoxPrompt::new(10, 10, 50, 50), 1, &cfg).unwrap_err();
        assert!(matches!(e, PromptError::Frame { .. }), "{e}");
        // Settings out of range.
        for bad in [
            BoxPromptConfig {
                context: 0.5,
                ..cfg.clone()
            },
            BoxPromptConfig {
                top_k: 0,
                ..cfg.clone()
            },
            BoxPromptConfig {
                temperature: f32::NAN,
                ..cfg.clone()
            },
            BoxPromptConfig {
                core: 0.0,
                ..cfg.clone()
            },
            BoxPromptConfig {
                seed_fraction: 1.5,
                ..cfg.clone()
            },
        ] {
            let e = mask_from_box(&enc, &frame, BoxPrompt::new(100, 50, 200, 150), 1, &bad)
                .unwrap_err();
            assert!(matches!(e, PromptError::Config(_)), "{e}");
        }
    }

    #[test]
    fn small_and_edge_boxes_still_give_a_mask() {
        let enc = encoder();
        let (frame, _) = disc_scene(160.0, 100.0, 40.0);
        let cfg = BoxPromptConfig::default();
        // Smallest box; boxes touching the frame's corners and edges.
        for b in [
            BoxPrompt::new(150, 90, 154, 94),
            BoxPrompt::new(0, 0, 60, 40),
            BoxPrompt::new(260, 160, 320, 200),
            BoxPrompt::new(0, 20, 320, 180),
            BoxPrompt::new(40, 0, 280, 200),
        ] {
            let m = mask_from_box(&enc, &frame, b, 3, &cfg).unwrap();
            let area = m.area(3);
            assert!(area > 0, "{b}: empty mask");
            assert!(area <= b.width() * b.height(), "{b}");
        }
    }

    #[test]
    fn box_of_object_is_tight() {
        let mut m = LabelMask::new(10, 8);
        assert_eq!(BoxPrompt::of_object(&m, 2), None);
        m.data[2 * 10 + 3] = 2;
        m.data[5 * 10 + 7] = 2;
        m.data[4 * 10 + 1] = 1;
        assert_eq!(
            BoxPrompt::of_object(&m, 2),
            Some(BoxPrompt::new(3, 2, 8, 6))
        );
        assert_eq!(
            BoxPrompt::of_object(&m, 1),
            Some(BoxPrompt::new(1, 4, 2, 5))
        );
    }

    #[test]
    fn window_holds_the_box_inside_the_frame() {
        let cfg = BoxPromptConfig::default();
        for b in [
            BoxPrompt::new(0, 0, 10, 10),
            BoxPrompt::new(840, 470, 854, 480),
            BoxPrompt::new(100, 0, 854, 20),
            BoxPrompt::new(0, 0, 854, 480),
            BoxPrompt::new(400, 200, 420, 400),
        ] {
            let w = window_around(b, 854, 480, 16.0 / 9.0, &cfg);
            assert!(w.x0 <= b.x0 && w.x0 + w.w >= b.x1, "{b}: {w:?}");
            assert!(w.y0 <= b.y0 && w.y0 + w.h >= b.y1, "{b}: {w:?}");
            assert!(w.x0 + w.w <= 854 && w.y0 + w.h <= 480, "{b}: {w:?}");
        }
    }

    #[test]
    fn largest_component_is_kept_and_filled() {
        // Two blobs; the big one has a hole.
        #[rustfmt::skip]
        let mut m: Vec<bool> = [
            1, 1, 0, 0, 0, 0,
            0, 0, 0, 1, 1, 1,
            0, 0, 0, 1, 0, 1,
            0, 0, 0, 1, 1, 1,
        ]
        .iter()
        .map(|&v| v == 1)
        .collect();
        main_component_filled(&mut m, 6, 4, None);
        let got: Vec<u8> = m.iter().map(|&v| u8::from(v)).collect();
        #[rustfmt::skip]
        assert_eq!(got, [
            0, 0, 0, 0, 0, 0,
            0, 0, 0, 1, 1, 1,
            0, 0, 0, 1, 1, 1,
            0, 0, 0, 1, 1, 1,
        ]);
    }
}
