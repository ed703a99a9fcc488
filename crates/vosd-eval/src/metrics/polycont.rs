//! Mask → closed contours, as the DAVIS toolkit's `tstab.mask2poly` (Jordi
//! Pont-Tuset's `polycont`: `mask2poly.hpp`, `lines2jordan.hpp`,
//! `in_out_sort.hpp`, `move2junctions.hpp`, `simplify.hpp` with psimpl's
//! Douglas-Peucker, `clockwise_sort.hpp`) computes them for the temporal
//! stability measure.
//!
//! The contour lives on a doubled grid: pixel `(r, c)` has its centre at
//! `(2r+1, 2c+1)`, the edges between pixels at one odd and one even
//! coordinate, and the pixel corners ("junctions") at two even ones. The
//! steps, each as in the C++:
//!
//! 1. every edge between a foreground and a background pixel (the mask is
//!    padded with background) is a contour element; corners where four
//!    contour elements meet (two diagonal pixels touching) are junctions;
//! 2. the contour is walked from each junction into pieces that end at a
//!    junction; closed loops without a junction get an artificial one at
//!    the top of their first vertical edge in scan order;
//! 3. pieces are joined into Jordan curves (`lines2jordan`). The C++ picks
//!    the next junction as the first key of a `std::unordered_map<int, _>`
//!    built with as many buckets as junctions: with libstdc++ (identity hash,
//!    every key in its own bucket, insertion at the front of the node list)
//!    that is the largest junction id still present, which is what is done
//!    here;
//! 4. holes are found by inclusion (ray casting with the C++'s float
//!    slopes), the curve is moved from edge midpoints to pixel corners,
//!    simplified with Douglas-Peucker (tolerance 0.1, then the given one, on
//!    the doubled grid, psimpl's radial-distance pre-pass included), turned
//!    clockwise (holes counter-clockwise), halved to pixel-corner units, and
//!    curves of at most 3 points are dropped.
//!
//! Coordinates come out as the Python binding returns them: `[x, y]` =
//! `[column, row]` of a pixel corner. Where the C++ asserts (it never does on
//! a real mask) this code gives up on the mask and returns `None`.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pt {
    x: i64,
    y: i64,
}

const fn pt(x: i64, y: i64) -> Pt {
    Pt { x, y }
}

/// A piece of contour (or a whole Jordan curve) between two junctions
/// (1-based ids, 0 = none).
#[derive(Clone, Debug)]
struct Piece {
    orig: usize,
    end: usize,
    pts: Vec<Pt>,
}

struct Junction {
    pos: Pt,
    pieces: BTreeSet<usize>,
}

/// A value per doubled-grid point over a window (the foreground's bounding
/// box and a margin; the C++ allocates the whole image, and nothing outside
/// the box is ever set); anything outside reads as the default.
struct Grid<T> {
    x0: i64,
    y0: i64,
    rows: i64,
    cols: i64,
    data: Vec<T>,
}

impl<T: Copy + Default> Grid<T> {
    fn new(x0: i64, y0: i64, rows: i64, cols: i64) -> Self {
        Self {
            x0,
            y0,
            rows,
            cols,
            data: vec![T::default(); (rows * cols) as usize],
        }
    }
    fn at(&self, p: Pt) -> Option<usize> {
        let (i, j) = (p.x - self.x0, p.y - self.y0);
        (i >= 0 && j >= 0 && i < self.rows && j < self.cols).then(|| (i * self.cols + j) as usize)
    }
    fn get(&self, p: Pt) -> T {
        self.at(p).map(|k| self.data[k]).unwrap_or_default()
    }
    fn set(&mut self, p: Pt, v: T) {
        if let Some(k) = self.at(p) {
            self.data[k] = v;
        }
    }
}

/// The closed contours of `mask` (`width * height`, row-major) as the
/// toolkit's `mask2poly(mask, tolerance).contour_coords`: each a list of
/// `[x, y]` pixel-corner coordinates whose first and last points are equal.
/// `None` where the C++ would have failed an assertion.
pub(super) fn mask_contours(
    mask: &[bool],
    width: usize,
    height: usize,
    tolerance: f64,
) -> Option<Vec<Vec<[i64; 2]>>> {
    if mask.len() != width.checked_mul(height)? {
        return None;
    }
    let (sx, sy) = (height as i64, width as i64);
    let m = |r: i64, c: i64| -> bool {
        r >= 1 && c >= 1 && r <= sx && c <= sy && mask[((r - 1) * sy + (c - 1)) as usize]
    };
    // Bounding box of the foreground, rows r0..r1 and columns c0..c1: the
    // scans below visit the same cells in the same order as the C++'s
    // whole-image scans, less those that cannot hold a contour.
    let (mut r0, mut r1, mut c0, mut c1) = (sx, 0, sy, 0);
    for (i, _) in mask.iter().enumerate().filter(|(_, &v)| v) {
        let (r, c) = ((i / width) as i64, (i % width) as i64);
        (r0, r1, c0, c1) = (r0.min(r), r1.max(r + 1), c0.min(c), c1.max(c + 1));
    }
    if r0 >= r1 {
        return Some(Vec::new());
    }
    let (wx, wy, wr, wc) = (2 * r0 - 1, 2 * c0 - 1, 2 * (r1 - r0) + 3, 2 * (c1 - c0) + 3);
    let mut is_cont: Grid<bool> = Grid::new(wx, wy, wr, wc);
    for xx in r0..r1 {
        for yy in c0 - 1..c1 {
            is_cont.set(
                pt(2 * xx + 1, 2 * yy + 2),
                m(xx + 1, yy + 1) ^ m(xx + 1, yy + 2),
            );
        }
    }
    for xx in r0 - 1..r1 {
        for yy in c0..c1 {
            is_cont.set(
                pt(2 * xx + 2, 2 * yy + 1),
                m(xx + 1, yy + 1) ^ m(xx + 2, yy + 1),
            );
        }
    }
    let mut jids: Grid<usize> = Grid::new(wx, wy, wr, wc);
    let mut junctions: Vec<Junction> = Vec::new();
    let mut to_explore: Vec<Piece> = Vec::new();
    for xx in (2..2 * sx)
        .step_by(2)
        .filter(|x| (2 * r0..=2 * r1).contains(x))
    {
        for yy in (2..2 * sy)
            .step_by(2)
            .filter(|y| (2 * c0..=2 * c1).contains(y))
        {
            let around = [
                pt(xx, yy + 1),
                pt(xx + 1, yy),
                pt(xx, yy - 1),
                pt(xx - 1, yy),
            ];
            if around.iter().all(|&p| is_cont.get(p)) {
                junctions.push(Junction {
                    pos: pt(xx, yy),
                    pieces: BTreeSet::new(),
                });
                let id = junctions.len();
                jids.set(pt(xx, yy), id);
                to_explore.extend(around.iter().map(|&p| Piece {
                    orig: id,
                    end: 0,
                    pts: vec![p],
                }));
            }
        }
    }
    let mut visited: Grid<bool> = Grid::new(wx, wy, wr, wc);
    let mut pieces: Vec<Piece> = Vec::new();
    // The C++ fills `to_explore` junction by junction and pops from the back.
    while let Some(mut piece) = to_explore.pop() {
        if visited.get(*piece.pts.last()?) {
            continue;
        }
        explore(&mut piece, &junctions, &mut visited, &jids, &is_cont)?;
        pieces.push(piece);
    }
    // Loops without a junction (no two diagonal pixels touching on them).
    for xx in r0..r1 {
        for yy in c0 - 1..c1 {
            let p = pt(2 * xx + 1, 2 * yy + 2);
            if is_cont.get(p) && !visited.get(p) {
                let pos = pt(2 * xx, 2 * yy + 2);
                junctions.push(Junction {
                    pos,
                    pieces: BTreeSet::new(),
                });
                let id = junctions.len();
                jids.set(pos, id);
                let mut piece = Piece {
                    orig: id,
                    end: 0,
                    pts: vec![p],
                };
                explore(&mut piece, &junctions, &mut visited, &jids, &is_cont)?;
                pieces.push(piece);
            }
        }
    }
    for (i, piece) in pieces.iter().enumerate() {
        junctions
            .get_mut(piece.orig.checked_sub(1)?)?
            .pieces
            .insert(i);
        junctions
            .get_mut(piece.end.checked_sub(1)?)?
            .pieces
            .insert(i);
    }
    let mut curves = lines2jordan(&pieces, &junctions)?;
    let is_hole = in_out_check(&curves);
    for c in &mut curves {
        let pos = junctions.get(c.orig.checked_sub(1)?)?.pos;
        move2junctions(&mut c.pts, pos);
    }
    if tolerance > 0.0 {
        for c in &mut curves {
            if tolerance > 0.1 {
                c.pts = douglas_peucker(&c.pts, 0.1);
            }
            c.pts = douglas_peucker(&c.pts, tolerance);
        }
    }
    for (c, &hole) in curves.iter_mut().zip(&is_hole) {
        if is_clockwise(&c.pts) == hole {
            c.pts.reverse();
        }
    }
    Some(
        curves
            .into_iter()
            .filter(|c| c.pts.len() > 3)
            .map(|c| c.pts.iter().map(|p| [p.y / 2, p.x / 2]).collect())
            .collect(),
    )
}

/// `explore_contour`: walks from the piece's first contour element until a
/// junction, recording the elements.
fn explore(
    piece: &mut Piece,
    junctions: &[Junction],
    visited: &mut Grid<bool>,
    jids: &Grid<usize>,
    is_cont: &Grid<bool>,
) -> Option<()> {
    let mut next = *piece.pts.first()?;
    piece.pts.clear();
    let junct_visited = junctions.get(piece.orig.checked_sub(1)?)?.pos;
    let mut junct = junct_visited;
    // A walk never visits an element twice: bounded by the grid.
    for _ in 0..is_cont.data.len() {
        visited.set(junct_visited, true);
        let cont = next;
        let (e1, e2) = if cont.x % 2 != 0 {
            (pt(cont.x + 1, cont.y), pt(cont.x - 1, cont.y))
        } else {
            (pt(cont.x, cont.y - 1), pt(cont.x, cont.y + 1))
        };
        // The first unvisited extreme; with both visited, the one that is
        // not the junction just reached (the C++ writes it as three cases).
        junct = if !visited.get(e1) {
            e1
        } else if !visited.get(e2) || e1 == junct {
            e2
        } else {
            e1
        };
        visited.set(cont, true);
        visited.set(junct, true);
        let id = jids.get(junct);
        piece.pts.push(cont);
        if id > 0 {
            piece.end = id;
            return Some(());
        }
        let j = junct;
        next = [pt(j.x + 1, j.y), pt(j.x - 1, j.y), pt(j.x, j.y + 1)]
            .into_iter()
            .find(|&p| is_cont.get(p) && !visited.get(p))
            .unwrap_or(pt(j.x, j.y - 1));
    }
    None
}

fn other_extreme(line: &Piece, junction: usize) -> usize {
    if junction == line.orig {
        line.end
    } else {
        line.orig
    }
}

fn first_next_coord(line: &Piece, junction: usize) -> Option<Pt> {
    if line.orig == junction {
        line.pts.first().copied()
    } else {
        line.pts.last().copied()
    }
}

fn erase(map: &mut BTreeMap<usize, BTreeSet<usize>>, junction: usize, cont: usize) {
    if let Some(set) = map.get_mut(&junction) {
        set.remove(&cont);
        if set.is_empty() {
            map.remove(&junction);
        }
    }
}

/// `add_piece`: closes the cycle that starts at `cycle` in the swept list;
/// returns the contour swept last before it, if any.
fn add_piece(
    cycle: usize,
    lines: &[Piece],
    swept_list: &mut Vec<(usize, usize)>,
    swept: &mut BTreeSet<usize>,
    jordan: &mut Vec<Piece>,
) -> Option<Option<usize>> {
    let pos = swept_list.iter().position(|e| e.0 == cycle)?;
    let mut curve = Piece {
        orig: cycle,
        end: 0,
        pts: Vec::new(),
    };
    for (j, c) in swept_list.drain(pos..) {
        let line = lines.get(c)?;
        if line.orig == j {
            curve.end = line.end;
            curve.pts.extend_from_slice(&line.pts);
        } else if line.end == j {
            curve.end = line.orig;
            curve.pts.extend(line.pts.iter().rev());
        } else {
            return None;
        }
        swept.remove(&j);
    }
    jordan.push(curve);
    Some(swept_list.last().map(|e| e.1))
}

/// `lines2jordan`: joins contour pieces into closed curves, turning (not
/// going straight) at junctions.
fn lines2jordan(lines: &[Piece], junctions: &[Junction]) -> Option<Vec<Piece>> {
    let mut map: BTreeMap<usize, BTreeSet<usize>> = junctions
        .iter()
        .enumerate()
        .map(|(i, j)| (i + 1, j.pieces.clone()))
        .collect();
    let mut jordan = Vec::new();
    // Each round removes at least one contour from the map.
    for _ in 0..=lines.len() * 2 + 1 {
        // libstdc++'s unordered_map begin(): the largest key (module doc).
        let Some((&start, set)) = map.iter().next_back() else {
            return Some(jordan);
        };
        let mut cont = *set.iter().next()?;
        let mut swept_list: Vec<(usize, usize)> = Vec::new();
        let mut swept: BTreeSet<usize> = BTreeSet::new();
        erase(&mut map, start, cont);
        let end = other_extreme(lines.get(cont)?, start);
        erase(&mut map, end, cont);
        swept.insert(start);
        swept_list.push((start, cont));
        let mut next = other_extreme(&lines[cont], start);
        if swept.contains(&next) {
            add_piece(next, lines, &mut swept_list, &mut swept, &mut jordan)?;
        }
        let mut guard = 0;
        while !swept.is_empty() {
            guard += 1;
            if guard > lines.len() + 1 {
                return None;
            }
            let junct = next;
            let set = map.get(&junct)?;
            let mut it = set.iter();
            let mut cand = *it.next()?;
            let next_first = first_next_coord(lines.get(cand)?, junct)?;
            let curr_last = first_next_coord(lines.get(cont)?, junct)?;
            if next_first.x == curr_last.x || next_first.y == curr_last.y {
                cand = *it.next()?;
            }
            cont = cand;
            erase(&mut map, junct, cont);
            let end = other_extreme(&lines[cont], junct);
            erase(&mut map, end, cont);
            swept.insert(junct);
            swept_list.push((junct, cont));
            next = other_extreme(&lines[cont], junct);
            if swept.contains(&next) {
                if let Some(c) = add_piece(next, lines, &mut swept_list, &mut swept, &mut jordan)? {
                    cont = c;
                }
            }
        }
    }
    None
}

/// `rayintersectseg` with the C++'s float epsilon and float slopes.
fn ray_intersects_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> bool {
    let (mut p, mut a, mut b) = (p, a, b);
    if a[1] > b[1] {
        std::mem::swap(&mut a, &mut b);
    }
    if p[1] == a[1] || p[1] == b[1] {
        p[1] += f32::EPSILON as f64;
    }
    if p[1] > b[1] || p[1] < a[1] || p[0] > a[0].max(b[0]) {
        return false;
    }
    if p[0] < a[0].min(b[0]) {
        return true;
    }
    let m_red = if (a[0] - b[0]).abs() > f32::MIN_POSITIVE as f64 {
        ((b[1] - a[1]) / (b[0] - a[0]) as f32 as f64) as f32
    } else {
        f32::MAX
    };
    let m_blue = if (a[0] - p[0]).abs() > f32::MIN_POSITIVE as f64 {
        ((p[1] - a[1]) / (p[0] - a[0]) as f32 as f64) as f32
    } else {
        f32::MAX
    };
    m_blue >= m_red
}

fn is_point_inside(p: [f64; 2], poly: &[[f64; 2]]) -> bool {
    let mut cross = 0usize;
    for w in poly.windows(2) {
        cross += usize::from(ray_intersects_segment(p, w[0], w[1]));
    }
    if let (Some(&first), Some(&last)) = (poly.first(), poly.last()) {
        cross += usize::from(ray_intersects_segment(p, first, last));
    }
    cross % 2 == 1
}

struct Inclusion {
    parents: Vec<i64>,
    children: Vec<BTreeSet<usize>>,
}

fn add_one_inout(curr: usize, parent: usize, conts: &[Vec<[f64; 2]>], inc: &mut Inclusion) {
    let first = |i: usize| conts[i - 1].first().copied().unwrap_or([0.0, 0.0]);
    let found = inc.children[parent]
        .iter()
        .copied()
        .find(|&child| is_point_inside(first(curr), &conts[child - 1]));
    if let Some(child) = found {
        add_one_inout(curr, child, conts, inc);
        return;
    }
    let inside: BTreeSet<usize> = inc.children[parent]
        .iter()
        .copied()
        .filter(|&child| is_point_inside(first(child), &conts[curr - 1]))
        .collect();
    for &child in &inside {
        inc.children[parent].remove(&child);
        inc.parents[child] = curr as i64;
    }
    inc.children.push(inside);
    inc.children[parent].insert(curr);
    inc.parents.push(parent as i64);
}

fn flatten(depth: usize, parent: usize, inc: &mut Inclusion) {
    let children: Vec<usize> = inc.children[parent].iter().copied().collect();
    for child in children {
        if depth % 2 == 1 {
            inc.parents[child] = -1;
        } else {
            inc.parents[child] -= 1;
        }
        flatten(depth + 1, child, inc);
    }
}

/// `in_out_check`: which curves are holes (inside an odd number of others).
fn in_out_check(curves: &[Piece]) -> Vec<bool> {
    if curves.is_empty() {
        return Vec::new();
    }
    let conts: Vec<Vec<[f64; 2]>> = curves
        .iter()
        .map(|c| c.pts.iter().map(|p| [p.x as f64, p.y as f64]).collect())
        .collect();
    let mut inc = Inclusion {
        parents: vec![-1],
        children: vec![BTreeSet::new()],
    };
    for id in 1..=conts.len() {
        add_one_inout(id, 0, &conts, &mut inc);
    }
    flatten(1, 0, &mut inc);
    inc.parents[1..].iter().map(|&p| p != -1).collect()
}

fn cont_next_extreme(cont: Pt, last: Pt) -> Pt {
    let mut r = last;
    if cont.x % 2 == 0 {
        if cont.y + 1 == last.y {
            r.y -= 2;
        } else if cont.y - 1 == last.y {
            r.y += 2;
        }
    } else if cont.y % 2 == 0 {
        if cont.x + 1 == last.x {
            r.x -= 2;
        } else if cont.x - 1 == last.x {
            r.x += 2;
        }
    }
    r
}

/// `move2junctions`: from edge midpoints to the pixel corners between them,
/// closed by the starting junction.
fn move2junctions(pts: &mut Vec<Pt>, junction: Pt) {
    let Some(&first) = pts.first() else {
        return;
    };
    let mut next = first;
    pts[0] = junction;
    for j in 1..pts.len() {
        let pos = cont_next_extreme(next, pts[j - 1]);
        next = pts[j];
        pts[j] = pos;
    }
    pts.push(junction);
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    let mut r = 0.0;
    r += (a[0] - b[0]) * (a[0] - b[0]);
    r += (a[1] - b[1]) * (a[1] - b[1]);
    r
}

/// psimpl's `segment_distance2` (the projection fraction is a `float`).
fn segment_distance2(s1: [f64; 2], s2: [f64; 2], p: [f64; 2]) -> f64 {
    let v = [s2[0] - s1[0], s2[1] - s1[1]];
    let w = [p[0] - s1[0], p[1] - s1[1]];
    let mut cw = 0.0;
    cw += w[0] * v[0];
    cw += w[1] * v[1];
    if cw <= 0.0 {
        return dist2(p, s1);
    }
    let mut cv = 0.0;
    cv += v[0] * v[0];
    cv += v[1] * v[1];
    if cv <= cw {
        return dist2(p, s2);
    }
    let fraction = if cv == 0.0 {
        0.0f32
    } else {
        cw as f32 / cv as f32
    };
    let proj = [
        s1[0] + fraction as f64 * (s2[0] - s1[0]),
        s1[1] + fraction as f64 * (s2[1] - s1[1]),
    ];
    dist2(p, proj)
}

/// psimpl's `simplify_douglas_peucker<2>`: radial-distance pre-pass, then
/// Douglas-Peucker with an explicit stack.
fn douglas_peucker(pts: &[Pt], tol: f64) -> Vec<Pt> {
    let n = pts.len();
    if n < 3 || tol == 0.0 {
        return pts.to_vec();
    }
    let tol2 = tol * tol;
    let p: Vec<[f64; 2]> = pts.iter().map(|q| [q.x as f64, q.y as f64]).collect();
    let mut reduced = vec![p[0]];
    let mut current = p[0];
    for &q in &p[1..n - 1] {
        if dist2(current, q) < tol2 {
            continue;
        }
        current = q;
        reduced.push(q);
    }
    reduced.push(p[n - 1]);
    let m = reduced.len();
    let mut keys = vec![false; m];
    keys[0] = true;
    keys[m - 1] = true;
    let mut stack = vec![(0usize, m - 1)];
    while let Some((first, last)) = stack.pop() {
        let (mut index, mut best) = (0usize, 0.0f64);
        for cur in first + 1..last {
            let d2 = segment_distance2(reduced[first], reduced[last], reduced[cur]);
            if d2 < best {
                continue;
            }
            index = cur;
            best = d2;
        }
        if index != 0 && tol2 < best {
            keys[index] = true;
            stack.push((index, last));
            stack.push((first, index));
        }
    }
    reduced
        .iter()
        .zip(&keys)
        .filter(|(_, &k)| k)
        .map(|(q, _)| pt(q[0] as i64, q[1] as i64))
        .collect()
}

/// `is_clockwise`, with the C++'s float accumulator.
fn is_clockwise(pts: &[Pt]) -> bool {
    let mut total = 0.0f32;
    for i in 0..pts.len() {
        let j = (i + 1) % pts.len();
        total += ((pts[j].x - pts[i].x) * (pts[j].y + pts[i].y)) as f32;
    }
    total > 0.0
}

#[cfg(test)]
mod tests {
    use super::super::test_support::mask;
    use super::*;

    #[test]
    fn square_is_one_clockwise_curve() {
        let (m, w, h) = mask(&["....", ".##.", ".##.", "...."]);
        // The toolkit's tstab.mask2poly(m, 0).contour_coords, built from
        // fperazzi/davis-2017 by scripts/crosscheck_tstab.py's build step.
        let expected: Vec<[i64; 2]> = vec![
            [1, 1],
            [2, 1],
            [3, 1],
            [3, 2],
            [3, 3],
            [2, 3],
            [1, 3],
            [1, 2],
            [1, 1],
        ];
        assert_eq!(mask_contours(&m, w, h, 0.0).unwrap(), vec![expected]);
        // With tolerance 3 (T's) the small square simplifies to at most 3
        // points and is dropped: the toolkit returns no contour either.
        assert!(mask_contours(&m, w, h, 3.0).unwrap().is_empty());
    }

    #[test]
    fn hole_and_touching_diagonals() {
        // A ring (outer curve + hole) and two pixels touching at a corner.
        let (m, w, h) = mask(&[
            ".......", ".###...", ".#.#...", ".###...", "....#..", "...#...", ".......",
        ]);
        let c = mask_contours(&m, w, h, 0.0).unwrap();
        // Ring: outer (12 edges) + hole (4 edges); diagonal pair: one curve
        // through the junction, or two single pixels (dropped: ≤ 3 points
        // after closing would be 5; they are kept).
        assert!(c.len() >= 2, "{c:?}");
        assert!(c.iter().all(|cc| cc.first() == cc.last()));
        assert!(c.iter().any(|cc| cc.len() == 13));
        assert!(c.iter().any(|cc| cc.len() == 5));
        // An empty mask has no contour.
        assert!(mask_contours(&[false; 9], 3, 3, 3.0).unwrap().is_empty());
        // Wrong size: None, not a panic.
        assert!(mask_contours(&[false; 8], 3, 3, 3.0).is_none());
    }
}
