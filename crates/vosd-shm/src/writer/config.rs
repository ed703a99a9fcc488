//! The writer's configuration: [`PublishOptions`] (the daemon's
//! `[publish]` table, checked here once) and [`PublishConfig`] (the options
//! with the mask size).

use crate::error::ShmError;
use crate::layout::{Geometry, MAX_OBJECTS_LIMIT};
use crate::sys;

use super::GroupSpec;

/// The options of one pipeline's shared-memory segment, short of its mask
/// size (which is the camera's): the daemon's `[publish]` table.
///
/// In TOML (feature `serde`):
///
/// ```toml
/// name = "/vosd-cam0"
/// slots = 4          # default
/// max_objects = 16   # default
/// mode = 0o640       # default 0o660
/// group = "video"    # default: the writer's group
/// ```
///
/// [`PublishOptions::validate`] holds the checks of these values, and
/// [`ShmWriter::create`](super::ShmWriter::create) runs the same checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct PublishOptions {
    /// POSIX shared-memory name, e.g. `"/vosd-cam0"` (appears as
    /// `/dev/shm/vosd-cam0` on Linux).
    pub name: String,
    /// Number of slots in the ring (2..=1024). More slots let slower
    /// `read_next` readers fall further behind before they skip frames.
    #[cfg_attr(feature = "serde", serde(default = "default_slots"))]
    pub slots: u32,
    /// Object states per slot (1..=255).
    #[cfg_attr(feature = "serde", serde(default = "default_max_objects"))]
    pub max_objects: u32,
    /// Permission bits of the segment (e.g. `0o660`), applied exactly
    /// (not filtered by the umask). Readers need read permission only; the
    /// owner needs it too (to tell a stale segment from a live one).
    #[cfg_attr(feature = "serde", serde(default = "default_mode"))]
    pub mode: u32,
    /// Group owning the segment; `None` keeps the writer's group.
    #[cfg_attr(feature = "serde", serde(default))]
    pub group: Option<GroupSpec>,
}

/// A publish option that is out of range: the option's key (`slots`,
/// `mode`...) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PublishOptionError {
    /// The option (a field of [`PublishOptions`]).
    pub key: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

impl PublishOptions {
    /// Options with the defaults: 4 slots, 16 objects, mode 0o660, the
    /// writer's own group.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            slots: default_slots(),
            max_objects: default_max_objects(),
            mode: default_mode(),
            group: None,
        }
    }

    /// Checks every value; the error names the option.
    pub fn validate(&self) -> Result<(), PublishOptionError> {
        let bad = |key, reason: String| Err(PublishOptionError { key, reason });
        let (name, slots, max_objects, mode) =
            (&self.name, self.slots, self.max_objects, self.mode);
        if let Err(why) = sys::check_name(name) {
            return bad(
                "name",
                format!("{name:?} is not a shared-memory name ('/' then 1..=254 characters, no other '/'): {why}"),
            );
        }
        if !(2..=1024).contains(&slots) {
            return bad("slots", format!("{slots} is not within 2..=1024"));
        }
        if !(1..=MAX_OBJECTS_LIMIT).contains(&max_objects) {
            return bad(
                "max_objects",
                format!("{max_objects} is not within 1..={MAX_OBJECTS_LIMIT}"),
            );
        }
        if mode & !0o777 != 0 {
            return bad("mode", format!("{mode:#o} has bits beyond 0o777"));
        }
        if mode & 0o400 == 0 {
            return bad(
                "mode",
                format!("{mode:#o} does not let the owner read the segment"),
            );
        }
        Ok(())
    }

    /// The writer configuration for masks of `width`×`height`.
    pub fn to_config(&self, width: u32, height: u32) -> PublishConfig {
        PublishConfig {
            options: self.clone(),
            width,
            height,
        }
    }
}

/// Configuration of one pipeline's shared-memory segment: the
/// [`PublishOptions`] (the `[publish]` table) and the mask size
/// ([`PublishOptions::to_config`] builds one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// Name, ring size, objects per slot, permissions.
    pub options: PublishOptions,
    /// Label mask width in pixels.
    pub width: u32,
    /// Label mask height in pixels.
    pub height: u32,
}

fn default_slots() -> u32 {
    4
}

fn default_max_objects() -> u32 {
    16
}

fn default_mode() -> u32 {
    0o660
}

impl PublishConfig {
    /// A configuration with the defaults of [`PublishOptions::new`].
    pub fn new(name: impl Into<String>, width: u32, height: u32) -> Self {
        PublishOptions::new(name).to_config(width, height)
    }

    /// Checks the configuration and computes the segment geometry.
    pub(super) fn geometry(&self) -> Result<Geometry, ShmError> {
        let o = &self.options;
        sys::check_name(&o.name).map_err(|reason| ShmError::InvalidName {
            name: o.name.clone(),
            reason,
        })?;
        let invalid = |reason: String| ShmError::InvalidConfig {
            name: o.name.clone(),
            reason,
        };
        if self.width == 0 || self.height == 0 {
            return Err(invalid(format!(
                "mask geometry {}x{} is empty",
                self.width, self.height
            )));
        }
        o.validate().map_err(|e| invalid(e.to_string()))?;
        Geometry::new(self.width, self.height, o.slots, o.max_objects)
            .ok_or_else(|| invalid("segment size overflows".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_options_name_the_bad_option() {
        let good = PublishOptions::new("/vosd-cam0");
        good.validate().unwrap();
        for (options, key) in [
            (PublishOptions::new("vosd-cam0"), "name"),
            (PublishOptions::new("/a/b"), "name"),
            (
                PublishOptions {
                    slots: 1,
                    ..good.clone()
                },
                "slots",
            ),
            (
                PublishOptions {
                    max_objects: 256,
                    ..good.clone()
                },
                "max_objects",
            ),
            (
                PublishOptions {
                    mode: 0o1660,
                    ..good.clone()
                },
                "mode",
            ),
            (
                PublishOptions {
                    mode: 0o260,
                    ..good.clone()
                },
                "mode",
            ),
        ] {
            let e = options.validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
            // The writer runs the same checks.
            let err = options.to_config(8, 8).geometry().unwrap_err();
            assert!(
                matches!(
                    err,
                    ShmError::InvalidName { .. } | ShmError::InvalidConfig { .. }
                ),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn options_and_size_make_the_config() {
        let options = PublishOptions {
            slots: 8,
            group: Some(GroupSpec::Gid(44)),
            ..PublishOptions::new("/vosd-x")
        };
        let c = options.to_config(640, 480);
        assert_eq!(
            (c.width, c.height, c.options.slots, c.options.max_objects),
            (640, 480, 8, 16)
        );
        assert_eq!(c.options, options);
        assert_eq!(PublishConfig::new("/vosd-x", 1, 2).options.slots, 4);
    }

    #[test]
    fn options_parse_from_toml_and_refuse_unknown_keys() {
        let o: PublishOptions = toml::from_str("name = \"/x\"\ngroup = \"video\"\n").unwrap();
        assert_eq!(o.slots, 4);
        assert_eq!(o.group, Some(GroupSpec::Name("video".into())));
        let e = toml::from_str::<PublishOptions>("name = \"/x\"\nslot = 3\n").unwrap_err();
        assert!(e.to_string().contains("slot"), "{e}");
        let e = toml::from_str::<PublishOptions>("slots = 3\n").unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
    }
}
