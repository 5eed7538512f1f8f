//! `etsd`: the ETS daemon. Flags: [`ets_daemon::server::DaemonArgs`]; `ets serve` runs the same.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "etsd",
    version,
    about = "The ETS daemon: warm models, tree searches over a local socket"
)]
struct Cli {
    #[command(flatten)]
    daemon: ets_daemon::server::DaemonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match ets_daemon::server::run(cli.daemon) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etsd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
