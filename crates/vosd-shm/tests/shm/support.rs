//! Shared helpers for the shared-memory tests (a module of `tests/shm.rs`,
//! and included with `#[path]` by the allocation test).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use vosd_shm::{
    BBox, FrameBuf, ObjectState, PublishConfig, PublishOptions, ShmWriter, SlotData, Visibility,
};

/// A shm name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("/vosd-test-{tag}-{}-{n}", std::process::id())
}

/// Unlinks a name on drop (for segments a test creates by hand).
pub struct Unlink(pub String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(self.0.as_str());
    }
}

/// A config with the given geometry and ring.
pub fn config(name: &str, w: u32, h: u32, slots: u32, max_objects: u32) -> PublishConfig {
    PublishOptions {
        slots,
        max_objects,
        ..PublishOptions::new(name)
    }
    .to_config(w, h)
}

/// Frame numbers published for publish `seq` (an offset, so that a mix-up
/// between the two is visible).
pub const FRAME_OFFSET: u64 = 1000;

/// splitmix64: a cheap, well-mixed hash.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Self-checking content for the stress tests: every byte of a slot is a
// function of the frame number, so a copy mixing two publishes cannot match.

/// Object count of frame `f`.
pub fn noise_count(f: u64, max_objects: u32) -> usize {
    (mix(f ^ 0xC0FFEE) % (u64::from(max_objects) + 1)) as usize
}

/// Object `k` of frame `f`.
pub fn noise_object(f: u64, k: usize) -> ObjectState {
    let h = mix(f.wrapping_mul(31).wrapping_add(k as u64));
    ObjectState {
        id: k as u32 + 1,
        visibility: Visibility::from_u8((h % 3) as u8).unwrap_or_default(),
        area: (h >> 8) as u32,
        bbox: BBox {
            x0: (h >> 3) as u32 & 0xFFFF,
            y0: (h >> 19) as u32 & 0xFFFF,
            x1: (h >> 35) as u32 & 0xFFFF,
            y1: (h >> 47) as u32 & 0xFFFF,
        },
        centroid: [f as f32, k as f32],
        velocity: [(h & 0xFF) as f32, -((h >> 56) as f32)],
        confidence: ((h >> 40) & 0x3FF) as f32 / 1023.0,
    }
}

/// Fills `mask` with the pattern of frame `f`.
pub fn noise_mask(f: u64, mask: &mut [u8]) {
    for (j, chunk) in mask.chunks_mut(8).enumerate() {
        let w = mix(f.wrapping_mul(0x1_0000_0001).wrapping_add(j as u64)).to_le_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(&w[..n]);
    }
}

/// Capture timestamp of frame `f`.
pub fn noise_capture(f: u64) -> u64 {
    mix(f ^ 0xCAB) >> 1
}

/// Checks a copied frame against the pattern of its own frame number.
pub fn check_noise_frame(buf: &FrameBuf, max_objects: u32) -> Result<(), String> {
    let f = buf.frame_number();
    if f != buf.seq() + FRAME_OFFSET {
        return Err(format!("seq {} carries frame {f}", buf.seq()));
    }
    if buf.capture_ns() != noise_capture(f) {
        return Err(format!("frame {f}: capture_ns mismatch"));
    }
    if buf.publish_ns() == 0 {
        return Err(format!("frame {f}: publish_ns is 0"));
    }
    let n = noise_count(f, max_objects);
    if buf.objects().len() != n {
        return Err(format!(
            "frame {f}: {} objects, expected {n}",
            buf.objects().len()
        ));
    }
    for (k, o) in buf.objects().iter().enumerate() {
        if *o != noise_object(f, k) {
            return Err(format!("frame {f}: object {k} mismatch: {o:?}"));
        }
    }
    for (j, chunk) in buf.mask().chunks(8).enumerate() {
        let w = mix(f.wrapping_mul(0x1_0000_0001).wrapping_add(j as u64)).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            return Err(format!("frame {f}: mask word {j} mismatch"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A readable "scene" for the C and Python example tests: objects are
// rectangles in separate horizontal bands, so area and bounding box follow
// from the frame number and the printed lines can be checked.

/// Scene width.
pub const SCENE_W: u32 = 160;
/// Scene height.
pub const SCENE_H: u32 = 120;

/// Rectangles `(id, x0, y0, x1, y1)` of frame `f`.
pub fn scene_rects(f: u64) -> Vec<(u8, u32, u32, u32, u32)> {
    let count = 1 + (f % 3) as usize;
    (0..count)
        .map(|k| {
            let k32 = k as u32;
            let x0 = ((f * 3 + u64::from(k32) * 17) % 120) as u32;
            let w = 10 + (f % 5) as u32 + k32 * 3;
            let y0 = k32 * 40 + (f % 10) as u32;
            let h = 10 + (f % 7) as u32 + k32;
            (k as u8 + 1, x0, y0, x0 + w, y0 + h)
        })
        .collect()
}

/// Visibility of object index `k` in frame `f`.
pub fn scene_visibility(f: u64, k: usize) -> Visibility {
    Visibility::from_u8(((f + k as u64) % 3) as u8).unwrap_or_default()
}

/// Mask and object states of frame `f` (states computed with
/// `ObjectState::from_mask`).
pub fn scene(f: u64, mask: &mut Vec<u8>, objects: &mut Vec<ObjectState>) {
    let (w, h) = (SCENE_W as usize, SCENE_H as usize);
    mask.clear();
    mask.resize(w * h, 0);
    objects.clear();
    let rects = scene_rects(f);
    for &(id, x0, y0, x1, y1) in &rects {
        for y in y0..y1 {
            for x in x0..x1 {
                mask[y as usize * w + x as usize] = id;
            }
        }
    }
    for (k, &(id, ..)) in rects.iter().enumerate() {
        let mut s = ObjectState::from_mask(mask, w, h, id);
        s.visibility = scene_visibility(f, k);
        s.velocity = [3.0, 1.0];
        s.confidence = 0.5 + k as f32 / 10.0;
        objects.push(s);
    }
}

/// Checks one line printed by the C or Python example against the scene:
/// `frame=F seq=S skipped=K latency_ms=L objects=N nonzero=Z | id=.. area=.. bbox=[x0,y0,x1,y1) vis=..`.
/// Returns the frame number.
pub fn check_scene_line(line: &str) -> Result<u64, String> {
    let mut parts = line.split(" | ");
    let head = parts.next().unwrap_or_default();
    let field = |s: &str, key: &str| -> Result<String, String> {
        s.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key} in {s:?}"))
    };
    let num = |s: &str, key: &str| -> Result<u64, String> {
        field(s, key)?
            .parse::<u64>()
            .map_err(|e| format!("{key} in {s:?}: {e}"))
    };
    let f = num(head, "frame")?;
    let seq = num(head, "seq")?;
    if f != seq + FRAME_OFFSET {
        return Err(format!("seq {seq} carries frame {f}: {line}"));
    }
    let latency: f64 = field(head, "latency_ms")?
        .parse()
        .map_err(|e| format!("latency_ms: {e}"))?;
    if !(0.0..10_000.0).contains(&latency) {
        return Err(format!("implausible latency {latency}: {line}"));
    }
    let rects = scene_rects(f);
    if num(head, "objects")? != rects.len() as u64 {
        return Err(format!("object count mismatch: {line}"));
    }
    let area_sum: u32 = rects.iter().map(|r| (r.3 - r.1) * (r.4 - r.2)).sum();
    if num(head, "nonzero")? != u64::from(area_sum) {
        return Err(format!(
            "mask nonzero count mismatch (want {area_sum}): {line}"
        ));
    }
    let objs: Vec<&str> = parts.collect();
    if objs.len() != rects.len() {
        return Err(format!("printed {} objects: {line}", objs.len()));
    }
    for (k, (o, r)) in objs.iter().zip(&rects).enumerate() {
        let want_bbox = format!("[{},{},{},{})", r.1, r.2, r.3, r.4);
        let want_area = (r.3 - r.1) * (r.4 - r.2);
        if num(o, "id")? != u64::from(r.0)
            || num(o, "area")? != u64::from(want_area)
            || field(o, "bbox")? != want_bbox
            || field(o, "vis")? != scene_visibility(f, k).name()
        {
            return Err(format!(
                "object {k} mismatch (want id={} area={want_area} bbox={want_bbox} vis={}): {line}",
                r.0,
                scene_visibility(f, k)
            ));
        }
    }
    Ok(f)
}

/// Kills and reaps a child on drop (so a failing test leaves no process).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes the noise frame of publish number `seq` (scratch `mask` and
/// `objs` reused) and checks the number the writer gave it.
pub fn publish_noise(w: &mut ShmWriter, seq: u64, mask: &mut [u8], objs: &mut Vec<ObjectState>) {
    let f = seq + FRAME_OFFSET;
    noise_mask(f, mask);
    objs.clear();
    objs.extend((0..noise_count(f, w.max_objects())).map(|k| noise_object(f, k)));
    let got = w
        .publish(&SlotData {
            frame_number: f,
            capture_ns: noise_capture(f),
            objects: objs,
            mask,
        })
        .expect("publish");
    assert_eq!(got, seq);
}

/// A command that runs `program` on the target: through the emulator in
/// `$VOSD_TEST_RUNNER` (e.g. qemu-aarch64 for the cross-built suite), or
/// directly.
pub fn target_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let runner = std::env::var("VOSD_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(emulator) => {
            let mut cmd = std::process::Command::new(emulator);
            cmd.args(parts).arg(program);
            cmd
        }
        None => std::process::Command::new(program),
    }
}
