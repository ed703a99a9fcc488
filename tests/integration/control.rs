//! The control socket against a running daemon (`vosd run` in a child
//! process, synthetic source with three objects): every request, the error
//! cases, fuzzed lines, an object removed and added back mid-stream, a
//! correction that moves the next frames' masks, pause/resume, client and
//! size caps, and the socket file removed at stop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vosd::control::protocol::encode_rle;
use vosd::source::synthetic::{Scene, SyntheticConfig};
use vosd_engine::frame::LabelMask;
use vosd_shm::{ReadStatus, ShmReader};

use crate::daemon_support::*;

/// The control tests need a daemon running in real time: commands apply to
/// the newest frame and the tests check the frames right after. Under
/// emulation the engine is ~30× slower, so the mask a test sends refers to
/// a frame long gone by the time it applies. The protocol and parser tests
/// (`src/control/protocol.rs`) still run there.
fn skip_under_emulation() -> bool {
    if crate::common::emulated() {
        eprintln!("SKIP under emulation: the control tests need real-time frames");
        return true;
    }
    false
}

struct Daemon {
    child: crate::common::KillOnDrop,
    socket: PathBuf,
    shm: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let shm = unique_shm(tag);
        let socket = dir.path().join("control.sock");
        let text = config_text(&shm, 15.0, 0, "")
            + &format!(
                "\n[control]\nsocket = \"{}\"\nmax_clients = 3\nmax_request_bytes = 65536\n",
                socket.display()
            );
        let cfg = write_config(dir.path(), &text);
        let mut child = spawn_daemon(&cfg, &[]);
        let _ = open_reader(&shm, &mut child, Duration::from_secs(30));
        let t0 = Instant::now();
        while !socket.exists() {
            assert!(t0.elapsed() < Duration::from_secs(30), "no control socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        let d = Daemon {
            child,
            socket,
            shm,
            _dir: dir,
        };
        // Objects are known once the first frame is published.
        let _ = d.latest(u64::MAX);
        d
    }

    fn connect(&self) -> Client {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// The latest published frame (waiting for one newer than `after`).
    fn latest(&self, after: u64) -> (u64, LabelMask, Vec<u32>) {
        let mut r = ShmReader::open(&self.shm).unwrap();
        let mut buf = r.new_frame_buf();
        let t0 = Instant::now();
        loop {
            assert!(t0.elapsed() < Duration::from_secs(20), "no new frame");
            if let Ok(ReadStatus::Frame { .. }) = r.read_latest(&mut buf) {
                if buf.frame_number() > after || after == u64::MAX {
                    let mask = LabelMask {
                        width: buf.width() as usize,
                        height: buf.height() as usize,
                        data: buf.mask().to_vec(),
                    };
                    let ids = buf.objects().iter().map(|o| o.id).collect();
                    return (buf.frame_number(), mask, ids);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) -> PathBuf {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_exit(&mut self.child, Duration::from_secs(15));
        let log = child_stderr(&mut self.child);
        assert!(status.success(), "{status}\n{log}");
        self.socket.clone()
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn send(&mut self, line: &str) -> Value {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"))
    }

    fn ok(&mut self, line: &str) -> Value {
        let r = self.send(line);
        assert_eq!(r["ok"], json!(true), "{line} -> {r}");
        r
    }

    fn refused(&mut self, line: &str, why: &str) {
        let r = self.send(line);
        assert_eq!(r["ok"], json!(false), "{line} -> {r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(why), "{line} -> {e}");
    }
}

fn scene() -> Scene {
    Scene::new(&SyntheticConfig {
        width: 320,
        height: 240,
        fps: 15.0,
        seed: 1,
        objects: 3,
        frames: 0,
        noise: 4,
    })
    .unwrap()
}

fn rle_line(cmd: &str, id: u8, mask: &LabelMask, mask_id: u8) -> String {
    let rle = encode_rle(mask, mask_id);
    json!({"cmd": cmd, "object": id, "rle": {"size": rle.size, "counts": rle.counts}}).to_string()
}

fn area(mask: &LabelMask, id: u8) -> usize {
    mask.data.iter().filter(|&&v| v == id).count()
}

#[test]
fn objects_are_removed_added_and_corrected_mid_stream() {
    let _cpu = crate::common::cpu_heavy();
    if skip_under_emulation() {
        return;
    }
    let mut d = Daemon::start("ctl-objects");
    let mut c = d.connect();
    let scene = scene();

    let s = c.ok(r#"{"v":1,"id":"s1","cmd":"status"}"#);
    assert_eq!(s["id"], json!("s1"));
    assert_eq!(s["paused"], json!(false));
    // backend = "auto" (the default) runs ONNX Runtime where its library
    // is found (CI), an OpenCL GPU where there is one, and otherwise keeps
    // tract and says why.
    assert!(
        matches!(
            s["backend"].as_str(),
            Some("cpu" | "onnxruntime" | "opencl")
        ),
        "{s}"
    );
    assert_eq!(s["backend_fallbacks"], json!(0));
    let detail = s["backend_detail"].as_str().unwrap();
    assert!(
        detail.contains("auto: ") || detail.contains("self-test passed"),
        "{s}"
    );
    assert!(s["fps"].as_f64().is_some_and(|f| f >= 0.0), "{s}");
    let ids: Vec<u64> = s["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{s}");

    // Remove object 2: it leaves the masks and the states.
    c.ok(r#"{"cmd":"remove","object":2}"#);
    let (n, mask, ids) = d.latest(d.latest(u64::MAX).0 + 2);
    assert_eq!(area(&mask, 2), 0, "object 2 still in frame {n}");
    assert!(!ids.contains(&2), "{ids:?}");
    c.refused(r#"{"cmd":"remove","object":2}"#, "not tracked");

    // Add it back from the true mask of the newest frame: it is tracked
    // again in the frames after.
    let (n, _, _) = d.latest(u64::MAX);
    let mut gt = LabelMask::default();
    scene.ground_truth(n + 1, &mut gt);
    c.ok(&rle_line("add", 2, &gt, 2));
    c.refused(&rle_line("add", 2, &gt, 2), "already tracked");
    let mut ious = Vec::new();
    // The command was applied to a frame at most two past the newest
    // published one (one in the engine, one queued for publishing).
    let mut after = d.latest(u64::MAX).0 + 2;
    for _ in 0..10 {
        let (k, mask, ids) = d.latest(after);
        assert!(ids.contains(&2), "frame {k}: {ids:?}");
        scene.ground_truth(k, &mut gt);
        ious.push(iou(&mask.data, &gt, 2));
        after = k;
    }
    let mean = ious.iter().sum::<f64>() / ious.len() as f64;
    assert!(mean > 0.5, "object 2 after re-adding: IoU {ious:?}");

    // Correct object 1 to a square in the top-left corner: the next frames
    // put object 1 there.
    let mut square = LabelMask::new(320, 240);
    for y in 10..50 {
        for x in 10..50 {
            square.data[y * 320 + x] = 1;
        }
    }
    c.ok(&rle_line("correct", 1, &square, 1));
    let (_, mask, _) = d.latest(d.latest(u64::MAX).0 + 3);
    let inside = (10..50)
        .flat_map(|y| (10..50).map(move |x| (x, y)))
        .filter(|&(x, y)| mask.data[y * 320 + x] == 1)
        .count();
    assert!(
        inside > 800,
        "object 1 covers {inside} of the 1600 corrected pixels"
    );

    // Remove all: empty masks.
    c.ok(r#"{"cmd":"remove_all"}"#);
    let (_, mask, ids) = d.latest(d.latest(u64::MAX).0 + 2);
    assert!(mask.data.iter().all(|&v| v == 0) && ids.is_empty());
    // A box alone starts tracking again (the box prompt derives the mask).
    scene.ground_truth(d.latest(u64::MAX).0 + 1, &mut gt);
    let b = vosd_shm::ObjectState::from_mask(&gt.data, 320, 240, 3).bbox;
    let line = json!({"cmd": "add", "object": 3,
        "box": [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0]});
    c.ok(&line.to_string());
    let (k, mask, ids) = d.latest(d.latest(u64::MAX).0 + 2);
    assert_eq!(ids, vec![3]);
    scene.ground_truth(k, &mut gt);
    let j = iou(&mask.data, &gt, 3);
    assert!(j > 0.5, "object 3 from its box: IoU {j:.2} in frame {k}");
    drop(c);
    let socket = d.stop();
    assert!(!socket.exists(), "socket file left at stop");
}

#[test]
fn pause_resume_errors_caps_and_fuzz() {
    if skip_under_emulation() {
        return;
    }
    let mut d = Daemon::start("ctl-errors");
    let mut c = d.connect();

    // Pause: nothing is published; resume: frames flow again.
    c.ok(r#"{"cmd":"pause"}"#);
    let r = ShmReader::open(&d.shm).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = r.latest_seq();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(r.latest_seq(), before, "published while paused");
    assert_eq!(c.ok(r#"{"cmd":"status"}"#)["paused"], json!(true));
    c.refused(r#"{"cmd":"add","object":4,"box":[0,0,10,10]}"#, "paused");
    c.ok(r#"{"cmd":"resume"}"#);
    std::thread::sleep(Duration::from_millis(700));
    assert!(r.latest_seq() > before, "no frames after resume");

    // Requests that are refused, each with a reason.
    let mut small = LabelMask::new(32, 24);
    small.data[5] = 1;
    for (line, why) in [
        ("{", "not JSON"),
        (r#"{"cmd":"fly"}"#, "unknown cmd"),
        (r#"{"cmd":"remove","object":9}"#, "not tracked"),
        (
            r#"{"cmd":"correct","object":9,"box":[0,0,5,5]}"#,
            "not tracked",
        ),
        (
            r#"{"cmd":"add","object":1,"box":[0,0,5,5]}"#,
            "already tracked",
        ),
        (
            r#"{"cmd":"add","object":5,"box":[300,200,50,50]}"#,
            "leaves the 320x240 frame",
        ),
        (
            r#"{"cmd":"add","object":5,"mask_png":"/nonexistent.png"}"#,
            "/nonexistent.png",
        ),
        (&rle_line("add", 5, &small, 1), "not the frame size"),
        (
            r#"{"cmd":"add","object":5,"rle":{"size":[320,240],"counts":[5]}}"#,
            "cover 5",
        ),
    ] {
        c.refused(line, why);
    }
    // max_objects = 4 in the engine: a fifth object is refused.
    let mut gt = LabelMask::default();
    scene().ground_truth(d.latest(u64::MAX).0, &mut gt);
    c.ok(&rle_line("add", 4, &gt, 1));
    c.refused(&rle_line("add", 5, &gt, 2), "max_objects is 4");

    // Fuzz: random bytes and mutated requests get a reply each; the
    // daemon keeps publishing.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seed = r#"{"cmd":"correct","object":1,"box":[10,10,20,20]}"#;
    for i in 0..200 {
        let mut line: Vec<u8> = if i % 2 == 0 {
            (0..1 + next() % 80).map(|_| next() as u8).collect()
        } else {
            let mut b = seed.as_bytes().to_vec();
            let at = next() as usize % b.len();
            b[at] = next() as u8;
            b
        };
        line.retain(|&b| b != b'\n');
        c.writer.write_all(&line).unwrap();
        c.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        c.reader.read_line(&mut reply).unwrap();
        let v: Value = serde_json::from_str(&reply).expect("a JSON reply to every line");
        assert!(v["ok"].is_boolean());
    }
    let seq = r.latest_seq();
    std::thread::sleep(Duration::from_millis(500));
    assert!(r.latest_seq() > seq, "the daemon stopped publishing");

    // Caps: a line over max_request_bytes is refused and the connection
    // closed; clients beyond max_clients are turned away.
    let mut big = d.connect();
    let huge = vec![b'x'; 70_000];
    big.writer.write_all(&huge).unwrap();
    let mut reply = String::new();
    big.reader.read_line(&mut reply).unwrap();
    assert!(reply.contains("longer than 65536 bytes"), "{reply}");
    // Let the server's thread for that client finish.
    std::thread::sleep(Duration::from_millis(300));
    let mut others: Vec<Client> = (0..2).map(|_| d.connect()).collect();
    for o in &mut others {
        o.ok(r#"{"cmd":"status"}"#);
    }
    let mut extra = d.connect();
    let mut reply = String::new();
    extra.reader.read_line(&mut reply).unwrap();
    assert!(reply.contains("too many clients"), "{reply}");
    // A silent client does not block the others or the pipeline.
    c.ok(r#"{"cmd":"status"}"#);
    drop((c, big, others, extra));
    d.stop();
}

#[test]
fn ctl_command_line_client() {
    if skip_under_emulation() {
        return;
    }
    let mut d = Daemon::start("ctl-cli");
    let run = |args: &[&str]| {
        crate::common::target_command(vosd_bin())
            .arg("ctl")
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], json!(true));
    let out = run(&["remove", "--object", "3"]);
    assert!(out.status.success());
    let out = run(&["remove", "--object", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not tracked"));
    // A mask PNG is read by ctl and sent inline.
    let png = d._dir.path().join("obj.png");
    let mut gt = LabelMask::default();
    scene().ground_truth(d.latest(u64::MAX).0, &mut gt);
    let only3 = LabelMask {
        width: gt.width,
        height: gt.height,
        data: gt
            .data
            .iter()
            .map(|&v| if v == 3 { 255 } else { 0 })
            .collect(),
    };
    vosd_engine::imageio::save_mask(&png, &only3).unwrap();
    let out = run(&["add", "--object", "3", "--mask", png.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["add", "--object", "6", "--box", "1,2,x,4"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--box"));
    let bogus = Path::new("/nonexistent/vosd.sock");
    let out = crate::common::target_command(vosd_bin())
        .args(["ctl", "--socket"])
        .arg(bogus)
        .arg("status")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    d.stop();
}
