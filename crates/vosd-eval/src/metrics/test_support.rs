//! Test helpers shared by the metric modules' unit tests: masks drawn as
//! text and axis-aligned rectangles.

/// Parses a mask drawn with `#` (true) and `.` (false), one row per line.
pub(super) fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
    let h = rows.len();
    let w = rows[0].len();
    let m: Vec<bool> = rows
        .iter()
        .flat_map(|r| {
            assert_eq!(r.len(), w);
            r.chars().map(|c| c == '#')
        })
        .collect();
    (m, w, h)
}

/// Rectangle `[x0, x1) × [y0, y1)` in a `w × h` image.
pub(super) fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Vec<bool> {
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            x >= x0 && x < x1 && y >= y0 && y < y1
        })
        .collect()
}
