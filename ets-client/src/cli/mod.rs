//! The `ets` command line: the clap definition ([`Cli`]), global options, and the mapping of
//! errors to documented exit codes. Layout, one job per module:
//! - `search_args`: the search flags `solve` and `batch` share, validated into a `SolveRequest`.
//! - `solve`: one problem, progress on stderr, Ctrl-C cancels.
//! - `batch`: JSONL in, JSONL out, resumable.
//! - `eval` and `eval_output`: methods × widths × seeds on a benchmark, resumable, with a
//!   summary table and plots.
//! - `admin`: `ps`, `cancel`, `models …`, `status`, `metrics`, `shutdown`.
//! - `serve`: runs `etsd` in the foreground.
//! - `render`: human formatting (tables, sizes, the stats block).
//!
//! Only `solve`, `batch` and `eval` start the daemon when nobody listens; the others report exit 3
//! (`models list` then reads the store on disk).

mod admin;
mod batch;
mod eval;
mod eval_output;
pub mod json_out;
mod queue;
mod render;
mod search_args;
mod serve;
mod solve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use ets_client::{AutoStart, Client, ClientError, ConnectOptions, JobId};

pub use self::admin::ModelsCommand;
pub use self::batch::BatchArgs;
pub use self::eval::EvalArgs;
pub use self::serve::ServeArgs;
pub use self::solve::SolveArgs;

/// Exit codes, shown by `ets --help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error (bad input file, a request the daemon refused).
    pub const ERROR: u8 = 1;
    /// Bad usage (clap's own code) or invalid flag values.
    pub const USAGE: u8 = 2;
    /// The daemon is unreachable: not running, not answering, not startable, another protocol
    /// version, or the connection was lost.
    pub const UNREACHABLE: u8 = 3;
    /// A job failed (or was refused); `batch`: at least one line failed.
    pub const JOB_FAILED: u8 = 4;
    /// Cancelled (Ctrl-C, or the job was cancelled elsewhere).
    pub const CANCELLED: u8 = 130;
}

const AFTER_HELP: &str = "\
Exit codes:
  0    success
  1    other errors (unreadable input file, a request the daemon refused)
  2    bad usage or invalid flag values
  3    the daemon is unreachable (not running, not startable, other protocol version, connection lost)
  4    a job failed or was refused (batch: at least one line failed; solve: the deadline passed
       and the answer is partial, 0 with --accept-partial)
  130  cancelled (Ctrl-C, or the job was cancelled elsewhere)

Only `solve`, `batch` and `eval` start the daemon when it is not running; start it yourself with `ets serve`.";

const GLOBAL: &str = "Global options";

/// The ETS command line: tree searches on a warm local daemon (`etsd`).
#[derive(Debug, Parser)]
#[command(name = "ets", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The daemon's socket [default: $ETS_SOCKET, else $XDG_RUNTIME_DIR/ets/etsd.sock, else
    /// /tmp/ets-$UID/etsd.sock].
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub socket: Option<PathBuf>,

    /// Print JSON instead of text (solve: one object; with --stream, one line per event).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Never start the daemon, even for solve, batch and eval.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_autostart: bool,

    /// Seconds to wait for the daemon to accept the connection and say hello.
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 5.0,
        help_heading = GLOBAL
    )]
    pub connect_timeout: f64,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `ets`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (`etsd`) in the foreground; arguments are passed through.
    Serve(ServeArgs),
    /// Solve one problem (starts the daemon if needed).
    Solve(SolveArgs),
    /// Solve every line of a JSONL file, writing one JSONL line per input (resumable).
    #[command(after_help = batch::FORMAT)]
    Batch(BatchArgs),
    /// Compare methods on a benchmark: accuracy, KV, tokens and time per method × width
    /// (resumable; starts the daemon if needed).
    #[command(after_help = eval::AFTER_HELP)]
    Eval(EvalArgs),
    /// List queued and running jobs.
    Ps,
    /// Cancel a job.
    Cancel {
        /// The job id (see `ets ps`).
        job: JobId,
    },
    /// Manage models: list, pull, load, unload, pin.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Show the daemon's status: models, jobs, KV use.
    Status,
    /// Print the daemon's metrics (Prometheus text format).
    Metrics,
    /// Stop the daemon.
    Shutdown,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// An invalid flag value found after parsing (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Global options every command sees.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The socket (given, or the default).
    pub socket: PathBuf,
    /// Print JSON.
    pub json: bool,
    /// Auto-start allowed.
    pub autostart: bool,
    /// Connect timeout.
    pub timeout: Duration,
}

impl Globals {
    fn from_cli(cli: &Cli) -> Result<Self, UsageError> {
        let secs = cli.connect_timeout;
        if !(secs.is_finite() && secs > 0.0) {
            return Err(UsageError(format!(
                "--connect-timeout must be a positive number of seconds, got {secs}"
            )));
        }
        Ok(Self {
            socket: cli
                .socket
                .clone()
                .unwrap_or_else(ets_core::protocol::default_socket_path),
            json: cli.json,
            autostart: !cli.no_autostart,
            timeout: Duration::from_secs_f64(secs),
        })
    }

    /// Connects; starts the daemon first when `autostart` is asked and not turned off.
    pub async fn connect(&self, autostart: bool) -> Result<Client, ClientError> {
        let mut opts = ConnectOptions::new()
            .socket(&self.socket)
            .timeout(self.timeout)
            .client_name(concat!("ets/", env!("CARGO_PKG_VERSION")));
        if autostart && self.autostart {
            opts = opts.autostart(AutoStart::etsd());
        }
        Client::connect(opts).await
    }
}

/// Runs `ets` and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            if code != exit::OK {
                if json {
                    // Scripts read stdout: the error is there too, as a document.
                    let doc = json_out::error_document(
                        None,
                        &json_out::error_kind(&e),
                        &format!("{e:#}"),
                    );
                    let _ = print_line(doc);
                }
                eprintln!("ets: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let globals = Globals::from_cli(&cli)?;
    match cli.command {
        // Neither needs a runtime; `serve` replaces this process.
        Command::Serve(args) => return serve::run(&globals, cli.socket.as_deref(), args),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "ets", &mut out);
            out.flush()?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Solve(args) => solve::run(&globals, args).await,
            Command::Batch(args) => batch::run(&globals, args).await,
            Command::Eval(args) => eval::run(&globals, args).await,
            Command::Ps => admin::ps(&globals).await,
            Command::Cancel { job } => admin::cancel(&globals, job).await,
            Command::Models(command) => admin::models(&globals, command).await,
            Command::Status => admin::status(&globals).await,
            Command::Metrics => admin::metrics(&globals).await,
            Command::Shutdown => admin::shutdown(&globals).await,
            Command::Serve(_) | Command::Completions { .. } => unreachable!("handled above"),
        }
    })
}

/// The documented exit code for an error.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Cancelled { .. } => exit::CANCELLED,
                ClientError::JobFailed { .. } => exit::JOB_FAILED,
                e if e.is_unreachable() => exit::UNREACHABLE,
                _ => exit::ERROR,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // `ets ps | head`: a closed pipe is how the reader says it has seen enough.
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return exit::OK;
            }
        }
    }
    exit::ERROR
}

/// Ctrl-C (SIGINT), listened for from creation on: a Ctrl-C that comes while `ets` connects
/// or submits is seen too, and never kills `ets` half-way.
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?,
        })
    }

    /// The next Ctrl-C.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints one line to stdout (errors, a closed pipe included, go to the caller).
pub fn print_line(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Prints `value` as one line of JSON, a document of type `kind` ([`json_out::document`]).
pub fn print_json(kind: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    print_line(serde_json::to_string(&json_out::document(kind, value))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = Cli::try_parse_from([
            "ets",
            "status",
            "--json",
            "--socket",
            "/tmp/x.sock",
            "--connect-timeout",
            "0.5",
        ])
        .unwrap();
        let g = Globals::from_cli(&cli).unwrap();
        assert!(g.json && g.autostart);
        assert_eq!(g.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(g.timeout, Duration::from_millis(500));
        let bad = Cli::try_parse_from(["ets", "ps", "--connect-timeout", "0"]).unwrap();
        assert!(Globals::from_cli(&bad)
            .unwrap_err()
            .0
            .contains("connect-timeout"));
    }

    /// The help's "Exit codes:" section as (code, meaning) pairs.
    fn documented_exit_codes(help: &str) -> Vec<(u8, String)> {
        let section = help
            .split_once("Exit codes:\n")
            .unwrap_or_else(|| panic!("no exit code section:\n{help}"))
            .1;
        let mut codes: Vec<(u8, String)> = Vec::new();
        for line in section.lines().take_while(|l| !l.trim().is_empty()) {
            let (first, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            match (first.parse(), codes.last_mut()) {
                (Ok(code), _) => codes.push((code, rest.trim().into())),
                // A meaning wrapped onto the next line.
                (Err(_), Some((_, meaning))) => {
                    meaning.push(' ');
                    meaning.push_str(line.trim());
                }
                (Err(_), None) => panic!("`{line}` is not `code meaning`"),
            }
        }
        codes
    }

    #[test]
    fn help_documents_what_each_exit_code_means() {
        let help = Cli::command().render_long_help().to_string();
        let documented = documented_exit_codes(&help);
        let expected = [
            (exit::OK, "success"),
            (exit::ERROR, "other errors"),
            (exit::USAGE, "bad usage"),
            (exit::UNREACHABLE, "daemon is unreachable"),
            (exit::JOB_FAILED, "job failed"),
            (exit::CANCELLED, "cancelled"),
        ];
        assert_eq!(
            documented.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            expected.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            "every exit code, once, in order:\n{help}"
        );
        for ((code, meaning), (_, words)) in documented.iter().zip(expected) {
            assert!(
                meaning.contains(words),
                "exit code {code} is documented as `{meaning}`, not as {words:?}"
            );
        }
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let e = |c: ClientError| exit_code(&anyhow::Error::new(c).context("solving"));
        let socket = PathBuf::from("/nowhere.sock");
        assert_eq!(
            e(ClientError::DaemonNotRunning { socket }),
            exit::UNREACHABLE
        );
        assert_eq!(e(ClientError::Cancelled { job: 1 }), exit::CANCELLED);
        let failed = ClientError::JobFailed {
            job: 1,
            kind: ets_client::ErrorKind::Search,
            message: "boom".into(),
        };
        assert_eq!(e(failed), exit::JOB_FAILED);
        assert_eq!(exit_code(&UsageError("x".into()).into()), exit::USAGE);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(exit_code(&pipe.into()), exit::OK);
    }
}
