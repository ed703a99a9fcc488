//! The Prometheus exposition of a running daemon: [`DaemonMetrics`], a
//! `prometheus-client` collector that reads the pipeline's live counters,
//! the backend status and the objects of the newest published frame at
//! each scrape (docs/operations.md lists the metrics).
//!
//! Nothing is pushed from the pipeline: the counters are the [`Stats`]
//! atomics the stages already update, the latency histogram is the
//! lock-free [`LatencyHistogram`](crate::pipeline::LatencyHistogram) the
//! publish stage feeds, and the objects come from the shared-memory
//! segment, read as any client reads it. A scrape therefore costs the
//! pipeline nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use vosd_engine::backend::BackendHandle;
use vosd_shm::{FrameBuf, ObjectState, ReadStatus, ShmReader, Visibility};

use crate::pipeline::Stats;

/// The content type of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The newest frame's objects, read from the daemon's segment.
#[derive(Debug)]
struct ObjectView {
    shm: String,
    reader: Option<(ShmReader, FrameBuf)>,
}

impl ObjectView {
    /// The objects of the newest published frame (none before the first
    /// frame, or when the segment cannot be read: then it is opened again
    /// at the next scrape).
    fn objects(&mut self) -> &[ObjectState] {
        if self.reader.is_none() {
            if let Ok(r) = ShmReader::open(&self.shm) {
                let buf = r.new_frame_buf();
                self.reader = Some((r, buf));
            }
        }
        let ok = match &mut self.reader {
            Some((r, buf)) => matches!(
                r.read_latest(buf),
                Ok(ReadStatus::Frame { .. } | ReadStatus::Empty | ReadStatus::Ended)
            ),
            None => false,
        };
        if !ok {
            self.reader = None;
        }
        match &self.reader {
            Some((_, buf)) if buf.seq() > 0 => buf.objects(),
            _ => &[],
        }
    }
}

/// Published frames per second between scrapes at least a second apart.
#[derive(Debug)]
struct FpsMeter {
    at: Instant,
    published: u64,
    fps: f64,
}

impl FpsMeter {
    fn update(&mut self, published: u64) -> f64 {
        let dt = self.at.elapsed().as_secs_f64();
        if dt >= 1.0 {
            self.fps = published.saturating_sub(self.published) as f64 / dt;
            self.at = Instant::now();
            self.published = published;
        }
        self.fps
    }
}

/// The collector of a running daemon's metrics.
#[derive(Debug)]
pub struct DaemonMetrics {
    stats: Arc<Stats>,
    backend: Option<BackendHandle>,
    objects: Mutex<ObjectView>,
    fps: Mutex<FpsMeter>,
}

impl DaemonMetrics {
    /// A collector over the pipeline's `stats`, the engine's `backend`
    /// status (none: no backend metrics) and the segment named `shm`.
    pub fn new(stats: Arc<Stats>, backend: Option<BackendHandle>, shm: &str) -> Self {
        let published = stats.published.load(Ordering::Relaxed);
        DaemonMetrics {
            stats,
            backend,
            objects: Mutex::new(ObjectView {
                shm: shm.to_string(),
                reader: None,
            }),
            fps: Mutex::new(FpsMeter {
                at: Instant::now(),
                published,
                fps: 0.0,
            }),
        }
    }

    /// A registry holding this collector alone.
    pub fn into_registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        // Writing to a String cannot fail; say so rather than panic.
        log::warn!("metrics: encoding failed: {e}");
    }
    out
}

/// Encodes one counter.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Encodes one gauge.
fn gauge<N: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

impl Collector for DaemonMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let ld = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let published = ld(&s.published);
        counter(
            &mut enc,
            "vosd_frames_captured",
            "Frames the source delivered",
            ld(&s.captured),
        )?;
        counter(
            &mut enc,
            "vosd_frames_processed",
            "Frames the engine segmented",
            ld(&s.processed),
        )?;
        counter(
            &mut enc,
            "vosd_frames_published",
            "Frames published to shared memory",
            published,
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut m = enc.encode_descriptor(
                "vosd_frames_dropped",
                "Frames a newer one replaced before the next stage took them, by the stage that produced them (capture: at the engine's input; engine: at the publisher's input)",
                None,
                c.metric_type(),
            )?;
            for (stage, v) in [
                ("capture", ld(&s.dropped_capture)),
                ("engine", ld(&s.dropped_engine)),
            ] {
                ConstCounter::new(v).encode(m.encode_family(&[("stage", stage)])?)?;
            }
        }
        counter(
            &mut enc,
            "vosd_capture_errors",
            "Bad frames the source skipped",
            ld(&s.capture_errors),
        )?;
        counter(
            &mut enc,
            "vosd_camera_reconnects",
            "Failed attempts to reopen a lost camera",
            ld(&s.reconnects),
        )?;
        gauge(
            &mut enc,
            "vosd_camera_lost",
            "1 while the camera is lost and being reopened, else 0",
            None,
            i64::from(s.source_down.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut enc,
            "vosd_paused",
            "1 while segmenting and publishing are paused (control socket), else 0",
            None,
            i64::from(s.paused.load(Ordering::Relaxed)),
        )?;
        let fps = self
            .fps
            .lock()
            .map(|mut m| m.update(published))
            .unwrap_or(0.0);
        gauge(
            &mut enc,
            "vosd_fps",
            "Published frames per second since the previous scrape at least 1 s before",
            None,
            fps,
        )?;
        {
            let h = &s.latency_histogram;
            let m = enc.encode_descriptor(
                "vosd_capture_to_publish",
                "Time from a frame's capture to its publication in shared memory",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            let mut m = m;
            m.encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count(), &h.buckets(), None)?;
        }
        if let Some(b) = &self.backend {
            let st = vosd_engine::backend::current(b);
            let backend = st.active.to_string();
            let mut m = enc.encode_descriptor(
                "vosd_backend",
                "The backend running the encoder (label backend: onnxruntime, opencl, cpu)",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[("backend", backend.as_str())])?;
            counter(
                &mut enc,
                "vosd_backend_fallbacks",
                "Switches to tract after a device failure while running",
                u64::from(st.fallbacks),
            )?;
        }
        if let Some(rss) = crate::procfs::resident_bytes() {
            gauge(
                &mut enc,
                "vosd_resident_memory",
                "Resident set size of the daemon (VmRSS)",
                Some(&Unit::Bytes),
                rss,
            )?;
        }
        let Ok(mut view) = self.objects.lock() else {
            return Ok(());
        };
        let objects = view.objects();
        gauge(
            &mut enc,
            "vosd_objects",
            "Objects in the newest published frame",
            None,
            objects.len() as u64,
        )?;
        let g = ConstGauge::new(0i64);
        let mut m = enc.encode_descriptor(
            "vosd_object_visibility",
            "Each object's visibility in the newest published frame: 1 for its state (visible, occluded, lost), 0 for the others",
            None,
            g.metric_type(),
        )?;
        for o in objects {
            let id = o.id.to_string();
            for state in [Visibility::Visible, Visibility::Occluded, Visibility::Lost] {
                let v = i64::from(o.visibility == state);
                ConstGauge::new(v).encode(
                    m.encode_family(&[("object", id.as_str()), ("state", state.name())])?,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vosd_shm::{PublishConfig, ShmWriter, SlotData};

    fn exposition(m: DaemonMetrics) -> String {
        render(&m.into_registry())
    }

    #[test]
    fn counters_and_histogram_after_n_frames() {
        let stats = Arc::new(Stats::new(16));
        for i in 0..7u64 {
            stats.captured.fetch_add(1, Ordering::Relaxed);
            stats.processed.fetch_add(1, Ordering::Relaxed);
            stats.published.fetch_add(1, Ordering::Relaxed);
            stats.latency_histogram.observe_ns(20_000_001 + i);
        }
        stats.dropped_capture.fetch_add(2, Ordering::Relaxed);
        let text = exposition(DaemonMetrics::new(stats, None, "/vosd-test-none"));
        for line in [
            "# TYPE vosd_frames_published_total counter",
            "vosd_frames_published_total 7",
            "vosd_frames_captured_total 7",
            "vosd_frames_processed_total 7",
            "vosd_frames_dropped_total{stage=\"capture\"} 2",
            "vosd_frames_dropped_total{stage=\"engine\"} 0",
            "# TYPE vosd_capture_to_publish_seconds histogram",
            "vosd_capture_to_publish_seconds_bucket{le=\"0.01\"} 0",
            "vosd_capture_to_publish_seconds_bucket{le=\"0.02\"} 0",
            "vosd_capture_to_publish_seconds_bucket{le=\"0.03\"} 7",
            "vosd_capture_to_publish_seconds_bucket{le=\"+Inf\"} 7",
            "vosd_capture_to_publish_seconds_count 7",
            "vosd_camera_lost 0",
            "vosd_objects 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(
            text.contains("\nvosd_capture_to_publish_seconds_sum 0.14"),
            "{text}"
        );
        // Every sample line is a vosd_ name (no stray prefix).
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("vosd_"), "{l}");
        }
    }

    #[test]
    fn objects_and_backend_come_from_the_segment_and_status() {
        let name = format!("/vosd-test-expo-{}", std::process::id());
        let mut w = ShmWriter::create(&PublishConfig::new(name.clone(), 4, 2)).unwrap();
        let objects = [
            ObjectState {
                id: 1,
                visibility: Visibility::Visible,
                ..Default::default()
            },
            ObjectState {
                id: 3,
                visibility: Visibility::Occluded,
                ..Default::default()
            },
        ];
        w.publish(&SlotData {
            frame_number: 1,
            capture_ns: 1,
            objects: &objects,
            mask: &[0, 1, 1, 0, 0, 3, 3, 0],
        })
        .unwrap();
        let backend: BackendHandle = Arc::new(std::sync::Mutex::new(
            vosd_engine::backend::BackendStatus::cpu("test"),
        ));
        let text = exposition(DaemonMetrics::new(
            Arc::new(Stats::new(16)),
            Some(backend),
            &name,
        ));
        for line in [
            "vosd_objects 2",
            "vosd_object_visibility{object=\"1\",state=\"visible\"} 1",
            "vosd_object_visibility{object=\"1\",state=\"occluded\"} 0",
            "vosd_object_visibility{object=\"3\",state=\"occluded\"} 1",
            "vosd_object_visibility{object=\"3\",state=\"lost\"} 0",
            "vosd_backend_info{backend=\"cpu\"} 1",
            "vosd_backend_fallbacks_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        drop(w);
    }
}
