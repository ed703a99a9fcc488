//! `vosd view`: its page, opened by headless Chromium, shows the demo
//! daemon's objects in their overlay colours (SKIP without Chromium unless
//! `VOSD_REQUIRE_CHROMIUM` is set, as in CI); its picture and state are
//! those of the ring; a daemon that stops, restarts or is killed does not
//! end it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{emulated, target_command};
use crate::daemon_support::{
    open_reader, read_all, spawn_daemon, unique_shm, vosd_bin, wait_exit, write_config,
};
use crate::web_support::{free_addr, http_get, light_config, require_tool, terminate, KillOnDrop};
use vosd::view::render::color;

/// A light demo daemon ([`light_config`]) publishing to `shm`, once it
/// has published.
fn start_daemon(dir: &std::path::Path, shm: &str) -> KillOnDrop {
    let text = light_config(shm);
    let mut d = spawn_daemon(&write_config(dir, &text), &[]);
    let mut r = open_reader(shm, &mut d.0, Duration::from_secs(60));
    let mut n = 0;
    let t0 = Instant::now();
    while n == 0 && t0.elapsed() < Duration::from_secs(60) {
        read_all(&mut r, Duration::from_millis(200), |_| n += 1);
    }
    assert!(n > 0, "the daemon published nothing");
    d
}

/// `vosd view --shm shm --listen addr`, with its log in `log`.
fn start_view(shm: &str, addr: SocketAddr, log: &std::path::Path) -> KillOnDrop {
    let mut cmd = target_command(vosd_bin());
    cmd.args(["view", "--shm", shm, "--listen", &addr.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    KillOnDrop(cmd.spawn().expect("spawn vosd view"))
}

/// `/state.json` once `ok` holds for it (polled; fails after 60 s or if
/// the view exits).
fn state_when(
    addr: SocketAddr,
    view: &mut KillOnDrop,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    let mut last = serde_json::Value::Null;
    loop {
        assert!(view.0.try_wait().unwrap().is_none(), "vosd view exited");
        if let Some((200, body)) = http_get(addr, "/state.json") {
            last = serde_json::from_slice(&body).expect("state.json is JSON");
            if ok(&last) {
                return last;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: {last}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pixels of `rgb` (3 bytes a pixel) within 40 per channel of `c`.
fn count_color(rgb: &[u8], c: [u8; 3]) -> usize {
    rgb.chunks_exact(3)
        .filter(|p| p.iter().zip(c).all(|(&a, b)| a.abs_diff(b) <= 40))
        .count()
}

/// Ids of the objects with at least `min_area` mask pixels in a state.
fn big_objects(state: &serde_json::Value, min_area: u64) -> Vec<u32> {
    state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["area"].as_u64().unwrap() >= min_area)
        .map(|o| o["id"].as_u64().unwrap() as u32)
        .collect()
}

/// Decodes a PNG screenshot to RGB bytes.
fn png_rgb(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Rgb => buf,
        other => panic!("screenshot colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}

#[test]
fn chromium_sees_the_demo_objects_in_their_colours() {
    if emulated() {
        eprintln!("SKIP under emulation: the view test needs real-time frames");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("view");
    let _daemon = start_daemon(dir.path(), &shm);
    let addr = free_addr();
    let mut view = start_view(&shm, addr, &dir.path().join("view.log"));
    let state = state_when(addr, &mut view, "objects", |s| {
        s["seq"].as_u64() > Some(0) && s["objects"].as_array().is_some_and(|o| o.len() == 3)
    });
    assert!(
        state["status"].as_str().unwrap().starts_with("reading"),
        "{state}"
    );

    // The picture itself (decoded here): every sizeable object in its colour.
    let (status, jpeg) = http_get(addr, "/frame.jpg").unwrap();
    assert_eq!(status, 200);
    let after = state_when(addr, &mut view, "state", |_| true);
    let pic = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(pic.dimensions(), (320, 240));
    for id in big_objects(&state, 300)
        .into_iter()
        .filter(|id| big_objects(&after, 300).contains(id))
    {
        let n = count_color(pic.as_raw(), color(id));
        assert!(
            n >= 100,
            "object {id}: {n} pixels of its colour in frame.jpg"
        );
    }
    let page = http_get(addr, "/").unwrap();
    assert!(String::from_utf8_lossy(&page.1).contains("frame.jpg"));

    let Some(chromium) = require_tool(
        "chromium",
        "VOSD_REQUIRE_CHROMIUM",
        "apt-get install chromium",
    ) else {
        return;
    };
    let shot = dir.path().join("view.png");
    let before = state_when(addr, &mut view, "state", |_| true);
    let mut browser = KillOnDrop(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1100,560",
                "--virtual-time-budget=2000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("chromium").display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("http://{addr}/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium"),
    );
    let status = wait_exit(&mut browser.0, Duration::from_secs(90));
    assert!(status.success() && shot.is_file(), "chromium: {status}");
    let after = state_when(addr, &mut view, "state", |_| true);
    let (w, h, rgb) = png_rgb(&shot);
    assert_eq!((w, h), (1100, 560));
    // Objects large in both states around the screenshot; the page shows
    // the picture at twice its size.
    let ids: Vec<u32> = big_objects(&before, 300)
        .into_iter()
        .filter(|id| big_objects(&after, 300).contains(id))
        .collect();
    assert!(!ids.is_empty(), "no sizeable object: {before} {after}");
    for id in ids {
        let n = count_color(&rgb, color(id));
        assert!(
            n >= 400,
            "object {id}: {n} pixels of its colour in the screenshot"
        );
    }
    if let Some(keep) = std::env::var_os("VOSD_VIEW_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn the_view_outlives_its_daemon() {
    if emulated() {
        eprintln!("SKIP under emulation: the view test needs real-time frames");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shm = unique_shm("view-restart");
    let addr = free_addr();
    // The view starts first: it waits for the segment.
    let mut view = start_view(&shm, addr, &dir.path().join("view.log"));
    state_when(addr, &mut view, "waiting", |s| {
        s["status"]
            .as_str()
            .is_some_and(|t| t.starts_with("waiting for"))
    });
    let mut first = start_daemon(dir.path(), &shm);
    let pid = first.0.id();
    state_when(addr, &mut view, "frames", |s| s["seq"].as_u64() > Some(0));
    // A clean stop: the end marker.
    terminate(&first.0);
    assert!(wait_exit(&mut first.0, Duration::from_secs(30)).success());
    state_when(addr, &mut view, "ended", |s| {
        s["status"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("(pid {pid}) ended")))
    });
    // A new daemon on the same name is found again.
    let mut second = start_daemon(dir.path(), &shm);
    let pid2 = second.0.id();
    state_when(addr, &mut view, "second daemon", |s| {
        s["seq"].as_u64() > Some(0)
            && s["status"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("pid {pid2}")))
    });
    // Killed without an end marker: the view says so and keeps serving.
    second.0.kill().unwrap();
    second.0.wait().unwrap();
    state_when(addr, &mut view, "gone", |s| {
        s["status"]
            .as_str()
            .is_some_and(|t| t.contains("gone without ending"))
    });
    assert_eq!(http_get(addr, "/frame.jpg").map(|r| r.0), Some(200));
    let _ = rustix::shm::unlink(shm.as_str());
    terminate(&view.0);
    let status = wait_exit(&mut view.0, Duration::from_secs(10));
    assert!(status.success(), "vosd view: {status}");
}

#[test]
fn bad_view_arguments_are_named() {
    let out = target_command(vosd_bin())
        .args(["view", "--shm", "no-slash", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--shm") && err.contains("no-slash"), "{err}");
    let out = target_command(vosd_bin())
        .args(["view", "--listen", "localhost"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--listen"), "{err}");
    // A port in use: said at once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = target_command(vosd_bin())
        .args(["view", "--shm", "/vosd-test-none", "--listen", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--listen {addr}: cannot serve there")),
        "{err}"
    );
}
