//! The client side of the control socket, used by `vosd ctl`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::protocol::{encode_rle, object_pixels, Rle};

/// Sends one request line to the daemon at `socket` and returns its reply
/// (parsed JSON). `timeout` bounds the connection, the write and the wait.
pub fn request(socket: &Path, line: &str, timeout: Duration) -> Result<Value> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "{}: cannot connect (is vosd running with [control] socket = this path?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(line.trim_end().as_bytes())
        .and_then(|()| stream.write_all(b"\n"))
        .with_context(|| format!("{}: cannot send the request", socket.display()))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .with_context(|| format!("{}: no reply", socket.display()))?;
    if reply.is_empty() {
        bail!("{}: the daemon closed the connection", socket.display());
    }
    serde_json::from_str(&reply).with_context(|| format!("reply is not JSON: {reply:?}"))
}

/// Reads a mask PNG on this side and run-length encodes object `id`: the
/// pixels equal to `id`, or all labelled pixels of a binary mask.
pub fn rle_from_png(path: &Path, id: u8) -> Result<Rle> {
    let mask = vosd_engine::imageio::load_mask(path)?;
    let only = object_pixels(&mask, id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(encode_rle(&only, id))
}
