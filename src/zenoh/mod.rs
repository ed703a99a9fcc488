//! ROS 2 topics over Zenoh in rmw_zenoh's wire format (`[zenoh]` table;
//! the publisher itself needs the `zenoh` cargo feature).
//!
//! Each published frame goes out on three topics of the node
//! `<namespace>/<node>` (default `/vosd`):
//!
//! | topic | type |
//! |---|---|
//! | `~/mask` | `sensor_msgs/msg/Image`, `mono8` label image (pixel = object id) |
//! | `~/detections` | `vision_msgs/msg/Detection2DArray`, a box per object |
//! | `~/states` | `vosd_msgs/msg/ObjectStateArray` (`ros/vosd_msgs`) |
//!
//! The pieces, one per file: the table ([`config`]), CDR ([`cdr`]) and
//! the messages ([`messages`]), REP-2011 type hashes ([`type_hash`] over
//! [`sha256`]), rmw_zenoh's key expressions, liveliness tokens and
//! attachment ([`graph`]), the capture-time conversion to the ROS clock
//! ([`clock`]), per-frame cost figures ([`timing`]) and the publisher
//! thread (`publisher`, with the feature). Wire details: docs/zenoh.md.

pub mod cdr;
pub mod clock;
pub mod config;
pub mod graph;
pub mod messages;
pub mod sha256;
pub mod timing;
pub mod type_hash;

#[cfg(feature = "zenoh")]
pub mod publisher;

pub use config::{ZenohConfig, ZenohMode};

use crate::pipeline::FrameTap;

/// The pipeline taps of a `[zenoh]` table (none without one) for
/// `width`×`height` masks and up to `max_objects` objects. An error when
/// the table is there but this vosd was built without the `zenoh` feature.
pub fn taps(
    cfg: Option<&ZenohConfig>,
    width: usize,
    height: usize,
    max_objects: usize,
) -> anyhow::Result<Vec<Box<dyn FrameTap>>> {
    let Some(cfg) = cfg else {
        return Ok(Vec::new());
    };
    #[cfg(feature = "zenoh")]
    {
        let tap = publisher::ZenohTap::new(cfg, width, height, max_objects)?;
        for line in tap.describe() {
            log::info!("zenoh: publishing {line}");
        }
        Ok(vec![Box::new(tap)])
    }
    #[cfg(not(feature = "zenoh"))]
    {
        let _ = (cfg, width, height, max_objects);
        anyhow::bail!(
            "[zenoh]: this vosd was built without the `zenoh` feature: rebuild with \
             `cargo build --release --features zenoh`, or remove the [zenoh] table"
        )
    }
}
