//! Bad input never takes the daemon down: garbage bytes, an oversized length prefix, a truncated
//! frame, a wrong protocol version, a missing handshake and invalid requests each get a clear
//! error (or a closed connection), and the daemon keeps serving others.

use std::time::Duration;

use ets_core::protocol::{
    encode_frame, ErrorKind, Request, Response, SolveRequest, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

use crate::shared;
use crate::support::Conn;

fn error_of(seen: &[Response]) -> Option<(ErrorKind, String)> {
    seen.iter().find_map(|r| match r {
        Response::Error { kind, message } => Some((*kind, message.clone())),
        _ => None,
    })
}

/// The daemon still answers a well-behaved client.
fn still_serving() {
    let mut c = shared().connect();
    let status = c.status();
    assert!(status.pid > 0);
}

#[test]
fn garbage_bytes_get_an_error_and_a_closed_connection() {
    let mut c = shared().connect();
    c.send_bytes(&[
        9, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7,
    ]);
    let (seen, closed) = c.drain(Duration::from_secs(10));
    let (kind, message) = error_of(&seen).expect("an error");
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("malformed message"), "{message}");
    assert!(closed);
    still_serving();
}

#[test]
fn an_oversized_length_prefix_is_refused_by_name() {
    let mut c = shared().connect();
    c.send_bytes(&((MAX_FRAME_BYTES as u32) + 1).to_le_bytes());
    let (seen, closed) = c.drain(Duration::from_secs(10));
    let (kind, message) = error_of(&seen).expect("an error");
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(
        message.contains("exceeds") && message.contains(&MAX_FRAME_BYTES.to_string()),
        "{message}"
    );
    assert!(closed);
    still_serving();
}

#[test]
fn a_truncated_frame_closes_only_that_connection() {
    let mut c = shared().connect();
    let frame = encode_frame(&Request::Status).unwrap();
    c.send_bytes(&frame[..frame.len() - 1]);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (seen, closed) = c.drain(Duration::from_secs(10));
    assert!(
        closed,
        "the daemon closes a connection that ends inside a frame"
    );
    assert!(seen.is_empty(), "nothing answers half a request: {seen:?}");
    still_serving();
}

#[test]
fn a_wrong_protocol_version_is_named_with_both_versions() {
    let mut c = Conn::open(&shared().socket).unwrap();
    c.send(&Request::Hello {
        protocol: 999,
        client: "from-the-future".into(),
    });
    let (seen, closed) = c.drain(Duration::from_secs(10));
    assert!(
        matches!(seen.first(), Some(Response::Hello { protocol, .. }) if *protocol == PROTOCOL_VERSION),
        "{seen:?}"
    );
    let (kind, message) = error_of(&seen).expect("an error");
    assert_eq!(kind, ErrorKind::ProtocolMismatch);
    assert!(
        message.contains("999") && message.contains(&format!("protocol {PROTOCOL_VERSION}")),
        "{message}"
    );
    assert!(closed);
    still_serving();
}

#[test]
fn a_request_before_hello_is_refused() {
    let mut c = Conn::open(&shared().socket).unwrap();
    c.send(&Request::Status);
    let (seen, closed) = c.drain(Duration::from_secs(10));
    let (kind, message) = error_of(&seen).expect("an error");
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("Hello"), "{message}");
    assert!(closed);
}

#[test]
fn invalid_requests_are_answered_and_the_connection_stays_usable() {
    let mut c = shared().connect();
    let mut zero_width = SolveRequest::new("What is 2 + 2?");
    zero_width.config.width = 0;
    match c.request(&Request::Solve(Box::new(zero_width))) {
        Response::Error {
            kind: ErrorKind::BadRequest,
            message,
        } => {
            assert!(message.contains("width"), "{message}")
        }
        other => panic!("expected a bad-request error, got {other:?}"),
    }
    match c.request(&Request::Solve(Box::new(SolveRequest::new("   ")))) {
        Response::Error {
            kind: ErrorKind::BadRequest,
            message,
        } => {
            assert!(message.contains("empty"), "{message}")
        }
        other => panic!("expected a bad-request error, got {other:?}"),
    }
    match c.request(&Request::Cancel { job: 987_654 }) {
        Response::Error {
            kind: ErrorKind::UnknownJob,
            message,
        } => {
            assert!(message.contains("987654"), "{message}")
        }
        other => panic!("expected unknown job, got {other:?}"),
    }
    let mut bad_model = SolveRequest::new("What is 2 + 2?");
    bad_model.models.policy = Some("no-such-model".into());
    let job = c.submit(bad_model);
    match c.finish(job).1 {
        Response::Failed {
            kind: ErrorKind::Model,
            message,
            ..
        } => {
            assert!(
                message.contains("no-such-model") && message.contains("smollm2-135m"),
                "{message}"
            )
        }
        other => panic!("expected a model error, got {other:?}"),
    }
    assert!(c.status().pid > 0, "same connection still works");
}
