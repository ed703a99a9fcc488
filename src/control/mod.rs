//! The control socket: a Unix stream socket on which clients (`vosd ctl`, a
//! robot's code) add, correct and remove objects, pause and resume, and ask
//! for the status, one JSON line per request and per reply
//! ([`protocol`], docs/control.md).
//!
//! One acceptor thread and one thread per client (at most `max_clients`).
//! A client never blocks the pipeline: object commands go to the engine
//! stage through a bounded queue ([`PipelineControl`]) and are applied
//! between two frames; reads and writes have timeouts; a request line
//! longer than `max_request_bytes` is refused and the connection closed.
//! The socket file is created at start (with `mode` and `group`) and
//! removed at stop.

pub mod client;
pub mod protocol;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::pipeline::{ObjectCommand, ObjectMask, PipelineControl, Stats, StatsSnapshot};
use protocol::{Command, MaskSource, Request};
use vosd_engine::config::KeyError;
use vosd_shm::{GroupSpec, ReadStatus, ShmReader};

/// The `[control]` table of the daemon configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Socket path; empty = no control socket.
    pub socket: PathBuf,
    /// Permission bits of the socket file (who may connect).
    pub mode: u32,
    /// Group of the socket file (name or gid); none = the daemon's group.
    pub group: Option<GroupSpec>,
    /// Clients connected at once (1..=64); more are refused.
    pub max_clients: usize,
    /// Longest request line in bytes (1 KiB..=64 MiB); inline masks count.
    pub max_request_bytes: usize,
    /// Seconds a connected client may stay silent before it is closed.
    pub idle_timeout_s: f64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::new(),
            mode: 0o660,
            group: None,
            max_clients: 8,
            max_request_bytes: 4 << 20,
            idle_timeout_s: 300.0,
        }
    }
}

impl ControlConfig {
    /// Checks ranges; the error names the key (`control.KEY`).
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |key, reason: String| Err(KeyError::new("control", key, reason));
        if !(1..=64).contains(&self.max_clients) {
            return bad(
                "max_clients",
                format!("{} is not within 1..=64", self.max_clients),
            );
        }
        if !(1024..=64 << 20).contains(&self.max_request_bytes) {
            return bad(
                "max_request_bytes",
                format!("{} is not within 1024..=67108864", self.max_request_bytes),
            );
        }
        if self.mode > 0o777 {
            return bad("mode", format!("{:#o} has bits beyond 0o777", self.mode));
        }
        if !(self.idle_timeout_s.is_finite() && (1.0..=86_400.0).contains(&self.idle_timeout_s)) {
            return bad("idle_timeout_s", "must be within 1..=86400 seconds".into());
        }
        if !self.socket.as_os_str().is_empty() && !self.socket.is_absolute() {
            return bad(
                "socket",
                format!("{} is not an absolute path", self.socket.display()),
            );
        }
        Ok(())
    }
}

/// What the server needs from the running daemon.
pub struct ControlContext {
    /// Sends object commands to the engine stage.
    pub pipeline: PipelineControl,
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The shared-memory segment (read for the latest object states).
    pub shm_name: String,
    /// Frame size (masks must have it).
    pub frame_size: (usize, usize),
    /// The engine's backend status, as reported by `status`.
    pub backend: vosd_engine::backend::BackendHandle,
}

/// A running control socket; stopping (or dropping) it removes the file.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// How long a command may wait for the engine's answer.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

impl ControlServer {
    /// Creates the socket at `cfg.socket` and starts serving. A stale socket
    /// file (no daemon listening) is replaced; a live one is an error.
    pub fn start(cfg: &ControlConfig, ctx: ControlContext) -> anyhow::Result<ControlServer> {
        use anyhow::Context;
        cfg.validate()?;
        let path = cfg.socket.clone();
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                anyhow::bail!(
                    "control.socket {}: another process is listening there",
                    path.display()
                );
            }
            std::fs::remove_file(&path).with_context(|| {
                format!(
                    "control.socket {}: cannot remove the stale socket",
                    path.display()
                )
            })?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("control.socket {}: cannot create", path.display()))?;
        let cleanup = |e: anyhow::Error| {
            let _ = std::fs::remove_file(&path);
            e
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(cfg.mode))
            .with_context(|| format!("control.socket {}: cannot set mode", path.display()))
            .map_err(cleanup)?;
        if let Some(group) = &cfg.group {
            let gid = group
                .resolve()
                .ok()
                .flatten()
                .ok_or_else(|| match group {
                    GroupSpec::Name(n) => anyhow::anyhow!("control.group: no group named '{n}'"),
                    GroupSpec::Gid(g) => anyhow::anyhow!("control.group: gid {g}"),
                })
                .map_err(cleanup)?;
            std::os::unix::fs::chown(&path, None, Some(gid))
                .with_context(|| {
                    format!("control.socket {}: cannot set group {gid}", path.display())
                })
                .map_err(cleanup)?;
        }
        listener
            .set_nonblocking(true)
            .context("control socket: non-blocking mode")
            .map_err(cleanup)?;
        let stop = Arc::new(AtomicBool::new(false));
        // The first `status` reports the rate since the socket opened.
        let opened = ctx.stats.snapshot();
        let shared = Arc::new(Shared {
            ctx,
            cfg: cfg.clone(),
            clients: AtomicUsize::new(0),
            last_status: Mutex::new(Some(opened)),
        });
        let acceptor = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("vosd-control".into())
                .spawn(move || accept_loop(listener, shared, stop))
                .context("cannot start the control thread")
                .map_err(cleanup)?
        };
        log::info!("control socket {} (mode {:#o})", path.display(), cfg.mode);
        Ok(ControlServer {
            path,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, tells clients to go and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Shared {
    ctx: ControlContext,
    cfg: ControlConfig,
    clients: AtomicUsize,
    last_status: Mutex<Option<StatsSnapshot>>,
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let n = shared.clients.fetch_add(1, Ordering::SeqCst);
                if n >= shared.cfg.max_clients {
                    shared.clients.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let msg = format!(
                        "too many clients ({} connected; control.max_clients)",
                        shared.cfg.max_clients
                    );
                    let _ = writeln!(stream, "{}", protocol::error_reply(&Value::Null, &msg));
                    continue;
                }
                let (shared, stop) = (shared.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("vosd-control-client".into())
                    .spawn(move || {
                        serve_client(stream, &shared, &stop);
                        shared.clients.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    log::warn!("control: cannot start a client thread: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("control: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads request lines and answers each; ends on EOF, error, oversize,
/// idle timeout or stop.
fn serve_client(mut stream: UnixStream, shared: &Shared, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .is_err()
    {
        return;
    }
    let max = shared.cfg.max_request_bytes;
    let idle = Duration::from_secs_f64(shared.cfg.idle_timeout_s);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut last_activity = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                last_activity = Instant::now();
                pending.extend_from_slice(&chunk[..n]);
                while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let reply = shared.handle(&line[..line.len() - 1]);
                    if writeln!(stream, "{reply}").is_err() {
                        return;
                    }
                }
                if pending.len() > max {
                    let msg = format!(
                        "request longer than {max} bytes (control.max_request_bytes); closing"
                    );
                    let _ = writeln!(stream, "{}", protocol::error_reply(&Value::Null, &msg));
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if last_activity.elapsed() > idle {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Shared {
    /// The reply line (without newline) to one request line.
    fn handle(&self, line: &[u8]) -> String {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(_) => return protocol::error_reply(&Value::Null, "request is not UTF-8"),
        };
        let Request { id, command } = match protocol::parse_request(text) {
            Ok(r) => r,
            Err((id, e)) => return protocol::error_reply(&id, &e.0),
        };
        match self.execute(command) {
            Ok(fields) => protocol::ok_reply(&id, fields),
            Err(e) => protocol::error_reply(&id, &e),
        }
    }
}

impl Shared {
    fn execute(&self, command: Command) -> Result<Value, String> {
        let (w, h) = self.ctx.frame_size;
        let to_mask = |object: u8, source: MaskSource| -> Result<ObjectMask, String> {
            Ok(match source {
                MaskSource::Png(path) => {
                    let m = vosd_engine::imageio::load_mask(&path).map_err(|e| e.to_string())?;
                    if (m.width, m.height) != (w, h) {
                        return Err(format!(
                            "{}: mask is {}x{}, the frames are {w}x{h}",
                            path.display(),
                            m.width,
                            m.height
                        ));
                    }
                    let only = protocol::object_pixels(&m, object)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    ObjectMask::Mask(only)
                }
                MaskSource::Rle(r) => ObjectMask::Mask(protocol::decode_rle(&r, w, h, object)?),
                MaskSource::Box([x, y, bw, bh]) => {
                    if x as usize + bw as usize > w || y as usize + bh as usize > h {
                        return Err(format!(
                            "box [{x}, {y}, {bw}, {bh}] leaves the {w}x{h} frame"
                        ));
                    }
                    ObjectMask::Box([x, y, bw, bh])
                }
            })
        };
        let send = |cmd: ObjectCommand| self.ctx.pipeline.request(cmd, ENGINE_TIMEOUT);
        match command {
            Command::Status => return Ok(self.status()),
            Command::Add { object, mask } => send(ObjectCommand::SetMask {
                object,
                mask: to_mask(object, mask)?,
                correct: false,
            })?,
            Command::Correct { object, mask } => send(ObjectCommand::SetMask {
                object,
                mask: to_mask(object, mask)?,
                correct: true,
            })?,
            Command::Remove { object } => send(ObjectCommand::Remove { object })?,
            Command::RemoveAll => send(ObjectCommand::RemoveAll)?,
            Command::Pause => send(ObjectCommand::Pause)?,
            Command::Resume => send(ObjectCommand::Resume)?,
        }
        Ok(json!({}))
    }

    fn status(&self) -> Value {
        let now = self.ctx.stats.snapshot();
        let fps = {
            let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
            let fps = last.map(|prev| now.rates_since(&prev).1);
            *last = Some(now);
            fps
        };
        let (frame, objects) = match ShmReader::open(&self.ctx.shm_name) {
            Ok(mut r) => {
                let mut buf = r.new_frame_buf();
                match r.read_latest(&mut buf) {
                    Ok(ReadStatus::Frame { .. }) => (
                        Some(buf.frame_number()),
                        serde_json::to_value(buf.objects()).unwrap_or(Value::Null),
                    ),
                    _ => (None, json!([])),
                }
            }
            Err(_) => (None, json!([])),
        };
        let backend = vosd_engine::backend::current(&self.ctx.backend);
        json!({
            "frame": frame,
            "objects": objects,
            "paused": self.ctx.stats.paused.load(Ordering::Relaxed),
            "camera_lost": now.source_down,
            "fps": fps,
            "captured": now.captured,
            "processed": now.processed,
            "published": now.published,
            "dropped": now.dropped(),
            "dropped_tap": now.dropped_tap,
            "capture_errors": now.capture_errors,
            "reconnects": now.reconnects,
            "latency_p50_ms": now.latency_p50_ms,
            "latency_p99_ms": now.latency_p99_ms,
            "backend": backend.active,
            "backend_detail": backend.describe(),
            "backend_fallbacks": backend.fallbacks,
            "memory_rss_bytes": crate::procfs::resident_bytes(),
        })
    }
}
