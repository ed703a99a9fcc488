//! `vosd run`: the daemon. Opens the source, loads the engine, creates the
//! shared-memory segment, runs the [`Pipeline`] and supervises it: signals,
//! periodic statistics, systemd notifications (READY once the first frame is
//! published, STATUS, WATCHDOG only while frames flow).

pub mod notify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::DaemonConfig;
use crate::pipeline::{Pipeline, Segmenter, StatsSnapshot, Summary};
use vosd_engine::discover::{Clock, Discovery};
use vosd_engine::engine::Tracker;
use vosd_shm::{monotonic_ns, ShmWriter};

pub use notify::Notifier;

/// Registers SIGTERM, SIGINT and SIGHUP to raise `stop`; a second signal
/// while stopping exits at once with status 1.
pub fn install_signal_handlers(stop: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        // Order matters: the conditional exit checks the flag before the
        // plain handler raises it, so the first signal only raises it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .with_context(|| format!("cannot install the handler of signal {sig}"))?;
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("cannot install the handler of signal {sig}"))?;
    }
    Ok(())
}

/// One statistics line.
pub fn stats_line(now: &StatsSnapshot, prev: &StatsSnapshot) -> String {
    let (cap_fps, pub_fps) = now.rates_since(prev);
    format!(
        "{}captured {} ({cap_fps:.1} fps), processed {}, published {} ({pub_fps:.1} fps), dropped {} at engine input + {} at publish input, \
         capture errors {}, reconnection attempts {}, latency p50 {:.1} ms p99 {:.1} ms",
        if now.source_down {
            "CAMERA LOST, reconnecting; "
        } else {
            ""
        },
        now.captured,
        now.processed,
        now.published,
        now.dropped_capture,
        now.dropped_engine,
        now.capture_errors,
        now.reconnects,
        now.latency_p50_ms,
        now.latency_p99_ms
    )
}

/// Runs the daemon until a signal, the end of the source, a fatal error or
/// `pipeline.max_frames`. `stop` is raised by the signal handlers. The
/// configuration needs its `[source]` and `[publish]` tables.
pub fn run(cfg: &DaemonConfig, stop: Arc<AtomicBool>, notifier: &Notifier) -> Result<Summary> {
    let (source_cfg, publish) = (cfg.require_source()?, cfg.require_publish()?);
    notifier.notify("STATUS=opening the source");
    let source = crate::source::open(source_cfg, stop.clone()).context("[source]")?;
    let (w, h) = source.size();
    log::info!("source: {}", source.describe());

    notifier.notify("STATUS=loading the engine");
    let t0 = Instant::now();
    let tracker = Tracker::new(&cfg.engine, w, h).context("[engine]")?;
    log::info!(
        "engine: {} at {}x{}, loaded in {:.2} s",
        tracker.model_path().display(),
        cfg.engine.size[0],
        cfg.engine.size[1],
        t0.elapsed().as_secs_f64()
    );
    let (mask_w, mask_h) = (
        u32::try_from(w).context("[publish]: frame width")?,
        u32::try_from(h).context("[publish]: frame height")?,
    );
    let writer = ShmWriter::create(&publish.to_config(mask_w, mask_h)).context("[publish]")?;
    log::info!(
        "publishing to shm '{}' ({} bytes, {} slots, {}x{} masks, mode {:#o})",
        writer.name(),
        writer.size_bytes(),
        writer.slot_count(),
        w,
        h,
        publish.mode
    );
    let shm_name = writer.name().to_string();
    let backend = tracker.encoder().backend_handle();
    log::info!(
        "backend: {}",
        vosd_engine::backend::current(&backend).describe()
    );
    let segmenter: Box<dyn Segmenter> = match &cfg.discover {
        Some(d) => {
            log::info!(
                "discover: unsupervised mode: moving objects get ids by themselves (up to {}, after {} frames in motion{}; lost after {} s{}{}{}{}{}); the source's first-frame objects are not used",
                d.max_objects,
                d.min_persistence,
                if d.from_second_frame { ", from the second frame" } else { "" },
                d.lost_after_s,
                if d.extend_objects { "; regions moving with an object extend it" } else { "" },
                if d.trim_to_motion { "; new masks trimmed to the motion" } else { "" },
                match d.prompt {
                    vosd_engine::config::DiscoverPrompt::Box => "",
                    vosd_engine::config::DiscoverPrompt::Objectness => "; the objectness head confirms regions and gives their masks",
                },
                if d.grow_to_objectness { "; masks grown over the head's object cells" } else { "" },
                if d.objectness_proposals { "; the head's moving components are candidates" } else { "" },
            );
            Box::new(Discovery::new(tracker, d, Clock::Wall, w, h).context("[discover]")?)
        }
        None => Box::new(tracker),
    };
    let taps = crate::zenoh::taps(cfg.zenoh.as_ref(), w, h, publish.max_objects as usize)?;
    let pipeline =
        Pipeline::start_with_taps(source, segmenter, writer, &cfg.pipeline, stop.clone(), taps)?;
    let control = if cfg.control.socket.as_os_str().is_empty() {
        None
    } else {
        let ctx = crate::control::ControlContext {
            pipeline: pipeline.control(),
            stats: pipeline.stats().clone(),
            shm_name: shm_name.clone(),
            frame_size: (w, h),
            backend: backend.clone(),
        };
        match crate::control::ControlServer::start(&cfg.control, ctx) {
            Ok(c) => Some(c),
            Err(e) => {
                // Nothing half-started stays behind: stop the pipeline.
                stop.store(true, Ordering::SeqCst);
                let _ = pipeline.join();
                return Err(e.context("[control]"));
            }
        }
    };
    let metrics = start_metrics(cfg, &pipeline, &shm_name, &backend);
    let summary = supervise(
        pipeline,
        cfg.pipeline.stats_interval_s,
        &stop,
        notifier,
        Some(&backend),
    );
    if let Some(c) = control {
        c.stop();
    }
    if let Some(m) = metrics {
        m.stop();
    }
    summary
}

/// Starts the `[metrics]` endpoint when configured. An address that cannot
/// be bound is logged and the daemon runs on without metrics: shared
/// memory matters more than a scrape target.
fn start_metrics(
    cfg: &DaemonConfig,
    pipeline: &Pipeline,
    shm_name: &str,
    backend: &vosd_engine::backend::BackendHandle,
) -> Option<crate::metrics::MetricsServer> {
    // Checked when the configuration was loaded.
    let addr = cfg.metrics.address().ok().flatten()?;
    let collector = crate::metrics::DaemonMetrics::new(
        pipeline.stats().clone(),
        Some(backend.clone()),
        shm_name,
    );
    match crate::metrics::MetricsServer::start(addr, collector) {
        Ok(m) => {
            log::info!("metrics: serving http://{}/metrics", m.local_addr());
            Some(m)
        }
        Err(e) => {
            log::error!(
                "metrics.listen {addr}: cannot listen ({e}): running without metrics (is another process on that port? pick another in [metrics] listen)"
            );
            None
        }
    }
}

/// The service loop around a started pipeline: polls every 20 ms. With a
/// `backend` handle, the stats line and STATUS name the backend in use.
pub fn supervise(
    pipeline: Pipeline,
    stats_interval_s: f64,
    stop: &AtomicBool,
    notifier: &Notifier,
    backend: Option<&vosd_engine::backend::BackendHandle>,
) -> Result<Summary> {
    let backend_note = || {
        backend
            .map(|b| {
                let s = vosd_engine::backend::current(b);
                if s.fallbacks > 0 {
                    format!(", backend {} (fell back to tract)", s.active)
                } else {
                    format!(", backend {}", s.active)
                }
            })
            .unwrap_or_default()
    };
    let stats = pipeline.stats().clone();
    let mut ready = false;
    let first = stats.snapshot();
    let mut prev = first;
    let mut last_stats = Instant::now();
    let interval = (stats_interval_s > 0.0).then(|| Duration::from_secs_f64(stats_interval_s));
    // STATUS at least every 5 s under systemd, even with logging off.
    let status_every = interval
        .unwrap_or(Duration::from_secs(5))
        .min(Duration::from_secs(5));
    let mut last_status = Instant::now();
    let mut status_prev = prev;
    let watchdog = notifier.watchdog();
    let mut last_ping = Instant::now();
    let mut pinged_publish = 0u64;
    while !stop.load(Ordering::Relaxed) && !pipeline.finished() {
        std::thread::sleep(Duration::from_millis(20));
        let published = stats.published.load(Ordering::Acquire);
        if !ready && published > 0 {
            ready = true;
            log::info!("first frame published: ready");
            notifier.notify("READY=1\nSTATUS=running: first frame published");
        }
        if let Some(wd) = watchdog {
            // Ping only while frames flow: a stalled pipeline lets systemd's
            // watchdog fire and restart the service. A lost camera is the
            // exception: the capture stage is reopening it with back-off,
            // which a restart would not do better.
            let last_ns = stats.last_publish_ns.load(Ordering::Relaxed);
            let fresh =
                last_ns > 0 && monotonic_ns().saturating_sub(last_ns) < wd.as_nanos() as u64 / 2;
            let flowing = published > pinged_publish && fresh;
            let reconnecting = stats.source_down.load(Ordering::Relaxed);
            // Paused on request: nothing is published, and that is fine.
            let paused = stats.paused.load(Ordering::Relaxed);
            if (flowing || reconnecting || paused) && last_ping.elapsed() >= wd / 4 {
                notifier.notify("WATCHDOG=1");
                last_ping = Instant::now();
                pinged_publish = published;
            }
        }
        if let Some(iv) = interval {
            if last_stats.elapsed() >= iv {
                let now = stats.snapshot();
                log::info!("{}{}", stats_line(&now, &prev), backend_note());
                prev = now;
                last_stats = Instant::now();
            }
        }
        if notifier.enabled() && last_status.elapsed() >= status_every {
            let now = stats.snapshot();
            let (_, fps) = now.rates_since(&status_prev);
            notifier.notify(&format!(
                "STATUS={}{fps:.1} fps, {} published, {} dropped, latency p50 {:.0} ms p99 {:.0} ms{}",
                if now.source_down {
                    "camera lost, reconnecting; "
                } else {
                    ""
                },
                now.published,
                now.dropped(),
                now.latency_p50_ms,
                now.latency_p99_ms,
                backend_note()
            ));
            status_prev = now;
            last_status = Instant::now();
        }
    }
    let why = if stop.load(Ordering::Relaxed) {
        "stopping"
    } else {
        "pipeline finished"
    };
    log::info!("{why}: draining the stages");
    notifier.notify("STOPPING=1\nSTATUS=stopping");
    let t = Instant::now();
    let summary = pipeline.join()?;
    log::info!(
        "stopped in {:.0} ms; totals: {}",
        t.elapsed().as_secs_f64() * 1e3,
        stats_line(&summary.stats, &first)
    );
    Ok(summary)
}
