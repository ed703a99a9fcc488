//! Readers in other processes: Rust children (this test binary re-run in a
//! child role), the C example compiled with `cc`, the Python reader; and a
//! stress test where any torn copy a reader accepted fails the test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::*;
use vosd_shm::{ObjectState, PipelineCounters, ReadStatus, ShmReader, ShmWriter, SlotData};

/// Environment variables selecting a child role.
const ROLE: &str = "VOSD_TEST_ROLE";
const SHM: &str = "VOSD_TEST_SHM";

/// How each stress reader reads.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Next,
    Latest,
}

#[derive(Debug, Default)]
struct ReaderStats {
    frames: u64,
    skipped: u64,
    first_seq: u64,
    last_seq: u64,
    torn: u64,
}

/// Reads until the end marker, checking every frame; shared by threads and
/// child processes.
fn stress_read(name: &str, mode: Mode, ready: impl FnOnce()) -> Result<ReaderStats, String> {
    let mut reader = ShmReader::open(name).map_err(|e| e.to_string())?;
    let max = reader.max_objects();
    let mut buf = reader.new_frame_buf();
    let mut st = ReaderStats::default();
    ready();
    loop {
        let status = match mode {
            Mode::Next => reader.wait_next(&mut buf, Duration::from_secs(20)),
            Mode::Latest => reader.wait_latest(&mut buf, Duration::from_secs(20)),
        }
        .map_err(|e| e.to_string())?;
        match status {
            ReadStatus::Frame { seq, skipped } => {
                check_noise_frame(&buf, max)?;
                if seq <= st.last_seq {
                    return Err(format!("seq went from {} to {seq}", st.last_seq));
                }
                if st.frames == 0 {
                    st.first_seq = seq;
                }
                if seq != st.last_seq + skipped + 1 {
                    return Err(format!(
                        "seq {seq} after {} with skipped = {skipped}",
                        st.last_seq
                    ));
                }
                st.frames += 1;
                st.skipped += skipped;
                st.last_seq = seq;
            }
            ReadStatus::Ended => break,
            ReadStatus::Empty => {
                return Err(format!(
                    "timed out waiting for frames (latest {}, last read {}, writer {:?})",
                    reader.latest_seq(),
                    reader.last_seq(),
                    reader.writer_state()
                ))
            }
        }
    }
    st.torn = reader.torn_retries();
    Ok(st)
}

/// Child role entry point: does nothing unless run as a child by a test.
#[test]
fn child_role() {
    let (Ok(role), Ok(name)) = (std::env::var(ROLE), std::env::var(SHM)) else {
        return;
    };
    match role.as_str() {
        "next" | "latest" => {
            let mode = if role == "next" {
                Mode::Next
            } else {
                Mode::Latest
            };
            let st = stress_read(&name, mode, || println!("VOSD:ready")).expect("child reader");
            println!(
                "VOSD:done frames={} skipped={} first={} last={} torn={}",
                st.frames, st.skipped, st.first_seq, st.last_seq, st.torn
            );
        }
        "spin" => {
            // Copies the newest frame over and over until killed.
            let mut reader = ShmReader::open(&name).expect("open");
            let mut buf = reader.new_frame_buf();
            println!("VOSD:ready");
            loop {
                if let Ok(ReadStatus::Frame { .. }) = reader.read_latest(&mut buf) {
                    check_noise_frame(&buf, reader.max_objects()).expect("spin reader");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Spawns this test binary in a child role; returns it and a channel of
/// its `VOSD:` stdout lines.
fn spawn_child(role: &str, name: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = crate::support::target_command(std::env::current_exe().expect("exe"))
        .args([
            "process::child_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(SHM, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness may print "test child_role ... " before our output.
            if let Some(at) = line.find("VOSD:") {
                if tx.send(line[at + 5..].to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    (KillOnDrop(child), rx)
}

fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str, what: &str) -> String {
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{what}: no line: {e}"));
    assert!(line.starts_with(prefix), "{what}: {line}");
    line
}

fn parse_stats(line: &str) -> ReaderStats {
    let get = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    ReaderStats {
        frames: get("frames"),
        skipped: get("skipped"),
        first_seq: get("first"),
        last_seq: get("last"),
        torn: get("torn"),
    }
}

fn check_stats(who: &str, mode: Mode, st: &ReaderStats, total: u64) {
    println!("{who} ({mode:?}): {st:?}");
    assert!(st.frames > 0, "{who} read nothing");
    assert_eq!(st.last_seq, total, "{who} did not reach the last frame");
    // Every reader opened before the first publish: returned and skipped
    // frames together account for every publish, whatever the mode.
    assert_eq!(
        st.frames + st.skipped,
        total,
        "{who} ({mode:?}): frames + skipped must account for every publish"
    );
}

#[test]
fn child_process_reader_reads_in_order() {
    let name = unique_name("child");
    // A large ring and a paced writer: the child should miss nothing.
    let mut writer = ShmWriter::create(&config(&name, 40, 30, 64, 6)).expect("create");
    let (_child, rx) = spawn_child("next", &name);
    expect_line(&rx, "ready", "child");
    let mut mask = vec![0u8; 40 * 30];
    let total = 300u64;
    for seq in 1..=total {
        let f = seq + FRAME_OFFSET;
        noise_mask(f, &mut mask);
        let objs: Vec<ObjectState> = (0..noise_count(f, 6)).map(|k| noise_object(f, k)).collect();
        writer
            .publish(&SlotData {
                frame_number: f,
                capture_ns: noise_capture(f),
                objects: &objs,
                mask: &mask,
            })
            .expect("publish");
        if seq % 16 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    writer.finish();
    let st = parse_stats(&expect_line(&rx, "done", "child"));
    check_stats("child", Mode::Next, &st, total);
}

#[test]
fn stress_many_readers_full_rate() {
    let name = unique_name("stress");
    let (w, h, slots, max) = (320u32, 240u32, 3u32, 8u32);
    let mut writer = ShmWriter::create(&config(&name, w, h, slots, max)).expect("create");
    let total = 4000u64;

    let children: Vec<_> = [
        ("next", Mode::Next),
        ("latest", Mode::Latest),
        ("next", Mode::Next),
    ]
    .into_iter()
    .map(|(role, mode)| (spawn_child(role, &name), mode))
    .collect();
    let (spinner, spin_rx) = spawn_child("spin", &name);
    for ((_, rx), _) in &children {
        expect_line(rx, "ready", "child");
    }
    expect_line(&spin_rx, "ready", "spinner");

    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = [Mode::Next, Mode::Latest]
        .into_iter()
        .map(|mode| {
            let (name, barrier) = (name.clone(), barrier.clone());
            std::thread::spawn(move || {
                let st = stress_read(&name, mode, || {
                    barrier.wait();
                });
                (mode, st)
            })
        })
        .collect();
    barrier.wait();

    // Precompute a few frames' content so the writer runs at full rate.
    let mut mask = vec![0u8; (w * h) as usize];
    let mut objs = Vec::with_capacity(max as usize);
    let mut spinner = Some(spinner);
    let started = Instant::now();
    for seq in 1..=total {
        let f = seq + FRAME_OFFSET;
        noise_mask(f, &mut mask);
        objs.clear();
        objs.extend((0..noise_count(f, max)).map(|k| noise_object(f, k)));
        let got = writer
            .publish(&SlotData {
                frame_number: f,
                capture_ns: noise_capture(f),
                objects: &objs,
                mask: &mask,
            })
            .expect("publish");
        assert_eq!(got, seq);
        if seq == total / 2 {
            // Kill a reader in the middle of its copies: nothing changes for
            // the writer or the other readers.
            drop(spinner.take());
        }
    }
    writer.finish();
    println!(
        "writer: {total} frames of {} bytes in {:?}",
        writer.size_bytes() / slots as usize,
        started.elapsed()
    );
    assert_eq!(writer.published(), total);

    for (mode, st) in threads.into_iter().map(|t| t.join().expect("thread")) {
        let st = st.unwrap_or_else(|e| panic!("thread reader ({mode:?}) failed: {e}"));
        check_stats("thread", mode, &st, total);
    }
    for (i, ((child, rx), mode)) in children.into_iter().enumerate() {
        let line = expect_line(&rx, "done", "child");
        check_stats(&format!("child {i}"), mode, &parse_stats(&line), total);
        let mut child = child;
        let status = child.0.wait().expect("wait");
        assert!(status.success(), "child {i}: {status:?}");
    }
    // The segment is intact for a new reader after the kill.
    let mut reader = ShmReader::open(&name).expect("open after kill");
    let mut buf = reader.new_frame_buf();
    assert_eq!(
        reader.read_latest(&mut buf).expect("read"),
        ReadStatus::Frame {
            seq: total,
            skipped: 0
        }
    );
    check_noise_frame(&buf, max).expect("content");
}

/// Publishes scene frames (paced) until `done` returns true or 60 s pass.
fn publish_scene_until(writer: &mut ShmWriter, mut done: impl FnMut() -> bool) -> u64 {
    let mut mask = Vec::new();
    let mut objs = Vec::new();
    let start = Instant::now();
    let mut seq = 0;
    while !done() && start.elapsed() < Duration::from_secs(60) {
        seq += 1;
        let f = seq + FRAME_OFFSET;
        scene(f, &mut mask, &mut objs);
        writer
            .publish(&SlotData {
                frame_number: f,
                capture_ns: vosd_shm::monotonic_ns(),
                objects: &objs,
                mask: &mask,
            })
            .expect("publish");
        // Mostly full rate, with pauses so that readers also see idle rings.
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    seq
}

/// Statistics the example-client tests publish (every field distinct).
const EXAMPLE_STATS: PipelineCounters = PipelineCounters {
    frames_captured: 5_000_000_123,
    frames_dropped: 4321,
    capture_errors: 17,
    reconnects: 9,
    camera_lost: true,
};

/// The statistics line both examples print last, for [`EXAMPLE_STATS`].
const EXAMPLE_STATS_LINE: &str =
    "stats captured=5000000123 dropped=4321 capture_errors=17 reconnects=9 source=lost";

/// Runs an example client against a live writer and checks its output.
fn run_example_client(mut cmd: Command, name: &str, frames: usize, what: &str) {
    let mut writer = ShmWriter::create(&config(name, SCENE_W, SCENE_H, 3, 4)).expect("create");
    writer.set_stats(&EXAMPLE_STATS);
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}")),
    );
    let drain = |r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(r).read_to_string(&mut s);
            s
        })
    };
    let out_t = drain(Box::new(child.0.stdout.take().expect("stdout")));
    let err_t = drain(Box::new(child.0.stderr.take().expect("stderr")));
    let published = publish_scene_until(&mut writer, || matches!(child.0.try_wait(), Ok(Some(_))));
    writer.finish();
    let status = child.0.wait().expect("wait");
    let stdout = out_t.join().expect("stdout thread");
    let stderr = err_t.join().expect("stderr thread");
    assert!(
        status.success(),
        "{what} failed: {status:?}\n{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("frame=")).collect();
    assert_eq!(lines.len(), frames, "{what} output:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some(EXAMPLE_STATS_LINE),
        "{what}: statistics line\n{stdout}\n{stderr}"
    );
    let mut last = 0;
    for line in &lines {
        let f = check_scene_line(line).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(f > last, "{what}: frames out of order: {line}");
        last = f;
    }
    println!(
        "{what}: {} lines checked, writer published {published}; first: {}",
        lines.len(),
        lines[0]
    );
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn c_example_reads_live_segment() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        println!("SKIP c_example_reads_live_segment: no C compiler ({cc})");
        return;
    }
    let exe =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vosd_example_{}", std::process::id()));
    let compile = |extra: &[&str]| {
        Command::new(&cc)
            .args([
                "-std=c11",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ])
            .arg("-I")
            .arg(repo_path("clients/c"))
            .arg(repo_path("clients/c/example.c"))
            .arg("-o")
            .arg(&exe)
            .args(extra)
            .output()
            .expect("run cc")
    };
    let mut out = compile(&[]);
    if !out.status.success() {
        // Older glibc keeps shm_open in librt.
        out = compile(&["-lrt"]);
    }
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = unique_name("c");
    let mut cmd = Command::new(&exe);
    cmd.args([name.as_str(), "200"]);
    run_example_client(cmd, &name, 200, "C example");
    let lag = unique_name("clag");
    let mut cmd = Command::new(&exe);
    cmd.args([lag.as_str(), "300", "5"]);
    example_keeps_up_with_back_to_back_writer(cmd, &lag, 300, "C example");
    let _ = std::fs::remove_file(&exe);
}

/// A Python interpreter with numpy: `$VOSD_PYTHON`, else `python3`.
fn python_with_numpy() -> Option<String> {
    let candidates = std::env::var("VOSD_PYTHON")
        .ok()
        .into_iter()
        .chain(std::iter::once("python3".to_owned()));
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import numpy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py);
        }
    }
    None
}

#[test]
fn python_example_reads_live_segment() {
    let Some(py) = python_with_numpy() else {
        println!(
            "SKIP python_example_reads_live_segment: no python3 with numpy \
             (set VOSD_PYTHON to an interpreter that has it)"
        );
        return;
    };
    let name = unique_name("py");
    let mut cmd = Command::new(&py);
    cmd.arg(repo_path("clients/python/example.py"))
        .args([name.as_str(), "120"]);
    run_example_client(cmd, &name, 120, "Python example");
    let lag = unique_name("pylag");
    let mut cmd = Command::new(&py);
    cmd.arg(repo_path("clients/python/example.py"))
        .args([lag.as_str(), "300", "5"]);
    example_keeps_up_with_back_to_back_writer(cmd, &lag, 300, "Python example");
}

#[test]
fn python_reader_reports_errors() {
    let Some(py) = python_with_numpy() else {
        println!("SKIP python_reader_reports_errors: no python3 with numpy");
        return;
    };
    let name = unique_name("pyerr");
    let _writer = ShmWriter::create(&config(&name, 8, 8, 2, 2)).expect("create");
    // Patch the ABI version through a read-write descriptor.
    let fd = rustix::shm::open(
        name.as_str(),
        rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .expect("open rw");
    rustix::io::pwrite(&fd, &[9, 0, 0, 0, 9, 0, 0, 0], 8).expect("pwrite");
    // A version-1 segment (abi_version 1, compat 1): opens, without stats.
    let v1 = unique_name("pyv1");
    let v1_writer = ShmWriter::create(&config(&v1, 8, 8, 2, 2)).expect("create");
    v1_writer.set_stats(&EXAMPLE_STATS);
    let fd1 = rustix::shm::open(
        v1.as_str(),
        rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .expect("open rw");
    rustix::io::pwrite(&fd1, &[1, 0, 0, 0], 8).expect("pwrite");
    let script = format!(
        "import sys; sys.path.insert(0, {dir:?})\n\
         import vosd_reader as v\n\
         try:\n    v.Reader({name:?})\n    print('OPENED')\n\
         except v.AbiMismatch as e:\n    print('ABI', e)\n\
         try:\n    v.Reader('/vosd-test-does-not-exist-5521')\n\
         except v.NotFound as e:\n    print('NOTFOUND', e)\n\
         r = v.Reader({v1:?})\n\
         print('V1', r.abi_version, r.stats())\n",
        dir = repo_path("clients/python").display().to_string(),
    );
    let out = Command::new(&py)
        .args(["-c", &script])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ABI") && stdout.contains(&name), "{stdout}");
    assert!(stdout.contains("NOTFOUND"), "{stdout}");
    assert!(stdout.contains("V1 1 None"), "{stdout}");
}

/// Publishes constant 640×480 frames back to back (no pause between them)
/// until the returned flag is set; the thread returns the number published.
fn back_to_back_writer(name: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let (w, h) = (640usize, 480usize);
    let mut writer = ShmWriter::create(&config(name, w as u32, h as u32, 3, 1)).expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let publisher = std::thread::spawn(move || {
        let mask = vec![1u8; w * h];
        let object = ObjectState::from_mask(&mask, w, h, 1);
        let mut seq = 0u64;
        while !flag.load(Ordering::Relaxed) && seq < 50_000_000 {
            seq += 1;
            writer
                .publish(&SlotData {
                    frame_number: seq,
                    capture_ns: 0,
                    objects: std::slice::from_ref(&object),
                    mask: &mask,
                })
                .expect("publish");
        }
        writer.finish();
        seq
    });
    (stop, publisher)
}

/// A reader that has fallen behind a writer publishing back to back must
/// still get frames: the oldest slot in the ring is the next one the writer
/// overwrites, so a `read_next` that kept chasing it would miss on every
/// attempt and give up as starved. (CI under qemu once failed the stress
/// test that way.)
#[test]
fn lagging_reader_is_not_starved_by_back_to_back_writer() {
    let name = unique_name("lag");
    let (stop, publisher) = back_to_back_writer(&name);
    let mut reader = ShmReader::open(&name).expect("open");
    let mut buf = reader.new_frame_buf();
    // Let the writer lap the reader, then read in order while it runs.
    std::thread::sleep(Duration::from_millis(20));
    let mut frames = 0u64;
    let mut last = 0u64;
    let started = Instant::now();
    let outcome = loop {
        if started.elapsed() > Duration::from_secs(2) {
            break Ok(());
        }
        match reader.read_next(&mut buf) {
            Ok(ReadStatus::Frame { seq, .. }) => {
                if seq <= last || buf.frame_number() != seq {
                    break Err(format!(
                        "frame {} as seq {seq} after {last}",
                        buf.frame_number()
                    ));
                }
                last = seq;
                frames += 1;
            }
            Ok(_) => std::thread::yield_now(),
            Err(e) => break Err(format!("after {frames} frames: {e}")),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().expect("writer");
    outcome.unwrap_or_else(|e| panic!("{e}"));
    println!("reader got {frames} of {published} frames");
    assert!(frames >= 20, "only {frames} of {published} frames read");
}

/// The C or Python example reads `frames` frames in order from a writer
/// publishing back to back (it lags: it prints every frame).
fn example_keeps_up_with_back_to_back_writer(
    mut cmd: Command,
    name: &str,
    frames: usize,
    what: &str,
) {
    let (stop, publisher) = back_to_back_writer(name);
    std::thread::sleep(Duration::from_millis(10));
    let out = cmd.output();
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().expect("writer");
    let out = out.unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} behind a back-to-back writer: {:?}\n{stderr}",
        out.status
    );
    let numbers: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame=")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(numbers.len(), frames, "{what}:\n{stdout}\n{stderr}");
    assert!(
        numbers.windows(2).all(|p| p[0] < p[1]),
        "{what}: out of order"
    );
    println!(
        "{what}: {frames} frames in order behind a back-to-back writer ({published} published)"
    );
}
