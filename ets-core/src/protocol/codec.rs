//! Length-prefixed bincode frames: `u32` little-endian payload length, then the payload.
//!
//! Blocking helpers ([`read_frame`], [`write_frame`]) work on any `Read`/`Write`; async callers
//! read the 4-byte header themselves, check it with [`payload_len`], read the payload and call
//! [`decode_payload`]. A clean end of stream before a header is `Ok(None)`; an end inside a
//! frame is an error.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Largest payload accepted in either direction.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// A frame could not be encoded, read or decoded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announces more than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The payload decoded, but bytes were left over.
    #[error("malformed message: {extra} trailing bytes")]
    Trailing {
        /// Bytes left over.
        extra: usize,
    },
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes a message as one frame (header included).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0u8; 4];
    bincode::serde::encode_into_std_write(message, &mut frame, config())?;
    let len = frame.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// The payload length a header announces, checked against [`MAX_FRAME_BYTES`].
pub fn payload_len(header: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(len)
}

/// Decodes one payload; every byte must belong to the message.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (message, used) = bincode::serde::decode_from_slice(payload, config())?;
    if used != payload.len() {
        return Err(CodecError::Trailing {
            extra: payload.len() - used,
        });
    }
    Ok(message)
}

/// Writes one frame.
pub fn write_frame<T: Serialize, W: Write>(writer: &mut W, message: &T) -> Result<(), CodecError> {
    writer.write_all(&encode_frame(message)?)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the header.
pub fn read_frame<T: DeserializeOwned, R: Read>(reader: &mut R) -> Result<Option<T>, CodecError> {
    let mut header = [0u8; 4];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < 4 {
        return Err(CodecError::Truncated { expected: 4, got });
    }
    let len = payload_len(header)?;
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload)?;
    if got < len {
        return Err(CodecError::Truncated { expected: len, got });
    }
    decode_payload(&payload).map(Some)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, Response, SolveRequest, PROTOCOL_VERSION};

    #[test]
    fn messages_round_trip() {
        let requests = vec![
            Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: "test".into(),
            },
            Request::Solve(Box::new(SolveRequest::new("What is 6 * 7?"))),
            Request::Cancel { job: 7 },
            Request::Status,
        ];
        let mut wire = Vec::new();
        for r in &requests {
            write_frame(&mut wire, r).unwrap();
        }
        let mut reader = wire.as_slice();
        for r in &requests {
            assert_eq!(&read_frame::<Request, _>(&mut reader).unwrap().unwrap(), r);
        }
        assert!(
            read_frame::<Request, _>(&mut reader).unwrap().is_none(),
            "clean end"
        );
        let hello = Response::Hello {
            protocol: PROTOCOL_VERSION,
            daemon: "etsd".into(),
        };
        assert_eq!(
            decode_payload::<Response>(&encode_frame(&hello).unwrap()[4..]).unwrap(),
            hello
        );
    }

    #[test]
    fn bad_frames_are_errors_that_say_what_is_wrong() {
        let too_big = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        let e = read_frame::<Request, _>(&mut too_big.as_slice()).unwrap_err();
        assert!(matches!(e, CodecError::TooLarge { .. }), "{e}");

        let frame = encode_frame(&Request::Status).unwrap();
        let cut = &frame[..frame.len() - 1];
        let e = read_frame::<Request, _>(&mut &cut[..]).unwrap_err();
        assert!(e.to_string().contains("closed inside a frame"), "{e}");
        let e = read_frame::<Request, _>(&mut &frame[..2]).unwrap_err();
        assert!(matches!(
            e,
            CodecError::Truncated {
                expected: 4,
                got: 2
            }
        ));

        let garbage = [5u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
        let e = read_frame::<Request, _>(&mut &garbage[..]).unwrap_err();
        assert!(e.to_string().starts_with("malformed message"), "{e}");
    }

    /// The bytes of messages that cover the search settings, end reasons and (from protocol 6)
    /// a status report, pinned to the protocol version: a change to them that keeps
    /// [`PROTOCOL_VERSION`] would let a client and daemon of different builds greet each other
    /// and then misread every solve or status.
    #[test]
    fn the_wire_format_changes_only_with_the_protocol_version() {
        use crate::search::EndReason;
        let mut request = SolveRequest::new("What is 6 * 7?");
        request.deadline_ms = Some(1500);
        request.config.stop_at_share = Some(0.8);
        request.config.kv_limit = Some(1500);
        request.config.kv_cost = crate::KvCost::Tokens;
        let mut wire = encode_frame(&Request::Solve(Box::new(request))).unwrap();
        wire.extend(encode_frame(&EndReason::ALL.to_vec()).unwrap());
        // A status report with a model and its warm prompts (protocol 6 on).
        let model = crate::protocol::ModelInfo {
            model: "m".into(),
            path: "/m".into(),
            state: crate::protocol::ModelState::Ready,
            engine: "native".into(),
            in_use: 1,
            roles: Vec::new(),
            pinned: false,
            bytes: 2,
            idle_secs: 3,
            keep_alive_secs: -1,
            endpoints: Vec::new(),
            prompt_cache: Some(crate::protocol::PromptCacheStats {
                hits: 4,
                shared_hits: 5,
                misses: 6,
                tokens_reused: 7,
                entries: 8,
                bytes: 9,
                max_bytes: 10,
            }),
        };
        let status = crate::protocol::StatusReport {
            models: vec![model],
            prompt_cache_bytes: 11,
            ..Default::default()
        };
        wire.extend(encode_frame(&Response::Status(Box::new(status))).unwrap());
        // FNV-1a, 64-bit.
        let hash = wire.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let pinned: &[(u32, u64)] = &[
            (4, 0xa858_8721_3f6f_b43a),
            (5, 0xe36c_7805_5b10_06b8),
            (6, 0xf3c3_0fbb_d6e8_2554),
        ];
        let expected = pinned.iter().find(|p| p.0 == PROTOCOL_VERSION).map(|p| p.1);
        assert_eq!(
            expected,
            Some(hash),
            "the wire bytes of protocol {PROTOCOL_VERSION} changed (hash {hash:#x}): if the \
             change is intended, bump PROTOCOL_VERSION and pin the new hash under it"
        );
    }
}
