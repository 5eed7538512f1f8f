//! [`ClientError`]: everything the SDK can fail with. Each message names what was wrong (the
//! socket, the program, the job, both protocol versions) so a caller can print it as is.

use std::path::PathBuf;
use std::time::Duration;

use ets_core::protocol::{CodecError, ErrorKind, JobId};
use thiserror::Error;

/// An SDK call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket (and auto-start was off).
    #[error(
        "daemon is not running at {}; start it with `ets serve` (or run `etsd`)",
        socket.display()
    )]
    DaemonNotRunning {
        /// The socket that was tried.
        socket: PathBuf,
    },
    /// Connecting or the handshake took longer than the connect timeout.
    #[error(
        "daemon at {} did not answer within {:.1} s",
        socket.display(),
        after.as_secs_f64()
    )]
    ConnectTimeout {
        /// The socket that was tried.
        socket: PathBuf,
        /// The timeout that passed.
        after: Duration,
    },
    /// The daemon speaks another protocol version.
    #[error(
        "protocol mismatch: this client speaks protocol {client}, the daemon ({daemon_name}) \
         speaks {daemon}; use an `ets` and an `etsd` of the same release"
    )]
    ProtocolMismatch {
        /// This client's [`ets_core::protocol::PROTOCOL_VERSION`].
        client: u32,
        /// The daemon's.
        daemon: u32,
        /// The daemon's name and version, as it said hello.
        daemon_name: String,
    },
    /// The daemon refused a request.
    #[error("the daemon refused the request ({kind}): {message}")]
    Server {
        /// Class of the error.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// A job failed.
    #[error("job {job} failed ({kind}): {message}")]
    JobFailed {
        /// The job.
        job: JobId,
        /// Class of the error.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// A job was cancelled (by this client, another one, or the daemon).
    #[error("job {job} was cancelled")]
    Cancelled {
        /// The job.
        job: JobId,
    },
    /// The connection to the daemon ended.
    #[error("lost the connection to the daemon: {reason}")]
    Disconnected {
        /// Why: the daemon closed it, or what went wrong reading or writing.
        reason: String,
    },
    /// Auto-start could not start the daemon.
    #[error("could not start the daemon `{}`: {reason}", program.display())]
    StartFailed {
        /// The program that was run.
        program: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The daemon answered a request with a reply of another kind.
    #[error("the daemon answered `{request}` with an unexpected reply: {reply}")]
    UnexpectedReply {
        /// The request.
        request: &'static str,
        /// The reply, formatted with `Debug`.
        reply: String,
    },
    /// A message could not be encoded or decoded.
    #[error("protocol codec: {0}")]
    Codec(#[from] CodecError),
    /// The process listening on the socket runs as another user: it could read every problem
    /// sent and answer anything, so the client refuses to talk to it.
    #[error(
        "refusing the daemon at {}: it runs as uid {peer}, not as this user (uid {own}); \
         another user may have taken the socket's path (set ETS_SOCKET or XDG_RUNTIME_DIR to a \
         directory only you can write)",
        socket.display()
    )]
    UntrustedDaemon {
        /// The socket.
        socket: PathBuf,
        /// The uid of the process listening on it (`None`: the OS did not say).
        peer: String,
        /// This process's uid.
        own: u32,
    },
    /// Connecting to the socket failed for another reason than nobody listening.
    #[error("i/o error on {}: {error}", socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The error (in the message, so not also a `source`).
        error: std::io::Error,
    },
}

impl ClientError {
    /// True when the daemon could not be reached at all (not running, not answering, not
    /// startable, another protocol, or the connection was lost).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::DaemonNotRunning { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::ProtocolMismatch { .. }
                | ClientError::Disconnected { .. }
                | ClientError::StartFailed { .. }
                | ClientError::UntrustedDaemon { .. }
                | ClientError::Io { .. }
        )
    }
}
