//! The wire protocol between `ets-client` and `etsd`: message types ([`messages`]) and the one
//! codec that frames them ([`codec`]).
//!
//! **API boundary**: this module is the only serialized format of the product. A connection
//! opens with [`Request::Hello`] / [`Response::Hello`]; a daemon answers a client of another
//! [`PROTOCOL_VERSION`] with an error naming both versions and closes. Frames are a `u32`
//! little-endian payload length, then a bincode 2 (serde, standard configuration) payload of at
//! most [`MAX_FRAME_BYTES`].

pub mod codec;
pub mod messages;
pub mod screen;
pub mod socket;

pub use codec::{
    decode_payload, encode_frame, payload_len, read_frame, write_frame, CodecError, MAX_FRAME_BYTES,
};
pub use messages::*;
pub use screen::{check_remote, check_request, check_solve};
pub use socket::{current_uid, default_socket_path, SOCKET_ENV};

/// Version of the wire protocol; bumped on any incompatible change of [`messages`].
pub const PROTOCOL_VERSION: u32 = 6;
