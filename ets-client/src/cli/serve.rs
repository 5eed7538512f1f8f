//! `ets serve`: runs the daemon (`etsd`, found like [`ets_client::AutoStart::etsd`]) in the
//! foreground with the arguments passed through. On Unix `ets` replaces itself with it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::Globals;

/// `ets serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Arguments for `etsd` (see `ets serve --help` for ets's own; `ets serve -- --help` for
    /// the daemon's).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ETSD_ARGS"
    )]
    pub args: Vec<OsString>,
}

/// Runs `etsd`; returns only if it could not be started (or, off Unix, when it exits).
pub fn run(_g: &Globals, socket: Option<&Path>, args: ServeArgs) -> anyhow::Result<u8> {
    let program = ets_client::locate_etsd().unwrap_or_else(|| PathBuf::from("etsd"));
    let mut command = std::process::Command::new(&program);
    command.args(&args.args);
    if let Some(socket) = socket {
        command.arg("--socket").arg(socket);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = command.exec();
        Err(e).with_context(|| {
            format!(
                "cannot run `{}` (build it, put it on PATH or set ${})",
                program.display(),
                ets_client::ETSD_ENV
            )
        })
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot run `{}`", program.display()))?;
        Ok(status.code().map_or(1, |c| c as u8))
    }
}
