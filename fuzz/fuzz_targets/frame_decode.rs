//! Fuzz target `frame_decode`: untrusted bytes through the protocol codec (`payload_len`,
//! `decode_payload`, `read_frame`) into `Request`, and every request that decodes through the
//! checks the daemon runs on it. The body is `ets_core::protocol::screen::screen_bytes`, which
//! the corpus replay test (`ets-core/tests/fuzz_corpus.rs`) runs on every seed too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ets_core::protocol::screen::screen_bytes(data);
});
