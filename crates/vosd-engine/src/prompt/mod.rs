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
//! Every bad input is an error ([`PromptError`]); nothing panics. The
//! settings are [`BoxPromptConfig`], the `[engine.prompt]` table.
//!
//! The steps live in the submodules: `window` (step 1), `seeds` (2, 3),
//! `region` (4, 5) and `colour` (the histograms of step 5).

mod colour;
mod region;
mod seeds;
#[cfg(test)]
mod tests;
mod window;

pub use crate::config::BoxPromptConfig;
use crate::config::ConfigError;
use crate::encoder::{Encoder, EncoderError};
use crate::frame::{resize_bilinear, LabelMask, RgbFrame};
use crate::keys::image_keys;
use seeds::Cells;
use window::{check_inputs, crop, window_around, View};

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
    /// A setting is out of range (it names the `engine.prompt` key).
    #[error("box prompt settings: {0}")]
    Config(ConfigError),
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
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
    cfg.validate().map_err(PromptError::Config)?;
    check_inputs(frame, bbox, id)?;
    let (pw, ph) = (encoder.width(), encoder.height());
    let grid = encoder.grids()[1];
    let win = window_around(bbox, frame.width, frame.height, pw as f32 / ph as f32, cfg);
    let view = View {
        bbox,
        win,
        grid,
        sx: win.w as f32 / pw as f32,
        sy: win.h as f32 / ph as f32,
    };
    let cells = Cells::around(&view, frame.width, frame.height, cfg)?;

    let window = crop(frame, win);
    let mut image = RgbFrame::new(pw, ph);
    resize_bilinear(&window, &mut image);
    let keys = image_keys(encoder, &image)?;
    let margins = cells.margins(&view, &keys, cfg);
    let in_box = region::box_estimate(&view, &window, (pw, ph), &cells.inside, &margins, cfg);

    let bw = bbox.width();
    let mut out = LabelMask::new(frame.width, frame.height);
    for (y, row) in in_box.chunks_exact(bw).enumerate() {
        let start = (bbox.y0 + y) * frame.width + bbox.x0;
        for (o, &m) in out.data[start..start + bw].iter_mut().zip(row) {
            if m {
                *o = id;
            }
        }
    }
    Ok(out)
}
