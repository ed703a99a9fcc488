//! `vosd tail`: a shared-memory reader that prints one line per published
//! frame (frame number, capture→publish latency, each object's id, area,
//! box and visibility), a `CAMERA LOST` line when the writer reports that
//! its camera went away (and one when it is back), and a summary line of
//! the writer's pipeline statistics at the end. The reading and the lines
//! are `vosd_shm::tail`'s, shared with that crate's `tail` example.

use std::time::Duration;

use anyhow::Result;

use vosd_shm::tail::{tail, TailEnd, TailOptions};

/// `vosd tail`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Shared-memory name of the pipeline.
    #[arg(long, value_name = "NAME", default_value = "/vosd-demo")]
    shm: String,
    /// Exit after N frames (0: until the writer ends).
    #[arg(long, value_name = "N", default_value_t = 0)]
    frames: u64,
    /// Seconds to wait for the segment to appear.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    wait: f64,
}

/// Runs `vosd tail`.
pub fn run(args: TailArgs) -> Result<()> {
    let opts = TailOptions {
        shm: args.shm,
        frames: args.frames,
        // A negative or NaN wait is none; an infinite or huge one is forever.
        wait: Duration::try_from_secs_f64(args.wait.max(0.0)).unwrap_or(Duration::MAX),
        stall: Duration::from_secs(2),
    };
    let stdout = std::io::stdout();
    let (n, end) = tail(&opts, &mut stdout.lock())?;
    if end == TailEnd::Ended {
        eprintln!("vosd tail: the writer ended (end marker) after {n} frames read");
    }
    Ok(())
}
