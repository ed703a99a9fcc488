//! systemd's notification protocol (sd_notify), written by hand: one
//! datagram per message to the socket named by `$NOTIFY_SOCKET` (a path, or
//! `@name` for the abstract namespace). Outside systemd (no variable) every
//! call does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, if there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// No service manager.
    pub fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the
    /// watchdog applies only if the pid, when given, is ours).
    pub fn from_env() -> io::Result<Self> {
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0)
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                    .is_none_or(|p| p == std::process::id())
            })
            .map(Duration::from_micros);
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Self {
                target: None,
                watchdog,
            });
        };
        let bytes = path.as_encoded_bytes();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            abstract_addr(name)?
        } else if bytes.starts_with(b"/") {
            SocketAddr::from_pathname(&path)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={path:?} is neither a path nor @abstract"),
            ));
        };
        Ok(Self {
            target: Some((UnixDatagram::unbound()?, addr)),
            watchdog,
        })
    }

    /// Sends to the datagram socket at `path` with a watchdog timeout, as
    /// systemd's variables would say (for tests and embedding).
    pub fn to_path(path: &std::path::Path, watchdog: Option<Duration>) -> io::Result<Self> {
        Ok(Self {
            target: Some((UnixDatagram::unbound()?, SocketAddr::from_pathname(path)?)),
            watchdog,
        })
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout systemd set (`WatchdogSec=`), if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message, e.g. `"READY=1\nSTATUS=running"`.
    pub fn send(&self, msg: &str) -> io::Result<()> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(msg.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Sends and logs (at debug) a failure instead of returning it: the
    /// service must not die because the manager went away.
    pub fn notify(&self, msg: &str) {
        if let Err(e) = self.send(msg) {
            log::debug!("sd_notify {msg:?}: {e}");
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract NOTIFY_SOCKET needs Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        n.send("READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        assert!(Notifier::disabled().send("READY=1").is_ok());
    }
}
