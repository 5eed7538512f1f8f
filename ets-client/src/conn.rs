//! One connection to the daemon: a writer task sends frames in the order requests were made,
//! a reader task demultiplexes what comes back.
//!
//! **Invariants**: a reply waiter is queued (under the state lock) before its request's frame is
//! written, and by the same task that writes, so the waiter queue is in request order and the
//! daemon's first-in first-out replies match it. When the reader sees `Accepted { job }` it
//! registers the job's channel *before* it reads the next frame, so no event of the job can
//! arrive unrouted. When either task finds the connection broken it records why, then drops
//! every waiter and job channel: their receivers report [`ClientError::Disconnected`] with
//! that reason. Dropping the [`Connection`] aborts both tasks, which closes the socket; the
//! daemon then cancels this connection's jobs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ets_core::protocol::codec::payload_len;
use ets_core::protocol::{
    decode_payload, encode_frame, CodecError, ErrorKind, JobEvent, JobId, Request, Response,
};
use ets_core::search::SearchOutcome;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::ClientError;

/// What a request's waiter receives.
pub(crate) enum Reply {
    /// Any reply but `Accepted`.
    Response(Response),
    /// `Accepted`: the job and the channel its messages arrive on.
    Accepted(JobId, mpsc::UnboundedReceiver<JobMessage>),
}

/// A message routed to one job.
#[derive(Debug)]
pub(crate) enum JobMessage {
    /// Progress.
    Event(JobEvent),
    /// The search finished.
    Result {
        tag: Option<String>,
        outcome: Box<SearchOutcome>,
    },
    /// The job failed.
    Failed { kind: ErrorKind, message: String },
    /// The job was cancelled.
    Cancelled,
}

impl JobMessage {
    /// Converts a response that names a job; `None` for replies.
    fn from_response(response: Response) -> Option<(JobId, JobMessage)> {
        Some(match response {
            Response::Event { job, event } => (job, JobMessage::Event(event)),
            Response::Result { job, tag, outcome } => (job, JobMessage::Result { tag, outcome }),
            Response::Failed { job, kind, message } => (job, JobMessage::Failed { kind, message }),
            Response::Cancelled { job } => (job, JobMessage::Cancelled),
            _ => return None,
        })
    }

    fn is_final(&self) -> bool {
        !matches!(self, JobMessage::Event(_))
    }
}

/// A frame to send and who waits for its reply (`None`: nobody, the reply is dropped).
struct Command {
    frame: Vec<u8>,
    reply: Option<oneshot::Sender<Reply>>,
}

/// What the reader and the writer share.
#[derive(Default)]
struct State {
    /// Reply waiters, in request order.
    pending: VecDeque<Option<oneshot::Sender<Reply>>>,
    /// Channels of the jobs this connection started and still watches.
    jobs: HashMap<JobId, mpsc::UnboundedSender<JobMessage>>,
    /// Set once the connection is broken: why.
    closed: Option<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the queue half-updated in a way that matters
    // more than losing the connection, so a poisoned lock is used as is.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks the connection broken and drops every waiter and job channel.
fn shut(state: &Shared, reason: String) {
    let mut st = lock(state);
    st.closed.get_or_insert(reason);
    st.pending.clear();
    st.jobs.clear();
}

/// A live, handshaken connection.
pub(crate) struct Connection {
    commands: mpsc::UnboundedSender<Command>,
    state: Shared,
    tasks: [AbortHandle; 2],
    socket: PathBuf,
    daemon: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("socket", &self.socket())
            .field("daemon", &self.daemon())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Connection {
    /// Starts the reader and writer tasks on a stream whose handshake is done.
    pub(crate) fn start<S>(stream: S, socket: PathBuf, daemon: String) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let state = Shared::default();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(write, command_rx, state.clone()));
        let reader = tokio::spawn(read_loop(
            BufReader::new(read),
            state.clone(),
            commands.downgrade(),
        ));
        Self {
            commands,
            state,
            tasks: [reader.abort_handle(), writer.abort_handle()],
            socket,
            daemon,
        }
    }

    /// The socket this connection is on.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's name and version, from its hello.
    pub(crate) fn daemon(&self) -> &str {
        &self.daemon
    }

    /// Sends a request and waits for its reply.
    pub(crate) async fn request(&self, request: &Request) -> Result<Reply, ClientError> {
        let frame = encode_frame(request)?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command {
                frame,
                reply: Some(tx),
            })
            .map_err(|_| self.disconnected())?;
        rx.await.map_err(|_| self.disconnected())
    }

    /// Sends a request whose reply nobody waits for (used when a job handle is dropped).
    pub(crate) fn send_and_forget(&self, request: &Request) {
        if let Ok(frame) = encode_frame(request) {
            let _ = self.commands.send(Command { frame, reply: None });
        }
    }

    /// The error for a broken connection, with the reason the reader or writer recorded.
    pub(crate) fn disconnected(&self) -> ClientError {
        let reason = lock(&self.state)
            .closed
            .clone()
            .unwrap_or_else(|| "the connection was closed".to_owned());
        ClientError::Disconnected { reason }
    }

    /// Stops routing a job's messages to its handle.
    pub(crate) fn forget_job(&self, job: JobId) {
        lock(&self.state).jobs.remove(&job);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut commands: mpsc::UnboundedReceiver<Command>,
    state: Shared,
) {
    while let Some(command) = commands.recv().await {
        {
            let mut st = lock(&state);
            if st.closed.is_some() {
                // Dropping the waiter tells the caller; the reason is recorded.
                continue;
            }
            st.pending.push_back(command.reply);
        }
        let sent = async {
            writer.write_all(&command.frame).await?;
            writer.flush().await
        };
        if let Err(e) = sent.await {
            shut(&state, format!("cannot send to the daemon: {e}"));
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    state: Shared,
    commands: mpsc::WeakUnboundedSender<Command>,
) {
    let reason = loop {
        match read_response(&mut reader).await {
            Ok(Some(response)) => {
                if let Err(reason) = dispatch(&state, &commands, response) {
                    break reason;
                }
            }
            Ok(None) => break "the daemon closed the connection".to_owned(),
            Err(e) => break format!("reading from the daemon: {e}"),
        }
    };
    shut(&state, reason);
}

/// Routes one response: job messages to their job, replies to the oldest waiter.
fn dispatch(
    state: &Shared,
    commands: &mpsc::WeakUnboundedSender<Command>,
    response: Response,
) -> Result<(), String> {
    let mut st = lock(state);
    if response.job().is_some() {
        if let Some((job, message)) = JobMessage::from_response(response) {
            let last = message.is_final();
            if let Some(tx) = st.jobs.get(&job) {
                if tx.send(message).is_err() || last {
                    st.jobs.remove(&job);
                }
            }
            // Messages of jobs this connection does not watch are ignored.
        }
        return Ok(());
    }
    let Some(waiter) = st.pending.pop_front() else {
        return Err(format!(
            "the daemon sent a reply no request was waiting for: {response:?}"
        ));
    };
    match response {
        Response::Accepted { job } => {
            // Registered before the next frame is read: no event of this job can be lost.
            let (tx, rx) = mpsc::unbounded_channel();
            st.jobs.insert(job, tx);
            let delivered = waiter.is_some_and(|w| w.send(Reply::Accepted(job, rx)).is_ok());
            if !delivered {
                // The caller gave up waiting: nobody will ever see this job, so cancel it.
                st.jobs.remove(&job);
                drop(st);
                if let (Some(commands), Ok(frame)) =
                    (commands.upgrade(), encode_frame(&Request::Cancel { job }))
                {
                    let _ = commands.send(Command { frame, reply: None });
                }
            }
        }
        other => {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Reply::Response(other));
            }
        }
    }
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a header.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Response>, CodecError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(CodecError::Truncated { expected: 4, got });
        }
        got += n;
    }
    let len = payload_len(header)?;
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = reader.read(&mut payload[got..]).await?;
        if n == 0 {
            return Err(CodecError::Truncated { expected: len, got });
        }
        got += n;
    }
    decode_payload(&payload).map(Some)
}
