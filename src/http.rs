//! A small HTTP/1.1 server on std's `TcpListener`, for the metrics endpoint
//! (`[metrics]`) and the live view (`vosd view`): GET requests only, one
//! thread per connection up to a limit (more get `503`), every response
//! `Connection: close`.
//!
//! Untrusted clients cannot hold it up: a request head is read with a
//! timeout and a size limit, writes time out too, and a malformed request
//! gets a `400` (never a panic). Nothing here runs on a pipeline thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request head (request line and headers) accepted, bytes.
const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request head, or to take a
/// write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag (a connection is
/// accepted as soon as it arrives).
const POLL_MS: i32 = 100;

/// A parsed request: only what the handlers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path without the query, e.g. `/metrics`.
    pub path: String,
    /// The query after `?` (empty when none).
    pub query: String,
}

/// Handles one request: writes a whole response to the stream (with
/// [`respond`], or a streamed body of its own).
pub type Handler = dyn Fn(&Request, &mut TcpStream) -> io::Result<()> + Send + Sync;

/// A running server; [`stop`](HttpServer::stop) (or dropping it) ends the
/// accept loop.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` and serves `handler` on a thread named `name`, with at
    /// most `max_connections` connections at once. The error is the bind's
    /// (e.g. the address is in use).
    pub fn start(
        addr: SocketAddr,
        name: &str,
        max_connections: usize,
        handler: Arc<Handler>,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || accept_loop(listener, &thread_name, max_connections, handler, &flag))?;
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept loop (connections being
    /// served finish by themselves, bounded by their timeouts).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Decrements the open-connection count when a connection thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    name: &str,
    max_connections: usize,
    handler: Arc<Handler>,
    stop: &AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        if !readable(&listener, POLL_MS) {
            continue;
        }
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // E.g. EMFILE: wait, the descriptors may come back.
                log::warn!("{name}: accept: {e}");
                std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err()
            || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
        {
            continue;
        }
        if open.fetch_add(1, Ordering::SeqCst) >= max_connections {
            let slot = Slot(open.clone());
            let _ = respond(
                &mut stream,
                503,
                "text/plain; charset=utf-8",
                b"too many connections: try again later\n",
            );
            drop(slot);
            continue;
        }
        let slot = Slot(open.clone());
        let handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-conn"))
            .spawn(move || {
                let _slot = slot;
                serve(&mut stream, &*handler);
            });
        if let Err(e) = spawned {
            log::warn!("{name}: cannot start a connection thread: {e}");
        }
    }
}

/// Waits up to `timeout_ms` for a connection to accept on `listener`.
fn readable(listener: &TcpListener, timeout_ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fd` is one valid pollfd that lives through the call, and
    // the listener's descriptor stays open while it is borrowed.
    unsafe { libc::poll(&mut fd, 1, timeout_ms) > 0 }
}

/// Reads one request from `stream` and hands it to `handler`; a bad
/// request gets its error status.
fn serve(stream: &mut TcpStream, handler: &Handler) {
    match read_head(stream).and_then(|head| parse_request(&head)) {
        Ok(req) if req.method == "GET" => {
            let _ = handler(&req, stream);
        }
        Ok(req) => {
            let _ = respond(
                stream,
                405,
                "text/plain; charset=utf-8",
                format!("method {} not allowed: use GET\n", req.method).as_bytes(),
            );
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let _ = respond(
                stream,
                400,
                "text/plain; charset=utf-8",
                format!("bad request: {e}\n").as_bytes(),
            );
        }
        // Timeouts and resets: nothing to answer.
        Err(_) => {}
    }
    let _ = stream.flush();
}

/// Reads up to the blank line that ends the request head.
fn read_head(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the request head ended",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request head over {MAX_HEAD} bytes"),
            ));
        }
    }
}

/// Parses the request line of a request head.
pub fn parse_request(head: &[u8]) -> io::Result<Request> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no request line"))?;
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| bad("the request line is not UTF-8"))?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected `METHOD /path HTTP/1.x`"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x is served"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("bad method"));
    }
    if !target.starts_with('/') {
        return Err(bad("the target must be a path starting with /"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a whole response with `body`, closing the connection after it.
pub fn respond(w: &mut impl Write, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// The `404` of an unknown path, listing the paths served.
pub fn not_found(w: &mut impl Write, req: &Request, served: &str) -> io::Result<()> {
    respond(
        w,
        404,
        "text/plain; charset=utf-8",
        format!("{}: not found (served: {served})\n", req.path).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_or_are_refused() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(r.query, "x=1");
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
            b"no newline",
            b"",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn a_server_answers_and_refuses_bad_requests() {
        let handler: Arc<Handler> = Arc::new(|req, s| {
            if req.path == "/hi" {
                respond(s, 200, "text/plain", b"hello")
            } else {
                not_found(s, req, "/hi")
            }
        });
        let server =
            HttpServer::start("127.0.0.1:0".parse().unwrap(), "t-http", 4, handler).expect("bind");
        let get = |request: &[u8]| {
            let mut c = TcpStream::connect(server.local_addr()).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(request).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get(b"GET /hi HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nhello"), "{ok}");
        assert!(get(b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(b"POST /hi HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(get(&huge).starts_with("HTTP/1.1 400"));
        server.stop();
    }
}
