//! What the daemon checks in a client's request before acting on it, as plain functions the
//! daemon, the fuzz target `fuzz/fuzz_targets/frame_decode.rs` and the corpus replay test share.
//!
//! [`check_request`] is the validation `etsd` runs on every decoded request (a solve's search
//! config and limits, a remote model's spec); [`screen_bytes`] is the fuzz body: untrusted
//! bytes through the codec ([`payload_len`], [`decode_payload`], [`read_frame`]) and every
//! request that decodes through [`check_request`].

use crate::limits::RequestLimits;

use super::codec::{decode_payload, encode_frame, payload_len, read_frame};
use super::messages::{RemoteModelSpec, Request, Response, SolveRequest};

/// Most endpoints one remote model may list.
pub const MAX_REMOTE_ENDPOINTS: usize = 256;

/// Why a solve request cannot run, for people: an empty problem, a zero deadline, an invalid
/// search config, or a search over one of `limits`.
pub fn check_solve(request: &SolveRequest, limits: &RequestLimits) -> Result<(), String> {
    if request.problem.trim().is_empty() {
        return Err("the problem is empty".into());
    }
    if request.deadline_ms == Some(0) {
        return Err("deadline_ms must be positive".into());
    }
    request
        .config
        .validate()
        .map_err(|e| format!("invalid search config: {e}"))?;
    limits
        .check(&request.config, &request.problem)
        .map_err(|e| format!("request over a limit: {e}"))
}

/// Checks what can be checked of a remote model spec without asking its servers.
pub fn check_remote(spec: &RemoteModelSpec) -> Result<(), String> {
    let name = &spec.name;
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "remote model name `{name}` must be non-empty, without `/` or spaces"
        ));
    }
    if spec.endpoints.is_empty() {
        return Err(format!("remote model `{name}` has no endpoints"));
    }
    if spec.endpoints.len() > MAX_REMOTE_ENDPOINTS {
        return Err(format!(
            "remote model `{name}` has {} endpoints (at most {MAX_REMOTE_ENDPOINTS})",
            spec.endpoints.len()
        ));
    }
    if let Some(secs) = spec.timeout_secs {
        if !(1..=3600).contains(&secs) {
            return Err(format!(
                "remote model `{name}`: timeout_secs {secs} is outside 1..=3600"
            ));
        }
    }
    for url in &spec.endpoints {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "remote model `{name}`: endpoint `{url}` must start with http:// or https://"
            ));
        }
    }
    Ok(())
}

/// The checks `etsd` runs on a decoded request before acting on it; `Err` is the message of
/// the `BadRequest` (or `Model`, for a remote spec) error it answers. The handshake's version
/// check and what needs the daemon's state (queue room, models) are not here.
pub fn check_request(request: &Request, limits: &RequestLimits) -> Result<(), String> {
    match request {
        Request::Solve(solve) => check_solve(solve, limits),
        Request::AddRemoteModel(spec) => check_remote(spec),
        Request::Hello { .. }
        | Request::Cancel { .. }
        | Request::ListJobs
        | Request::Status
        | Request::Metrics
        | Request::LoadModel { .. }
        | Request::UnloadModel { .. }
        | Request::PinModel { .. }
        | Request::Pull { .. }
        | Request::ListModels
        | Request::Shutdown => Ok(()),
    }
}

/// What [`screen_bytes`] made of its input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Screening {
    /// The whole input decoded as one request payload (no length prefix).
    pub payload: Option<Result<(), String>>,
    /// Each request read from the input as a stream of frames, in order: `Ok` when
    /// [`check_request`] accepts it, else its message.
    pub frames: Vec<Result<(), String>>,
    /// Why the stream of frames stopped, when not at a clean end between frames.
    pub stream_error: Option<String>,
}

/// The fuzz body: `bytes` as a request payload ([`decode_payload`]) and as a stream of frames
/// ([`read_frame`] until the end or an error), each decoded request checked as the daemon
/// checks it (with default [`RequestLimits`]); also as a response payload (what a client
/// decodes). Errors are results, never panics.
///
/// # Panics
///
/// Only on a codec bug: a decoded request that does not re-encode, or whose re-encoding does
/// not decode back to the same bytes.
pub fn screen_bytes(bytes: &[u8]) -> Screening {
    let limits = RequestLimits::default();
    let mut screening = Screening::default();
    if let Some(header) = bytes.first_chunk::<4>() {
        // What the daemon checks before reading a payload of that size.
        let _ = payload_len(*header);
    }
    if let Ok(request) = decode_payload::<Request>(bytes) {
        round_trip(&request);
        screening.payload = Some(check_request(&request, &limits));
    }
    let _ = decode_payload::<Response>(bytes);
    let mut stream = bytes;
    loop {
        match read_frame::<Request, _>(&mut stream) {
            Ok(None) => break,
            Ok(Some(request)) => {
                round_trip(&request);
                screening.frames.push(check_request(&request, &limits));
            }
            Err(e) => {
                screening.stream_error = Some(e.to_string());
                break;
            }
        }
    }
    screening
}

/// A decoded request re-encodes, and its encoding is a fixed point of decode-then-encode (the
/// first decode may normalise: a varint written long, a `Duration`'s excess nanoseconds).
fn round_trip(request: &Request) {
    let once = encode_frame(request).expect("a decoded request re-encodes");
    let again: Request = decode_payload(&once[4..])
        .unwrap_or_else(|e| panic!("a re-encoded request does not decode: {e}"));
    let twice = encode_frame(&again).expect("a decoded request re-encodes");
    assert_eq!(
        once, twice,
        "decode-then-encode is not stable for {request:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PROTOCOL_VERSION;

    #[test]
    fn valid_frames_pass_and_bad_values_are_named() {
        let mut wire = encode_frame(&Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "t".into(),
        })
        .unwrap();
        let mut wide = SolveRequest::new("What is 6 * 7?");
        wide.config.width = 1 << 20;
        wire.extend(encode_frame(&Request::Solve(Box::new(wide))).unwrap());
        let mut bad = SolveRequest::new("2 + 2?");
        bad.config.sampling.top_p = f64::NAN;
        wire.extend(encode_frame(&Request::Solve(Box::new(bad))).unwrap());
        wire.extend_from_slice(&[9, 0]);
        let s = screen_bytes(&wire);
        assert_eq!(s.frames.len(), 3);
        assert_eq!(s.frames[0], Ok(()));
        assert!(s.frames[1].as_ref().unwrap_err().contains("--max-width"));
        assert!(s.frames[2].as_ref().unwrap_err().contains("sampling.top_p"));
        assert!(s.stream_error.unwrap().contains("closed inside a frame"));
        assert_eq!(s.payload, None);
    }

    /// Corpus replay: every seed of the `frame_decode` fuzz target (`fuzz/corpus/`) through
    /// the fuzz body, as CI's `cargo test` runs it; no panic, and the seeds are what they say.
    #[test]
    fn the_fuzz_corpus_replays_without_a_panic() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 20,
            "{} seeds in {}",
            files.len(),
            dir.display()
        );
        let (mut accepted, mut refused) = (0, 0);
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let s = screen_bytes(&std::fs::read(file).unwrap());
            accepted += s.frames.iter().filter(|f| f.is_ok()).count();
            refused += s.frames.iter().filter(|f| f.is_err()).count();
            if name.starts_with("refused-") {
                assert!(matches!(s.frames[..], [Err(_)]), "{name}: {s:?}");
            } else if name.starts_with("cut-") || name.starts_with("too-large") {
                assert!(
                    s.frames.is_empty() && s.stream_error.is_some(),
                    "{name}: {s:?}"
                );
            }
        }
        assert!(
            accepted >= 20 && refused >= 6,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn a_payload_is_screened_without_its_header() {
        let frame = encode_frame(&Request::AddRemoteModel(RemoteModelSpec {
            name: "a b".into(),
            endpoints: vec!["http://x".into()],
            ..RemoteModelSpec::default()
        }))
        .unwrap();
        let s = screen_bytes(&frame[4..]);
        assert!(s
            .payload
            .unwrap()
            .unwrap_err()
            .contains("without `/` or spaces"));
    }
}
