//! `[metrics]`: the demo daemon serves `/metrics`; `promtool check metrics`
//! accepts the exposition and a real Prometheus server scrapes it and
//! sees `vosd_frames_published_total` increase (both SKIP when not
//! installed, unless `VOSD_REQUIRE_PROMETHEUS` is set, as in CI). A port in
//! use is logged and the daemon keeps publishing to shared memory.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::emulated;
use crate::daemon_support::{
    child_stderr, open_reader, read_all, spawn_daemon, unique_shm, wait_exit, write_config,
};
use crate::web_support::{free_addr, http_get, light_config, require_tool, terminate, KillOnDrop};

const REQUIRE: &str = "VOSD_REQUIRE_PROMETHEUS";
const INSTALL: &str = "apt-get install prometheus";

/// A light demo daemon ([`light_config`]) with `[metrics] listen = addr`.
fn daemon_with_metrics(dir: &std::path::Path, shm: &str, addr: SocketAddr) -> KillOnDrop {
    let text = light_config(shm) + &format!("\n[metrics]\nlisten = \"{addr}\"\n");
    spawn_daemon(&write_config(dir, &text), &[])
}

/// Reads until `n` frames were published (fails after 60 s); returns how
/// many were read.
fn read_frames(reader: &mut vosd_shm::ShmReader, n: u64) -> u64 {
    let mut read = 0;
    let t0 = Instant::now();
    while read < n && t0.elapsed() < Duration::from_secs(60) {
        read_all(reader, Duration::from_millis(200), |_| read += 1);
    }
    assert!(read >= n, "only {read} of {n} frames published");
    read
}

/// The value of the sample line `name` (exact name and labels).
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The daemon's `/metrics` body once it answers (it starts after the
/// engine has loaded).
fn scrape(addr: SocketAddr, daemon: &mut KillOnDrop) -> String {
    let t0 = Instant::now();
    loop {
        if let Some((status, body)) = http_get(addr, "/metrics") {
            assert_eq!(status, 200);
            return String::from_utf8(body).expect("UTF-8 exposition");
        }
        if let Some(s) = daemon.0.try_wait().unwrap() {
            panic!("vosd exited ({s}):\n{}", child_stderr(&mut daemon.0));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no /metrics on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vosd_frames_published_total` as Prometheus's query API reports it.
fn query_published(prom: SocketAddr) -> Option<f64> {
    let (status, body) = http_get(prom, "/api/v1/query?query=vosd_frames_published_total")?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_demo_daemon() {
    if emulated() {
        eprintln!("SKIP under emulation: the metrics test needs real-time frames");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("metrics");
    let addr = free_addr();
    let mut daemon = daemon_with_metrics(dir.path(), &shm, addr);
    let mut reader = open_reader(&shm, &mut daemon.0, Duration::from_secs(60));
    let n = read_frames(&mut reader, 5);

    // vosd's own exposition, read by this test's HTTP client.
    let text = scrape(addr, &mut daemon);
    let published = sample(&text, "vosd_frames_published_total").expect(&text);
    assert!(
        published >= n as f64,
        "{published} < {n} frames read\n{text}"
    );
    assert_eq!(sample(&text, "vosd_objects"), Some(3.0), "{text}");
    assert!(sample(&text, "vosd_resident_memory_bytes").is_some_and(|b| b > 1e6));
    assert!(sample(&text, "vosd_capture_to_publish_seconds_count").is_some_and(|c| c > 0.0));
    assert!(text.contains("vosd_backend_info{backend=\""), "{text}");
    assert!(text.contains("vosd_object_visibility{object=\"1\",state=\"visible\"}"));
    assert_eq!(http_get(addr, "/nope").map(|r| r.0), Some(404));

    let Some(promtool) = require_tool("promtool", REQUIRE, INSTALL) else {
        return;
    };
    let Some(prometheus) = require_tool("prometheus", REQUIRE, INSTALL) else {
        return;
    };
    // promtool reads the exposition from stdin.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus server scraping every second.
    let prom_addr = free_addr();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: vosd\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = KillOnDrop(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", yml.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .expect("prometheus"),
    );
    // Two query results, the second higher: Prometheus scraped at least
    // twice while frames were published.
    let t0 = Instant::now();
    let mut first = None;
    let seen = loop {
        let v = query_published(prom_addr);
        match (first, v) {
            (None, Some(v)) => first = Some(v),
            (Some(a), Some(b)) if b > a => break (a, b),
            _ => {}
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus did not see vosd_frames_published_total increase (first {first:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "Prometheus: vosd_frames_published_total {} -> {}",
        seen.0, seen.1
    );
    terminate(&daemon.0);
    let status = wait_exit(&mut daemon.0, Duration::from_secs(30));
    assert!(
        status.success(),
        "{status}\n{}",
        child_stderr(&mut daemon.0)
    );
}

#[test]
fn a_metrics_port_in_use_is_logged_and_publishing_goes_on() {
    if emulated() {
        eprintln!("SKIP under emulation: the metrics test needs real-time frames");
        return;
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("metrics-busy");
    let mut daemon = daemon_with_metrics(dir.path(), &shm, addr);
    let mut reader = open_reader(&shm, &mut daemon.0, Duration::from_secs(60));
    // Frames keep coming after the failed bind (logged before the first).
    read_frames(&mut reader, 10);
    terminate(&daemon.0);
    let status = wait_exit(&mut daemon.0, Duration::from_secs(30));
    let log = child_stderr(&mut daemon.0);
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains(&format!("metrics.listen {addr}: cannot listen")),
        "{log}"
    );
    drop(taken);
}
