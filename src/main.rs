//! The `vosd` command: the daemon and its tools. This file parses the
//! command line and dispatches; each command is a module of [`cmd`].

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Real-time video object segmentation daemon for edge boards.
#[derive(Parser, Debug)]
#[command(name = "vosd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Segment a folder of frames from the first frame's mask.
    Segment(cmd::segment::SegmentArgs),
    /// Evaluate on a DAVIS dataset (J, F, J&F; DAVIS definitions).
    Eval(cmd::eval::EvalArgs),
    /// Run the daemon: capture, segment, publish to shared memory.
    Run(cmd::run::RunArgs),
    /// Print one line per frame published to shared memory.
    Tail(cmd::tail::TailArgs),
    /// List the cameras (V4L2 device nodes) and the compute backends (ONNX
    /// Runtime and its providers, OpenCL devices, and the backend `auto`
    /// would choose).
    Probe(cmd::probe::ProbeArgs),
    /// Benchmark the VOS engine: per-stage times (encode, readout, upsample) and fps.
    Bench(cmd::bench::BenchArgs),
    /// Benchmark the pipeline on the synthetic source (latency, fps, publication cost).
    BenchPipeline(cmd::bench_pipeline::BenchPipelineArgs),
    /// Control a running daemon through its control socket (add, correct,
    /// remove objects; pause, resume; status). Prints the reply (JSON).
    Ctl(cmd::ctl::CtlArgs),
    /// Serve a live view of a running daemon's shared memory (masks, boxes,
    /// ids, states, counters) on a web page.
    View(cmd::view::ViewArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Segment(args) => cmd::segment::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Tail(args) => cmd::tail::run(args),
        Command::Probe(args) => cmd::probe::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::BenchPipeline(args) => cmd::bench_pipeline::run(args),
        Command::Ctl(args) => cmd::ctl::run(args),
        Command::View(args) => cmd::view::run(args),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vosd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
