//! The daemon: a local socket, the model registry, the job queue and the searches.
//!
//! Layout:
//! - `args`: [`DaemonArgs`], the daemon's settings (flags of `etsd` and `ets serve`).

mod args;

pub use args::{keep_alive_duration, parse_bytes, DaemonArgs};

/// Runs the daemon until SIGTERM/SIGINT or a `shutdown` request; returns once the socket file is
/// removed.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("etsd is not built yet")
}
