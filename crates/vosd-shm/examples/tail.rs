//! `vosd tail` as a small program of this crate: follows a segment and
//! prints one line per frame, the camera-lost lines and the writer's
//! statistics at the end (the lines are [`vosd_shm::tail`]'s).
//!
//! `cargo run -p vosd-shm --example tail -- /vosd-demo [frames]`

use std::process::ExitCode;

use vosd_shm::tail::{tail, TailOptions};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let shm = args.next().unwrap_or_else(|| "/vosd-demo".into());
    let frames = match args.next().map(|n| n.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("tail: frames must be a number: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = TailOptions {
        shm,
        frames,
        wait: std::time::Duration::from_secs(10),
        stall: std::time::Duration::from_secs(2),
    };
    match tail(&opts, &mut std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("tail: {msg}");
            ExitCode::FAILURE
        }
    }
}
