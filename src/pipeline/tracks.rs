//! Per-object state over time, for the object table of each published slot:
//! a constant-velocity Kalman filter on each object's centroid, and its
//! visibility (visible, occluded, lost) and confidence.

use vosd_shm::{ObjectState, Visibility};

use super::queue::MaskBuf;

/// A constant-velocity Kalman filter on one axis: state (position,
/// velocity), position measured. Units: pixels and seconds.
#[derive(Clone, Copy, Debug, Default)]
struct AxisFilter {
    p: f32,
    v: f32,
    /// Covariance [[pp, pv], [pv, vv]].
    pp: f32,
    pv: f32,
    vv: f32,
}

/// Process noise: acceleration spectral density, (px/s²)²·s.
const KF_ACCEL: f32 = 10000.0;
/// Measurement noise of a mask centroid, px².
const KF_MEAS: f32 = 4.0;

impl AxisFilter {
    fn start(z: f32) -> Self {
        Self {
            p: z,
            v: 0.0,
            pp: KF_MEAS,
            pv: 0.0,
            vv: 1.0e4,
        }
    }

    fn predict(&mut self, dt: f32) {
        self.p += self.v * dt;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        let q = KF_ACCEL;
        self.pp = pp + 2.0 * dt * pv + dt * dt * vv + q * dt.powi(3) / 3.0;
        self.pv = pv + dt * vv + q * dt * dt / 2.0;
        self.vv = vv + q * dt;
    }

    fn update(&mut self, z: f32) {
        let s = self.pp + KF_MEAS;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let y = z - self.p;
        self.p += kp * y;
        self.v += kv * y;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        self.pp = (1.0 - kp) * pp;
        self.pv = (1.0 - kp) * pv;
        self.vv = vv - kv * pv;
    }
}

/// Per-object state over time: position/velocity filter, visibility,
/// confidence.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// Typical visible area (exponential average over visible frames).
    area_avg: f32,
    axes: [AxisFilter; 2],
    /// Time of the filter's state (CLOCK_MONOTONIC ns); 0 = no track.
    at_ns: u64,
    /// Last time the object had pixels.
    seen_ns: u64,
}

/// Fills object states from a label mask: area, box and centroid from the
/// mask; velocity (px/s) from a constant-velocity Kalman filter on the
/// centroid; visibility `occluded` when the area falls below 30 % of the
/// object's typical area or the object has no pixels, `lost` when it has had
/// none for `lost_after`; confidence = the segmenter's (the memory
/// network's probability) when it gives one, else area / typical area
/// (capped at 1).
/// While out of sight, the centroid is the filter's prediction (where the
/// object is expected back) and the velocity is kept.
pub(super) struct StateTracker {
    tracks: Box<[Track; 256]>,
    lost_after_ns: u64,
}

impl StateTracker {
    /// No tracks yet; an object out of sight for `lost_after_s` is lost.
    pub(super) fn new(lost_after_s: f64) -> Self {
        Self {
            tracks: Box::new([Track::default(); 256]),
            lost_after_ns: (lost_after_s * 1e9) as u64,
        }
    }

    /// Forgets every track (the source started over).
    pub(super) fn reset(&mut self) {
        self.tracks.iter_mut().for_each(|t| *t = Track::default());
    }

    /// Fills `states` (cleared first; at most `max`, no allocation within
    /// its capacity) with the states of the objects of `out`.
    pub(super) fn update(&mut self, out: &MaskBuf, states: &mut Vec<ObjectState>, max: usize) {
        states.clear();
        let (w, h) = (out.mask.width, out.mask.height);
        let now = out.meta.capture_ns;
        for (n, &id) in out.ids.iter().enumerate().take(max) {
            let mut s = ObjectState::from_mask(&out.mask.data, w, h, id);
            let t = &mut self.tracks[id as usize];
            let dt = if t.at_ns > 0 && now > t.at_ns {
                (now - t.at_ns) as f32 / 1e9
            } else {
                0.0
            };
            if s.area == 0 {
                if t.at_ns == 0 {
                    s.visibility = Visibility::Lost;
                } else {
                    t.axes.iter_mut().for_each(|a| a.predict(dt));
                    t.at_ns = now;
                    let gone = now.saturating_sub(t.seen_ns);
                    s.visibility = if gone >= self.lost_after_ns {
                        Visibility::Lost
                    } else {
                        Visibility::Occluded
                    };
                    s.centroid = [t.axes[0].p, t.axes[1].p];
                    s.velocity = [t.axes[0].v, t.axes[1].v];
                }
                s.confidence = 0.0;
            } else {
                if t.at_ns == 0 {
                    t.axes = [
                        AxisFilter::start(s.centroid[0]),
                        AxisFilter::start(s.centroid[1]),
                    ];
                } else {
                    for (a, &z) in t.axes.iter_mut().zip(&s.centroid) {
                        a.predict(dt);
                        a.update(z);
                    }
                }
                let area = s.area as f32;
                if t.area_avg <= 0.0 {
                    t.area_avg = area;
                }
                let ratio = area / t.area_avg;
                if ratio < 0.3 {
                    s.visibility = Visibility::Occluded;
                } else {
                    t.area_avg = 0.8 * t.area_avg + 0.2 * area;
                }
                s.confidence = match out.confidences.get(n) {
                    Some(&c) => c.clamp(0.0, 1.0),
                    None => ratio.min(1.0),
                };
                s.velocity = [t.axes[0].v, t.axes[1].v];
                t.at_ns = now.max(1);
                t.seen_ns = now;
            }
            states.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FrameMeta;
    use vosd_engine::frame::LabelMask;

    #[test]
    fn the_segmenters_confidence_is_published_when_given() {
        let (w, h) = (8usize, 8usize);
        let mut t = StateTracker::new(1.0);
        let mut states = Vec::new();
        let mut out = MaskBuf {
            meta: FrameMeta::default(),
            mask: LabelMask::new(w, h),
            ids: vec![3, 5],
            confidences: vec![0.25, 0.75],
        };
        out.mask.data[0] = 3;
        out.mask.data[63] = 5;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].confidence, 0.25);
        assert_eq!(states[1].confidence, 0.75);
        // None given: the area ratio (1 on a first sighting).
        out.confidences.clear();
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].confidence, 1.0);
    }

    #[test]
    fn state_tracker_velocity_and_visibility() {
        let (w, h) = (60usize, 20usize);
        let mut t = StateTracker::new(0.35);
        let mut states = Vec::new();
        let mut out = MaskBuf {
            meta: FrameMeta::default(),
            mask: LabelMask::new(w, h),
            ids: vec![1],
            confidences: Vec::new(),
        };
        let square = |mask: &mut LabelMask, x0: usize, size: usize| {
            mask.data.fill(0);
            for y in 5..5 + size {
                for x in x0..x0 + size {
                    mask.data[y * w + x] = 1;
                }
            }
        };
        // 2 px per 0.1 s to the right: 20 px/s.
        for k in 0..8u64 {
            square(&mut out.mask, 2 + 2 * k as usize, 6);
            out.meta.capture_ns = k * 100_000_000;
            t.update(&out, &mut states, 8);
            assert_eq!(states[0].visibility, Visibility::Visible);
        }
        let v = states[0].velocity;
        assert!((v[0] - 20.0).abs() < 3.0, "{v:?}");
        assert!(v[1].abs() < 1.0, "{v:?}");
        // Mostly hidden: occluded, low confidence.
        square(&mut out.mask, 18, 2);
        out.meta.capture_ns = 800_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Occluded);
        assert!(states[0].confidence < 0.3);
        // Gone: occluded while younger than lost_after, with the predicted
        // position moving on; then lost.
        out.mask.data.fill(0);
        out.meta.capture_ns = 1_000_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Occluded);
        assert_eq!(states[0].area, 0);
        let expected_x = states[0].centroid[0];
        assert!(expected_x > 20.0, "predicted centroid {expected_x}");
        out.meta.capture_ns = 1_200_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Lost, "0.4 s out of sight");
        // Back in sight: visible again.
        square(&mut out.mask, 26, 6);
        out.meta.capture_ns = 1_300_000_000;
        t.update(&out, &mut states, 8);
        assert_eq!(states[0].visibility, Visibility::Visible);
        // Moving left now: the filter turns the velocity round.
        for k in 0..10u64 {
            square(&mut out.mask, 26 - 2 * k as usize, 6);
            out.meta.capture_ns = 1_400_000_000 + k * 100_000_000;
            t.update(&out, &mut states, 8);
        }
        let v = states[0].velocity;
        assert!((v[0] + 20.0).abs() < 4.0, "{v:?}");
    }

    #[test]
    fn states_follow_the_synthetic_scene() {
        use crate::source::synthetic::{Scene, SyntheticConfig};
        let cfg = SyntheticConfig {
            width: 320,
            height: 240,
            fps: 30.0,
            ..Default::default()
        };
        let scene = Scene::new(&cfg).unwrap();
        let ids = scene.object_ids();
        let mut t = StateTracker::new(2.0);
        let mut states = Vec::new();
        let mut out = MaskBuf {
            meta: FrameMeta::default(),
            mask: LabelMask::new(320, 240),
            ids: ids.clone(),
            confidences: Vec::new(),
        };
        let period_ns = 1_000_000_000 / 30;
        let mut prev: Vec<Option<[f32; 2]>> = vec![None; ids.len()];
        let (mut checked, mut sign_ok, mut rel_err) = (0, 0, 0.0f64);
        let (mut occluded, mut recovered) = (0, 0);
        let mut was_occluded = vec![false; ids.len()];
        for k in 0..300u64 {
            scene.ground_truth(k, &mut out.mask);
            out.meta.capture_ns = k * period_ns;
            t.update(&out, &mut states, 8);
            for (i, s) in states.iter().enumerate() {
                let truth = ObjectState::from_mask(&out.mask.data, 320, 240, ids[i]);
                if s.visibility == Visibility::Occluded {
                    occluded += 1;
                    was_occluded[i] = true;
                } else if s.visibility == Visibility::Visible && was_occluded[i] {
                    recovered += 1;
                    was_occluded[i] = false;
                }
                // True velocity from the exact centroids (visible objects,
                // after the filter's first second).
                if let (Some(p), true) = (prev[i], truth.area > 0) {
                    let v = (truth.centroid[0] - p[0]) * 30.0;
                    if k > 30 && s.visibility == Visibility::Visible && v.abs() > 15.0 {
                        checked += 1;
                        sign_ok += usize::from(v.signum() == s.velocity[0].signum());
                        rel_err += f64::from(((s.velocity[0] - v) / v).abs());
                    }
                }
                prev[i] = (truth.area > 0).then_some(truth.centroid);
            }
        }
        assert!(checked > 100, "only {checked} moving frames checked");
        let sign_rate = sign_ok as f64 / checked as f64;
        let mean_rel = rel_err / checked as f64;
        eprintln!(
            "{checked} moving frames: velocity sign right in {sign_rate:.3}, mean relative error {mean_rel:.3}; {occluded} occluded states, {recovered} recoveries"
        );
        assert!(
            sign_rate > 0.95,
            "velocity sign right in {sign_rate:.2} of frames"
        );
        assert!(
            mean_rel < 0.25,
            "mean relative velocity error {mean_rel:.2}"
        );
        assert!(occluded > 0, "the scene's occlusions were not detected");
        assert!(recovered > 0, "no object came back to visible");
    }
}
