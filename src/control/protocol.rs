//! The control protocol, version 1: one JSON object per line each way.
//!
//! Request: `{"v": 1, "id": ANY, "cmd": NAME, ...}` (`v` optional, `id`
//! optional and echoed back). Reply: `{"v": 1, "id": ANY, "ok": true, ...}`
//! or `{"v": 1, "id": ANY, "ok": false, "error": "..."}`. Commands:
//!
//! | cmd | fields | does |
//! |---|---|---|
//! | `status` | | objects and their states, fps, drops, backend, memory |
//! | `add` | `object`, one of `mask_png` / `rle` / `box` | starts tracking a new object |
//! | `correct` | `object`, one of `mask_png` / `rle` / `box` | replaces a tracked object's mask |
//! | `remove` | `object` | stops tracking it |
//! | `remove_all` | | stops tracking every object |
//! | `pause` / `resume` | | stops / restarts segmenting and publishing |
//!
//! The full text with examples is docs/control.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use vosd_engine::frame::LabelMask;

/// Protocol version this daemon speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// A run-length encoded binary mask: `counts` alternate background and
/// object runs, starting with background, over the pixels in row-major
/// order; they must add up to `width × height`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rle {
    /// `[width, height]` of the mask (the camera frame's size).
    pub size: [u32; 2],
    /// Run lengths, background first.
    pub counts: Vec<u32>,
}

/// Where an object's mask comes from. On the wire, one of the request's
/// fields `mask_png`, `rle` or `box`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MaskSource {
    /// A PNG label mask on the daemon's filesystem (binary or palette; its
    /// non-zero pixels, or the pixels equal to the object id if present,
    /// are the object).
    #[serde(rename = "mask_png")]
    Png(PathBuf),
    /// An inline run-length mask.
    #[serde(rename = "rle")]
    Rle(Rle),
    /// A bounding box `[x, y, width, height]` in frame pixels: the mask is
    /// derived from the image (box prompt).
    #[serde(rename = "box")]
    Box([u32; 4]),
}

/// A parsed request. On the wire, `cmd` names it (`"remove_all"`) and its
/// fields are the request's.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Objects, states and pipeline figures.
    Status,
    /// Track a new object.
    Add {
        /// Object id (1..=255).
        object: u8,
        /// Its mask in the current frame.
        #[serde(flatten)]
        mask: MaskSource,
    },
    /// Replace a tracked object's mask in the current frame.
    Correct {
        /// Object id.
        object: u8,
        /// Its corrected mask.
        #[serde(flatten)]
        mask: MaskSource,
    },
    /// Stop tracking one object.
    Remove {
        /// Object id.
        object: u8,
    },
    /// Stop tracking every object.
    RemoveAll,
    /// Stop segmenting and publishing (frames are dropped).
    Pause,
    /// Segment and publish again.
    Resume,
}

/// A request: its command and the id to echo. It serialises to the line a
/// client sends (`{"v":1,"cmd":"remove","object":3}`; `id` only when it is
/// not `null`), which [`parse_request`] reads back.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The client's request id (any JSON value; `null` if absent).
    pub id: Value,
    /// What to do.
    pub command: Command,
}

impl Request {
    /// A request without an id.
    pub fn new(command: Command) -> Self {
        Request {
            id: Value::Null,
            command,
        }
    }
}

/// The wire form of a [`Request`]: the version, the id, then the command's
/// `cmd` and fields.
#[derive(Serialize)]
struct WireOut<'a> {
    v: u64,
    #[serde(skip_serializing_if = "Value::is_null")]
    id: &'a Value,
    #[serde(flatten)]
    command: &'a Command,
}

impl Serialize for Request {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            v: PROTOCOL_VERSION,
            id: &self.id,
            command: &self.command,
        }
        .serialize(serializer)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    v: Option<u64>,
    // Accepted here; the reply echoes it from the raw JSON (even when the
    // rest of the request is refused).
    #[serde(default)]
    #[allow(dead_code)]
    id: Value,
    cmd: String,
    #[serde(default)]
    object: Option<i64>,
    #[serde(default)]
    mask_png: Option<PathBuf>,
    #[serde(default)]
    rle: Option<Rle>,
    #[serde(default, rename = "box")]
    bbox: Option<[i64; 4]>,
}

/// Why a request line is refused; the text goes into the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// Parses one request line. Errors name the field and the problem; the id
/// of a request that parsed as JSON is returned with the error, so that the
/// reply can echo it.
pub fn parse_request(line: &str) -> Result<Request, (Value, ProtocolError)> {
    let value: Value = serde_json::from_str(line.trim())
        .map_err(|e| (Value::Null, ProtocolError(format!("not JSON: {e}"))))?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let wire: Wire = serde_json::from_value(value)
        .map_err(|e| (id.clone(), ProtocolError(format!("bad request: {e}"))))?;
    let command = to_command(&wire).map_err(|e| (id.clone(), e))?;
    Ok(Request { id, command })
}

fn object_id(wire: &Wire) -> Result<u8, ProtocolError> {
    match wire.object {
        None => err(format!("`{}` needs `object` (an id in 1..=255)", wire.cmd)),
        Some(n) if (1..=255).contains(&n) => Ok(n as u8),
        Some(n) => err(format!("object {n} is not within 1..=255")),
    }
}

fn mask_source(wire: &Wire) -> Result<MaskSource, ProtocolError> {
    let given = [
        wire.mask_png.is_some(),
        wire.rle.is_some(),
        wire.bbox.is_some(),
    ]
    .iter()
    .filter(|&&g| g)
    .count();
    if given != 1 {
        return err(format!(
            "`{}` needs exactly one of `mask_png`, `rle`, `box` ({given} given)",
            wire.cmd
        ));
    }
    if let Some(p) = &wire.mask_png {
        if p.as_os_str().is_empty() {
            return err("`mask_png` is empty");
        }
        return Ok(MaskSource::Png(p.clone()));
    }
    if let Some(r) = &wire.rle {
        return Ok(MaskSource::Rle(r.clone()));
    }
    let [x, y, w, h] = wire.bbox.unwrap_or_default();
    if x < 0 || y < 0 || w <= 0 || h <= 0 || [x, y, w, h].iter().any(|&v| v > 65_535) {
        return err(format!(
            "`box` [{x}, {y}, {w}, {h}] must be [x, y, width, height] with x, y ≥ 0 and width, height ≥ 1"
        ));
    }
    Ok(MaskSource::Box([x as u32, y as u32, w as u32, h as u32]))
}

fn to_command(wire: &Wire) -> Result<Command, ProtocolError> {
    if let Some(v) = wire.v {
        if v != PROTOCOL_VERSION {
            return err(format!(
                "protocol version {v} is not supported (this daemon speaks {PROTOCOL_VERSION})"
            ));
        }
    }
    let none_of_mask = |wire: &Wire| {
        if wire.mask_png.is_some() || wire.rle.is_some() || wire.bbox.is_some() {
            err(format!("`{}` takes no mask", wire.cmd))
        } else {
            Ok(())
        }
    };
    Ok(match wire.cmd.as_str() {
        "status" | "remove_all" | "pause" | "resume" => {
            none_of_mask(wire)?;
            if wire.object.is_some() {
                return err(format!("`{}` takes no `object`", wire.cmd));
            }
            match wire.cmd.as_str() {
                "status" => Command::Status,
                "remove_all" => Command::RemoveAll,
                "pause" => Command::Pause,
                _ => Command::Resume,
            }
        }
        "add" => Command::Add {
            object: object_id(wire)?,
            mask: mask_source(wire)?,
        },
        "correct" => Command::Correct {
            object: object_id(wire)?,
            mask: mask_source(wire)?,
        },
        "remove" => {
            none_of_mask(wire)?;
            Command::Remove {
                object: object_id(wire)?,
            }
        }
        other => {
            return err(format!(
                "unknown cmd {other:?} (status, add, correct, remove, remove_all, pause, resume)"
            ))
        }
    })
}

/// Decodes `rle` into a mask of `width`×`height` whose object pixels are
/// `id`. The size must match and the runs must cover it exactly.
pub fn decode_rle(rle: &Rle, width: usize, height: usize, id: u8) -> Result<LabelMask, String> {
    let [w, h] = rle.size;
    if (w as usize, h as usize) != (width, height) {
        return Err(format!(
            "rle size {w}x{h} is not the frame size {width}x{height}"
        ));
    }
    let total: u64 = rle.counts.iter().map(|&c| u64::from(c)).sum();
    if total != (width * height) as u64 {
        return Err(format!(
            "rle runs cover {total} pixels, the frame has {}",
            width * height
        ));
    }
    let mut mask = LabelMask::new(width, height);
    let mut at = 0usize;
    for (i, &run) in rle.counts.iter().enumerate() {
        let end = at + run as usize;
        if i % 2 == 1 {
            mask.data[at..end].fill(id);
        }
        at = end;
    }
    Ok(mask)
}

/// The pixels of a label mask that stand for object `id`, as a mask
/// labelled `id`: the pixels equal to `id` or, in a mask with a single
/// label (a binary mask), all labelled pixels. Empty masks and masks with
/// other labels only are errors.
pub fn object_pixels(mask: &LabelMask, id: u8) -> Result<LabelMask, String> {
    let ids = mask.object_ids();
    let pick = match ids.as_slice() {
        [] => return Err("the mask is empty".into()),
        _ if ids.contains(&id) => id,
        [only] => *only,
        _ => {
            return Err(format!(
                "the mask has ids {ids:?}, none of them {id} (give a binary mask or one containing id {id})"
            ))
        }
    };
    let mut out = LabelMask::new(mask.width, mask.height);
    for (o, &v) in out.data.iter_mut().zip(&mask.data) {
        if v == pick {
            *o = id;
        }
    }
    Ok(out)
}

/// Run-length encodes the pixels of `mask` equal to `id` (for clients and
/// tests; the inverse of [`decode_rle`]).
pub fn encode_rle(mask: &LabelMask, id: u8) -> Rle {
    let mut counts = Vec::new();
    let mut current = false;
    let mut run = 0u32;
    for &v in &mask.data {
        let on = v == id;
        if on != current {
            counts.push(run);
            run = 0;
            current = on;
        }
        run += 1;
    }
    counts.push(run);
    Rle {
        size: [mask.width as u32, mask.height as u32],
        counts,
    }
}

/// A success reply carrying `fields` (an object) for request `id`.
pub fn ok_reply(id: &Value, fields: Value) -> String {
    let mut reply = json!({"v": PROTOCOL_VERSION, "id": id, "ok": true});
    if let (Some(r), Value::Object(extra)) = (reply.as_object_mut(), fields) {
        r.extend(extra);
    }
    reply.to_string()
}

/// An error reply for request `id`.
pub fn error_reply(id: &Value, message: &str) -> String {
    json!({"v": PROTOCOL_VERSION, "id": id, "ok": false, "error": message}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        parse_request(line).map(|r| r.command).map_err(|(_, e)| e.0)
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(parse(r#"{"cmd":"status"}"#), Ok(Command::Status));
        assert_eq!(parse(r#"{"v":1,"cmd":"pause"}"#), Ok(Command::Pause));
        assert_eq!(parse(r#"{"cmd":"resume"}"#), Ok(Command::Resume));
        assert_eq!(parse(r#"{"cmd":"remove_all"}"#), Ok(Command::RemoveAll));
        assert_eq!(
            parse(r#"{"cmd":"remove","object":3}"#),
            Ok(Command::Remove { object: 3 })
        );
        assert_eq!(
            parse(r#"{"cmd":"add","object":2,"box":[10,20,30,40]}"#),
            Ok(Command::Add {
                object: 2,
                mask: MaskSource::Box([10, 20, 30, 40])
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"correct","object":1,"mask_png":"/tmp/m.png"}"#),
            Ok(Command::Correct {
                object: 1,
                mask: MaskSource::Png("/tmp/m.png".into())
            })
        );
        let r = parse_request(
            r#"{"id":"a7","cmd":"add","object":5,"rle":{"size":[2,2],"counts":[1,2,1]}}"#,
        )
        .unwrap();
        assert_eq!(r.id, json!("a7"));
    }

    #[test]
    fn requests_serialise_to_the_lines_they_parse_from() {
        let line = |c: Command| serde_json::to_string(&Request::new(c)).unwrap();
        assert_eq!(line(Command::Status), r#"{"v":1,"cmd":"status"}"#);
        assert_eq!(line(Command::RemoveAll), r#"{"v":1,"cmd":"remove_all"}"#);
        assert_eq!(line(Command::Pause), r#"{"v":1,"cmd":"pause"}"#);
        assert_eq!(line(Command::Resume), r#"{"v":1,"cmd":"resume"}"#);
        assert_eq!(
            line(Command::Remove { object: 3 }),
            r#"{"v":1,"cmd":"remove","object":3}"#
        );
        assert_eq!(
            line(Command::Add {
                object: 2,
                mask: MaskSource::Box([1, 2, 3, 4])
            }),
            r#"{"v":1,"cmd":"add","object":2,"box":[1,2,3,4]}"#
        );
        assert_eq!(
            line(Command::Correct {
                object: 5,
                mask: MaskSource::Rle(Rle {
                    size: [2, 2],
                    counts: vec![1, 2, 1]
                })
            }),
            r#"{"v":1,"cmd":"correct","object":5,"rle":{"size":[2,2],"counts":[1,2,1]}}"#
        );
        assert_eq!(
            line(Command::Add {
                object: 1,
                mask: MaskSource::Png("/tmp/m.png".into())
            }),
            r#"{"v":1,"cmd":"add","object":1,"mask_png":"/tmp/m.png"}"#
        );
        for command in [
            Command::Status,
            Command::RemoveAll,
            Command::Pause,
            Command::Resume,
            Command::Remove { object: 255 },
            Command::Add {
                object: 7,
                mask: MaskSource::Box([0, 0, 5, 5]),
            },
            Command::Correct {
                object: 1,
                mask: MaskSource::Png("/a.png".into()),
            },
        ] {
            for id in [Value::Null, json!(4), json!("x")] {
                let r = Request {
                    id,
                    command: command.clone(),
                };
                let text = serde_json::to_string(&r).unwrap();
                assert_eq!(parse_request(&text), Ok(r), "{text}");
            }
        }
    }

    #[test]
    fn bad_requests_name_the_problem() {
        for (line, want) in [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("[1,2]", "bad request"),
            (r#"{"cmd":"fly"}"#, "unknown cmd \"fly\""),
            (r#"{"v":2,"cmd":"status"}"#, "protocol version 2"),
            (r#"{"cmd":"status","colour":1}"#, "unknown field `colour`"),
            (r#"{"cmd":"add","box":[0,0,5,5]}"#, "needs `object`"),
            (
                r#"{"cmd":"add","object":0,"box":[0,0,5,5]}"#,
                "object 0 is not within",
            ),
            (
                r#"{"cmd":"add","object":300,"box":[0,0,5,5]}"#,
                "object 300",
            ),
            (r#"{"cmd":"add","object":1}"#, "exactly one of"),
            (
                r#"{"cmd":"add","object":1,"box":[0,0,5,5],"mask_png":"a"}"#,
                "(2 given)",
            ),
            (r#"{"cmd":"add","object":1,"box":[0,0,0,5]}"#, "`box`"),
            (r#"{"cmd":"add","object":1,"box":[-1,0,5,5]}"#, "`box`"),
            (
                r#"{"cmd":"remove","object":1,"box":[0,0,5,5]}"#,
                "takes no mask",
            ),
            (r#"{"cmd":"pause","object":1}"#, "takes no `object`"),
            (r#"{"cmd":7}"#, "bad request"),
        ] {
            let e = parse(line).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
        // The id is echoed even when the command is refused.
        let (id, _) = parse_request(r#"{"id":9,"cmd":"fly"}"#).unwrap_err();
        assert_eq!(id, json!(9));
    }

    #[test]
    fn rle_round_trips_and_checks_its_size() {
        let mut m = LabelMask::new(5, 3);
        for i in [1, 2, 6, 14] {
            m.data[i] = 4;
        }
        let rle = encode_rle(&m, 4);
        assert_eq!(rle.counts, vec![1, 2, 3, 1, 7, 1]);
        assert_eq!(decode_rle(&rle, 5, 3, 4).unwrap(), m);
        assert!(decode_rle(&rle, 5, 4, 4)
            .unwrap_err()
            .contains("frame size"));
        let short = Rle {
            size: [5, 3],
            counts: vec![1, 2],
        };
        assert!(decode_rle(&short, 5, 3, 1).unwrap_err().contains("cover 3"));
        let huge = Rle {
            size: [5, 3],
            counts: vec![u32::MAX, u32::MAX],
        };
        assert!(decode_rle(&huge, 5, 3, 1).is_err());
    }

    #[test]
    fn object_pixels_take_the_id_or_a_binary_mask() {
        let mut m = LabelMask::new(4, 1);
        m.data = vec![0, 255, 255, 0];
        assert_eq!(object_pixels(&m, 3).unwrap().data, vec![0, 3, 3, 0]);
        m.data = vec![1, 2, 2, 0];
        assert_eq!(object_pixels(&m, 2).unwrap().data, vec![0, 2, 2, 0]);
        assert!(object_pixels(&m, 5).unwrap_err().contains("none of them 5"));
        m.data = vec![0; 4];
        assert!(object_pixels(&m, 1).unwrap_err().contains("empty"));
    }

    #[test]
    fn replies_are_one_json_line() {
        let r = ok_reply(&json!(3), json!({"paused": true}));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["ok"], json!(true));
        assert_eq!(v["paused"], json!(true));
        assert_eq!(v["id"], json!(3));
        let e = error_reply(&Value::Null, "no\nway");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic fuzz: random bytes and mutated requests.
        let seeds = [
            r#"{"cmd":"add","object":2,"rle":{"size":[4,4],"counts":[3,2,11]}}"#,
            r#"{"v":1,"id":[1,{"a":null}],"cmd":"correct","object":9,"box":[1,2,3,4]}"#,
            r#"{"cmd":"remove","object":1}"#,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let line: Vec<u8> = if i % 2 == 0 {
                (0..next() % 64).map(|_| next() as u8).collect()
            } else {
                let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % b.len();
                    b[at] = next() as u8;
                }
                b
            };
            let text = String::from_utf8_lossy(&line);
            if let Ok(Request {
                command:
                    Command::Add {
                        mask: MaskSource::Rle(r),
                        ..
                    },
                ..
            }) = parse_request(&text)
            {
                let _ = decode_rle(&r, 4, 4, 1);
            }
        }
    }
}
