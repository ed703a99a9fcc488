//! Prometheus metrics: the `[metrics]` table ([`MetricsConfig`], off unless
//! `listen` is set) and [`MetricsServer`], which serves `GET /metrics` on
//! its own threads ([`crate::http`]). The metrics themselves are
//! [`exposition`]'s; docs/operations.md lists them.
//!
//! The server never blocks the pipeline: a scrape only loads atomics and
//! reads the shared-memory segment as a client would. An address that
//! cannot be bound (in use, not local) is logged and the daemon runs
//! without metrics.

pub mod exposition;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use crate::http::{self, HttpServer};

pub use exposition::{DaemonMetrics, CONTENT_TYPE};

/// Connections served at once (Prometheus servers and curl).
const MAX_CONNECTIONS: usize = 8;

/// The `[metrics]` table of the daemon configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` to serve `/metrics` on, e.g. `"127.0.0.1:9464"`; empty
    /// (the default) = no metrics.
    #[serde(deserialize_with = "listen_string")]
    pub listen: String,
}

/// Reads `listen` as a string; any other type is an error that names the
/// key (serde's own message would give only the line).
fn listen_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "metrics.listen: {other} is not a string: write the address in quotes, e.g. listen = \"127.0.0.1:9464\""
        ))),
    }
}

impl MetricsConfig {
    /// The address to listen on; `None` when metrics are off. The error
    /// names `metrics.listen`.
    pub fn address(&self) -> Result<Option<SocketAddr>, KeyError> {
        let text = self.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            KeyError::new(
                "metrics",
                "listen",
                format!(
                    "{:?} is not an IP:PORT address: write e.g. \"127.0.0.1:9464\" (local only) or \"0.0.0.0:9464\" (all interfaces), or \"\" for no metrics",
                    self.listen
                ),
            )
        })
    }

    /// Checks the table; the error names the key (`metrics.KEY`).
    pub fn validate(&self) -> Result<(), KeyError> {
        self.address().map(|_| ())
    }
}

/// The running `/metrics` endpoint.
pub struct MetricsServer {
    server: HttpServer,
}

impl MetricsServer {
    /// Serves `metrics` on `addr`. The error is the bind's, for the caller
    /// to log (the daemon runs on without metrics).
    pub fn start(addr: SocketAddr, metrics: DaemonMetrics) -> std::io::Result<MetricsServer> {
        let registry = Arc::new(metrics.into_registry());
        let handler: Arc<http::Handler> = Arc::new(move |req, stream| match req.path.as_str() {
            "/metrics" => {
                let body = exposition::render(&registry);
                http::respond(stream, 200, CONTENT_TYPE, body.as_bytes())
            }
            "/" => http::respond(
                stream,
                200,
                "text/html; charset=utf-8",
                b"<html><body><a href=\"/metrics\">vosd metrics</a></body></html>\n",
            ),
            _ => http::not_found(stream, req, "/metrics"),
        });
        let server = HttpServer::start(addr, "vosd-metrics", MAX_CONNECTIONS, handler)?;
        Ok(MetricsServer { server })
    }

    /// The address served (the bound port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops serving.
    pub fn stop(self) {
        self.server.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_an_address_or_empty() {
        let c = |s: &str| MetricsConfig { listen: s.into() };
        assert_eq!(c("").address().unwrap(), None);
        assert_eq!(
            c("127.0.0.1:9464").address().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(c("[::1]:9464").address().unwrap().is_some());
        for bad in ["localhost:9464", "127.0.0.1", "9464", "127.0.0.1:99999"] {
            let e = c(bad).validate().unwrap_err().to_string();
            assert!(e.starts_with("metrics.listen: "), "{bad}: {e}");
            assert!(e.contains("127.0.0.1:9464"), "{bad}: {e}");
        }
    }

    /// The table as the configuration file has it: every mistake names
    /// the file and `metrics.KEY`.
    #[test]
    fn malformed_tables_name_the_key() {
        use crate::config::DaemonConfig;
        let parse = |text: &str| {
            DaemonConfig::parse(text, std::path::Path::new("t.toml")).map_err(|e| e.to_string())
        };
        let c = parse("[metrics]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
        assert_eq!(c.metrics.address().unwrap().unwrap().port(), 9464);
        assert_eq!(
            parse("").unwrap().metrics,
            MetricsConfig::default(),
            "off by default"
        );
        for (text, want) in [
            (
                "[metrics]\nlisten = \"9464\"",
                "t.toml: metrics.listen: \"9464\" is not an IP:PORT",
            ),
            (
                "[metrics]\nlisten = 9464",
                "metrics.listen: 9464 is not a string",
            ),
            ("[metrics]\nlisten = \"127.0.0.1:9464\"\nport = 1", "port"),
            ("metrics = \"127.0.0.1:9464\"", "metrics"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("t.toml") && e.contains(want), "{text}: {e}");
        }
    }
}
