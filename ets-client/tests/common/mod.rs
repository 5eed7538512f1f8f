//! Helpers the SDK and CLI tests share: a fake daemon speaking ets-core's codec over a tokio
//! `UnixListener`, temporary socket directories, and canned search outcomes.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ets_core::protocol::codec::payload_len;
use ets_core::protocol::{decode_payload, encode_frame, Request, Response, PROTOCOL_VERSION};
use ets_core::search::{EndReason, SearchOutcome, SearchStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// A fresh directory for one test's socket.
pub fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ets-sdk-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The daemon side of one connection.
pub struct Peer(pub UnixStream);

impl Peer {
    pub async fn recv(&mut self) -> Option<Request> {
        let mut header = [0u8; 4];
        self.0.read_exact(&mut header).await.ok()?;
        let mut payload = vec![0u8; payload_len(header).unwrap()];
        self.0.read_exact(&mut payload).await.unwrap();
        Some(decode_payload(&payload).unwrap())
    }

    pub async fn send(&mut self, response: Response) {
        self.0
            .write_all(&encode_frame(&response).unwrap())
            .await
            .unwrap();
    }

    /// Answers the client's hello with `protocol`.
    pub async fn hello(&mut self, protocol: u32) {
        match self.recv().await {
            Some(Request::Hello { protocol: p, .. }) => assert_eq!(p, PROTOCOL_VERSION),
            other => panic!("expected Hello, got {other:?}"),
        }
        self.send(Response::Hello {
            protocol,
            daemon: "fake-etsd".into(),
        })
        .await;
    }
}

/// Listens on a fresh socket and runs `script` on the first connection.
pub async fn fake_daemon<F, Fut>(script: F) -> (PathBuf, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let socket = temp_dir().join("etsd.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(Peer(stream)).await;
    });
    (socket, task)
}

pub fn outcome(answer: &str) -> Box<SearchOutcome> {
    Box::new(SearchOutcome {
        answer: Some(answer.into()),
        trajectories: Vec::new(),
        nodes: Vec::new(),
        depths: Vec::new(),
        stats: SearchStats::default(),
        end: EndReason::WidthSpent,
    })
}

/// A fake daemon serving every connection the way `etsd` would, for CLI tests: a solve whose
/// problem contains `fail` fails, one containing `hang` never ends (until cancelled), any other
/// one finishes with the answer `42` and its tag echoed. `solves` receives each solve's
/// problem once it is accepted.
pub async fn mini_daemon(
    solves: tokio::sync::mpsc::UnboundedSender<String>,
) -> (PathBuf, tokio::task::JoinHandle<()>) {
    use ets_core::protocol::{ErrorKind, JobEvent, StatusReport};
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    let socket = temp_dir().join("etsd.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let next_job = Arc::new(AtomicU64::new(1));
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (next_job, solves) = (next_job.clone(), solves.clone());
            tokio::spawn(async move {
                let mut peer = Peer(stream);
                peer.hello(PROTOCOL_VERSION).await;
                while let Some(request) = peer.recv().await {
                    match request {
                        Request::Solve(r) => {
                            let job = next_job.fetch_add(1, Ordering::Relaxed);
                            peer.send(Response::Accepted { job }).await;
                            if r.stream_events {
                                let event = JobEvent::Started;
                                peer.send(Response::Event { job, event }).await;
                            }
                            let _ = solves.send(r.problem.clone());
                            if r.problem.contains("fail") {
                                let message = format!("the fake policy failed on {}", r.problem);
                                let kind = ErrorKind::Search;
                                peer.send(Response::Failed { job, kind, message }).await;
                            } else if !r.problem.contains("hang") {
                                let outcome = outcome("42");
                                let tag = r.tag;
                                peer.send(Response::Result { job, tag, outcome }).await;
                            }
                        }
                        Request::Cancel { job } => {
                            peer.send(Response::Done).await;
                            peer.send(Response::Cancelled { job }).await;
                        }
                        Request::ListJobs => peer.send(Response::Jobs(Vec::new())).await,
                        Request::Status => {
                            let report = StatusReport {
                                version: "fake-1".into(),
                                ..StatusReport::default()
                            };
                            peer.send(Response::Status(Box::new(report))).await
                        }
                        Request::Metrics => peer.send(Response::Metrics("ets_up 1\n".into())).await,
                        other => {
                            let message = format!("the fake daemon does not do {other:?}");
                            let kind = ErrorKind::BadRequest;
                            peer.send(Response::Error { kind, message }).await
                        }
                    }
                }
            });
        }
    });
    (socket, task)
}
