//! Reaching the daemon: [`ConnectOptions`], [`AutoStart`], the socket connect and the `Hello`
//! handshake.
//!
//! Auto-start happens only when the connect failed because nobody listens (the socket file is
//! missing or refuses connections); any other failure is reported as is.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ets_core::protocol::{default_socket_path, encode_frame, Request, Response, PROTOCOL_VERSION};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::{ConnectOptions as IpcConnect, GenericFilePath, ToFsName};
use tokio::io::AsyncWriteExt;

use crate::conn::{read_response, Connection};
use crate::ClientError;

/// Environment variable naming the `etsd` program [`AutoStart::etsd`] runs.
pub const ETSD_ENV: &str = "ETSD";

/// How [`crate::Client::connect`] reaches the daemon.
///
/// ```
/// use std::time::Duration;
/// use ets_client::{AutoStart, ConnectOptions};
///
/// let opts = ConnectOptions::new()
///     .timeout(Duration::from_secs(2))
///     .autostart(AutoStart::etsd())
///     .client_name("my-editor");
/// assert_eq!(opts.timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The daemon's socket; defaults to [`default_socket_path`].
    pub socket: PathBuf,
    /// Limit for connecting plus the handshake (auto-start has its own, [`AutoStart::wait`]).
    pub timeout: Duration,
    /// Start the daemon when nobody listens on the socket; `None` fails with
    /// [`ClientError::DaemonNotRunning`] instead.
    pub autostart: Option<AutoStart>,
    /// Name the daemon logs for this client.
    pub client_name: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectOptions {
    /// The default socket, a 5 s timeout, no auto-start, named `ets-client/<version>`.
    pub fn new() -> Self {
        Self {
            socket: default_socket_path(),
            timeout: Duration::from_secs(5),
            autostart: None,
            client_name: concat!("ets-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// Connects to this socket instead of the default one.
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.socket = socket.into();
        self
    }

    /// Limit for connecting plus the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the daemon this way when nobody listens.
    pub fn autostart(mut self, autostart: AutoStart) -> Self {
        self.autostart = Some(autostart);
        self
    }

    /// Never starts the daemon.
    pub fn no_autostart(mut self) -> Self {
        self.autostart = None;
        self
    }

    /// The name the daemon logs for this client.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }
}

/// How to start the daemon when nobody listens on the socket.
///
/// The program runs detached (its own process group, standard streams closed), with
/// [`AutoStart::args`] and then `--socket <the socket>`; the client polls the socket until the
/// daemon answers or [`AutoStart::wait`] passes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AutoStart {
    /// The daemon program.
    pub program: PathBuf,
    /// Arguments before `--socket`.
    pub args: Vec<OsString>,
    /// How long to wait for the socket to answer.
    pub wait: Duration,
}

impl AutoStart {
    /// Runs `etsd` (found by [`locate_etsd`], else looked up on `PATH` when spawned) with
    /// `--log-to-state-dir`, waiting up to 60 s.
    pub fn etsd() -> Self {
        Self {
            program: locate_etsd().unwrap_or_else(|| PathBuf::from("etsd")),
            args: vec!["--log-to-state-dir".into()],
            wait: Duration::from_secs(60),
        }
    }

    /// Runs this program with no arguments (but `--socket`), waiting up to 60 s.
    pub fn program(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            wait: Duration::from_secs(60),
        }
    }

    /// Replaces the arguments passed before `--socket`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long to wait for the socket to answer.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    fn start_failed(&self, reason: impl Into<String>) -> ClientError {
        ClientError::StartFailed {
            program: self.program.clone(),
            reason: reason.into(),
        }
    }

    /// Spawns the daemon and polls `socket` until it accepts a connection.
    async fn start(&self, socket: &Path) -> Result<Stream, ClientError> {
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .arg("--socket")
            .arg(socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        #[cfg(unix)]
        {
            // Its own process group: a Ctrl-C in the client's terminal does not reach it.
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let mut child = command.spawn().map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                format!(" (not found; build it, put it on PATH or set ${ETSD_ENV})")
            } else {
                String::new()
            };
            self.start_failed(format!("{e}{hint}"))
        })?;
        let deadline = Instant::now() + self.wait;
        let outcome = loop {
            match try_connect(socket).await {
                Ok(stream) => break Ok(stream),
                Err(e) if nobody_listens(&e) => {}
                Err(e) => break Err(io_error(socket, e)),
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another client may have started a daemon first: one more look.
                if let Ok(stream) = try_connect(socket).await {
                    return Ok(stream);
                }
                return Err(self.start_failed(format!(
                    "it exited ({status}) before listening on {}; see its log \
                     ($XDG_STATE_HOME/ets/etsd.log, else ~/.local/state/ets/etsd.log)",
                    socket.display()
                )));
            }
            if Instant::now() >= deadline {
                break Err(self.start_failed(format!(
                    "it did not listen on {} within {:.0} s (it is left running)",
                    socket.display(),
                    self.wait.as_secs_f64()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The daemon outlives this call; a thread reaps it if it exits while we still run.
        std::thread::spawn(move || child.wait());
        outcome
    }
}

/// The `etsd` program: `$ETSD`, else `etsd` next to the running executable, else the first
/// `etsd` on `PATH`; `None` if none exists.
pub fn locate_etsd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ETSD_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let name = format!("etsd{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        // Test binaries live in target/<profile>/deps; the daemon one level up.
        for candidate in [dir.join(&name), dir.join("..").join(&name)] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
}

/// True when a connect error means nobody listens on the socket.
fn nobody_listens(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn io_error(socket: &Path, error: io::Error) -> ClientError {
    ClientError::Io {
        socket: socket.to_path_buf(),
        error,
    }
}

async fn try_connect(socket: &Path) -> io::Result<Stream> {
    let name = socket.as_os_str().to_fs_name::<GenericFilePath>()?;
    IpcConnect::new().name(name).connect_tokio().await
}

/// Connects (starting the daemon if asked), says hello and starts the connection's tasks.
pub(crate) async fn connect(opts: &ConnectOptions) -> Result<Connection, ClientError> {
    let socket = opts.socket.as_path();
    let timed_out = || ClientError::ConnectTimeout {
        socket: socket.to_path_buf(),
        after: opts.timeout,
    };
    let first = tokio::time::timeout(opts.timeout, try_connect(socket))
        .await
        .map_err(|_| timed_out())?;
    let stream = match first {
        Ok(stream) => stream,
        Err(e) if nobody_listens(&e) => match &opts.autostart {
            Some(autostart) => autostart.start(socket).await?,
            None => {
                return Err(ClientError::DaemonNotRunning {
                    socket: socket.to_path_buf(),
                })
            }
        },
        Err(e) => return Err(io_error(socket, e)),
    };
    check_daemon_owner(&stream, socket)?;
    let (stream, daemon) = tokio::time::timeout(opts.timeout, handshake(stream, opts))
        .await
        .map_err(|_| timed_out())??;
    Ok(Connection::start(stream, socket.to_path_buf(), daemon))
}

/// Refuses a daemon that runs as another user, before anything is sent to it: with no
/// `XDG_RUNTIME_DIR` the default socket is under `/tmp`, where another user could listen first.
/// Root is trusted (it can read this user's files anyway).
fn check_daemon_owner(stream: &Stream, socket: &Path) -> Result<(), ClientError> {
    let own = ets_core::protocol::current_uid();
    let peer = stream.peer_creds().ok().and_then(|c| c.euid());
    match peer {
        Some(uid) if uid == own || uid == 0 => Ok(()),
        other => Err(ClientError::UntrustedDaemon {
            socket: socket.to_path_buf(),
            peer: other.map_or_else(|| "unknown".to_owned(), |u| u.to_string()),
            own,
        }),
    }
}

/// Sends `Hello` and checks the daemon's; returns the daemon's name.
async fn handshake(
    mut stream: Stream,
    opts: &ConnectOptions,
) -> Result<(Stream, String), ClientError> {
    let hello = encode_frame(&Request::Hello {
        protocol: PROTOCOL_VERSION,
        client: opts.client_name.clone(),
    })?;
    let lost = |e: io::Error| ClientError::Disconnected {
        reason: format!("during the handshake: {e}"),
    };
    stream.write_all(&hello).await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let reply = read_response(&mut stream)
        .await
        .map_err(|e| ClientError::Disconnected {
            reason: format!("during the handshake: {e}"),
        })?;
    match reply {
        Some(Response::Hello { protocol, daemon }) if protocol == PROTOCOL_VERSION => {
            Ok((stream, daemon))
        }
        Some(Response::Hello { protocol, daemon }) => Err(ClientError::ProtocolMismatch {
            client: PROTOCOL_VERSION,
            daemon: protocol,
            daemon_name: daemon,
        }),
        // Refused before the handshake (another user, too many connections).
        Some(Response::Error { message, .. }) => Err(ClientError::Disconnected {
            reason: format!("the daemon refused the connection: {message}"),
        }),
        Some(other) => Err(ClientError::UnexpectedReply {
            request: "Hello",
            reply: format!("{other:?}"),
        }),
        None => Err(ClientError::Disconnected {
            reason: "the daemon closed the connection during the handshake".to_owned(),
        }),
    }
}
