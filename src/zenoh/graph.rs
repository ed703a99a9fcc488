//! How rmw_zenoh names things on Zenoh (ros2/rmw_zenoh `docs/design.md` at
//! commit 99a6a2bd, the Jazzy/Kilted/Rolling wire format on zenoh 1.x):
//! topic key expressions, liveliness tokens with the QoS field, the
//! publication attachment and publisher GIDs.
//!
//! - Topic: `<domain_id>/<fully qualified name without its leading
//!   slash>/<DDS type name>/<RIHS01 hash>`, e.g.
//!   `0/vosd/mask/sensor_msgs::msg::dds_::Image_/RIHS01_…`.
//! - Node token: `@ros2_lv/<domain>/<session id>/<node id>/<node
//!   id>/NN/<enclave>/<namespace>/<node>`; publisher token: `@ros2_lv/
//!   <domain>/<session id>/<node id>/<entity id>/MP/<enclave>/<namespace>/
//!   <node>/<topic>/<type>/<hash>/<qos>`, names mangled (`/` → `%`, an
//!   empty enclave or the root namespace is `%`).
//! - QoS field (rmw_zenoh's `qos_to_keyexpr`): `reliability:durability:
//!   history,depth:deadline_s,deadline_ns:lifespan_s,lifespan_ns:
//!   liveliness,lease_s,lease_ns`, each value empty when it equals
//!   rmw_zenoh's default (reliable, volatile, keep-last 42, infinite
//!   durations, automatic liveliness). The sensor-data profile (best effort,
//!   keep-last 5) is `2::,5:,:,:,,`.
//! - Attachment of each sample: the sequence number (i64 LE, from 1 per
//!   publisher), the source timestamp (i64 LE, ns since the epoch at
//!   publication), the GID length (one byte, 16) and the 16-byte GID.

use super::sha256::sha256;

/// The liveliness admin space of rmw_zenoh.
pub const ADMIN_SPACE: &str = "@ros2_lv";

/// The sensor-data QoS (best effort = 2, volatile, keep-last depth 5) in
/// rmw_zenoh's token encoding.
pub const SENSOR_DATA_QOS: &str = "2::,5:,:,:,,";

/// Bytes of a publication attachment.
pub const ATTACHMENT_LEN: usize = 8 + 8 + 1 + 16;

/// `name` with every `/` replaced by `%` (rmw_zenoh's `mangle_name`).
pub fn mangle(name: &str) -> String {
    name.replace('/', "%")
}

/// The DDS type name of `pkg/msg/Name`: `pkg::msg::dds_::Name_`.
pub fn dds_type_name(ros_type: &str) -> String {
    let mut parts = ros_type.rsplitn(2, '/');
    let name = parts.next().unwrap_or_default();
    let pkg = parts.next().unwrap_or_default().replace('/', "::");
    format!("{pkg}::dds_::{name}_")
}

/// A ROS node on Zenoh: its domain, namespace and name, and the Zenoh
/// session that carries it.
#[derive(Clone, Debug)]
pub struct Node {
    /// `ROS_DOMAIN_ID`.
    pub domain_id: u32,
    /// `/` or `/a/b`.
    pub namespace: String,
    /// The node name.
    pub name: String,
    /// The Zenoh session id (hex), as in rmw_zenoh's tokens.
    pub session_id: String,
}

/// A publisher of one topic of a [`Node`].
#[derive(Clone, Debug)]
pub struct Topic {
    /// The fully qualified topic name (`/vosd/mask`).
    pub name: String,
    /// `pkg/msg/Name`.
    pub ros_type: String,
    /// `RIHS01_…`.
    pub type_hash: String,
    /// The entity id within the node (1, 2, ...; the node is 0).
    pub entity_id: u32,
}

impl Node {
    /// The fully qualified name of the node-relative topic `~/<rel>`.
    pub fn private_topic(&self, rel: &str) -> String {
        let ns = self.namespace.trim_end_matches('/');
        format!("{ns}/{}/{rel}", self.name)
    }

    /// The node's liveliness token (`NN`, node id 0).
    pub fn token(&self) -> String {
        format!(
            "{ADMIN_SPACE}/{}/{}/0/0/NN/%/{}/{}",
            self.domain_id,
            self.session_id,
            mangle(&self.namespace),
            self.name
        )
    }

    /// The key expression `topic` is published on.
    pub fn topic_keyexpr(&self, topic: &Topic) -> String {
        format!(
            "{}/{}/{}/{}",
            self.domain_id,
            topic.name.trim_matches('/'),
            dds_type_name(&topic.ros_type),
            topic.type_hash
        )
    }

    /// The key zenoh-bridge-ros2dds maps `topic` to (its default, without
    /// a bridge namespace): the fully qualified name without the leading
    /// `/`. No type, hash or attachment: the bridge's own format.
    pub fn ros2dds_keyexpr(&self, topic: &Topic) -> String {
        topic.name.trim_matches('/').to_string()
    }

    /// The liveliness token of a publisher (`MP`) of `topic` with the
    /// sensor-data QoS.
    pub fn publisher_token(&self, topic: &Topic) -> String {
        format!(
            "{ADMIN_SPACE}/{}/{}/0/{}/MP/%/{}/{}/{}/{}/{}/{SENSOR_DATA_QOS}",
            self.domain_id,
            self.session_id,
            topic.entity_id,
            mangle(&self.namespace),
            self.name,
            mangle(&topic.name),
            dds_type_name(&topic.ros_type),
            topic.type_hash
        )
    }
}

/// A publisher GID: 16 bytes derived from its liveliness token (rmw_zenoh
/// takes XXH3-128 of the token; vosd the first 16 bytes of its SHA-256: a
/// GID is an opaque identifier that only has to be unique and stable).
pub fn gid(token: &str) -> [u8; 16] {
    let h = sha256(token.as_bytes());
    let mut g = [0u8; 16];
    g.copy_from_slice(&h[..16]);
    g
}

/// Writes a publication attachment into `out`.
pub fn attachment(out: &mut [u8; ATTACHMENT_LEN], sequence: i64, source_ns: i64, gid: &[u8; 16]) {
    out[..8].copy_from_slice(&sequence.to_le_bytes());
    out[8..16].copy_from_slice(&source_ns.to_le_bytes());
    out[16] = 16;
    out[17..].copy_from_slice(gid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ns: &str) -> Node {
        Node {
            domain_id: 2,
            namespace: ns.into(),
            name: "vosd".into(),
            session_id: "8b20917502ee955ac4476e0266340d5c".into(),
        }
    }

    fn chatter() -> Topic {
        Topic {
            name: "/chatter".into(),
            ros_type: "std_msgs/msg/String".into(),
            type_hash: "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
                .into(),
            entity_id: 10,
        }
    }

    /// The shapes of rmw_zenoh's design.md examples (talker's `chatter`
    /// publisher, with the sensor-data QoS instead of depth 7).
    #[test]
    fn keys_and_tokens_match_the_design_examples() {
        let n = node("/");
        assert_eq!(
            n.topic_keyexpr(&chatter()),
            "2/chatter/std_msgs::msg::dds_::String_/RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
        );
        assert_eq!(
            n.publisher_token(&chatter()),
            "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/vosd/%chatter/std_msgs::msg::dds_::String_/RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18/2::,5:,:,:,,"
        );
        assert_eq!(
            n.token(),
            "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/0/NN/%/%/vosd"
        );
    }

    #[test]
    fn namespaces_and_private_topics() {
        assert_eq!(node("/").private_topic("mask"), "/vosd/mask");
        let n = node("/robot1/arm");
        assert_eq!(n.private_topic("mask"), "/robot1/arm/vosd/mask");
        assert!(n.token().ends_with("/NN/%/%robot1%arm/vosd"));
        let t = Topic {
            name: n.private_topic("mask"),
            ..chatter()
        };
        assert!(n.topic_keyexpr(&t).starts_with("2/robot1/arm/vosd/mask/"));
        assert_eq!(n.ros2dds_keyexpr(&t), "robot1/arm/vosd/mask");
        assert!(n
            .publisher_token(&t)
            .contains("/vosd/%robot1%arm%vosd%mask/"));
        assert_eq!(
            dds_type_name("vision_msgs/msg/Detection2DArray"),
            "vision_msgs::msg::dds_::Detection2DArray_"
        );
    }

    #[test]
    fn attachment_layout() {
        let mut a = [0u8; ATTACHMENT_LEN];
        let g = gid("token");
        attachment(&mut a, 3, -2, &g);
        assert_eq!(&a[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[8..16], &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(a[16], 16);
        assert_eq!(&a[17..], &g);
        assert_ne!(gid("token"), gid("token2"));
    }
}
