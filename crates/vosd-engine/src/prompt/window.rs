//! The encoded window: where around the box the encoder looks, and where
//! its cells fall in the frame.

use super::{BoxPrompt, PromptError, MIN_BOX_SIDE};
use crate::config::BoxPromptConfig;
use crate::frame::RgbFrame;
use crate::geometry::Grid;

/// A pixel rectangle of the frame: the encoded window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) x0: usize,
    pub(super) y0: usize,
    pub(super) w: usize,
    pub(super) h: usize,
}

/// The box, the window around it and the encoder's stride-8 grid over the
/// window: where each cell lies in the frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct View {
    pub(super) bbox: BoxPrompt,
    pub(super) win: Window,
    pub(super) grid: Grid,
    /// Window pixels per processing pixel, across and down.
    pub(super) sx: f32,
    pub(super) sy: f32,
}

impl View {
    /// The centre of cell (`gx`, `gy`) in frame pixels (pixel edges at
    /// integers).
    pub(super) fn centre(&self, gx: usize, gy: usize) -> (f32, f32) {
        (
            self.win.x0 as f32 + (self.grid.x.centre(gx) + 0.5) * self.sx,
            self.win.y0 as f32 + (self.grid.y.centre(gy) + 0.5) * self.sy,
        )
    }
}

/// Checks the frame, the id and the box against the frame.
pub(super) fn check_inputs(frame: &RgbFrame, bbox: BoxPrompt, id: u8) -> Result<(), PromptError> {
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
pub(super) fn window_around(
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
pub(super) fn crop(frame: &RgbFrame, win: Window) -> RgbFrame {
    let mut out = RgbFrame::new(win.w, win.h);
    for (y, row) in out.data.chunks_exact_mut(win.w * 3).enumerate() {
        let start = ((win.y0 + y) * frame.width + win.x0) * 3;
        row.copy_from_slice(&frame.data[start..start + win.w * 3]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
