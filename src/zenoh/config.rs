//! The `[zenoh]` table: ROS 2 topics over Zenoh (off unless the table is
//! there; the daemon needs the `zenoh` cargo feature to honour it).
//!
//! ```toml
//! [zenoh]
//! mode = "peer"                        # or "client"
//! connect = ["tcp/127.0.0.1:7447"]     # rmw_zenoh's router (rmw_zenohd)
//! listen = ["tcp/127.0.0.1:7448"]      # where local subscribers reach vosd
//! domain_id = 0                        # ROS_DOMAIN_ID
//! namespace = "/"
//! node = "vosd"                        # topics /vosd/mask, /vosd/detections, /vosd/states
//! frame_id = "camera_optical_frame"
//! mask_downscale = 1                   # 2: every 2nd pixel and row on ~/mask
//! clock_refresh_s = 1.0
//! ros2dds_keys = false                 # true: also on vosd/mask... for zenoh-bridge-ros2dds
//! ```

use serde::{Deserialize, Serialize};

use crate::config::KeyError;

/// How the Zenoh session joins the network.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ZenohMode {
    /// A peer, as rmw_zenoh's nodes are: connects to the router for
    /// discovery, then to other peers directly.
    #[default]
    Peer,
    /// A client: everything goes through the routers or peers in
    /// `connect`, which must not be empty.
    Client,
}

/// The `[zenoh]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZenohConfig {
    /// `peer` (default) or `client`.
    pub mode: ZenohMode,
    /// Endpoints to connect to (`tcp/HOST:PORT`); default rmw_zenoh's
    /// router on this host, `tcp/127.0.0.1:7447`.
    pub connect: Vec<String>,
    /// Endpoints to listen on (`tcp/HOST:PORT`; port 0: any free port).
    pub listen: Vec<String>,
    /// The ROS domain id (`ROS_DOMAIN_ID`), 0..=232.
    pub domain_id: u32,
    /// The node's namespace: `/` or `/a/b`.
    pub namespace: String,
    /// The node name; topics are `~/mask`, `~/detections`, `~/states`.
    pub node: String,
    /// `header.frame_id` of every message (the camera's optical frame).
    pub frame_id: String,
    /// Keep every n-th pixel of every n-th row on `~/mask` (1..=16; 1:
    /// the full mask).
    pub mask_downscale: u32,
    /// Seconds between measurements of the monotonic→real-time clock
    /// offset (0.1..=3600).
    pub clock_refresh_s: f64,
    /// Also put each message on the key zenoh-bridge-ros2dds uses for the
    /// topic (its name without the leading `/`, e.g. `vosd/mask`), so that
    /// the bridge hands it to DDS-based ROS 2 nodes.
    pub ros2dds_keys: bool,
}

impl Default for ZenohConfig {
    fn default() -> Self {
        Self {
            mode: ZenohMode::Peer,
            connect: vec!["tcp/127.0.0.1:7447".into()],
            listen: Vec::new(),
            domain_id: 0,
            namespace: "/".into(),
            node: "vosd".into(),
            frame_id: "camera_optical_frame".into(),
            mask_downscale: 1,
            clock_refresh_s: 1.0,
            ros2dds_keys: false,
        }
    }
}

/// Whether `s` is a ROS name token: a letter or `_`, then letters,
/// digits and `_`.
fn is_token(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks one `tcp/HOST:PORT` endpoint.
fn check_endpoint(e: &str) -> Result<(), String> {
    let Some(addr) = e.strip_prefix("tcp/") else {
        return Err(format!(
            "{e:?}: only TCP endpoints are built in (`tcp/HOST:PORT`, e.g. \"tcp/127.0.0.1:7447\")"
        ));
    };
    let port = addr
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "{e:?}: expected `tcp/HOST:PORT` with a port in 0..=65535 (e.g. \"tcp/127.0.0.1:7447\")"
        )),
    }
}

impl ZenohConfig {
    /// Checks every value; errors name `zenoh.KEY` and say what is wanted.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |key: &str, reason: String| Err(KeyError::new("zenoh", key, reason));
        for (key, list) in [("connect", &self.connect), ("listen", &self.listen)] {
            for e in list {
                if let Err(reason) = check_endpoint(e) {
                    return bad(key, reason);
                }
            }
        }
        if self.mode == ZenohMode::Client && self.connect.is_empty() {
            return bad(
                "connect",
                "client mode needs a router or peer to connect to (e.g. [\"tcp/127.0.0.1:7447\"])"
                    .into(),
            );
        }
        if self.domain_id > 232 {
            return bad(
                "domain_id",
                format!("{} is not within 0..=232 (ROS_DOMAIN_ID)", self.domain_id),
            );
        }
        let ns_ok = self.namespace == "/"
            || (self.namespace.starts_with('/') && self.namespace[1..].split('/').all(is_token));
        if !ns_ok {
            return bad(
                "namespace",
                format!(
                    "{:?} is not a ROS namespace: \"/\" or \"/a/b\" (letters, digits, _; no trailing /)",
                    self.namespace
                ),
            );
        }
        if !is_token(&self.node) {
            return bad(
                "node",
                format!(
                    "{:?} is not a ROS node name (a letter or _, then letters, digits, _)",
                    self.node
                ),
            );
        }
        if self.frame_id.contains('\0') || self.frame_id.len() > 256 {
            return bad(
                "frame_id",
                "must be at most 256 bytes without NUL (e.g. \"camera_optical_frame\")".into(),
            );
        }
        if !(1..=16).contains(&self.mask_downscale) {
            return bad(
                "mask_downscale",
                format!("{} is not within 1..=16", self.mask_downscale),
            );
        }
        if !(0.1..=3600.0).contains(&self.clock_refresh_s) {
            return bad(
                "clock_refresh_s",
                format!("{} is not within 0.1..=3600", self.clock_refresh_s),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<ZenohConfig, String> {
        let c: ZenohConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_rmw_zenoh_defaults() {
        let c = check("").unwrap();
        assert_eq!(c, ZenohConfig::default());
        assert_eq!(c.connect, ["tcp/127.0.0.1:7447"]);
        assert_eq!(
            (c.mode, c.node.as_str(), c.namespace.as_str()),
            (ZenohMode::Peer, "vosd", "/")
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, want) in [
            (
                "connect = [\"udp/1.2.3.4:5\"]",
                "zenoh.connect: \"udp/1.2.3.4:5\": only TCP",
            ),
            (
                "listen = [\"tcp/1.2.3.4\"]",
                "zenoh.listen: \"tcp/1.2.3.4\": expected `tcp/HOST:PORT`",
            ),
            ("listen = [\"tcp/:80\"]", "zenoh.listen"),
            (
                "mode = \"client\"\nconnect = []",
                "zenoh.connect: client mode needs",
            ),
            (
                "domain_id = 300",
                "zenoh.domain_id: 300 is not within 0..=232",
            ),
            (
                "namespace = \"robot\"",
                "zenoh.namespace: \"robot\" is not a ROS namespace",
            ),
            ("namespace = \"/robot/\"", "zenoh.namespace"),
            (
                "node = \"1vosd\"",
                "zenoh.node: \"1vosd\" is not a ROS node name",
            ),
            ("node = \"a-b\"", "zenoh.node"),
            (
                "mask_downscale = 0",
                "zenoh.mask_downscale: 0 is not within 1..=16",
            ),
            ("clock_refresh_s = 0.0", "zenoh.clock_refresh_s"),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(check("namespace = \"/robot1/arm_2\"\nnode = \"_v\"").is_ok());
    }
}
