//! A 3×5 pixel font for the labels `vosd view` draws on its picture: the
//! digits, `#`, and the state letters `V` (visible), `O` (occluded) and
//! `L` (lost). Other characters draw as blanks.

/// Glyph rows, top first; bit 2 is the left column.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        _ => [0; 5],
    }
}

/// Width of one character cell (glyph and spacing) in font pixels.
pub const CELL_W: u32 = 4;
/// Height of a glyph in font pixels.
pub const GLYPH_H: u32 = 5;

/// Calls `set(x, y)` for every pixel of `text` drawn at `(x0, y0)` with
/// each font pixel `scale`×`scale` image pixels.
pub fn draw(text: &str, x0: u32, y0: u32, scale: u32, mut set: impl FnMut(u32, u32)) {
    for (i, c) in text.chars().enumerate() {
        let cx = x0 + i as u32 * CELL_W * scale;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            set(cx + col * scale + dx, y0 + row as u32 * scale + dy);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_draw_where_asked() {
        let mut px = Vec::new();
        draw("1", 10, 20, 1, |x, y| px.push((x, y)));
        // "1": 1 + 2 + 1 + 1 + 3 pixels, the top one in the middle column.
        assert_eq!(px.len(), 8);
        assert!(px.contains(&(11, 20)));
        let mut n = 0;
        draw("#7 ?", 0, 0, 2, |_, _| n += 1);
        assert_eq!(n, (12 + 7) * 4, "unknown characters draw nothing");
    }
}
