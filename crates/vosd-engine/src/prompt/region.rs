//! From cell margins to the object's pixels (steps 4 and 5 of the
//! method): the edge-aware upsampling inside the box, one region without
//! holes, and the colour refinement.

use super::colour::colour_evidence;
use super::window::View;
use crate::config::BoxPromptConfig;
use crate::frame::{LabelMask, RgbFrame};
use crate::upsample::Upsampler;

/// The object's pixels in the box (`bbox.width() × bbox.height()`
/// booleans, row-major), from the foreground `margins` of the `inside`
/// cells of `view`; `window` is the encoded window's pixels (the guide of
/// the upsampling) and `proc` the processing size it was encoded at.
/// Never empty: with no foreground at all it is the ellipse inscribed in
/// the box (at half its size, or `core` if larger).
pub(super) fn box_estimate(
    view: &View,
    window: &RgbFrame,
    proc: (usize, usize),
    inside: &[usize],
    margins: &[f32],
    cfg: &BoxPromptConfig,
) -> Vec<bool> {
    let View {
        bbox,
        win,
        grid,
        sx,
        sy,
    } = *view;
    let (pw, ph) = proc;
    let mut probs = vec![0.0f32; grid.len() * 2];
    probs.chunks_exact_mut(2).for_each(|p| p[0] = 1.0);
    let set_probs = |probs: &mut [f32], margins: &mut dyn Iterator<Item = (usize, f32)>| {
        for (cell, m) in margins {
            let v = 1.0 / (1.0 + (-m / cfg.temperature).exp());
            probs[cell * 2] = 1.0 - v;
            probs[cell * 2 + 1] = v;
        }
    };
    set_probs(
        &mut probs,
        &mut inside.iter().copied().zip(margins.iter().copied()),
    );

    let mut up = Upsampler::new(
        grid,
        pw,
        ph,
        win.w,
        win.h,
        Some((cfg.edge_sigma_color, cfg.edge_sigma_space)),
    );
    let mut win_mask = LabelMask::new(win.w, win.h);
    up.upsample(&probs, 2, &[0, 1], window, &mut win_mask);
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
        let colour = colour_evidence(window, is_object, grid, sx, sy);
        set_probs(
            &mut probs,
            &mut inside
                .iter()
                .zip(margins)
                .map(|(&c, &m)| (c, m + cfg.colour_weight * colour[c])),
        );
        up.upsample(&probs, 2, &[0, 1], window, &mut win_mask);
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
    in_box
}

/// Keeps one 4-connected component of `mask` (`w`×`h` booleans) and fills
/// its holes (background not connected to the border). The component kept
/// is the one sharing the most pixels with `prefer` when given (and any
/// does), else the largest.
pub(super) fn main_component_filled(
    mask: &mut [bool],
    w: usize,
    h: usize,
    prefer: Option<&[bool]>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
