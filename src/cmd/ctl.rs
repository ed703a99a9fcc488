//! `vosd ctl`: a client of the daemon's control socket. It builds the
//! protocol's own [`Request`] and sends it serialised (one JSON line), then
//! prints the reply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use vosd::control::client;
use vosd::control::protocol::{Command, MaskSource, Request};

/// `vosd ctl`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The daemon's control socket ([control] socket in its config).
    #[arg(long, value_name = "PATH", default_value = "/run/vosd/control.sock")]
    socket: PathBuf,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    action: CtlAction,
}

/// What `vosd ctl` asks for.
#[derive(Subcommand, Debug)]
pub enum CtlAction {
    /// Objects with their states, fps, drops, backend, memory.
    Status,
    /// Track a new object from a mask PNG (read here, sent inline) or a box.
    Add(CtlObjectMask),
    /// Replace a tracked object's mask in the current frame.
    Correct(CtlObjectMask),
    /// Stop tracking an object.
    Remove {
        /// Object id (1..=255).
        #[arg(long)]
        object: u8,
    },
    /// Stop tracking every object.
    RemoveAll,
    /// Stop segmenting and publishing.
    Pause,
    /// Segment and publish again.
    Resume,
    /// Send one raw JSON request line (see docs/control.md).
    Send {
        /// The request, e.g. '{"cmd":"status"}'.
        json: String,
    },
}

/// An object id and where its mask comes from.
#[derive(clap::Args, Debug)]
pub struct CtlObjectMask {
    /// Object id (1..=255).
    #[arg(long)]
    object: u8,
    /// Mask PNG (binary, or labels containing the id), frame size.
    #[arg(
        long,
        value_name = "PNG",
        conflicts_with = "bbox",
        required_unless_present = "bbox"
    )]
    mask: Option<PathBuf>,
    /// Bounding box X,Y,W,H in frame pixels: the daemon derives the mask.
    #[arg(long = "box", value_name = "X,Y,W,H", id = "bbox")]
    bbox: Option<String>,
}

/// Parses `--box X,Y,W,H`.
fn parse_box(b: &str) -> Result<[u32; 4]> {
    let parts: Vec<u32> = b
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--box '{b}': expected X,Y,W,H (whole pixels)"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("--box '{b}': expected four numbers X,Y,W,H"))
}

impl CtlObjectMask {
    /// The mask to send: the PNG read here and run-length encoded (sent
    /// inline), or the box.
    fn mask_source(&self) -> Result<MaskSource> {
        match (&self.mask, &self.bbox) {
            (Some(path), _) => Ok(MaskSource::Rle(client::rle_from_png(path, self.object)?)),
            (None, Some(b)) => Ok(MaskSource::Box(parse_box(b)?)),
            // clap requires one of the two.
            (None, None) => bail!("give --mask PNG or --box X,Y,W,H"),
        }
    }
}

impl CtlAction {
    /// The request line to send.
    fn line(&self) -> Result<String> {
        let command = match self {
            CtlAction::Send { json } => return Ok(json.clone()),
            CtlAction::Status => Command::Status,
            CtlAction::Add(m) => Command::Add {
                object: m.object,
                mask: m.mask_source()?,
            },
            CtlAction::Correct(m) => Command::Correct {
                object: m.object,
                mask: m.mask_source()?,
            },
            CtlAction::Remove { object } => Command::Remove { object: *object },
            CtlAction::RemoveAll => Command::RemoveAll,
            CtlAction::Pause => Command::Pause,
            CtlAction::Resume => Command::Resume,
        };
        Ok(serde_json::to_string(&Request::new(command))?)
    }
}

/// Sends `line` to the daemon at `socket`, prints the reply, and fails
/// when the daemon refused the request.
fn send(socket: &Path, line: &str, timeout: Duration) -> Result<()> {
    let reply = client::request(socket, line, timeout)?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    if reply["ok"] != serde_json::Value::Bool(true) {
        bail!(
            "the daemon refused: {}",
            reply["error"].as_str().unwrap_or("(no reason given)")
        );
    }
    Ok(())
}

/// Runs `vosd ctl`.
pub fn run(args: CtlArgs) -> Result<()> {
    if !(args.timeout > 0.0 && args.timeout <= 86_400.0) {
        bail!("--timeout must be a positive number of seconds (at most 86400)");
    }
    let line = args.action.line()?;
    send(&args.socket, &line, Duration::from_secs_f64(args.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_parse_or_name_the_flag() {
        assert_eq!(parse_box("1, 2,3,4").unwrap(), [1, 2, 3, 4]);
        for bad in ["1,2,x,4", "1,2,3", "1,2,3,4,5", "-1,2,3,4", ""] {
            let e = parse_box(bad).unwrap_err().to_string();
            assert!(e.contains("--box"), "{bad}: {e}");
        }
    }

    #[test]
    fn actions_send_the_protocol_lines() {
        let line = |a: CtlAction| a.line().unwrap();
        assert_eq!(line(CtlAction::Status), r#"{"v":1,"cmd":"status"}"#);
        assert_eq!(line(CtlAction::RemoveAll), r#"{"v":1,"cmd":"remove_all"}"#);
        assert_eq!(line(CtlAction::Pause), r#"{"v":1,"cmd":"pause"}"#);
        assert_eq!(line(CtlAction::Resume), r#"{"v":1,"cmd":"resume"}"#);
        assert_eq!(
            line(CtlAction::Remove { object: 3 }),
            r#"{"v":1,"cmd":"remove","object":3}"#
        );
        let boxed = CtlObjectMask {
            object: 6,
            mask: None,
            bbox: Some("1,2,30,40".into()),
        };
        assert_eq!(
            line(CtlAction::Add(boxed)),
            r#"{"v":1,"cmd":"add","object":6,"box":[1,2,30,40]}"#
        );
        let raw = r#"{"cmd":"status","id":1}"#;
        assert_eq!(line(CtlAction::Send { json: raw.into() }), raw);
    }

    #[test]
    fn a_mask_png_is_sent_inline() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("m.png");
        let mut m = vosd_engine::frame::LabelMask::new(4, 2);
        m.data[5] = 255;
        vosd_engine::imageio::save_mask(&png, &m).unwrap();
        let correct = CtlObjectMask {
            object: 2,
            mask: Some(png),
            bbox: None,
        };
        assert_eq!(
            CtlAction::Correct(correct).line().unwrap(),
            r#"{"v":1,"cmd":"correct","object":2,"rle":{"size":[4,2],"counts":[5,1,2]}}"#
        );
    }
}
