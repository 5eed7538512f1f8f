//! One client connection: the peer check, the handshake, reading framed requests and answering
//! each with exactly one reply in order (slow ones — loads, pulls — run on their own tasks and
//! keep their place), and cancelling the connection's jobs when it closes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ets_core::protocol::{
    decode_payload, encode_frame, payload_len, CodecError, ErrorKind, JobId, Request, Response,
    PROTOCOL_VERSION,
};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::jobs::StopReason;
use super::outbox::{outbox, Outbox, OutboxReceiver};
use super::registry::drop_off_runtime;
use super::runner::run_job;
use super::socket::check_peer;
use super::Daemon;

/// How long a new connection may take to say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a frame may take once its header arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Payload bytes read (and allocated) at a time: a header that claims a large frame costs only
/// what actually arrives.
const READ_CHUNK: usize = 64 * 1024;

/// Serves one connection until the client leaves, breaks the protocol, or the daemon stops.
pub async fn serve(daemon: Arc<Daemon>, stream: Stream, conn: u64) {
    let peer_uid = stream.peer_creds().ok().and_then(|c| c.euid());
    if let Err(refused) = check_peer(peer_uid, ets_core::protocol::current_uid()) {
        tracing::warn!(conn, %refused, "refusing a connection");
        daemon
            .counters
            .peers_refused
            .fetch_add(1, Ordering::Relaxed);
        // Said once, plainly, before closing (the client exits as "daemon unreachable").
        if let Ok(frame) = encode_frame(&error(ErrorKind::BadRequest, refused.to_string())) {
            let _ = tokio::time::timeout(Duration::from_secs(1), (&stream).write_all(&frame)).await;
        }
        return;
    }
    daemon.clients.fetch_add(1, Ordering::Relaxed);
    let stream = Arc::new(stream);
    let (outbox, rx) = outbox(daemon.args.limits.max_queued_replies);
    let writer = tokio::spawn(write_loop(stream.clone(), rx));
    let reason = read_loop(&daemon, &stream, conn, &outbox).await;
    tracing::debug!(conn, reason, "connection closing");
    // A connection closed by the shutdown leaves its jobs to the shutdown's own stop, so they
    // end as "shutting down", not as cancelled by a client that left.
    let why = if daemon.is_shutting_down() {
        StopReason::ShuttingDown
    } else {
        StopReason::ClientGone
    };
    let stopped = daemon.jobs.stop_connection(conn, why);
    if stopped > 0 {
        tracing::info!(conn, jobs = stopped, "client left: its jobs are cancelled");
    }
    drop(outbox);
    // Let the writer send what is queued (an error explaining why we close, say).
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(10), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    daemon.clients.fetch_sub(1, Ordering::Relaxed);
    daemon.wake_idle_watch();
}

/// Tells a client over the connection cap why it is closed, then closes it.
pub async fn refuse_full(stream: Stream, max_connections: usize) {
    let reply = error(
        ErrorKind::Resources,
        format!(
            "the daemon already serves {max_connections} connections (etsd \
             --max-connections raises the limit)"
        ),
    );
    if let Ok(frame) = encode_frame(&reply) {
        let _ = tokio::time::timeout(Duration::from_secs(1), (&stream).write_all(&frame)).await;
    }
}

async fn write_loop(stream: Arc<Stream>, mut rx: OutboxReceiver) {
    while let Some(message) = rx.recv().await {
        let frame = encode_frame(&message);
        drop(message);
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                rx.written();
                tracing::error!(error = %e, "cannot encode a response");
                continue;
            }
        };
        let sent = (&*stream).write_all(&frame).await;
        rx.written();
        if sent.is_err() {
            break;
        }
    }
}

/// Reads one frame; `Ok(None)` when the client closed the connection between frames.
async fn read_request(stream: &Stream) -> Result<Option<Request>, CodecError> {
    let mut reader = stream;
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match reader.read(&mut header[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(CodecError::Truncated { expected: 4, got }),
            n => got += n,
        }
    }
    let len = payload_len(header)?;
    let body = async {
        // Grows with what arrives: a header claiming 16 MiB followed by a trickle holds only
        // the trickle.
        let mut payload = Vec::with_capacity(len.min(READ_CHUNK));
        let mut chunk = vec![0u8; len.min(READ_CHUNK)];
        while payload.len() < len {
            let want = (len - payload.len()).min(chunk.len());
            match reader.read(&mut chunk[..want]).await? {
                0 => {
                    return Err(CodecError::Truncated {
                        expected: len,
                        got: payload.len(),
                    })
                }
                n => payload.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(payload)
    };
    let payload = tokio::time::timeout(FRAME_TIMEOUT, body)
        .await
        .map_err(|_| {
            CodecError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("a {len}-byte frame did not arrive within {FRAME_TIMEOUT:?}"),
            ))
        })??;
    decode_payload(&payload).map(Some)
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

/// The request loop; returns why it ended.
async fn read_loop(
    daemon: &Arc<Daemon>,
    stream: &Stream,
    conn: u64,
    outbox: &Outbox,
) -> &'static str {
    let bad_frame = |e: CodecError| {
        daemon.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(conn, error = %e, "bad frame; closing the connection");
        if !matches!(e, CodecError::Io(_) | CodecError::Truncated { .. }) {
            let _ = outbox.send(error(
                ErrorKind::BadRequest,
                format!("{e}; closing the connection"),
            ));
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(stream)).await {
        Err(_) => return "no hello in time",
        Ok(Ok(None)) => return "closed before hello",
        Ok(Err(e)) => {
            bad_frame(e);
            return "bad hello frame";
        }
        Ok(Ok(Some(Request::Hello { protocol, client }))) => {
            let _ = outbox.send(Response::Hello {
                protocol: PROTOCOL_VERSION,
                daemon: format!("etsd {}", env!("CARGO_PKG_VERSION")),
            });
            if protocol != PROTOCOL_VERSION {
                daemon.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = outbox.send(error(
                    ErrorKind::ProtocolMismatch,
                    format!(
                        "client `{client}` speaks protocol {protocol}, this daemon speaks protocol \
                         {PROTOCOL_VERSION}; use an `ets` and `etsd` of the same release"
                    ),
                ));
                return "protocol mismatch";
            }
            tracing::debug!(conn, %client, "client connected");
        }
        Ok(Ok(Some(_))) => {
            daemon.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = outbox.send(error(
                ErrorKind::BadRequest,
                "the first message must be Hello (the protocol handshake); closing the connection",
            ));
            return "no hello";
        }
    }
    let (replies, reply_queue) = mpsc::channel(daemon.args.limits.max_inflight_requests.max(1));
    tokio::spawn(forward_replies(reply_queue, outbox.clone()));
    loop {
        let request = tokio::select! {
            r = read_request(stream) => r,
            _ = daemon.shutdown_started() => return "daemon shutting down",
            _ = outbox.overflowed() => return "client does not read its replies",
        };
        match request {
            Ok(None) => return "client closed",
            Err(e) => {
                bad_frame(e);
                return "bad frame";
            }
            Ok(Some(request)) => {
                let pending = match handle(daemon, conn, request) {
                    Reply::Now(reply) => Pending::Ready(reply),
                    Reply::Later(reply) => Pending::Later(reply),
                    Reply::Accepted(job, request) => {
                        let (sent, accepted_sent) = oneshot::channel();
                        let id = job.id;
                        tokio::spawn(run_job(
                            daemon.clone(),
                            job,
                            *request,
                            outbox.clone(),
                            accepted_sent,
                        ));
                        daemon.wake_idle_watch();
                        Pending::Accepted { job: id, sent }
                    }
                };
                // Waits while this connection has its most requests in flight.
                let sent = tokio::select! {
                    s = replies.send(pending) => s.is_ok(),
                    _ = outbox.overflowed() => return "client does not read its replies",
                };
                if !sent {
                    return "writer gone";
                }
            }
        }
    }
}

/// A reply in request order: ready now, computed by a task (a load or a pull), or a job's
/// `Accepted`, after which the job may start sending.
enum Pending {
    Ready(Response),
    Later(oneshot::Receiver<Response>),
    Accepted {
        job: JobId,
        sent: oneshot::Sender<()>,
    },
}

/// Sends replies in the order their requests came, so a slow `LoadModel` or `Pull` delays
/// later replies but never the effect of later requests (a `Cancel` acts at once).
async fn forward_replies(mut queue: mpsc::Receiver<Pending>, outbox: Outbox) {
    while let Some(pending) = queue.recv().await {
        let reply = match pending {
            Pending::Ready(reply) => reply,
            Pending::Later(reply) => reply.await.unwrap_or_else(|_| {
                error(
                    ErrorKind::Internal,
                    "the request's task ended without a reply",
                )
            }),
            Pending::Accepted { job, sent } => {
                if outbox.send(Response::Accepted { job }).is_err() {
                    return;
                }
                let _ = sent.send(());
                continue;
            }
        };
        if outbox.send(reply).is_err() {
            return;
        }
    }
}

/// The reply to a request: a response now, or an accepted job to start once `Accepted` is sent.
enum Reply {
    Now(Response),
    Later(oneshot::Receiver<Response>),
    Accepted(Arc<super::jobs::Job>, Box<ets_core::protocol::SolveRequest>),
}

/// Runs a slow request on its own task; its reply keeps its place in the order.
fn later<F>(work: F) -> Reply
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(work.await);
    });
    Reply::Later(rx)
}

/// Carries out one request and returns its reply.
fn handle(daemon: &Arc<Daemon>, conn: u64, request: Request) -> Reply {
    Reply::Now(match request {
        Request::Hello { .. } => error(ErrorKind::BadRequest, "Hello was already exchanged"),
        Request::Solve(request) => {
            if daemon.is_shutting_down() {
                return Reply::Now(error(
                    ErrorKind::ShuttingDown,
                    "the daemon is shutting down",
                ));
            }
            if let Err(message) =
                ets_core::protocol::check_solve(&request, &daemon.args.limits.limits())
            {
                daemon.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                return Reply::Now(error(ErrorKind::BadRequest, message));
            }
            let job = match daemon.jobs.register(conn, &request) {
                Ok(job) => job,
                Err(refusal) => {
                    return Reply::Now(error(ErrorKind::Resources, refusal.to_string()))
                }
            };
            tracing::info!(job = job.id, conn, method = ?job.method, width = job.width, "job accepted");
            return Reply::Accepted(job, request);
        }
        Request::Cancel { job } => match daemon.jobs.get(job) {
            Some(j) => {
                j.stop.stop(StopReason::Cancelled);
                Response::Done
            }
            None => error(
                ErrorKind::UnknownJob,
                format!("no job {job} is queued or running (it may have ended)"),
            ),
        },
        Request::ListJobs => Response::Jobs(daemon.jobs.infos()),
        Request::Status => Response::Status(Box::new(daemon.status())),
        Request::Metrics => Response::Metrics(daemon.metrics_text()),
        Request::LoadModel {
            model,
            role,
            keep_alive_secs,
            engine,
        } => {
            let daemon = daemon.clone();
            return later(async move {
                let engine = engine.unwrap_or_else(|| daemon.args.engine_for_model(&model));
                match daemon.registry.acquire(&model, role, engine).await {
                    Ok(lease) => {
                        if let Some(secs) = keep_alive_secs {
                            daemon
                                .registry
                                .set_keep_alive(&lease, super::keep_alive_duration(secs));
                        }
                        drop(lease);
                        Response::Done
                    }
                    Err(e) => error(ErrorKind::Model, e),
                }
            });
        }
        Request::UnloadModel { model } => match daemon.registry.unload(&model) {
            Ok(dropped) => {
                drop_off_runtime(dropped);
                Response::Done
            }
            Err(e) => error(ErrorKind::Model, e),
        },
        Request::PinModel { model, pinned } => match daemon.registry.pin(&model, pinned) {
            Ok(()) => Response::Done,
            Err(e) => error(ErrorKind::Model, e),
        },
        Request::Pull { alias } => {
            let daemon = daemon.clone();
            return later(async move {
                match daemon.registry.pull(&alias).await {
                    Ok((path, bytes, already_present)) => Response::Pulled {
                        alias,
                        path: path.display().to_string(),
                        bytes,
                        already_present,
                    },
                    Err(e) => error(ErrorKind::Model, e),
                }
            });
        }
        Request::ListModels => Response::Models(daemon.store_models()),
        Request::AddRemoteModel(spec) => match daemon.registry.add_remote(spec.clone()) {
            Ok(dropped) => {
                tracing::info!(model = %spec.name, endpoints = spec.endpoints.len(), "remote model added");
                drop_off_runtime(dropped);
                Response::Done
            }
            Err(e) => error(ErrorKind::Model, e),
        },
        Request::Shutdown => {
            tracing::info!(conn, "shutdown requested");
            daemon.begin_shutdown();
            Response::Done
        }
    })
}
