//! REP-2011 type hashes (`RIHS01_<sha256>`), computed at start from the
//! type descriptions of the published messages.
//!
//! The hash is the SHA-256 of a JSON text: the type's own description and
//! every type it references (recursively, sorted by name), each a
//! `type_name` and its `fields` (name, then type: `type_id`, `capacity`,
//! `string_capacity`, `nested_type_name`). Constants and default values are
//! not part of it. The JSON is written as Python's `json.dumps` writes it
//! (`", "` and `": "` separators, keys in that order), as rosidl does.
//!
//! [`TYPES`] holds the descriptions of every type vosd publishes, copied
//! from the `.msg` files of sensor_msgs, std_msgs, builtin_interfaces,
//! geometry_msgs and vision_msgs 4.1.1 (ROS 2 Jazzy/Kilted/Rolling), and
//! vosd's own `ros/vosd_msgs/msg/*.msg`.

use super::sha256::{hex, sha256};

/// The REP-2011 field type ids used here (`type_description_interfaces`'s
/// `FieldType` constants).
pub mod type_id {
    /// A nested message.
    pub const NESTED: u8 = 1;
    /// `uint8`.
    pub const UINT8: u8 = 3;
    /// `int32`.
    pub const INT32: u8 = 6;
    /// `uint32`.
    pub const UINT32: u8 = 7;
    /// `float32`.
    pub const FLOAT32: u8 = 10;
    /// `float64`.
    pub const FLOAT64: u8 = 11;
    /// `string` (unbounded).
    pub const STRING: u8 = 17;
    /// Added to a type id: a fixed-size array (`T[N]`).
    pub const ARRAY: u8 = 48;
    /// Added to a type id: an unbounded sequence (`T[]`).
    pub const SEQUENCE: u8 = 144;
}

/// One field of a message type.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The field's name.
    pub name: &'static str,
    /// Its REP-2011 type id (see [`type_id`]).
    pub type_id: u8,
    /// Array size (`T[N]`), 0 otherwise.
    pub capacity: u64,
    /// The nested type (`pkg/msg/Name`), empty for primitives.
    pub nested: &'static str,
}

/// A message type: its full name and fields.
#[derive(Clone, Copy, Debug)]
pub struct TypeDescription {
    /// `pkg/msg/Name`.
    pub name: &'static str,
    /// Its fields in order.
    pub fields: &'static [Field],
}

/// A primitive field.
const fn prim(name: &'static str, type_id: u8) -> Field {
    Field {
        name,
        type_id,
        capacity: 0,
        nested: "",
    }
}

/// A nested-message field (`id` is [`type_id::NESTED`], plus
/// [`type_id::SEQUENCE`] for `T[]`).
const fn nested(name: &'static str, type_id: u8, nested: &'static str) -> Field {
    Field {
        name,
        type_id,
        capacity: 0,
        nested,
    }
}

use type_id::*;

/// `sensor_msgs/msg/Image`.
pub const IMAGE: &str = "sensor_msgs/msg/Image";
/// `vision_msgs/msg/Detection2DArray`.
pub const DETECTION2D_ARRAY: &str = "vision_msgs/msg/Detection2DArray";
/// `vosd_msgs/msg/ObjectStateArray`.
pub const OBJECT_STATE_ARRAY: &str = "vosd_msgs/msg/ObjectStateArray";

/// Every type vosd publishes, with the types they reference.
pub const TYPES: &[TypeDescription] = &[
    TypeDescription {
        name: "builtin_interfaces/msg/Time",
        fields: &[prim("sec", INT32), prim("nanosec", UINT32)],
    },
    TypeDescription {
        name: "std_msgs/msg/Header",
        fields: &[
            nested("stamp", NESTED, "builtin_interfaces/msg/Time"),
            prim("frame_id", STRING),
        ],
    },
    TypeDescription {
        name: IMAGE,
        fields: &[
            nested("header", NESTED, "std_msgs/msg/Header"),
            prim("height", UINT32),
            prim("width", UINT32),
            prim("encoding", STRING),
            prim("is_bigendian", UINT8),
            prim("step", UINT32),
            prim("data", UINT8 + SEQUENCE),
        ],
    },
    TypeDescription {
        name: DETECTION2D_ARRAY,
        fields: &[
            nested("header", NESTED, "std_msgs/msg/Header"),
            nested(
                "detections",
                NESTED + SEQUENCE,
                "vision_msgs/msg/Detection2D",
            ),
        ],
    },
    TypeDescription {
        name: "vision_msgs/msg/Detection2D",
        fields: &[
            nested("header", NESTED, "std_msgs/msg/Header"),
            nested(
                "results",
                NESTED + SEQUENCE,
                "vision_msgs/msg/ObjectHypothesisWithPose",
            ),
            nested("bbox", NESTED, "vision_msgs/msg/BoundingBox2D"),
            prim("id", STRING),
        ],
    },
    TypeDescription {
        name: "vision_msgs/msg/ObjectHypothesisWithPose",
        fields: &[
            nested("hypothesis", NESTED, "vision_msgs/msg/ObjectHypothesis"),
            nested("pose", NESTED, "geometry_msgs/msg/PoseWithCovariance"),
        ],
    },
    TypeDescription {
        name: "vision_msgs/msg/ObjectHypothesis",
        fields: &[prim("class_id", STRING), prim("score", FLOAT64)],
    },
    TypeDescription {
        name: "vision_msgs/msg/BoundingBox2D",
        fields: &[
            nested("center", NESTED, "vision_msgs/msg/Pose2D"),
            prim("size_x", FLOAT64),
            prim("size_y", FLOAT64),
        ],
    },
    TypeDescription {
        name: "vision_msgs/msg/Pose2D",
        fields: &[
            nested("position", NESTED, "vision_msgs/msg/Point2D"),
            prim("theta", FLOAT64),
        ],
    },
    TypeDescription {
        name: "vision_msgs/msg/Point2D",
        fields: &[prim("x", FLOAT64), prim("y", FLOAT64)],
    },
    TypeDescription {
        name: "geometry_msgs/msg/PoseWithCovariance",
        fields: &[
            nested("pose", NESTED, "geometry_msgs/msg/Pose"),
            Field {
                name: "covariance",
                type_id: FLOAT64 + ARRAY,
                capacity: 36,
                nested: "",
            },
        ],
    },
    TypeDescription {
        name: "geometry_msgs/msg/Pose",
        fields: &[
            nested("position", NESTED, "geometry_msgs/msg/Point"),
            nested("orientation", NESTED, "geometry_msgs/msg/Quaternion"),
        ],
    },
    TypeDescription {
        name: "geometry_msgs/msg/Point",
        fields: &[prim("x", FLOAT64), prim("y", FLOAT64), prim("z", FLOAT64)],
    },
    TypeDescription {
        name: "geometry_msgs/msg/Quaternion",
        fields: &[
            prim("x", FLOAT64),
            prim("y", FLOAT64),
            prim("z", FLOAT64),
            prim("w", FLOAT64),
        ],
    },
    TypeDescription {
        name: OBJECT_STATE_ARRAY,
        fields: &[
            nested("header", NESTED, "std_msgs/msg/Header"),
            nested("objects", NESTED + SEQUENCE, "vosd_msgs/msg/ObjectState"),
        ],
    },
    TypeDescription {
        name: "vosd_msgs/msg/ObjectState",
        fields: &[
            prim("id", UINT32),
            prim("visibility", UINT8),
            prim("confidence", FLOAT32),
            prim("area", UINT32),
            prim("centroid_x", FLOAT32),
            prim("centroid_y", FLOAT32),
            prim("velocity_x", FLOAT32),
            prim("velocity_y", FLOAT32),
        ],
    },
];

/// Why a type hash cannot be computed.
#[derive(Debug, thiserror::Error)]
#[error(
    "type {0}: no description (a type referenced by a published message is missing from the table)"
)]
pub struct UnknownType(pub String);

/// Appends one type description as JSON.
fn write_type(json: &mut String, t: &TypeDescription) {
    json.push_str("{\"type_name\": \"");
    json.push_str(t.name);
    json.push_str("\", \"fields\": [");
    for (i, f) in t.fields.iter().enumerate() {
        if i > 0 {
            json.push_str(", ");
        }
        json.push_str(&format!(
            "{{\"name\": \"{}\", \"type\": {{\"type_id\": {}, \"capacity\": {}, \"string_capacity\": 0, \"nested_type_name\": \"{}\"}}}}",
            f.name, f.type_id, f.capacity, f.nested
        ));
    }
    json.push_str("]}");
}

/// The REP-2011 hashed JSON text of type `name`, from the descriptions in
/// `types`.
pub fn hashable_json(name: &str, types: &[TypeDescription]) -> Result<String, UnknownType> {
    let find = |n: &str| {
        types
            .iter()
            .find(|t| t.name == n)
            .ok_or_else(|| UnknownType(n.to_string()))
    };
    let main = find(name)?;
    // Every type referenced, directly or not.
    let mut referenced: Vec<&TypeDescription> = Vec::new();
    let mut todo: Vec<&str> = main.fields.iter().map(|f| f.nested).collect();
    while let Some(n) = todo.pop() {
        if n.is_empty() || referenced.iter().any(|t| t.name == n) {
            continue;
        }
        let t = find(n)?;
        todo.extend(t.fields.iter().map(|f| f.nested));
        referenced.push(t);
    }
    referenced.sort_by(|a, b| a.name.cmp(b.name));
    let mut json = String::from("{\"type_description\": ");
    write_type(&mut json, main);
    json.push_str(", \"referenced_type_descriptions\": [");
    for (i, t) in referenced.iter().enumerate() {
        if i > 0 {
            json.push_str(", ");
        }
        write_type(&mut json, t);
    }
    json.push_str("]}");
    Ok(json)
}

/// The type hash of `name` (`RIHS01_` and 64 hex digits) from the
/// descriptions in `types`.
pub fn rihs01(name: &str, types: &[TypeDescription]) -> Result<String, UnknownType> {
    let json = hashable_json(name, types)?;
    Ok(format!("RIHS01_{}", hex(&sha256(json.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRING_FIELDS: &[Field] = &[prim("data", STRING)];
    const BROKEN_FIELDS: &[Field] = &[nested("b", NESTED, "a/msg/B")];

    /// std_msgs/msg/String's hash as rmw_zenoh's docs/design.md prints it
    /// in its key expression examples (ros2/rmw_zenoh@99a6a2bd).
    #[test]
    fn std_msgs_string_matches_the_published_hash() {
        let string = [TypeDescription {
            name: "std_msgs/msg/String",
            fields: STRING_FIELDS,
        }];
        assert_eq!(
            rihs01("std_msgs/msg/String", &string).unwrap(),
            "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
        );
    }

    #[test]
    fn referenced_types_are_sorted_and_complete() {
        let json = hashable_json(DETECTION2D_ARRAY, TYPES).unwrap();
        let names: Vec<&str> = json
            .match_indices("\"type_name\": \"")
            .map(|(i, m)| {
                let rest = &json[i + m.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        assert_eq!(names[0], DETECTION2D_ARRAY);
        let mut sorted = names[1..].to_vec();
        sorted.sort_unstable();
        assert_eq!(names[1..], sorted[..]);
        assert_eq!(names.len(), 1 + 12, "{names:?}");
    }

    #[test]
    fn a_missing_reference_is_an_error() {
        let broken = [TypeDescription {
            name: "a/msg/A",
            fields: BROKEN_FIELDS,
        }];
        let e = rihs01("a/msg/A", &broken).unwrap_err();
        assert!(e.to_string().contains("a/msg/B"), "{e}");
    }
}
