//! The SDK against an in-process fake daemon (a tokio `UnixListener` speaking ets-core's
//! codec, scripted per test): reply matching, job routing, handshake, disconnects, auto-start
//! failures, and the blocking client. The real daemon's end-to-end tests live in `tests/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{fake_daemon, outcome, temp_dir};
use ets_client::{AutoStart, Client, ClientError, ConnectOptions, ErrorKind, JobEvent};
use ets_core::protocol::{Request, Response, SolveRequest, StatusReport, PROTOCOL_VERSION};
use ets_core::search::SearchEvent;

fn opts(socket: &PathBuf) -> ConnectOptions {
    ConnectOptions::new()
        .socket(socket)
        .timeout(Duration::from_secs(5))
}

/// Every test is bounded: a routing bug must fail, not hang.
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .expect("the test finished in time")
}

#[tokio::test]
async fn replies_match_requests_in_order_and_job_messages_reach_their_job() {
    bounded(async {
        let (socket, daemon) = fake_daemon(|mut peer| async move {
            peer.hello(PROTOCOL_VERSION).await;
            // Three requests, read before anything is answered.
            let mut problems = Vec::new();
            for _ in 0..3 {
                match peer.recv().await.unwrap() {
                    Request::Solve(r) => problems.push(r.problem),
                    Request::Status => problems.push("<status>".into()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let solves: Vec<_> = problems.iter().filter(|p| *p != "<status>").collect();
            assert_eq!(solves.len(), 2);
            let (a, b) = (solves[0].clone(), solves[1].clone());
            let event = |job, event| Response::Event { job, event };
            // Replies in request order; job traffic interleaved, an event right after each
            // Accepted, and noise for a job nobody watches.
            for p in &problems {
                if p == "<status>" {
                    let report = StatusReport {
                        version: "fake-9".into(),
                        ..StatusReport::default()
                    };
                    peer.send(Response::Status(Box::new(report))).await;
                    peer.send(event(99, JobEvent::Started)).await;
                } else {
                    let job = if *p == a { 10 } else { 11 };
                    peer.send(Response::Accepted { job }).await;
                    peer.send(event(job, JobEvent::Queued { position: 0 }))
                        .await;
                }
            }
            peer.send(event(11, JobEvent::Started)).await;
            peer.send(event(10, JobEvent::Started)).await;
            let best = SearchEvent::BestAnswer {
                depth: 1,
                answer: "4".into(),
                support: 1.0,
                share: 1.0,
                votes: 1,
            };
            peer.send(event(10, JobEvent::Search(best))).await;
            peer.send(Response::Result {
                job: 11,
                tag: Some(b.clone()),
                outcome: outcome("b-answer"),
            })
            .await;
            peer.send(Response::Failed {
                job: 10,
                kind: ErrorKind::Search,
                message: format!("policy exploded on {a}"),
            })
            .await;
            // Keep the connection open until the client is done.
            assert!(peer.recv().await.is_none());
        })
        .await;

        let client = Client::connect(opts(&socket)).await.unwrap();
        assert_eq!(client.daemon(), "fake-etsd");
        let (a, b, status) = tokio::join!(
            client.solve(SolveRequest::new("problem a")),
            client.solve(SolveRequest::new("problem b")),
            client.status(),
        );
        assert_eq!(status.unwrap().version, "fake-9");
        let (mut a, b) = (a.unwrap(), b.unwrap());
        let mut a_events = Vec::new();
        while let Some(event) = a.next_event().await {
            a_events.push(event);
        }
        assert_eq!(a_events.len(), 3, "{a_events:?}");
        assert_eq!(a_events[0], JobEvent::Queued { position: 0 });
        let a_id = a.id();
        match a.wait().await {
            Err(ClientError::JobFailed { job, kind, message }) => {
                assert_eq!((job, kind), (a_id, ErrorKind::Search));
                assert!(message.contains("problem a"), "{message}");
            }
            other => panic!("expected JobFailed, got {other:?}"),
        }
        let mut b_events = Vec::new();
        let result = b.wait_with(|e| b_events.push(e.clone())).await.unwrap();
        assert_eq!(
            b_events,
            [JobEvent::Queued { position: 0 }, JobEvent::Started]
        );
        assert_eq!(result.tag.as_deref(), Some("problem b"));
        assert_eq!(result.outcome.answer.as_deref(), Some("b-answer"));
        drop(client);
        daemon.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn another_protocol_version_is_a_mismatch_naming_both() {
    bounded(async {
        let (socket, _daemon) = fake_daemon(|mut peer| async move {
            peer.hello(PROTOCOL_VERSION + 7).await;
            peer.send(Response::Error {
                kind: ErrorKind::ProtocolMismatch,
                message: "versions differ".into(),
            })
            .await;
        })
        .await;
        let e = Client::connect(opts(&socket)).await.unwrap_err();
        match &e {
            ClientError::ProtocolMismatch { client, daemon, .. } => {
                assert_eq!((*client, *daemon), (PROTOCOL_VERSION, PROTOCOL_VERSION + 7));
            }
            other => panic!("expected ProtocolMismatch, got {other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains(&PROTOCOL_VERSION.to_string()), "{text}");
        assert!(text.contains(&(PROTOCOL_VERSION + 7).to_string()), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_daemon_closing_mid_job_disconnects_the_job_and_the_client() {
    bounded(async {
        let (socket, _daemon) = fake_daemon(|mut peer| async move {
            peer.hello(PROTOCOL_VERSION).await;
            assert!(matches!(peer.recv().await, Some(Request::Solve(_))));
            peer.send(Response::Accepted { job: 3 }).await;
            peer.send(Response::Event {
                job: 3,
                event: JobEvent::Started,
            })
            .await;
            // Dropping the peer closes the connection.
        })
        .await;
        let client = Client::connect(opts(&socket)).await.unwrap();
        let mut job = client.solve(SolveRequest::new("x")).await.unwrap();
        assert_eq!(job.next_event().await, Some(JobEvent::Started));
        assert_eq!(job.next_event().await, None);
        assert!(job.is_finished());
        match job.wait().await {
            Err(ClientError::Disconnected { reason }) => {
                assert!(reason.contains("closed"), "{reason}")
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        let e = client.list_jobs().await.unwrap_err();
        assert!(matches!(e, ClientError::Disconnected { .. }), "{e}");
        assert!(e.is_unreachable());
    })
    .await;
}

#[tokio::test]
async fn nobody_listening_is_daemon_not_running_naming_the_socket() {
    bounded(async {
        let missing = temp_dir().join("nobody.sock");
        let e = Client::connect(opts(&missing)).await.unwrap_err();
        assert!(matches!(e, ClientError::DaemonNotRunning { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("ets serve"), "{text}");

        // A socket file left behind by a dead daemon refuses connections: the same error.
        let stale = temp_dir().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = Client::connect(opts(&stale)).await.unwrap_err();
        assert!(matches!(e, ClientError::DaemonNotRunning { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn auto_start_failures_name_the_program() {
    bounded(async {
        let socket = temp_dir().join("etsd.sock");
        let missing = AutoStart::program("/nonexistent/etsd");
        let e = Client::connect(opts(&socket).autostart(missing))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::StartFailed { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/etsd"), "{e}");

        // A daemon that exits before listening.
        let dies = AutoStart::program("/bin/sh").args(["-c", "exit 3"]);
        let e = Client::connect(opts(&socket).autostart(dies))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/bin/sh") && text.contains("exited"),
            "{text}"
        );
        assert!(text.contains(&socket.display().to_string()), "{text}");
    })
    .await;
}

#[tokio::test]
async fn cancelling_and_dropping_jobs_send_cancel() {
    bounded(async {
        let (socket, daemon) = fake_daemon(|mut peer| async move {
            peer.hello(PROTOCOL_VERSION).await;
            for job in [1, 2] {
                assert!(matches!(peer.recv().await, Some(Request::Solve(_))));
                peer.send(Response::Accepted { job }).await;
            }
            // Job 1: cancelled through its handle.
            assert_eq!(peer.recv().await, Some(Request::Cancel { job: 1 }));
            peer.send(Response::Done).await;
            peer.send(Response::Cancelled { job: 1 }).await;
            // Job 2: its handle is dropped, which cancels it; the reply goes nowhere.
            assert_eq!(peer.recv().await, Some(Request::Cancel { job: 2 }));
            peer.send(Response::Done).await;
            peer.send(Response::Cancelled { job: 2 }).await;
            // An unknown job: the daemon's error comes back as a typed error.
            assert_eq!(peer.recv().await, Some(Request::Cancel { job: 77 }));
            peer.send(Response::Error {
                kind: ErrorKind::UnknownJob,
                message: "no job 77".into(),
            })
            .await;
            assert!(peer.recv().await.is_none());
        })
        .await;
        let client = Client::connect(opts(&socket)).await.unwrap();
        let one = client.solve(SolveRequest::new("one")).await.unwrap();
        let two = client.solve(SolveRequest::new("two")).await.unwrap();
        one.cancel().await.unwrap();
        assert!(matches!(
            one.wait().await,
            Err(ClientError::Cancelled { job: 1 })
        ));
        drop(two);
        match client.cancel(77).await {
            Err(ClientError::Server { kind, message }) => {
                assert_eq!(kind, ErrorKind::UnknownJob);
                assert!(message.contains("77"));
            }
            other => panic!("expected a server error, got {other:?}"),
        }
        drop(client);
        daemon.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_solve_abandoned_before_its_acceptance_is_cancelled() {
    bounded(async {
        let (got_solve, solve_seen) = tokio::sync::oneshot::channel();
        let (abandoned, wait_abandoned) = tokio::sync::oneshot::channel::<()>();
        let (socket, daemon) = fake_daemon(|mut peer| async move {
            peer.hello(PROTOCOL_VERSION).await;
            assert!(matches!(peer.recv().await, Some(Request::Solve(_))));
            got_solve.send(()).unwrap();
            wait_abandoned.await.unwrap();
            peer.send(Response::Accepted { job: 8 }).await;
            // Nobody holds job 8: the client cancels it by itself. The test's next request
            // may come first; each is answered in the order it arrived.
            let mut seen = Vec::new();
            for _ in 0..2 {
                let request = peer.recv().await.unwrap();
                let reply = match &request {
                    Request::Cancel { job: 8 } => Response::Done,
                    Request::ListJobs => Response::Jobs(Vec::new()),
                    other => panic!("unexpected {other:?}"),
                };
                seen.push(request);
                peer.send(reply).await;
            }
            assert!(seen.contains(&Request::Cancel { job: 8 }), "{seen:?}");
            assert!(peer.recv().await.is_none());
        })
        .await;
        let client = Client::connect(opts(&socket)).await.unwrap();
        tokio::select! {
            _ = client.solve(SolveRequest::new("never watched")) => panic!("not accepted yet"),
            _ = solve_seen => {}
        }
        abandoned.send(()).unwrap();
        // The internal cancel's reply must not be taken for this request's.
        assert_eq!(client.list_jobs().await.unwrap(), Vec::new());
        drop(client);
        daemon.await.unwrap();
    })
    .await;
}

#[test]
fn the_blocking_client_works_from_a_plain_thread() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (socket, daemon) = runtime.block_on(fake_daemon(|mut peer| async move {
        peer.hello(PROTOCOL_VERSION).await;
        assert!(matches!(peer.recv().await, Some(Request::Solve(_))));
        peer.send(Response::Accepted { job: 5 }).await;
        peer.send(Response::Event {
            job: 5,
            event: JobEvent::LoadingModels,
        })
        .await;
        assert_eq!(peer.recv().await, Some(Request::Metrics));
        peer.send(Response::Metrics("ets_jobs_total 1\n".into()))
            .await;
        peer.send(Response::Result {
            job: 5,
            tag: None,
            outcome: outcome("42"),
        })
        .await;
        assert!(peer.recv().await.is_none());
    }));
    let client = ets_client::blocking::Client::connect(opts(&socket)).unwrap();
    let mut job = client.solve(SolveRequest::new("6 * 7")).unwrap();
    assert_eq!(job.next_event(), Some(JobEvent::LoadingModels));
    assert_eq!(client.metrics().unwrap(), "ets_jobs_total 1\n");
    let result = job.wait().unwrap();
    assert_eq!(
        (result.job, result.outcome.answer.as_deref()),
        (5, Some("42"))
    );
    drop(client);
    runtime.block_on(daemon).unwrap();
}

#[test]
fn handles_can_move_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<ets_client::Job>();
    send_sync::<ets_client::blocking::Client>();
    send_sync::<ets_client::blocking::Job>();
    send_sync::<ClientError>();
}
