//! `vosd view`: a live view of a running daemon for a person. Reads the
//! shared-memory ring as an ordinary client and serves a page with the
//! masks drawn on a neutral background, boxes, ids, states and the
//! writer's counters ([`vosd::view`]). Runs until a signal; a daemon that
//! stops, restarts or dies is waited for, not fatal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use vosd::view::ViewServer;
use vosd_shm::{ShmError, ShmReader};

/// `vosd view`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Shared-memory name of the pipeline ([publish] name).
    #[arg(long, value_name = "NAME", default_value = "/vosd-demo")]
    shm: String,
    /// IP:PORT to serve the page on (0.0.0.0:PORT for other machines).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// Runs `vosd view`.
pub fn run(args: ViewArgs) -> Result<()> {
    // A name that can never exist is a mistake to say now, not to wait on.
    if let Err(e @ ShmError::InvalidName { .. }) = ShmReader::open(&args.shm) {
        bail!("--shm: {e} (e.g. --shm /vosd-demo, the [publish] name)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    vosd::service::install_signal_handlers(&stop)?;
    let view = ViewServer::start(&args.shm, args.listen).with_context(|| {
        format!(
            "--listen {}: cannot serve there (is another process on that port? pick another with --listen)",
            args.listen
        )
    })?;
    log::info!(
        "view of {}: http://{}/ (MJPEG: /stream.mjpg)",
        args.shm,
        view.local_addr()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!("stopping the view");
    view.stop();
    Ok(())
}
