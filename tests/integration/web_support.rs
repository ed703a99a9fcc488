//! Helpers of the metrics and live-view tests: free loopback ports, a
//! plain HTTP/1.1 GET written here (not vosd's server code), external
//! tools that the test needs or skips without, and children killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

/// A daemon configuration for these tests (endless synthetic source,
/// publishing to `shm`): label propagation at 256×192 and 15 fps, so
/// that the daemons these tests keep running leave the CPU to the tests
/// that run beside them (what is tested here is not the engine).
pub fn light_config(shm: &str) -> String {
    let text = crate::daemon_support::config_text(shm, 15.0, 0, "");
    if crate::common::emulated() {
        return text;
    }
    let light = "size = [256, 192]\nmethod = \"label-propagation\"";
    let text = text.replace("size = [512, 384]", light);
    assert!(text.contains(light), "config_text changed: {text}");
    text
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap()
}

/// `GET path` from `addr`: `(status, body)`, or `None` when nothing
/// answers (not listening yet) or the answer is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw[end + 4..].to_vec()))
}

/// The path of program `name` on PATH. When it is missing: `None` after a
/// `SKIP` line, or a failure when `require_env` is set (CI installs the
/// tool and sets it, so that the test cannot skip there).
pub fn require_tool(name: &str, require_env: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os(require_env).is_none(),
            "{require_env} is set but `{name}` is not on PATH ({install})"
        );
        eprintln!(
            "SKIP: `{name}` not found ({install}; set {require_env}=1 to make this a failure)"
        );
    }
    found
}

pub use crate::common::KillOnDrop;

/// Sends SIGTERM to a child.
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}
