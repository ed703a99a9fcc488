//! ROS 2 topics over Zenoh end to end: `vosd run` with
//! config/demo-zenoh.toml (listening on a free loopback port) publishes;
//! tests/zenoh/subscribe.py, an independent subscriber (eclipse-zenoh and
//! rosbags from PyPI), finds the node by its liveliness tokens, checks the
//! tokens' QoS and type hashes (rosbags' REP-2011 implementation), decodes
//! the samples with rosbags' CDR and writes them out; this test reads the
//! shared-memory ring at the same time and compares, frame by frame:
//!
//! - the decoded Image equals the slot's label mask byte for byte;
//! - each Detection2D box, id and score equal the slot's object state,
//!   and the ObjectStateArray its id, visibility, area, confidence,
//!   centroid and velocity;
//! - the header stamps increase and lie within 50 ms of the capture time
//!   (CLOCK_MONOTONIC, converted with this process's own offset to
//!   CLOCK_REALTIME).
//!
//! Samples are matched to slots by stamp: frames are 33 ms apart and the
//! clock conversions agree to well under a millisecond, so the nearest
//! slot is the frame (the test checks the match is unambiguous).
//!
//! Prints SKIP when Python lacks the packages; `VOSD_REQUIRE_ZENOH=1` (CI)
//! makes that a failure.
#![cfg(feature = "zenoh")]

#[path = "integration/common.rs"]
mod common;
#[path = "integration/daemon_support.rs"]
mod daemon_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::*;
use vosd_shm::{ObjectState, ReadStatus};

/// A slot as the shared-memory reader saw it.
struct Slot {
    capture_ns: u64,
    mask: Vec<u8>,
    objects: Vec<ObjectState>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether python3 has eclipse-zenoh and rosbags; SKIP (or fail under
/// `VOSD_REQUIRE_ZENOH`) when not.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zenoh, rosbags"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "python3 lacks eclipse-zenoh or rosbags (pip install eclipse-zenoh==1.10.2 rosbags==0.11.9)";
        if std::env::var_os("VOSD_REQUIRE_ZENOH").is_some() {
            panic!("VOSD_REQUIRE_ZENOH is set but {msg}");
        }
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC now, ns (this process's own reading).
fn realtime_offset_ns() -> i64 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |id| {
        let t = clock_gettime(id);
        t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64
    };
    let m0 = ns(ClockId::Monotonic);
    let r = ns(ClockId::Realtime);
    let m1 = ns(ClockId::Monotonic);
    r - (m0 + m1) / 2
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// config/demo-zenoh.toml with a test's shm name, socket and port.
fn demo_config(dir: &Path, shm: &str, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("config/demo-zenoh.toml")).unwrap();
    let sock = dir.join("vosd.sock");
    let replaced = text
        .replace("\"/vosd-demo-zenoh\"", &format!("\"{shm}\""))
        .replace("/tmp/vosd-demo-zenoh.sock", sock.to_str().unwrap())
        .replace("tcp/127.0.0.1:7448", &format!("tcp/127.0.0.1:{port}"))
        .replace("stats_interval_s = 5", "stats_interval_s = 1")
        .replace(
            "frame_id = \"camera_optical_frame\"",
            "frame_id = \"camera_optical_frame\"\nros2dds_keys = true",
        );
    assert_ne!(text, replaced);
    write_config(dir, &replaced)
}

fn f64_of(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn demo_publishes_ros2_topics_that_match_shared_memory() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub");
    let shm = unique_shm("zenoh");
    let port = free_port();
    let cfg = demo_config(dir.path(), &shm, port);
    let mut daemon = spawn_daemon(&cfg, &[]);
    let mut reader = open_reader(&shm, &mut daemon, Duration::from_secs(60));
    let mut sub = Command::new("python3")
        .arg(repo().join("tests/zenoh/subscribe.py"))
        .args(["--connect", &format!("tcp/127.0.0.1:{port}")])
        .arg("--out")
        .arg(&out)
        .args(["--masks", "40", "--timeout", "150", "--ros2dds-keys"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");

    // Read every slot while the subscriber runs, then stop the daemon and
    // read to the end marker.
    let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
    let mut buf = reader.new_frame_buf();
    let t0 = Instant::now();
    let mut sub_status = None;
    let mut stopping = false;
    let mut skipped = 0;
    loop {
        match reader
            .wait_next(&mut buf, Duration::from_millis(50))
            .expect("read")
        {
            ReadStatus::Frame { skipped: s, .. } => {
                skipped += s;
                slots.insert(
                    buf.frame_number(),
                    Slot {
                        capture_ns: buf.capture_ns(),
                        mask: buf.mask().to_vec(),
                        objects: buf.objects().to_vec(),
                    },
                );
            }
            ReadStatus::Ended => break,
            ReadStatus::Empty => {}
        }
        if sub_status.is_none() {
            sub_status = sub.try_wait().unwrap();
        }
        if sub_status.is_some() && !stopping {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
            stopping = true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(200),
            "no end after 200 s"
        );
    }
    let offset = realtime_offset_ns();
    let status = wait_exit(&mut daemon, Duration::from_secs(20));
    let log = child_stderr(&mut daemon);
    let sub_out = sub.wait_with_output().unwrap();
    let sub_text = format!(
        "{}{}",
        String::from_utf8_lossy(&sub_out.stdout),
        String::from_utf8_lossy(&sub_out.stderr)
    );
    assert!(status.success(), "vosd failed: {status}\n{log}");
    assert!(
        sub_out.status.success(),
        "subscriber failed ({}):\n{sub_text}\nvosd:\n{log}",
        sub_out.status
    );
    assert!(log.contains("zenoh: publishing /vosd/mask"), "{log}");

    // Type hashes: the tokens carry vosd's, equal to rosbags' REP-2011
    // ones (checked by the subscriber) and to this build's table.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for (rel, ty) in [
        ("mask", vosd::zenoh::type_hash::IMAGE),
        ("detections", vosd::zenoh::type_hash::DETECTION2D_ARRAY),
        ("states", vosd::zenoh::type_hash::OBJECT_STATE_ARRAY),
    ] {
        let ours = vosd::zenoh::type_hash::rihs01(ty, vosd::zenoh::type_hash::TYPES).unwrap();
        assert_eq!(summary["hashes"][rel]["rosbags"], ours.as_str(), "{rel}");
        assert_eq!(summary["hashes"][rel]["token"], ours.as_str(), "{rel}");
    }
    // The status queryable answered with the statistics.
    assert!(
        summary["status"]["published"].as_u64().unwrap_or(0) >= 40,
        "{summary}"
    );
    let tokens = summary["tokens"].as_array().unwrap();
    for kind in ["/NN/", "%vosd%mask/", "%vosd%detections/", "%vosd%states/"] {
        assert!(
            tokens.iter().any(|t| t.as_str().unwrap().contains(kind)),
            "no {kind} token in {tokens:?}"
        );
    }

    // The slot of a stamp: the nearest capture on the ROS clock, which must
    // be unambiguous and within 50 ms. When this reader fell behind the ring
    // (slots skipped), a stamp whose frame it missed has no slot.
    let find = |stamp: i64| -> Option<&Slot> {
        let mut by_dist: Vec<(i64, &Slot)> = slots
            .values()
            .map(|s| ((s.capture_ns as i64 + offset - stamp).abs(), s))
            .collect();
        by_dist.sort_by_key(|(d, _)| *d);
        let (d, slot) = by_dist[0];
        if skipped > 0 && d > 2_000_000 {
            return None;
        }
        assert!(d < 50_000_000, "stamp {stamp}: nearest capture {d} ns away");
        if let Some((d2, _)) = by_dist.get(1) {
            assert!(
                *d2 > d + 10_000_000,
                "stamp {stamp}: ambiguous ({d} / {d2} ns)"
            );
        }
        Some(slot)
    };

    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let (mut masks, mut dets, mut states) = (0, 0, 0);
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let stamp = r["stamp_ns"].as_i64().unwrap();
        assert_eq!(r["frame_id"], "camera_optical_frame");
        let Some(slot) = find(stamp) else {
            continue;
        };
        match r["topic"].as_str().unwrap() {
            "mask" => {
                assert_eq!(
                    (r["width"].as_u64(), r["height"].as_u64()),
                    (Some(320), Some(240))
                );
                assert_eq!(
                    (r["encoding"].as_str(), r["step"].as_u64()),
                    (Some("mono8"), Some(320))
                );
                let data = std::fs::read(out.join(format!("masks/{stamp}.bin"))).unwrap();
                assert!(
                    data == slot.mask,
                    "stamp {stamp}: the Image differs from the slot's mask"
                );
                masks += 1;
            }
            "detections" => {
                let d = r["detections"].as_array().unwrap();
                assert_eq!(d.len(), slot.objects.len(), "stamp {stamp}");
                for (det, o) in d.iter().zip(&slot.objects) {
                    let b = o.bbox;
                    assert_eq!(det["id"], o.id.to_string());
                    assert_eq!(det["stamp_ns"].as_i64(), Some(stamp));
                    assert_eq!(f64_of(det, "cx"), (f64::from(b.x0) + f64::from(b.x1)) / 2.0);
                    assert_eq!(f64_of(det, "cy"), (f64::from(b.y0) + f64::from(b.y1)) / 2.0);
                    assert_eq!(f64_of(det, "sx"), f64::from(b.width()));
                    assert_eq!(f64_of(det, "sy"), f64::from(b.height()));
                    // The score is the f32 confidence widened to f64; the
                    // JSON round trip may move the f64 by an ulp, not the f32.
                    let score = det["scores"][0].as_f64().unwrap();
                    assert_eq!(score as f32, o.confidence);
                }
                dets += 1;
            }
            "states" => {
                let s = r["objects"].as_array().unwrap();
                assert_eq!(s.len(), slot.objects.len(), "stamp {stamp}");
                for (st, o) in s.iter().zip(&slot.objects) {
                    assert_eq!(st["id"].as_u64(), Some(u64::from(o.id)));
                    assert_eq!(
                        st["visibility"].as_u64(),
                        Some(u64::from(o.visibility.as_u8()))
                    );
                    assert_eq!(st["area"].as_u64(), Some(u64::from(o.area)));
                    let f = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
                    assert_eq!(f(&st["confidence"]), o.confidence);
                    assert_eq!([f(&st["centroid"][0]), f(&st["centroid"][1])], o.centroid);
                    assert_eq!([f(&st["velocity"][0]), f(&st["velocity"][1])], o.velocity);
                }
                states += 1;
            }
            other => panic!("topic {other}"),
        }
    }
    eprintln!(
        "{masks} masks, {dets} detection arrays, {states} state arrays matched {} slots ({skipped} skipped by the reader)",
        slots.len()
    );
    assert!(masks >= 30, "{masks} masks matched\n{sub_text}");
    // The same messages on zenoh-bridge-ros2dds's keys (ros2dds_keys).
    let bridged = summary["counts"]["mask_ros2dds"].as_u64().unwrap_or(0);
    assert!(bridged >= 20, "{bridged} masks on vosd/mask\n{sub_text}");
    assert!(dets >= 30 && states >= 30, "{dets} / {states}");
}

/// A client whose router is unreachable: one clear log line, and the
/// pipeline keeps publishing to shared memory (no Python needed).
#[test]
fn unreachable_router_is_logged_and_shared_memory_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("zenoh-norouter");
    let closed = free_port();
    let text = std::fs::read_to_string(demo_config(dir.path(), &shm, free_port())).unwrap();
    let text = text
        .replace("mode = \"peer\"", "mode = \"client\"")
        .replace("tcp/127.0.0.1:7447", &format!("tcp/127.0.0.1:{closed}"));
    let cfg = write_config(dir.path(), &text);
    let mut daemon = spawn_daemon(&cfg, &[]);
    let mut reader = open_reader(&shm, &mut daemon, Duration::from_secs(60));
    let mut buf = reader.new_frame_buf();
    let (mut frames, t0) = (0, Instant::now());
    while frames < 20 && t0.elapsed() < Duration::from_secs(120) {
        if let ReadStatus::Frame { .. } = reader
            .wait_next(&mut buf, Duration::from_millis(100))
            .expect("read")
        {
            frames += 1;
        }
    }
    // The frames the publisher could not send are counted.
    let out = Command::new(vosd_bin())
        .args(["ctl", "--socket"])
        .arg(dir.path().join("vosd.sock"))
        .arg("status")
        .output()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut daemon, Duration::from_secs(20));
    let log = child_stderr(&mut daemon);
    assert!(status.success(), "vosd failed: {status}\n{log}");
    assert_eq!(frames, 20, "shared memory stalled without a router\n{log}");
    let dropped = reply["dropped_tap"].as_u64().unwrap_or(0);
    assert!(dropped >= 20, "dropped_tap {dropped} in {reply}");
    let line = log
        .lines()
        .find(|l| l.contains("zenoh: cannot open the session"))
        .unwrap_or_else(|| panic!("no log line about the router\n{log}"));
    assert!(
        line.contains(&format!("tcp/127.0.0.1:{closed}")) && line.contains("shared memory"),
        "{line}"
    );
}
