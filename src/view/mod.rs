//! The live view of `vosd view`: a shared-memory client ([`follow`]) and a
//! small web server showing its newest frame.
//!
//! The ring carries label masks and object states, not the camera's
//! pixels, so the picture is the masks on a neutral grey background
//! ([`render`]): it needs no change to the shared-memory ABI and costs the
//! daemon nothing (docs/operations.md says why this was chosen over a
//! preview in the slot).
//!
//! Paths served:
//! - `/`: the page (the picture refreshed 10 times a second, the writer's
//!   counters and a table of the objects);
//! - `/frame.jpg`: the newest picture;
//! - `/stream.mjpg`: the pictures as an MJPEG stream
//!   (`multipart/x-mixed-replace`), for players such as ffplay or VLC;
//! - `/state.json`: status, frame numbers, counters and objects.

pub mod follow;
mod font;
pub mod render;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{self, HttpServer, Request};
use follow::Shared;

/// The page.
const PAGE: &str = include_str!("page.html");
/// Connections served at once (each MJPEG stream holds one).
const MAX_CONNECTIONS: usize = 16;
/// The multipart boundary of the MJPEG stream.
const BOUNDARY: &str = "vosdframe";

/// A running view: the ring client and the web server.
pub struct ViewServer {
    server: HttpServer,
    stop: Arc<AtomicBool>,
    follower: Option<JoinHandle<()>>,
}

impl ViewServer {
    /// Follows segment `shm` and serves the view on `addr`. The error is
    /// the bind's or the thread's.
    pub fn start(shm: &str, addr: SocketAddr) -> io::Result<ViewServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::new(shm, format!("opening {shm}")));
        let handler: Arc<http::Handler> = {
            let (shared, stop) = (shared.clone(), stop.clone());
            Arc::new(move |req, stream| handle(req, stream, &shared, &stop))
        };
        let server = HttpServer::start(addr, "vosd-view", MAX_CONNECTIONS, handler)?;
        let follower = {
            let (shm, stop) = (shm.to_string(), stop.clone());
            std::thread::Builder::new()
                .name("vosd-view-ring".into())
                .spawn(move || follow::follow(&shm, &shared, &stop))?
        };
        Ok(ViewServer {
            server,
            stop,
            follower: Some(follower),
        })
    }

    /// The address served (the bound port when `addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server, the streams and the ring client.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
        self.server.stop();
    }
}

/// Serves one request.
fn handle(req: &Request, s: &mut TcpStream, shared: &Shared, stop: &AtomicBool) -> io::Result<()> {
    match req.path.as_str() {
        "/" | "/index.html" => http::respond(s, 200, "text/html; charset=utf-8", PAGE.as_bytes()),
        "/frame.jpg" => {
            let jpeg = shared.latest.lock().map(|l| l.jpeg.clone());
            match jpeg {
                Ok(j) => http::respond(s, 200, "image/jpeg", &j),
                Err(_) => http::respond(s, 503, "text/plain", b"the view's state is broken\n"),
            }
        }
        "/state.json" => {
            let text = shared
                .latest
                .lock()
                .map(|l| l.state.to_string())
                .unwrap_or_else(|_| "{}".into());
            http::respond(s, 200, "application/json", text.as_bytes())
        }
        "/stream.mjpg" => stream(s, shared, stop),
        _ => http::not_found(s, req, "/, /frame.jpg, /stream.mjpg, /state.json"),
    }
}

/// Writes every new picture as one part of a `multipart/x-mixed-replace`
/// response, until the client goes (a write fails or times out) or the
/// view stops.
fn stream(s: &mut TcpStream, shared: &Shared, stop: &AtomicBool) -> io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )?;
    let mut seen = u64::MAX;
    while !stop.load(Ordering::Relaxed) {
        let next = {
            let Ok(l) = shared.latest.lock() else {
                return Ok(());
            };
            let Ok((l, _)) =
                shared
                    .changed
                    .wait_timeout_while(l, Duration::from_millis(500), |l| l.version == seen)
            else {
                return Ok(());
            };
            (l.version != seen).then(|| (l.version, l.jpeg.clone()))
        };
        if let Some((version, jpeg)) = next {
            seen = version;
            write!(
                s,
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )?;
            s.write_all(&jpeg)?;
            s.write_all(b"\r\n")?;
            s.flush()?;
        }
    }
    Ok(())
}
